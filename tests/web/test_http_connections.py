"""How long a node keeps an HTTP connection and how many one address may hold, with real
sockets against a real node (short settings, generous margins: the machine is loaded)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path

import aiohttp
import pytest

from signaling.http_connections import address_key
from tests.support.server import RunningServer, StartServeProcess, StartServer, dragoman_env

#: How long a test waits for the node to close a connection it should close.
PATIENCE_S = 20.0


def port_of(server: RunningServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


async def connect(
    server: RunningServer, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port_of(server), local_addr=(source, 0))


async def closed_after(reader: asyncio.StreamReader) -> tuple[float, bytes]:
    """Seconds until the node closes the connection, and what it sent before."""
    started = time.monotonic()
    received = await asyncio.wait_for(reader.read(), PATIENCE_S)  # returns at EOF
    return time.monotonic() - started, received


async def answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: node\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE_S)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await asyncio.wait_for(reader.readexactly(length), PATIENCE_S)
    return head


async def test_a_half_sent_request_is_closed_after_the_header_timeout(
    start_server: StartServer,
) -> None:
    server = await start_server(http_header_timeout_s=1.0, http_keepalive_s=60.0)
    reader, writer = await connect(server)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: node\r\n")  # no blank line: unfinished
        await writer.drain()
        waited, received = await closed_after(reader)
    finally:
        writer.close()
    assert received == b""
    assert 0.8 <= waited < 15, waited


async def test_headers_sent_a_byte_at_a_time_do_not_push_the_deadline_back(
    start_server: StartServer,
) -> None:
    server = await start_server(http_header_timeout_s=1.5, http_keepalive_s=60.0)
    reader, writer = await connect(server)
    started = time.monotonic()

    async def drip() -> None:
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 200:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)

    dripping = asyncio.create_task(drip())
    try:
        await asyncio.wait_for(reader.read(), PATIENCE_S)
        waited = time.monotonic() - started
    finally:
        dripping.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await dripping
        writer.close()
    assert 1.2 <= waited < 15, waited


async def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive(
    start_server: StartServer,
) -> None:
    server = await start_server(http_keepalive_s=1.0, http_header_timeout_s=60.0)
    reader, writer = await connect(server)
    try:
        head = await answered(reader, writer, "/healthz")
        assert head.startswith(b"HTTP/1.1 200")
        waited, received = await closed_after(reader)
    finally:
        writer.close()
    assert received == b""
    assert 0.5 <= waited < 15, waited


async def test_a_connection_in_use_is_kept_for_its_next_requests(
    start_server: StartServer,
) -> None:
    server = await start_server(http_keepalive_s=3.0, http_header_timeout_s=3.0)
    reader, writer = await connect(server)
    try:
        for _ in range(3):
            assert (await answered(reader, writer, "/healthz")).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(1.0)  # idle, but less than the keep-alive
        # The header deadline applies to each request, not to the connection's age.
        assert (await answered(reader, writer, "/api/event")).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


async def test_one_address_holds_at_most_the_cap_and_others_are_served(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(http_connections_per_address=3, http_keepalive_s=60.0)
    held = [await connect(server) for _ in range(3)]
    try:
        reader, writer = await connect(server)
        waited, refusal = await closed_after(reader)
        writer.close()
        head, _, body = refusal.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), refusal[:200]
        assert b"Retry-After: 10" in head
        assert b"Content-Security-Policy:" in head
        assert b"too many connections" in body
        assert waited < 5

        # Another address is served as usual.
        other_reader, other_writer = await connect(server, source="127.0.0.2")
        assert (await answered(other_reader, other_writer, "/healthz")).startswith(b"HTTP/1.1 200")
        other_writer.close()

        # One of the three closes: the address may open one again.
        held.pop()[1].close()
        await asyncio.sleep(0.5)
        again_reader, again_writer = await connect(server)
        assert (await answered(again_reader, again_writer, "/healthz")).startswith(b"HTTP/1.1 200")
        again_writer.close()
    finally:
        for _, writer in held:
            writer.close()


async def test_behind_a_trusted_proxy_the_cap_counts_requests_per_forwarded_address(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(
        trusted_proxies="127.0.0.1",
        http_connections_per_address=2,
        http_body_timeout_s=30.0,
    )
    # The proxy's own connections are not capped: it carries everyone.
    slow = [await connect(server) for _ in range(4)]
    try:
        # Two requests in progress for one visitor (bodies still arriving)…
        for _, writer in slow[:2]:
            writer.write(
                b"POST /api/registrations HTTP/1.1\r\nHost: node\r\n"
                b"X-Forwarded-For: 198.51.100.7\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            await writer.drain()
        await asyncio.sleep(0.5)
        # …so his third is refused, while another visitor's is served.
        async with http.get(
            f"{server.url}/healthz", headers={"X-Forwarded-For": "198.51.100.7"}
        ) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "10"
        async with http.get(
            f"{server.url}/healthz", headers={"X-Forwarded-For": "203.0.113.9"}
        ) as response:
            assert response.status == 200
    finally:
        for _, writer in slow:
            writer.close()
    await asyncio.sleep(0.5)
    async with http.get(
        f"{server.url}/healthz", headers={"X-Forwarded-For": "198.51.100.7"}
    ) as response:
        assert response.status == 200


def test_an_ipv6_client_is_counted_by_its_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2")
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("192.0.2.1") == "192.0.2.1"
    assert address_key(None) is None


def test_loopback_has_a_second_source_address_for_these_tests() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_dragoman_serve_applies_the_settings_alone_and_with_workers(
    serve_process: StartServeProcess, tmp_path: Path, workers: str
) -> None:
    env = dragoman_env(
        DRAGOMAN_HTTP_HEADER_TIMEOUT_S="1",
        DRAGOMAN_HTTP_CONNECTIONS_PER_ADDRESS="2",
        DRAGOMAN_SECRET="connections-secret-" + "x" * 24,
    )
    node = await serve_process(tmp_path / "data", "--workers", workers, env=env)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: node\r\n")
        await writer.drain()
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), PATIENCE_S) == b""
        assert time.monotonic() - started < 15
    finally:
        writer.close()
    if workers == "1":
        # With workers each counts its own connections: the cap is checked on one node.
        held = [await asyncio.open_connection("127.0.0.1", node.port) for _ in range(2)]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
            _, refusal = await closed_after(reader)
            writer.close()
            assert refusal.startswith(b"HTTP/1.1 503")
        finally:
            for _, held_writer in held:
                held_writer.close()
