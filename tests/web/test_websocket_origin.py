"""The WebSocket admits pages of the node's own origin and of `DRAGOMAN_ALLOWED_ORIGINS`,
clients that send no Origin (not a browser page), and refuses any other page before the
upgrade, with a 403 that says which origin and which setting."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from signaling.origins import allowed_origins
from signaling.settings import SettingsError, load_settings
from tests.support.server import (
    RunningServer,
    StartServer,
    dragoman,
    dragoman_env,
    free_port,
)


async def upgrade(http: aiohttp.ClientSession, server: RunningServer, origin: str | None) -> int:
    """Open /ws with this Origin: 101 if upgraded, else the refusal's status."""
    headers = {"Origin": origin} if origin is not None else {}
    try:
        ws = await http.ws_connect(f"{server.url}/ws", headers=headers)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.send_json({"type": "auth", "v": 1, "token": "forged"})
    reply = await ws.receive_json()
    assert reply["type"] == "error"  # talking to the protocol, not refused at the door
    await ws.close()
    return 101


async def refusal(server: RunningServer, origin: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{server.url}/ws",
            headers={
                "Origin": origin,
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        ) as response:
            return response.status, await response.text()


async def test_the_nodes_own_pages_may_connect(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    assert await upgrade(http, server, server.url) == 101
    # The same origin however the browser writes it: default port, upper case, localhost.
    port = server.url.rsplit(":", 1)[1]
    assert await upgrade(http, server, f"HTTP://127.0.0.1:{port}") == 101
    assert await upgrade(http, server, f"http://localhost:{port}") == 101


async def test_a_client_without_origin_is_not_a_browser_page_and_may_connect(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    assert await upgrade(http, server, None) == 101


async def test_a_listed_origin_may_connect(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(
        allowed_origins="https://events.example.org, https://backup.example.org:8443"
    )
    assert await upgrade(http, server, "https://backup.example.org:8443") == 101
    assert await upgrade(http, server, "https://events.example.org") == 101
    assert await upgrade(http, server, "https://events.example.org:443") == 101


async def test_a_public_url_behind_a_proxy_is_the_allowed_origin(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(public_url="https://events.example.org/")
    assert await upgrade(http, server, "https://events.example.org") == 101
    # The direct address is not how browsers reach this node any more.
    assert (await refusal(server, server.url))[0] == 403


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://events.example.org",  # the right host, the wrong scheme
        "https://events.example.org:8443",  # the right host, another port
        "https://events.example.org.evil.example",
        "null",  # a sandboxed frame or a file: page
        "not an origin",
    ],
)
async def test_another_page_is_refused_before_the_upgrade_saying_why(
    start_server: StartServer, origin: str
) -> None:
    server = await start_server(public_url="https://events.example.org")
    status, body = await refusal(server, origin)
    assert status == 403
    assert body.strip() == (
        f"pages from {origin!r} may not connect to this server: it serves "
        "https://events.example.org; if that site is yours, add its origin to "
        "DRAGOMAN_ALLOWED_ORIGINS"
    )


async def test_the_refusal_carries_the_security_headers(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/ws", headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 403
            assert r.headers["Referrer-Policy"] == "no-referrer"
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


def test_allowed_origins_are_normalised_as_browsers_send_them() -> None:
    settings = load_settings(
        public_url="https://events.example.org/live",
        allowed_origins=" HTTPS://Other.Example.org:443 ,http://[::1]:8080/",
    )
    assert allowed_origins(settings) == {
        "https://events.example.org",
        "https://other.example.org",
        "http://[::1]:8080",
    }


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("https://events.example.org/path", "without a path, query or user"),
        ("https://events.example.org?x=1", "without a path, query or user"),
        ("https://user@events.example.org", "without a path, query or user"),
        ("events.example.org", "write scheme://host[:port]"),
        ("ftp://events.example.org", "write scheme://host[:port]"),
        ("https://", "write scheme://host[:port]"),
        ("https://events.example.org:99999", "is not an origin"),
    ],
)
def test_a_malformed_allowed_origin_is_refused_by_name(value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(allowed_origins=f"https://fine.example.org,{value}")
    (line,) = refused.value.problems
    assert line.startswith("allowed_origins (DRAGOMAN_ALLOWED_ORIGINS): ")
    assert repr(value) in line
    assert problem in line


async def test_serve_refuses_a_malformed_allowed_origin(tmp_path: Path) -> None:
    env = dragoman_env(DRAGOMAN_ALLOWED_ORIGINS="https://events.example.org/live")
    result = await dragoman(
        "serve", "--port", str(free_port()), "--data-dir", tmp_path / "data", env=env
    )
    assert result.status == 1
    assert "allowed_origins (DRAGOMAN_ALLOWED_ORIGINS): 'https://events.example.org/live'" in (
        result.stderr
    )
