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
async def live_hub(bus_kind: str) -> AsyncIterator[LiveHub | None]:
    """The embedded hub of a ``hub`` test (None for ``redis``). Set up before the nodes'
    servers, it is stopped after them: nodes that lose their hub first wait for it when
    their last pages leave."""
    if bus_kind != "hub":
        yield None
        return
    # Unix socket paths are short: not under pytest's long temporary directories.
    directory = Path(tempfile.mkdtemp(prefix="dragoman-hub-"))
    hub = LiveHub(directory / "hub.sock")
    await hub.start()
    yield hub
    await hub.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def start_node(
    bus_kind: str, live_hub: LiveHub | None, request: pytest.FixtureRequest, start_server
) -> StartNode:
    redis_url = request.getfixturevalue("redis_url") if bus_kind == "redis" else None

    async def start() -> Any:
        if live_hub is not None:
            extension = partial(install_live, bus=HubBus(live_hub.path))
            return await start_server(extensions=[extension], secret=SECRET)
        return await start_server(extensions=[install_live], redis_url=redis_url, secret=SECRET)

    return start
