"""Fixtures for the live protocol: a server running the live service, and clients.

`live_server` is a real node (the seed program, SQLite store, the streamer) on a free
loopback port; `connect(role, ...)` opens an authenticated WebSocket to it and returns a
`WsClient` that has already read its ``welcome``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from signaling.tokens import Role
from signaling.websocket import install_live
from tests.support.server import RunningServer, StartServer

WAIT_S = 10.0


class WsClient:
    """A protocol client: sends dicts, reads messages, remembers the latest state."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.state: dict[str, Any] | None = None
        self.welcome: dict[str, Any] | None = None
        self._counter = 0

    async def send(self, type_: str, **fields: Any) -> int:
        """Send a message with a fresh ``id``; returns the id."""
        self._counter += 1
        await self.ws.send_str(json.dumps({"type": type_, "id": self._counter, **fields}))
        return self._counter

    async def receive(self, within: float = WAIT_S) -> dict[str, Any]:
        frame = await self.ws.receive(timeout=within)
        if frame.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"expected a text frame, got {frame.type.name} {frame.data!r}")
        message = json.loads(frame.data)
        if message["type"] == "state":
            self.state = message
        return message

    async def next(self, type_: str, within: float = WAIT_S) -> dict[str, Any]:
        """The next message of a type, skipping (and remembering) states."""
        async with asyncio.timeout(within):
            while True:
                message = await self.receive(within)
                if message["type"] == type_:
                    return message
                if message["type"] == "error" and type_ != "error":
                    raise AssertionError(f"unexpected error while waiting for {type_}: {message}")

    async def error(self, ref: int | None = None) -> dict[str, Any]:
        message = await self.next("error")
        if ref is not None:
            assert message["ref"] == ref, message
        return message

    async def state_where(
        self, predicate: Callable[[dict[str, Any]], bool], within: float = WAIT_S
    ) -> dict[str, Any]:
        """The current state if it satisfies `predicate`, else the first later one that does."""
        if self.state is not None and predicate(self.state):
            return self.state
        async with asyncio.timeout(within):
            while True:
                message = await self.receive(within)
                if message["type"] == "error":
                    raise AssertionError(f"unexpected error while waiting for a state: {message}")
                if message["type"] == "state" and predicate(message):
                    return message

    async def alive(self) -> None:
        """The connection still answers."""
        ref = await self.send("ping")
        pong = await self.next("pong")
        assert pong["ref"] == ref

    async def close(self) -> None:
        await self.ws.close()


Connect = Callable[..., Awaitable[WsClient]]


def token(server: RunningServer, role: Role, subject: str | None = None, **scope: Any) -> str:
    return server.signer.issue(
        role, subject=subject or f"{role.value}-1", ttl=timedelta(hours=1), **scope
    )


@pytest.fixture
async def peers() -> AsyncIterator[list[Any]]:
    """Peer connections, subscriptions and clients closed at teardown (newest first)."""
    opened: list[Any] = []
    yield opened
    for item in reversed(opened):
        await item.close()


@pytest.fixture
async def live_server(start_server: StartServer) -> RunningServer:
    return await start_server(extensions=[install_live])


@pytest.fixture
async def ws_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def open_ws(ws_session: aiohttp.ClientSession) -> Callable[..., Awaitable[WsClient]]:
    """Open a WebSocket to a server without authenticating."""

    async def open_(server: RunningServer) -> WsClient:
        return WsClient(await ws_session.ws_connect(f"{server.url}/ws"))

    return open_


@pytest.fixture
def connect(live_server: RunningServer, open_ws) -> Connect:
    """`await connect(Role.X, subject=..., booth=..., speaker=..., server=...)`."""

    async def connect_(
        role: Role, subject: str | None = None, server: RunningServer | None = None, **scope: Any
    ) -> WsClient:
        server = server or live_server
        client = await open_ws(server)
        await client.send("auth", v=1, token=token(server, role, subject, **scope))
        client.welcome = await client.next("welcome")
        await client.next("state")
        return client

    return connect_
