"""Bodies built to break the parser are refused like any bad body: 400 `invalid_json`
with a sentence, never a 500 or a traceback; they count against the registration
limit; a body that never finishes arriving is given up after the body timeout."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import pytest

from signaling.registration import RegistrationLimits
from tests.support.server import RunningServer, StartServer

HOSTILE_BODIES = {
    "deep arrays": "[" * 5000 + "]" * 5000,
    "deep objects": '{"a":' * 2000 + '"x"' + "}" * 2000,
    "huge integer": '{"name": "Jean", "email": "j@example.org", "language": ' + "9" * 5000 + "}",
    "NaN": '{"name": NaN}',
    "lone surrogate key": '{"\\ud800": "x"}',
    "lone surrogate value": '{"name": "\\udc00", "email": "j@example.org", "language": "fr"}',
}
ENDPOINTS = ("/api/registrations", "/api/registrations/lookup")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("kind", sorted(HOSTILE_BODIES))
async def test_a_hostile_body_is_a_400_with_a_sentence(
    server: RunningServer,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    endpoint: str,
    kind: str,
) -> None:
    body = HOSTILE_BODIES[kind]
    with caplog.at_level(logging.WARNING):
        async with http.post(
            f"{server.url}{endpoint}",
            data=body.encode("utf-8", "surrogatepass"),
            headers={"Content-Type": "application/json"},
        ) as response:
            raw = await response.read()
            status = response.status
    assert status == 400, raw[:300]
    error = json.loads(raw.decode("utf-8"))["error"]
    assert error["code"] == "invalid_json"
    assert error["message"].startswith("the request body is refused: ")
    assert not [record for record in caplog.records if record.exc_info], "a traceback was logged"
    async with http.get(f"{server.url}/healthz") as health:
        assert health.status == 200


async def test_refused_bodies_count_against_the_registration_limit(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(
        registration_limits=RegistrationLimits(per_client=3, per_email=5, window_s=600)
    )
    url = f"{server.url}/api/registrations"
    refusals = [
        ("[" * 10_000, "application/json"),
        ("not json", "application/json"),
        ("name=Jean", "application/x-www-form-urlencoded"),
    ]
    for body, content_type in refusals:
        async with http.post(url, data=body, headers={"Content-Type": content_type}) as response:
            assert response.status in (400, 415)
    good = {"name": "Jean Dupont", "email": "jean@example.org", "language": "fr"}
    async with http.post(url, json=good) as response:
        assert response.status == 429
        assert (await response.json())["error"]["code"] == "rate_limited"
        assert int(response.headers["Retry-After"]) > 0


async def test_a_body_that_stops_arriving_gets_408_and_the_connection_is_closed(
    start_server: StartServer,
) -> None:
    server = await start_server(http_body_timeout_s=1.0)
    port = int(server.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /api/registrations HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
            b'{"name": "Je'
        )
        await writer.drain()
        started = time.monotonic()
        answer = await asyncio.wait_for(reader.read(), 20)  # read() returns at EOF: closed
        waited = time.monotonic() - started
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:200]
    assert json.loads(body)["error"]["code"] == "body_timeout"
    # Closed once the second is over, not held for the rest of the body (aiohttp would
    # wait 10 s more for it): the bound leaves a loaded machine 7 s of margin.
    assert 0.8 <= waited < 8, waited
