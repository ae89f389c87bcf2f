"""Public HLS behind a real caching proxy (Debian's nginx, as a CDN edge would be): the
node's cache headers let it serve repeated segment requests from its cache, and
playlists fresh."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signaling.hls_delivery import install_hls
from signaling.websocket import install_live
from tests.signaling.conftest import Connect
from tests.signaling.media_peers import on_air_setup
from tests.support import ll_hls
from tests.support.server import RunningServer, StartServer, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

NGINX_CONF = """
{user}
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=hls:1m max_size=64m inactive=10m
                     use_temp_path=off;
    server {{
        listen 127.0.0.1:{port};
        location /hls/ {{
            proxy_pass {upstream};
            proxy_cache hls;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
}}
"""


@pytest.fixture
async def live_server(start_server: StartServer) -> RunningServer:
    return await start_server(extensions=[install_live, install_hls], hls_public=True)


def nginx_prefix(prefix: Path, port: int, upstream: str) -> Path:
    """nginx's own directory: its configuration, logs, temporary files and cache."""
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed (see the README's test command)")
    prefix.mkdir()
    (prefix / "nginx.conf").write_text(
        NGINX_CONF.format(
            # Workers of a root master switch to an unprivileged user that cannot write here.
            user="user root;" if os.geteuid() == 0 else "",
            prefix=prefix,
            port=port,
            upstream=upstream,
        )
    )
    return prefix


@pytest.fixture
async def cache(live_server: RunningServer, tmp_path: Path) -> AsyncIterator[str]:
    """nginx on a loopback port, caching the node; yields its URL."""
    port = free_port()
    prefix = nginx_prefix(tmp_path / "nginx", port, live_server.url)
    process = await asyncio.create_subprocess_exec(
        NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{url}/hls/index.m3u8"):
                        break
                if process.returncode is not None:
                    pytest.fail(f"nginx exited: {(prefix / 'error.log').read_text()}")
                await asyncio.sleep(0.1)
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def node_hls_requests(http: aiohttp.ClientSession, server: RunningServer) -> float:
    """Segment requests the node itself answered, from its /metrics."""
    async with http.get(f"{server.url}/metrics") as response:
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("dragoman_http_requests_total{") and 'route="/hls/{run}/{file}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_a_caching_proxy_serves_repeated_segment_requests_itself(
    connect: Connect,
    peers: list[Any],
    live_server: RunningServer,
    cache: str,
    http: aiohttp.ClientSession,
) -> None:
    moderator, _speaker, _interpreter = await on_air_setup(connect, peers)
    await moderator.state_where(lambda s: s["session"] == "plenary")
    async with http.get(f"{cache}/hls/index.m3u8") as response:
        assert response.status == 200
        master = await response.text()
    french = re.search(r'LANGUAGE="fr"[^\n]*URI="([^"]+)"', master)[1]  # type: ignore[index]
    async with http.get(f"{cache}/hls/{french}") as response:
        assert response.status == 200
        playlist = await response.text()
    segment = next(line for line in playlist.splitlines() if line.endswith(".m4s"))
    url = f"{cache}/hls/{french.split('/')[0]}/{segment}"

    async with http.get(url) as response:
        assert response.status == 200
        assert response.headers["X-Cache-Status"] == "MISS"
        first = await response.read()
    before = await node_hls_requests(http, live_server)
    for _ in range(5):
        async with http.get(url) as response:
            assert response.status == 200
            assert response.headers["X-Cache-Status"] == "HIT"
            assert await response.read() == first
    assert await node_hls_requests(http, live_server) == before, "the node answered again"

    # Playlists stay fresh: a second later the cache asks the node again.
    async with http.get(f"{cache}/hls/{french}") as response:
        assert response.headers["X-Cache-Status"] in ("HIT", "MISS", "EXPIRED")
    await asyncio.sleep(2.5)
    async with http.get(f"{cache}/hls/{french}") as response:
        assert response.headers["X-Cache-Status"] in ("EXPIRED", "MISS")
        assert await response.text() != playlist, "the playlist did not move on"

    # Low latency through the cache: a blocking reload comes back once the next part
    # exists, and the hinted part, fetched before it exists, is then cached for good.
    directory = french.split("/")[0]
    now = ll_hls.parse(await (await http.get(f"{cache}/hls/{french}")).text())
    msn, part = now.last_part()
    blocking = f"{cache}/hls/{french}?_HLS_msn={msn}&_HLS_part={part + 1}"
    async with http.get(blocking) as response:
        assert response.status == 200
        after = ll_hls.parse(await response.text())
    after.check()
    assert after.last_part() > (msn, part)
    assert after.preload_hint is not None
    hinted = f"{cache}/hls/{directory}/{after.preload_hint}"
    async with http.get(hinted) as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        part_data = await response.read()
    assert part_data[4:8] == b"moof"
    before = await node_hls_requests(http, live_server)
    async with http.get(hinted) as response:
        assert response.headers["X-Cache-Status"] == "HIT"
        assert await response.read() == part_data
    assert await node_hls_requests(http, live_server) == before
