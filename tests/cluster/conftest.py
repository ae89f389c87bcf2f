"""Cluster tests: nodes of one event sharing a live bus, and the signaling tests' clients
(`connect(..., server=node)`).

`start_node()` starts an in-process node whose bus is the test's `bus_kind`: a real
redis-server (nodes on several machines) or the embedded hub (`--workers`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from signaling.live.hub import HubBus, LiveHub
from signaling.websocket import install_live
from tests.signaling.conftest import connect, live_server, open_ws, peers, ws_session

__all__ = ["connect", "live_server", "open_ws", "peers", "ws_session"]

SECRET = "cluster-secret-" + "x" * 24

StartNode = Callable[[], Awaitable[Any]]


@pytest.fixture(params=["redis", "hub"])
def bus_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def start_node(
    bus_kind: str, request: pytest.FixtureRequest, start_server
) -> AsyncIterator[StartNode]:
    hub: LiveHub | None = None
    # Unix socket paths are short: not under pytest's long temporary directories.
    directory = Path(tempfile.mkdtemp(prefix="dragoman-hub-"))
    if bus_kind == "hub":
        hub = LiveHub(directory / "hub.sock")
        await hub.start()
    redis_url = request.getfixturevalue("redis_url") if bus_kind == "redis" else None

    async def start() -> Any:
        if hub is not None:
            extension = partial(install_live, bus=HubBus(hub.path))
            return await start_server(extensions=[extension], secret=SECRET)
        return await start_server(extensions=[install_live], redis_url=redis_url, secret=SECRET)

    yield start
    if hub is not None:
        await hub.stop()
    shutil.rmtree(directory, ignore_errors=True)
