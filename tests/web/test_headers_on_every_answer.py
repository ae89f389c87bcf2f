"""Every answer of a node carries the security headers, including the ones no route
writes (requests aiohttp cannot parse, unknown paths, wrong methods, too-large bodies),
and every answer that carries a token, in its URL or in its body, says `no-store`."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import aiohttp
import pytest

from signaling.security_headers import content_security_policy
from signaling.tokens import Role
from tests.support.server import RunningServer

HOUR = timedelta(hours=1)
RAW_REQUESTS = {
    "request line that is not HTTP": b"GARBAGE\r\n\r\n",
    "header line too long": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    "bad chunked body": (
        b"POST /api/registrations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"
    ),
    "unknown API route": b"GET /api/nothing/here HTTP/1.1\r\nHost: x\r\n\r\n",
    "unknown path": b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad percent escape": b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n",
    "API method not allowed": b"DELETE /api/event HTTP/1.1\r\nHost: x\r\n\r\n",
    "page method not allowed": b"POST /register HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    "body too large": (
        b"POST /api/registrations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 999999\r\n\r\n"
    ),
    "static file": b"GET /static/common/style.css HTTP/1.1\r\nHost: x\r\n\r\n",
    "static file missing": b"GET /static/nothing.js HTTP/1.1\r\nHost: x\r\n\r\n",
    "static path escape": b"GET /static/../secret.key HTTP/1.1\r\nHost: x\r\n\r\n",
    "HLS without token": b"GET /hls/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n",
    "HLS file with bad token": b"GET /hls/1/a.m4s?token=x HTTP/1.1\r\nHost: x\r\n\r\n",
    "recording without token": b"GET /recordings/s/f.webm HTTP/1.1\r\nHost: x\r\n\r\n",
    "recordings list without token": b"GET /api/recordings HTTP/1.1\r\nHost: x\r\n\r\n",
    "HEAD of a page": b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
    "calendar with a bad token": b"GET /calendar.ics?token=bad HTTP/1.1\r\nHost: x\r\n\r\n",
    "not a WebSocket handshake": b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
}


async def raw_answer(server: RunningServer, request: bytes) -> tuple[int, dict[str, str]]:
    port = int(server.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    finally:
        writer.close()
    status_line, *lines = head.decode("latin-1").strip().split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


@pytest.mark.parametrize("kind", sorted(RAW_REQUESTS))
async def test_every_answer_carries_the_security_headers(
    server: RunningServer, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    with caplog.at_level(logging.INFO):
        status, headers = await raw_answer(server, RAW_REQUESTS[kind])
    where = f"{kind} ({status})"
    assert headers.get("content-security-policy") == content_security_policy(server.settings), where
    assert headers.get("referrer-policy") == "no-referrer", where
    assert headers.get("x-content-type-options") == "nosniff", where
    assert headers.get("x-frame-options") == "DENY", where
    # Whatever the client sent, the log has no traceback for it.
    assert not [record for record in caplog.records if record.exc_info], where


async def test_the_probe_covers_the_kinds_of_refusal(server: RunningServer) -> None:
    statuses = {(await raw_answer(server, request))[0] for request in RAW_REQUESTS.values()}
    assert {200, 400, 401, 403, 404, 405, 413} <= statuses


def token_urls(server: RunningServer) -> list[str]:
    signer = server.signer
    attendee = signer.issue(Role.ATTENDEE, subject="someone", registration="someone", ttl=HOUR)
    moderator = signer.issue(Role.MODERATOR, subject="moderator", ttl=HOUR)
    booth = server.event.booths[0].id
    interpreter = signer.issue(Role.INTERPRETER, subject="interpreter", booth=booth, ttl=HOUR)
    return [
        f"/watch?token={attendee}",
        f"/watch?token={moderator}",  # the wrong console: the access page
        "/watch?token=damaged",
        f"/booth?token={interpreter}",
        f"/studio?token={moderator}",
        f"/calendar.ics?token={attendee}",
        f"/hls/index.m3u8?token={attendee}",
        f"/api/recordings?token={moderator}",
        f"/api/recordings?token={attendee}",
        f"/recordings/s/file.webm?token={moderator}",
    ]


async def test_answers_to_urls_with_a_token_are_never_stored(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    for path in token_urls(server):
        async with http.get(f"{server.url}{path}") as response:
            await response.read()
            assert response.headers.get("Cache-Control") == "no-store", (path, response.status)


async def test_pages_without_a_token_may_still_be_revalidated(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{server.url}/register") as response:
        assert response.headers.get("Cache-Control") == "no-cache"


async def test_answers_that_give_a_link_are_never_stored(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    person = {"name": "Jean Dupont", "email": "jean@example.org", "language": "fr"}
    for url, body in (
        ("/api/registrations", person),  # created
        ("/api/registrations", person),  # already there
        ("/api/registrations/lookup", {"email": person["email"]}),
    ):
        async with http.post(f"{server.url}{url}", json=body) as response:
            assert "token=" in (await response.json())["link"]
            assert response.headers.get("Cache-Control") == "no-store", url
