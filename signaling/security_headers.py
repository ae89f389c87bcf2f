"""The headers that make every response of a node safe to serve on the open Internet.

One policy for pages, static files, the JSON API and errors alike, set on every
response as it is prepared (`install_security_headers`), so that no route can
forget it:

- a Content-Security-Policy: scripts and styles only from this origin, never
  inline (a page's data travels as ``<script type="application/json">``, read
  with ``JSON.parse``); no plugins, no ``<base>``, no framing; WebSocket only
  to this origin;
- ``Referrer-Policy: no-referrer``: personal links carry their token in the
  query string, and a referrer would hand it to whatever site a page links to;
- ``X-Content-Type-Options: nosniff``;
- ``Cache-Control: no-store`` on the answer to any URL carrying a ``token``
  (the routes that return a token in their body say so themselves);
- ``Strict-Transport-Security`` when the node is reached over HTTPS (it serves
  TLS itself, or its public URL is https behind a proxy).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from signaling.settings import Settings

#: A year, as the HSTS preload list asks; no ``includeSubDomains``: the node does not
#: own its parent domain's other hosts.
HSTS_MAX_AGE_S = 365 * 24 * 3600

_HEADERS_KEY = web.AppKey("security_headers", dict)


def content_security_policy(settings: Settings) -> str:
    """The policy of every response of a node with these settings."""
    # 'self' covers ws:/wss: of the same host in CSP 3 browsers; the public origin's
    # WebSocket scheme is named too, for browsers that read 'self' as http(s) only.
    scheme, rest = settings.public_origin.split("://", 1)
    websocket = f"{'wss' if scheme == 'https' else 'ws'}://{rest}"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self' {websocket}",
            # WebRTC media elements play MediaStreams, which CSP checks as blob:/mediastream:.
            "media-src 'self' blob: mediastream:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(settings: Settings) -> dict[str, str]:
    """Every security header a node with these settings sends, by name."""
    headers = {
        "Content-Security-Policy": content_security_policy(settings),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        # For browsers older than frame-ancestors.
        "X-Frame-Options": "DENY",
    }
    if settings.tls or settings.public_origin.startswith("https://"):
        headers["Strict-Transport-Security"] = f"max-age={HSTS_MAX_AGE_S}"
    return headers


def _apply(headers: Mapping[str, str], response: web.StreamResponse) -> None:
    for name, value in headers.items():
        response.headers.setdefault(name, value)


def carries_token(request: web.BaseRequest) -> bool:
    """Whether `request` holds a link's token in its URL (a console, HLS, a recording)."""
    return "token" in request.query


async def _on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    _apply(request.app[_HEADERS_KEY], response)
    if carries_token(request):
        # Whatever the route said: a response to a URL with a token is never stored, so
        # neither a shared cache nor the browser's disk keeps the link or what it opened.
        response.headers["Cache-Control"] = "no-store"


def install_security_headers(app: web.Application, settings: Settings) -> None:
    """Send the security headers on every response `app` prepares, errors included."""
    app[_HEADERS_KEY] = security_headers(settings)
    app.on_response_prepare.append(_on_response_prepare)
