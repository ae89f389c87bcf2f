"""The ``/ws`` endpoint: one WebSocket per client, speaking `signaling.protocol`.

A connection must authenticate first (``auth`` with the protocol version and the token,
within `AUTH_TIMEOUT_S`); anything else, a bad token or a link for a booth or speaker the
program does not have, gets an ``error`` and the connection is closed. After that every
frame is parsed, checked against the sender's role, and handed to the `LiveEvent`; a
refused frame gets an ``error`` and the connection goes on.

`install_live(app)` is the application extension that adds all this to a node: the
streamer, the live event service and the route (see `signaling.app.create_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator

from aiohttp import WSCloseCode, WSMsgType, web

from signaling import protocol as p
from signaling.alarms import Thresholds
from signaling.appkeys import EVENT_KEY, METRICS_KEY, SETTINGS_KEY, SIGNER_KEY, STORE_KEY
from signaling.live import Client, LiveEvent
from signaling.live.bus import LiveBus, LocalBus
from signaling.live.redis_bus import RedisBus
from signaling.metrics import Readings
from signaling.origins import check_origin
from signaling.secret import load_or_create_secret
from signaling.settings import Settings
from signaling.tokens import Claims, TokenError
from signaling.turn_credentials import PageIceServers
from streamer import IceServer, Sfu, SfuConfig
from streamer.aiortc_internals import check_once

log = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 5.0
#: aiohttp itself drops frames above this (close code 1009); below it, our own caps in
#: `signaling.protocol` answer with a ``too_large`` error and keep the connection.
MAX_FRAME_BYTES = 1024 * 1024
#: Messages waiting for a client that does not read; states are coalesced and not counted.
MAX_PENDING_MESSAGES = 256
HEARTBEAT_S = 20.0

#: Close codes (4000-4999 are the application's own).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_OUT_OF_SCOPE = 4403
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_TOO_SLOW = 4429

LIVE_KEY = web.AppKey("live", LiveEvent)
SFU_KEY = web.AppKey("sfu", Sfu)
_SOCKETS_KEY = web.AppKey("live_sockets", set)


class Outbox:
    """What is waiting to be written to one WebSocket, and the task writing it.

    States replace each other (only the newest matters to a client); other messages
    keep their order. A client that lets `MAX_PENDING_MESSAGES` pile up is closed.
    """

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._queue: deque[str] = deque()
        self._state: str | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing: asyncio.Task[bool] | None = None
        self._task = asyncio.get_running_loop().create_task(self._write())

    def send(self, message: p.WireMessage) -> None:
        if self._task.done():
            return
        text = p.encode(message)
        if isinstance(message, p.State):
            self._state = text
        else:
            if len(self._queue) >= MAX_PENDING_MESSAGES:
                self._task.cancel()
                self._closing = asyncio.get_running_loop().create_task(
                    self.ws.close(code=CLOSE_TOO_SLOW, message=b"too many unread messages")
                )
                return
            self._queue.append(text)
        self._idle.clear()
        self._wake.set()

    async def _write(self) -> None:
        while True:
            self._idle.set()
            await self._wake.wait()
            self._wake.clear()
            while self._queue or self._state is not None:
                if self._queue:
                    text = self._queue.popleft()
                else:
                    text, self._state = self._state, None
                    assert text is not None
                if self.ws.closed:
                    return
                try:
                    await self.ws.send_str(text)
                except (ConnectionError, RuntimeError):
                    return

    async def flush_and_close(self) -> None:
        """Write what is pending (bounded by the socket), then stop the writer."""
        if not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 2.0)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._closing is not None:
            await asyncio.gather(self._closing, return_exceptions=True)


async def _refuse_and_close(ws: web.WebSocketResponse, code: str, message: str, close: int) -> None:
    await ws.send_str(p.encode(p.Error(code=code, message=message)))
    await ws.close(code=close, message=code.encode())


async def _authenticate(
    ws: web.WebSocketResponse, app: web.Application, live: LiveEvent
) -> Claims | None:
    try:
        frame = await asyncio.wait_for(ws.receive(), AUTH_TIMEOUT_S)
    except TimeoutError:
        await _refuse_and_close(
            ws,
            "auth_timeout",
            f"no auth message within {AUTH_TIMEOUT_S:.0f} s: send auth with your token first",
            CLOSE_AUTH_TIMEOUT,
        )
        return None
    if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        return None  # closed or broken before saying anything
    try:
        message = p.parse_client_message(frame.data)
    except p.ProtocolError as exc:
        await _refuse_and_close(ws, exc.code, exc.message, CLOSE_UNAUTHENTICATED)
        return None
    if not isinstance(message, p.Auth):
        await _refuse_and_close(
            ws,
            "unauthenticated",
            f"send auth with your token before {message.type}",
            CLOSE_UNAUTHENTICATED,
        )
        return None
    if message.v != p.PROTOCOL_VERSION:
        await _refuse_and_close(
            ws,
            "unsupported_version",
            f"this server speaks protocol version {p.PROTOCOL_VERSION}, not {message.v}: "
            "reload the page",
            CLOSE_UNAUTHENTICATED,
        )
        return None
    try:
        claims = app[SIGNER_KEY].verify(message.token)
    except TokenError as exc:
        await _refuse_and_close(ws, exc.code, str(exc), CLOSE_UNAUTHENTICATED)
        return None
    problem = live.scope_problem(claims)
    if problem is not None:
        await _refuse_and_close(ws, "out_of_scope", problem, CLOSE_OUT_OF_SCOPE)
        return None
    return claims


async def _dispatch(live: LiveEvent, client: Client, data: str | bytes) -> None:
    try:
        message = p.parse_client_message(data)
    except p.ProtocolError as exc:
        client.send(p.Error(code=exc.code, message=exc.message, ref=exc.ref))
        return
    if isinstance(message, p.Auth):
        client.send(
            p.Error(
                code="already_authenticated",
                message="this connection is already authenticated",
                ref=message.id,
            )
        )
        return
    if client.role not in p.ALLOWED_ROLES[message.type]:
        client.send(
            p.Error(
                code="forbidden",
                message=f"{client.role.described} may not send {message.type}",
                ref=message.id,
            )
        )
        return
    try:
        await live.handle(client, message)
    except p.ProtocolError as exc:
        client.send(p.Error(code=exc.code, message=exc.message, ref=message.id))
    except Exception:
        log.exception("command failed", extra={"type": message.type})
        client.send(
            p.Error(
                code="internal",
                message=f"the server could not carry out {message.type}; the problem is logged",
                ref=message.id,
            )
        )


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    # Before the upgrade: a refused page gets a plain 403 that says why.
    check_origin(request, app[SETTINGS_KEY])
    live = app[LIVE_KEY]
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_FRAME_BYTES)
    await ws.prepare(request)
    sockets = app[_SOCKETS_KEY]
    sockets.add(ws)
    try:
        claims = await _authenticate(ws, app, live)
        if claims is None:
            return ws
        outbox = Outbox(ws)
        client = Client(claims=claims, send=outbox.send)
        try:
            await live.join(client)
            log.info("client joined", extra={"role": claims.role.value})
            async for frame in ws:
                if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await _dispatch(live, client, frame.data)
                elif frame.type == WSMsgType.ERROR:
                    break
        finally:
            await live.leave(client)
            await outbox.flush_and_close()
    finally:
        sockets.discard(ws)
    return ws


async def _live_context(app: web.Application) -> AsyncIterator[None]:
    # Before anyone connects: a wrong aiortc release is refused here, by name.
    await check_once()
    live = app[LIVE_KEY]
    sfu = app[SFU_KEY]
    sfu.on_source_added = live.source_added
    sfu.on_source_removed = live.source_removed
    await live.start()
    try:
        yield
    finally:
        await _close_sockets(app)
        await live.stop()
        sfu.on_source_added = sfu.on_source_removed = None
        await sfu.close()


async def _close_sockets(app: web.Application) -> None:
    """Tell every client the server is going away (they reconnect to the next one).

    Runs at shutdown, before aiohttp waits for open requests: an open WebSocket would
    otherwise hold the shutdown for its whole timeout.
    """
    sockets = list(app[_SOCKETS_KEY])
    await asyncio.gather(
        *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for ws in sockets),
        return_exceptions=True,
    )


def _link_host(settings: Settings) -> str:
    if settings.link_host:
        return settings.link_host
    if settings.rtc_addresses:
        return settings.rtc_addresses[0]
    if not settings.redis_url:
        return "127.0.0.1"  # workers of one machine
    log.warning(
        "the media link listens on 127.0.0.1: nodes on other machines cannot pull from this "
        "one (set DRAGOMAN_LINK_HOST to an address they reach)"
    )
    return "127.0.0.1"


def install_live(app: web.Application, *, bus: LiveBus | None = None) -> None:
    """Add the streamer, the live event service and ``/ws`` to a node's application.

    ``bus``: how this node shares the live event with others (default: through Redis
    when ``redis_url`` is set, else nobody: `LocalBus`).
    """
    settings = app[SETTINGS_KEY]
    event = app[EVENT_KEY]
    # Nodes sharing a Redis share the live event; a node alone keeps it in process.
    if bus is None and settings.redis_url:
        bus = RedisBus(settings.redis_url, event.id)
    shared = bus is not None
    sfu = Sfu(
        SfuConfig(
            # The TURN server is for pages that cannot reach the node directly; the node
            # itself is reachable (its RTC ports are open), so it never relays.
            ice_servers=tuple(
                IceServer(urls=s.urls, username=s.username, credential=s.credential)
                for s in settings.ice_servers
            ),
            public_address=settings.ice_public_address,
            port_range=settings.rtc_ports,
            host_addresses=tuple(settings.rtc_addresses),
            # Nodes of one event pull each other's outputs, authenticated with the secret
            # they already share to sign links.
            link_secret=load_or_create_secret(settings) if shared else None,
            video_codec=settings.video_codec,
        )
    )
    app[SFU_KEY] = sfu
    app[LIVE_KEY] = LiveEvent(
        event,
        app[STORE_KEY],
        sfu,
        bus=bus or LocalBus(),
        address=settings.public_url or "",
        link_host=_link_host(settings) if shared else None,
        ice_servers=PageIceServers.from_settings(settings),
        thresholds=Thresholds(dead_air_after_s=settings.dead_air_s),
    )
    app[_SOCKETS_KEY] = set()
    app.cleanup_ctx.append(_live_context)
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/ws", websocket_handler)
    _register_metrics(app)


def _register_metrics(app: web.Application) -> None:
    # Read from counts the live service keeps as clients come, choose and go.
    audience = app[LIVE_KEY].audience
    registry = app[METRICS_KEY]
    registry.register(
        Readings(
            "dragoman_live_listeners",
            "Attendees receiving each channel on this node (channel original = the floor).",
            lambda: [({"channel": channel}, n) for channel, n in audience.listeners.items()],
            labels=("channel",),
        )
    )
    registry.register(
        Readings(
            "dragoman_live_clients",
            "Authenticated WebSocket clients by role.",
            lambda: [({"role": role.value}, n) for role, n in audience.roles.items()],
            labels=("role",),
        )
    )
