"""The ``/ws`` endpoint: one WebSocket per client, speaking `signaling.protocol`.

A connection must authenticate first (``auth`` with the protocol version and the token,
within `AUTH_TIMEOUT_S`); anything else, a bad token or a link for a booth or speaker the
program does not have, gets an ``error`` and the connection is closed. After that every
frame is counted against the connection's `MessageRate`, parsed, checked against the
sender's role, and handed to the `LiveEvent`; a refused frame gets an ``error`` and the
connection goes on, unless it keeps on sending past its rate.

No client address and no link holds more than its share of the node's connections
(`ConnectionCaps`): one more gets ``too_many_connections`` and is closed. No client
address opens new connections, or fails to authenticate, faster than its allowance
(`ConnectionRate`): past it the upgrade is refused with HTTP 429 before any WebSocket
exists. Every refusal is counted for /metrics (`Refusals`).

`install_live(app)` is the application extension that adds all this to a node: the
streamer, the live event service and the route (see `signaling.app.create_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

from aiohttp import WSCloseCode, WSMsgType, web

from signaling import protocol as p
from signaling.alarms import Thresholds
from signaling.appkeys import EVENT_KEY, METRICS_KEY, SETTINGS_KEY, SIGNER_KEY, STORE_KEY
from signaling.client_address import client_address
from signaling.connection_caps import ConnectionCaps
from signaling.connection_rate import ConnectionRate
from signaling.http_api import ApiError
from signaling.http_connections import address_key
from signaling.live.bus import LiveBus, LocalBus
from signaling.live.clients import CLOSE_REVOKED, CLOSE_SEAT, Client
from signaling.live.event import LiveEvent
from signaling.live.redis_bus import RedisBus
from signaling.message_rate import MessageRate, Verdict
from signaling.metrics import Readings
from signaling.origins import OriginRefused, check_origin
from signaling.refusals import ORIGIN, PER_ADDRESS, PER_LINK, TOO_SLOW, Refusals
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
#: States to one client are this far apart on average (the newest one is sent when the
#: time comes): whatever anyone else does, a client receives at most twenty states a
#: second, after a burst of `STATE_BURST` (a page joining asks three things in a row:
#: each answer goes at once instead of 50 ms after the one before).
STATE_INTERVAL_S = 0.05
STATE_BURST = 3
HEARTBEAT_S = 20.0

#: Close codes (4000-4999 are the application's own).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_OUT_OF_SCOPE = 4403
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_TOO_SLOW = 4429
#: Too many connections of this link, or from this address, are open on the node.
CLOSE_TOO_MANY_CONNECTIONS = 4430
#: The client went on sending far past its message rate.
CLOSE_RATE_LIMITED = 4420

# CLOSE_SEAT (4409: another page took over the seat, or a request for it was refused) and
# CLOSE_REVOKED (4410: the link was revoked) come from `signaling.live.clients`.

#: A command that fails logs its traceback at most this often per message type: a client
#: repeating the message that fails must not fill the disk with copies of it.
FAILURE_LOG_EVERY_S = 60.0

LIVE_KEY = web.AppKey("live", LiveEvent)
SFU_KEY = web.AppKey("sfu", Sfu)
_SOCKETS_KEY = web.AppKey("live_sockets", set)
CAPS_KEY = web.AppKey("connection_caps", ConnectionCaps)
RATE_KEY = web.AppKey("connection_rate", ConnectionRate)
REFUSALS_KEY = web.AppKey("ws_refusals", Refusals)


class Outbox:
    """What is waiting to be written to one WebSocket, and the task writing it.

    States replace each other (only the newest matters to a client), and follow each
    other `STATE_INTERVAL_S` apart at least: however fast the event changes, or one client
    makes it change, a client gets a bounded number of states. Other messages keep their
    order and are not held back. A client that lets `MAX_PENDING_MESSAGES` pile up is
    closed.
    """

    def __init__(
        self, ws: web.WebSocketResponse, closed_for: Callable[[str], None] | None = None
    ) -> None:
        self.ws = ws
        #: Told why, when this outbox closes its connection for cause (for /metrics).
        self._closed_for = closed_for
        self._queue: deque[str] = deque()
        # Kept as the model: only the state actually written is encoded.
        self._state: p.State | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing: asyncio.Task[bool] | None = None
        # States that may go now (a token bucket: one more every STATE_INTERVAL_S).
        loop = asyncio.get_running_loop()
        self._state_tokens = float(STATE_BURST)
        self._tokens_at = loop.time()
        self._task = loop.create_task(self._write())

    def send(self, message: p.WireMessage) -> None:
        if self._task.done():
            return
        if isinstance(message, p.State):
            self._state = message
        else:
            text = p.encode(message)
            if len(self._queue) >= MAX_PENDING_MESSAGES:
                self._task.cancel()
                if self._closed_for is not None:
                    self._closed_for(TOO_SLOW)
                self._closing = asyncio.get_running_loop().create_task(
                    self.ws.close(code=CLOSE_TOO_SLOW, message=b"too many unread messages")
                )
                return
            self._queue.append(text)
        self._idle.clear()
        self._wake.set()

    async def _write(self) -> None:
        try:
            await self._write_until_closed()
        finally:
            # Nothing more will be written: whoever waits for the outbox to drain (the
            # handler's last step, a closing for cause) must not wait out its timeout.
            self._idle.set()

    async def _write_until_closed(self) -> None:
        while True:
            self._idle.set()
            await self._wake.wait()
            self._wake.clear()
            while self._queue or self._state is not None:
                if self._queue:
                    text = self._queue.popleft()
                else:
                    now = asyncio.get_running_loop().time()
                    tokens = self._state_tokens + (now - self._tokens_at) / STATE_INTERVAL_S
                    self._state_tokens, self._tokens_at = min(tokens, STATE_BURST), now
                    if self._state_tokens < 1:
                        wait = (1 - self._state_tokens) * STATE_INTERVAL_S
                        # Newer states replace this one meanwhile; other messages go first.
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), wait)
                        self._wake.clear()
                        continue
                    self._state_tokens -= 1
                    state, self._state = self._state, None
                    assert state is not None
                    text = p.encode(state)
                if self.ws.closed:
                    return
                try:
                    await self.ws.send_str(text)
                except (ConnectionError, RuntimeError):
                    return

    def end(self, close_code: int, code: str, message: str) -> None:
        """Send an ``error`` saying why, then close (the live service ends a connection)."""
        if self._task.done() or self._closing is not None:
            return
        if self._closed_for is not None:
            self._closed_for(code)
        self.send(p.Error(code=code, message=message))
        closing = self._close_after_idle(close_code, code)
        self._closing = asyncio.get_running_loop().create_task(closing)

    async def _close_after_idle(self, close_code: int, code: str) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), 2.0)
        await self.ws.close(code=close_code, message=code.encode())

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


class FailureLog:
    """Tracebacks of failed commands, one per message type per `FAILURE_LOG_EVERY_S`; the
    failures in between are counted and the next traceback says how many."""

    def __init__(self) -> None:
        self._logged_at: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def failed(self, message_type: str) -> None:
        """Call from the ``except`` block of the failure."""
        now = time.monotonic()
        logged_at = self._logged_at.get(message_type)
        if logged_at is not None and now - logged_at < FAILURE_LOG_EVERY_S:
            self._unlogged[message_type] = self._unlogged.get(message_type, 0) + 1
            return
        self._logged_at[message_type] = now
        log.exception(
            "command failed",
            extra={"type": message_type, "unlogged": self._unlogged.pop(message_type, 0)},
        )


_failures = FailureLog()


async def _refuse_and_close(
    ws: web.WebSocketResponse,
    code: str,
    message: str,
    close: int,
    *,
    refusals: Refusals,
    reason: str | None = None,
) -> None:
    """Refuse a connection before its welcome: say why, close, count it by `reason` (its
    code unless said otherwise)."""
    refusals.connection(reason or code)
    await ws.send_str(p.encode(p.Error(code=code, message=message)))
    await ws.close(code=close, message=code.encode())


async def _authenticate(
    ws: web.WebSocketResponse, app: web.Application, live: LiveEvent, address: str
) -> tuple[Claims, bool] | None:
    """The claims of the connection's link, and whether it asks to take over a seat. A
    refusal counts against the address's allowance of failed authentications."""
    refusals = app[REFUSALS_KEY]

    async def refuse(code: str, message: str, close: int) -> None:
        app[RATE_KEY].auth_failed(address)
        await _refuse_and_close(ws, code, message, close, refusals=refusals)

    try:
        frame = await asyncio.wait_for(ws.receive(), AUTH_TIMEOUT_S)
    except TimeoutError:
        await refuse(
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
        await refuse(exc.code, exc.message, CLOSE_UNAUTHENTICATED)
        return None
    if not isinstance(message, p.Auth):
        await refuse(
            "unauthenticated",
            f"send auth with your token before {message.type}",
            CLOSE_UNAUTHENTICATED,
        )
        return None
    try:
        claims = app[SIGNER_KEY].verify(message.token)
    except TokenError as exc:
        await refuse(exc.code, str(exc), CLOSE_UNAUTHENTICATED)
        return None
    problem = live.scope_problem(claims)
    if problem is not None:
        await refuse("out_of_scope", problem, CLOSE_OUT_OF_SCOPE)
        return None
    withdrawn = await live.links.refusal(claims)
    if withdrawn is not None:
        await refuse(withdrawn.code, str(withdrawn), CLOSE_REVOKED)
        return None
    return claims, message.claim


async def _take_seat(
    ws: web.WebSocketResponse, live: LiveEvent, claims: Claims, claim: bool, refusals: Refusals
) -> bool:
    """Whether this connection gets the seat of its link (`signaling.live.seats`); a
    refused one is told why and closed. While it waits, its closing withdraws the request."""
    if await live.seats.sit_if_free(claims):
        return True

    async def notify(message: p.WireMessage) -> None:
        await ws.send_str(p.encode(message))

    admitting = asyncio.create_task(live.seats.admit(claims, claim=claim, notify=notify))
    reading = asyncio.create_task(ws.receive())
    try:
        await asyncio.wait({admitting, reading}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (admitting, reading):
            task.cancel()
        await asyncio.gather(admitting, reading, return_exceptions=True)
    # The newcomer said something (or left) while waiting: he is not welcomed.
    left = reading.done() and not reading.cancelled()
    failed = admitting.cancelled() or admitting.exception() is not None
    if failed and not admitting.cancelled():
        log.error("seat admission failed", exc_info=admitting.exception())
    if left or failed:
        if not ws.closed:
            await ws.close()
        return False
    refusal = admitting.result()
    if refusal is not None:
        await _refuse_and_close(ws, refusal.code, refusal.message, CLOSE_SEAT, refusals=refusals)
        return False
    return True


async def _dispatch(
    live: LiveEvent, client: Client, data: str | bytes, rate: MessageRate, refusals: Refusals
) -> bool:
    """Carry out (or refuse) one frame; False when the client is to be closed for its rate."""
    refusal: p.ProtocolError | None = None
    message = None
    try:
        message = p.parse_client_message(data)
    except p.ProtocolError as exc:
        refusal = exc
    # Refused frames count too: refusing them costs the server as well.
    type_ = message.type if message is not None else None
    verdict = rate.take(type_)
    if verdict is not Verdict.ACCEPT:
        refusals.message(rate.exceeded_name)
        sentence = rate.refusal(type_)
        if verdict is Verdict.CLOSE:
            sentence = (
                f"{rate.refused} messages were sent past the limit ({rate.limit(type_)}): "
                "the connection is closed"
            )
        ref = message.id if message is not None else refusal.ref if refusal else None
        client.send(p.Error(code="rate_limited", message=sentence, ref=ref))
        return verdict is Verdict.REFUSE
    if refusal is not None:
        client.send(p.Error(code=refusal.code, message=refusal.message, ref=refusal.ref))
        return True
    assert message is not None
    if isinstance(message, p.Auth):
        client.send(
            p.Error(
                code="already_authenticated",
                message="this connection is already authenticated",
                ref=message.id,
            )
        )
        return True
    if client.role not in p.ALLOWED_ROLES[message.type]:
        client.send(
            p.Error(
                code="forbidden",
                message=f"{client.role.described} may not send {message.type}",
                ref=message.id,
            )
        )
        return True
    try:
        await live.handle(client, message)
    except p.ProtocolError as exc:
        client.send(p.Error(code=exc.code, message=exc.message, ref=message.id))
    except Exception:
        _failures.failed(message.type)
        client.send(
            p.Error(
                code="internal",
                message=f"the server could not carry out {message.type}; the problem is logged",
                ref=message.id,
            )
        )
    return True


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    refusals = app[REFUSALS_KEY]
    # Before the upgrade: a refused page gets a plain 403 that says why.
    try:
        check_origin(request, app[SETTINGS_KEY])
    except OriginRefused:
        refusals.connection(ORIGIN)
        raise
    address = client_address(request)
    # Before the upgrade too, as cheap as a refusal gets: a client opening connections in
    # a loop gets no WebSocket, no task, no parse (a page reads nothing of it, and tries
    # again after its back-off).
    rate_key = address_key(address) or address
    too_fast = app[RATE_KEY].admit(rate_key)
    if too_fast is not None:
        refusals.connection(too_fast.code)
        raise ApiError(
            429,
            too_fast.code,
            too_fast.message,
            headers={"Retry-After": str(too_fast.retry_after_s), "Cache-Control": "no-store"},
        )
    live = app[LIVE_KEY]
    caps = app[CAPS_KEY]
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_FRAME_BYTES)
    await ws.prepare(request)
    # After the upgrade, so that a page can read why (a refused upgrade is a bare error).
    if not caps.admit_address(address):
        await _refuse_and_close(
            ws,
            "too_many_connections",
            f"{caps.per_address} connections from your address are open on this server "
            "already: close some of them, or try again later",
            CLOSE_TOO_MANY_CONNECTIONS,
            refusals=refusals,
            reason=PER_ADDRESS,
        )
        return ws
    sockets = app[_SOCKETS_KEY]
    sockets.add(ws)
    try:
        authenticated = await _authenticate(ws, app, live, rate_key)
        if authenticated is None:
            return ws
        claims, claim = authenticated
        if not caps.admit_link(claims):
            await _refuse_and_close(
                ws,
                "too_many_connections",
                f"this link is open in {caps.per_link} pages on this server already: close "
                "one of them first",
                CLOSE_TOO_MANY_CONNECTIONS,
                refusals=refusals,
                reason=PER_LINK,
            )
            return ws
        try:
            # The link's share is counted first: a page refused for it never displaces the
            # page that holds the seat.
            if await _take_seat(ws, live, claims, claim, refusals):
                await _serve(ws, live, claims, app[SETTINGS_KEY], refusals)
        finally:
            caps.release_link(claims)
    finally:
        sockets.discard(ws)
        caps.release_address(address)
    return ws


async def _serve(
    ws: web.WebSocketResponse,
    live: LiveEvent,
    claims: Claims,
    settings: Settings,
    refusals: Refusals,
) -> None:
    """An authenticated connection, from its welcome to its close."""
    outbox = Outbox(ws, refusals.connection)
    client = Client(claims=claims, send=outbox.send, close=outbox.end)
    rate = MessageRate(settings.ws_messages_per_s, settings.ws_message_burst)
    flooded = False
    try:
        await live.join(client)
        log.info("client joined", extra={"role": claims.role.value})
        async for frame in ws:
            if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                if not await _dispatch(live, client, frame.data, rate, refusals):
                    flooded = True
                    break
            elif frame.type == WSMsgType.ERROR:
                break
    finally:
        await live.leave(client)
        await outbox.flush_and_close()
    if flooded:
        refusals.connection("rate_limited")
        log.warning(
            "closed a client that kept sending past its rate",
            extra={"role": claims.role.value, "refused": rate.refused},
        )
        await ws.close(code=CLOSE_RATE_LIMITED, message=b"rate_limited")


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
    if settings.link_public_address is not None:
        # The other nodes send to the NAT, which forwards to an interface of this
        # machine: any of them.
        return "::" if ":" in settings.link_public_address[0] else "0.0.0.0"
    if not settings.redis_url:
        return "127.0.0.1"  # workers of one machine
    log.warning(
        "the media link listens on 127.0.0.1: nodes on other machines cannot pull from this "
        "one (set DRAGOMAN_LINK_HOST to an address they reach, or DRAGOMAN_LINK_PUBLIC_ADDRESS "
        "behind NAT)"
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
        link_port=settings.link_port,
        link_public_address=settings.link_public_address,
        ice_servers=PageIceServers.from_settings(settings),
        thresholds=Thresholds(dead_air_after_s=settings.dead_air_s),
        answer_timeout_s=settings.subscribe_answer_timeout_s,
    )
    app[_SOCKETS_KEY] = set()
    app[CAPS_KEY] = ConnectionCaps(
        per_address=settings.ws_connections_per_address,
        per_link=settings.ws_connections_per_link,
    )
    app[RATE_KEY] = ConnectionRate(
        settings.ws_new_connections_per_s,
        settings.ws_new_connection_burst,
        settings.ws_auth_failures_per_s,
        settings.ws_auth_failure_burst,
    )
    app[REFUSALS_KEY] = Refusals(app[METRICS_KEY])
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
