"""Cluster tests use the signaling tests' clients (`connect(..., server=node)`)."""

from tests.signaling.conftest import connect, live_server, open_ws, peers, ws_session

__all__ = ["connect", "live_server", "open_ws", "peers", "ws_session"]
