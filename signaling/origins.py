"""Which web pages may open the WebSocket: the node's own, and those of the origins in
``DRAGOMAN_ALLOWED_ORIGINS``.

A browser opens a WebSocket to any server for any page. Links carry their token
in the first message, not in a cookie, so a foreign page cannot borrow a visitor's
session; it could still run a console with a link it got hold of, from the
visitor's browser and network, dressed as another site. Only the node's own
pages (whose scripts the CSP keeps to this origin) may talk to it. A browser
always says which page opens the connection, in ``Origin``; a request without
one does not come from a browser page (a test client, a monitoring probe) and is
let through: the token still decides what it may do.
"""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from signaling.settings import Settings, origin_of, parse_origin


class OriginRefused(web.HTTPForbidden):
    """A browser page of another site tried to open the WebSocket."""

    def __init__(self, sentence: str) -> None:
        super().__init__(text=sentence + "\n")
        self.sentence = sentence


_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def allowed_origins(settings: Settings) -> frozenset[str]:
    """The origins whose pages may open the WebSocket of a node with these settings."""
    origins = {settings.public_origin, *settings.allowed_origins}
    # On this machine, localhost and 127.0.0.1 at the node's port are the node itself:
    # whoever opens one rather than the other is not another site.
    public = URL(str(settings.public_url))
    if public.host in _LOOPBACK_NAMES:
        origins.update(origin_of(public.with_host(name)) for name in _LOOPBACK_NAMES)
    return frozenset(origins)


def check_origin(request: web.Request, settings: Settings) -> None:
    """Raise `OriginRefused` (403) unless `request` may open the WebSocket."""
    header = request.headers.get("Origin")
    if header is None:
        return
    try:
        origin = parse_origin(header)
    except ValueError:
        origin = None  # "null" (a sandboxed frame, a file: page) or garbage
    if origin in allowed_origins(settings):
        return
    shown = header[:100]
    raise OriginRefused(
        f"pages from {shown!r} may not connect to this server: it serves "
        f"{settings.public_origin}; if that site is yours, add its origin to "
        "DRAGOMAN_ALLOWED_ORIGINS"
    )
