"""How long a node keeps an HTTP connection, and how many one client may hold.

aiohttp keeps a connection that sends nothing for its keep-alive timeout, and has
no limit on the time a client takes to send a request's headers, nor on the
connections one address may open. A client could hold a node's descriptors with
idle or half-sent requests. Here, each connection of a node:

- is closed when it stays idle between requests for ``http_keepalive_s``
  (aiohttp's own keep-alive, set to what its ``run_app`` uses);
- is closed when a request's headers are not complete ``http_header_timeout_s``
  after the connection opened or the request's first byte arrived (nginx's
  ``client_header_timeout``); the body's deadline, ``http_body_timeout_s``, is
  kept where a body is read (`signaling.http_api.read_json_object`);
- is refused (a 503 written at once, then closed) when its address already
  holds ``http_connections_per_address`` connections. The address is the TCP
  peer, an IPv6 peer counting as its /64 (one host may hold a whole /64).

A trusted reverse proxy (``DRAGOMAN_TRUSTED_PROXIES``) carries every visitor's
connections, so its own address is not capped. What is capped behind it is what
one forwarded client address (`signaling.client_address`) has in progress at once:
requests, WebSockets included (`forwarded_requests_cap`). The proxy should
limit connections per client itself (nginx's ``limit_conn``).

aiohttp offers no hook for the per-connection part: `GuardedRequestHandler`
extends its `RequestHandler` and reads some of its private attributes
(``_request_count``, ``_current_request``, ``_upgraded``, ``_loop``, ``_manager``),
and `NodeRunner` rebuilds its `Server` from the private ``_kwargs`` and ``_loop``.
All of that stays in this module, and tests/web/test_http_connections.py fails if
aiohttp changes them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from signaling import appkeys
from signaling.client_address import IPNetwork, client_address
from signaling.http_api import Handler
from signaling.security_headers import security_headers
from signaling.settings import Settings
from signaling.untrusted_json import printable

log = logging.getLogger(__name__)

TOO_MANY = "too many connections from your address; close some and try again\n"
#: What the refusal asks a client to wait before it tries again.
RETRY_AFTER_S = 10
#: The TCP peer is not known (a Unix socket): such connections are not capped.
_UNCAPPED = None


def address_key(host: str | None) -> str | None:
    """What the per-address cap counts `host` as: itself, or its /64 for IPv6."""
    if not host:
        return _UNCAPPED
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def is_trusted_proxy(peer: str | None, proxies: Sequence[IPNetwork]) -> bool:
    """Whether the TCP peer `peer` is one of the trusted reverse proxies."""
    if not proxies or not peer:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in proxies)


class ConnectionGuard:
    """The node's count of open connections per client address, and its refusal."""

    def __init__(self, settings: Settings) -> None:
        self.limit = settings.http_connections_per_address
        self.header_timeout_s = settings.http_header_timeout_s
        self._proxies = list(settings.trusted_proxies)
        self._open: Counter[str] = Counter()
        self.refused = 0
        self.headers = security_headers(settings)
        headers = {
            **self.headers,
            "Content-Type": "text/plain; charset=utf-8",
            "Connection": "close",
            "Retry-After": str(RETRY_AFTER_S),
            "Cache-Control": "no-store",
        }
        body = TOO_MANY.encode("utf-8")
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.refusal = (
            f"HTTP/1.1 503 Service Unavailable\r\n{head}Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body

    def admit(self, peer: str | None) -> tuple[bool, str | None]:
        """Whether a connection from `peer` may be served, and the key it is counted
        under (None: not counted)."""
        key = address_key(peer)
        if key is _UNCAPPED or self._is_proxy(peer):
            return True, None
        if self._open[key] >= self.limit:
            self.refused += 1
            # One line per refusal, limited like every warning (signaling.logs.RepeatLimit).
            log.warning("refused a connection from %s: it holds %d already", key, self.limit)
            return False, None
        self._open[key] += 1
        return True, key

    def release(self, key: str | None) -> None:
        if key is None:
            return
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]

    def _is_proxy(self, peer: str | None) -> bool:
        return is_trusted_proxy(peer, self._proxies)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler, with the per-address cap and the header deadline."""

    def __init__(self, manager: web.Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._counted_as: str | None = None
        self._refused = False
        self._header_timer: asyncio.TimerHandle | None = None
        # The request count when the request now awaited began to arrive.
        self._awaited_after = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else None
        admitted, self._counted_as = self._guard.admit(host)
        if not admitted:
            # Answered before reading anything: the refusal costs no parsing, no task.
            self._refused = True
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(self._guard.refusal)
            transport.close()
            return
        super().connection_made(transport)
        self._await_headers()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_header_timer()
        if self._refused:
            self._refused = False
            self._manager = None
            return
        self._guard.release(self._counted_as)
        self._counted_as = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            self._stop_header_timer()  # headers complete
        elif data and self._header_timer is None and self._between_requests():
            self._await_headers()  # the first bytes of the next request

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse or serve, with the security
        headers (no application sees these requests) and, when the client sent something
        malformed, one log line instead of a traceback."""
        if status >= 500 or not isinstance(exc, HttpProcessingError):
            response = super().handle_error(request, status, exc, message)
        else:
            said = printable(" ".join(str(exc.message).split()), 120)
            log.warning(
                "refused a malformed request from %s: %s",
                request.remote,
                said,
                extra={"status": status},
            )
            if request.writer.output_size > 0:
                raise ConnectionError("the response had begun; the connection is dropped")
            response = web.Response(status=status, text=f"{status} {said}\n")
            response.force_close()
        for name, value in self._guard.headers.items():
            response.headers.setdefault(name, value)
        return response

    def abandon_body(self) -> None:
        """Close the connection as soon as the answer is sent, without aiohttp's lingering
        read of the rest of the body (up to 10 s): for a body that stopped arriving, it
        would only hold the connection that long for nothing."""
        self._lingering_time = 0.0

    def _between_requests(self) -> bool:
        return self._current_request is None and not self._upgraded

    def _await_headers(self) -> None:
        self._awaited_after = self._request_count
        self._header_timer = self._loop.call_later(
            self._guard.header_timeout_s, self._header_deadline
        )

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline(self) -> None:
        self._header_timer = None
        if self._request_count == self._awaited_after and self._between_requests():
            log.debug("closing a connection that did not send its headers in time")
            self.force_close()


class GuardedServer(web.Server):
    """aiohttp's `Server` whose connections are `GuardedRequestHandler`s."""

    def __init__(self, *args: Any, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, guard=self.guard, **self._kwargs)


class NodeRunner(web.AppRunner):
    """The runner of a node: keep-alive from the settings, guarded connections."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        settings = app[appkeys.SETTINGS_KEY]
        super().__init__(app, keepalive_timeout=settings.http_keepalive_s, **kwargs)
        self.guard = ConnectionGuard(settings)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # Rebuilt with the same arguments (handler, request factory, handler kwargs).
        return GuardedServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            guard=self.guard,
            **server._kwargs,
        )


class _InFlight:
    """Requests in progress per forwarded client address."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()


_IN_FLIGHT_KEY = web.AppKey("forwarded_in_flight", _InFlight)


@web.middleware
async def forwarded_requests_cap(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Cap the requests in progress per forwarded client address, for requests that come
    through a trusted proxy (direct connections are capped as connections)."""
    settings = request.app[appkeys.SETTINGS_KEY]
    if not settings.trusted_proxies or not is_trusted_proxy(
        request.remote, settings.trusted_proxies
    ):
        return await handler(request)
    key = address_key(client_address(request))
    if key is None:
        return await handler(request)
    counts = request.app[_IN_FLIGHT_KEY].counts
    if counts[key] >= settings.http_connections_per_address:
        raise web.HTTPServiceUnavailable(
            text=TOO_MANY,
            headers={"Retry-After": str(RETRY_AFTER_S), "Cache-Control": "no-store"},
        )
    counts[key] += 1
    try:
        return await handler(request)
    finally:
        counts[key] -= 1
        if counts[key] <= 0:
            del counts[key]


def install_connection_limits(app: web.Application) -> None:
    """Add the per-forwarded-address cap's state to `app` (its middleware is in the
    application's chain, see `signaling.app.create_app`)."""
    app[_IN_FLIGHT_KEY] = _InFlight()
