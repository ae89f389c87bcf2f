"""How often one address may open connections and fail to authenticate
(`signaling.connection_rate`), and what /metrics says of every refusal
(`signaling.refusals`, the log's flood limit).

The buckets on a clock of our own; then the real server with tiny allowances: the upgrade
refused 429 with ``Retry-After`` and a JSON body, before any WebSocket; another address
(behind a trusted proxy) not held back; and the counters on /metrics.
"""

from __future__ import annotations

import json
import logging
import re

import aiohttp
import pytest

from signaling import websocket
from signaling.connection_rate import (
    TOO_MANY_FAILED_AUTHS,
    TOO_MANY_NEW_CONNECTIONS,
    ConnectionRate,
)
from signaling.logs import RepeatLimit, suppressed_lines
from signaling.tokens import Role
from tests.signaling.conftest import WsClient, token

pytestmark = pytest.mark.timeout(60)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_new_connections_have_a_burst_then_a_rate() -> None:
    clock = Clock()
    rate = ConnectionRate(2.0, 100, 0.5, 30, clock=clock)
    # A hundred people behind one address joining at once: all admitted.
    assert all(rate.admit("192.0.2.1") is None for _ in range(100))
    refusal = rate.admit("192.0.2.1")
    assert refusal is not None and refusal.code == TOO_MANY_NEW_CONNECTIONS
    assert refusal.retry_after_s == 1  # half a second, in whole seconds rounded up
    assert "at most 100 at once, then 2 per second" in refusal.message
    # Others are not held back; the allowance refills at its rate.
    assert rate.admit("192.0.2.2") is None
    clock.now += 0.5
    assert rate.admit("192.0.2.1") is None
    assert rate.admit("192.0.2.1") is not None
    clock.now += 30
    assert all(rate.admit("192.0.2.1") is None for _ in range(60))


def test_failed_authentications_stop_new_connections_until_they_refill() -> None:
    clock = Clock()
    rate = ConnectionRate(2.0, 100, 0.5, 3, clock=clock)
    for _ in range(3):
        assert rate.admit("192.0.2.1") is None
        rate.auth_failed("192.0.2.1")
    refusal = rate.admit("192.0.2.1")
    assert refusal is not None and refusal.code == TOO_MANY_FAILED_AUTHS
    assert refusal.retry_after_s == 2
    assert rate.admit("192.0.2.9") is None
    clock.now += 2
    assert rate.admit("192.0.2.1") is None


def test_addresses_whose_allowance_refilled_are_forgotten() -> None:
    clock = Clock()
    rate = ConnectionRate(2.0, 10, 0.5, 3, clock=clock)
    for n in range(1000):
        rate.admit(f"198.51.100.{n % 250}-{n}")
    assert len(rate.connections) == 1000
    clock.now += 10  # 10 tokens at 2 a second: every bucket is full again
    rate.admit("192.0.2.1")
    assert len(rate.connections) == 1


async def metric(http: aiohttp.ClientSession, url: str, sample: str) -> float:
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_past_its_rate_an_address_is_refused_before_the_upgrade(
    start_server, ws_session, http
):
    server = await start_server(
        extensions=[websocket.install_live],
        ws_new_connection_burst=3,
        ws_new_connections_per_s=0.01,
        trusted_proxies=["127.0.0.1"],
    )

    async def open_from(address: str) -> aiohttp.ClientWebSocketResponse:
        return await ws_session.ws_connect(f"{server.url}/ws", headers={"X-Forwarded-For": address})

    held = [await open_from("198.51.100.7") for _ in range(3)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await open_from("198.51.100.7")
    assert refused.value.status == 429
    # What a client that reads the answer learns: the code, a sentence, when to come back.
    async with http.get(
        f"{server.url}/ws", headers={"X-Forwarded-For": "198.51.100.7"}
    ) as response:
        assert response.status == 429
        assert int(response.headers["Retry-After"]) >= 1
        body = await response.json()
    assert body["error"]["code"] == "too_many_new_connections"
    assert "at most 3 at once" in body["error"]["message"]
    # Another visitor (here behind the same proxy) is not held back; those open go on.
    other = WsClient(await open_from("203.0.113.9"))
    await other.send("auth", v=1, token=token(server, Role.ATTENDEE, "other"))
    await other.next("welcome")
    assert not any(ws.closed for ws in held)
    refused_sample = 'dragoman_ws_connections_refused_total{reason="too_many_new_connections"}'
    assert await metric(http, server.url, refused_sample) == 2.0


async def test_failed_authentications_past_their_allowance_refuse_the_address(
    start_server, ws_session, http
):
    server = await start_server(extensions=[websocket.install_live], ws_auth_failure_burst=2)
    for _ in range(2):
        client = WsClient(await ws_session.ws_connect(f"{server.url}/ws"))
        await client.send("auth", v=1, token="not-a-token")
        assert (await client.error())["code"] == "token_malformed"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await ws_session.ws_connect(f"{server.url}/ws")
    assert refused.value.status == 429
    assert refused.value.headers is not None and "Retry-After" in refused.value.headers
    prefix = "dragoman_ws_connections_refused_total"
    assert await metric(http, server.url, f'{prefix}{{reason="token_malformed"}}') == 2.0
    assert await metric(http, server.url, f'{prefix}{{reason="too_many_failed_auths"}}') == 1.0


async def test_metrics_count_refused_messages_caps_and_rate_closes(start_server, ws_session, http):
    server = await start_server(
        extensions=[websocket.install_live],
        ws_message_burst=2,
        ws_messages_per_s=0.01,
        ws_connections_per_link=1,
    )
    flooder = WsClient(await ws_session.ws_connect(f"{server.url}/ws"))
    await flooder.send("auth", v=1, token=token(server, Role.ATTENDEE, "flooder"))
    await flooder.next("welcome")
    # 2 carried out, 2 refused, the 5th past a debt as large as the burst: closed.
    for n in range(5):
        await flooder.ws.send_str(json.dumps({"type": "ping", "id": n}))
    while (await flooder.ws.receive()).type == aiohttp.WSMsgType.TEXT:
        pass
    assert flooder.ws.close_code == websocket.CLOSE_RATE_LIMITED
    # The same link once more than its cap allows.
    holder = WsClient(await ws_session.ws_connect(f"{server.url}/ws"))
    await holder.send("auth", v=1, token=token(server, Role.ATTENDEE, "holder"))
    await holder.next("welcome")
    extra = WsClient(await ws_session.ws_connect(f"{server.url}/ws"))
    await extra.send("auth", v=1, token=token(server, Role.ATTENDEE, "holder"))
    assert (await extra.error())["code"] == "too_many_connections"

    prefix = "dragoman_ws_connections_refused_total"
    assert await metric(http, server.url, f'{prefix}{{reason="rate_limited"}}') == 1.0
    per_link = f'{prefix}{{reason="too_many_connections_per_link"}}'
    assert await metric(http, server.url, per_link) == 1.0
    messages = 'dragoman_ws_messages_refused_total{allowance="messages"}'
    assert await metric(http, server.url, messages) == 3.0


async def test_metrics_count_the_log_lines_the_flood_limit_suppressed(server, http):
    before = await metric(http, server.url, "dragoman_log_lines_suppressed_total")
    limit = RepeatLimit(lambda record: None, burst=2)
    for n in range(12):
        limit.filter(logging.LogRecord("x", logging.WARNING, __file__, 1, "refused %s", (n,), None))
    assert suppressed_lines() >= 10
    after = await metric(http, server.url, "dragoman_log_lines_suppressed_total")
    assert after - before >= 10
