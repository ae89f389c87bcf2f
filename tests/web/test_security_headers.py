"""Every response of a node carries the security headers: pages, static files, the JSON
API, errors and refusals, and the pages themselves run no inline script."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from signaling.pages import STATIC_DIR
from signaling.security_headers import content_security_policy
from signaling.settings import load_settings
from tests.support.certificates import write_self_signed
from tests.support.server import RunningServer, StartServer

RESPONSES = [
    ("GET", "/"),
    ("GET", "/register"),
    ("GET", "/watch?token=anything"),
    ("GET", "/static/common/style.css"),
    ("GET", "/static/index.js"),
    ("GET", "/api/event"),
    ("POST", "/api/registrations"),  # 415: not JSON
    ("GET", "/api/nothing-here"),  # the API's JSON 404
    ("GET", "/nothing-here"),  # aiohttp's own 404
    ("DELETE", "/register"),  # 405
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/ws"),  # not a WebSocket handshake: 400 from aiohttp
]


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


async def fetch_headers(
    http: aiohttp.ClientSession, server: RunningServer, method: str, path: str
) -> tuple[int, dict[str, str]]:
    async with http.request(method, f"{server.url}{path}", ssl=False) as response:
        await response.read()
        return response.status, dict(response.headers)


async def test_every_kind_of_response_carries_the_headers(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    statuses = set()
    for method, path in RESPONSES:
        status, headers = await fetch_headers(http, server, method, path)
        statuses.add(status)
        where = f"{method} {path} ({status})"
        assert headers.get("Content-Security-Policy") == content_security_policy(server.settings), (
            where
        )
        assert headers.get("Referrer-Policy") == "no-referrer", where
        assert headers.get("X-Content-Type-Options") == "nosniff", where
        assert headers.get("X-Frame-Options") == "DENY", where
        # Plain HTTP: HSTS would be ignored, and promises nothing the node keeps.
        assert "Strict-Transport-Security" not in headers, where
    assert {200, 400, 404, 405, 415} <= statuses


async def test_the_policy_forbids_inline_scripts_framing_and_plugins(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    _, headers = await fetch_headers(http, server, "GET", "/")
    policy = directives(headers["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["default-src"] == ["'self'"]
    port = server.url.rsplit(":", 1)[1]
    assert policy["connect-src"] == ["'self'", f"ws://127.0.0.1:{port}"]
    assert "unsafe" not in headers["Content-Security-Policy"]


def test_websocket_of_an_https_public_url_is_wss() -> None:
    settings = load_settings(public_url="https://Events.Example.org/")
    assert directives(content_security_policy(settings))["connect-src"] == [
        "'self'",
        "wss://events.example.org",
    ]


async def test_hsts_when_the_node_serves_tls(
    start_server: StartServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cert, key = write_self_signed(tmp_path / "tls")
    server = await start_server(tls_cert=cert, tls_key=key)
    for method, path in RESPONSES:
        _, headers = await fetch_headers(http, server, method, path)
        assert headers["Strict-Transport-Security"] == "max-age=31536000", path


async def test_hsts_behind_a_proxy_with_an_https_public_url(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(public_url="https://events.example.org")
    _, headers = await fetch_headers(http, server, "GET", "/api/event")
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    csp = directives(headers["Content-Security-Policy"])
    assert csp["connect-src"] == ["'self'", "wss://events.example.org"]


@pytest.mark.parametrize("template", sorted(p.name for p in STATIC_DIR.glob("*.html")))
def test_pages_have_no_inline_script_or_style(template: str) -> None:
    html = (STATIC_DIR / template).read_text("utf-8")
    for tag in re.findall(r"<script\b[^>]*>", html):
        # A script runs only from a file; the catalog is a JSON data block.
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert "<style" not in html and " style=" not in html
    assert "javascript:" not in html
