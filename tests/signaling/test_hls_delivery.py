"""HLS of a live session over HTTP: the master playlist names one audio rendition per
language plus the original, access needs the attendee's token (carried into every URI)
unless HLS is public, cache headers suit a CDN, and what a player downloads decodes to
the tone of each channel (Russian floor 1000 Hz, French interpretation 440 Hz)."""

from __future__ import annotations

import asyncio
import functools
import re
import time
from typing import Any

import aiohttp
import pytest

from signaling.hls_delivery import HLS_KEY, install_hls
from signaling.tokens import Role
from signaling.websocket import install_live
from tests.signaling.conftest import Connect, token
from tests.signaling.media_peers import INTERPRETER_HZ, SPEAKER_HZ, on_air_setup
from tests.support.recordings import decode_audio
from tests.support.server import RunningServer, StartServer


@pytest.fixture
async def live_server(start_server: StartServer) -> RunningServer:
    return await start_server(extensions=[install_live, install_hls])


async def fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], bytes]:
    async with http.get(url) as response:
        return response.status, dict(response.headers), await response.read()


def media_lines(master: str) -> dict[str, str]:
    """NAME -> the attributes line of each audio rendition."""
    return {
        re.search(r'NAME="([^"]+)"', line)[1]: line  # type: ignore[index]
        for line in master.splitlines()
        if line.startswith("#EXT-X-MEDIA:")
    }


async def rendition_audio(http: aiohttp.ClientSession, base: str, uri: str, tmp_path, name: str):
    """Download a rendition as a player does (init, then the listed segments) and decode it."""
    status, _, body = await fetch(http, f"{base}/hls/{uri}")
    assert status == 200
    playlist = body.decode()
    directory = uri.split("/")[0]
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', playlist)[1]  # type: ignore[index]
    data = b""
    for part in [init, *(line for line in playlist.splitlines() if line and line[0] != "#")]:
        status, headers, chunk = await fetch(http, f"{base}/hls/{directory}/{part}")
        assert status == 200, part
        data += chunk
    path = tmp_path / f"{name}.mp4"
    path.write_bytes(data)
    return decode_audio(path), playlist, headers


async def test_the_session_is_an_hls_presentation_for_token_holders(
    connect: Connect,
    peers: list[Any],
    live_server: RunningServer,
    http: aiohttp.ClientSession,
    tmp_path,
) -> None:
    base = live_server.url
    attendee = token(live_server, Role.ATTENDEE, "reg-1")
    status, headers, body = await fetch(http, f"{base}/hls/index.m3u8?token={attendee}")
    assert status == 404 and b"nothing is live now" in body
    assert headers["Cache-Control"] == "no-store"

    moderator, _speaker, _interpreter = await on_air_setup(connect, peers)
    await moderator.state_where(lambda s: s["session"] == "plenary")
    status, _, body = await fetch(http, f"{base}/hls/index.m3u8")
    assert status == 401 and b"token" in body
    status, _, _ = await fetch(http, f"{base}/hls/index.m3u8?token=forged.token")
    assert status == 403

    status, headers, body = await fetch(http, f"{base}/hls/index.m3u8?token={attendee}")
    assert status == 200
    assert headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
    assert headers["Cache-Control"] == "no-store"  # the URL carries a token
    master = body.decode()
    media = media_lines(master)
    assert set(media) == {"Original", "Русский", "Français"}
    assert 'LANGUAGE="fr"' in media["Français"] and "DEFAULT=NO" in media["Français"]
    assert "AUTOSELECT=YES" in media["Français"]
    assert "DEFAULT=YES" in media["Original"] and "LANGUAGE" not in media["Original"]
    variant = master.split("#EXT-X-STREAM-INF:", 1)[1]
    assert 'AUDIO="audio"' in variant and 'CODECS="avc1.' in variant
    uris = [*re.findall(r'URI="([^"]+)"', master), variant.splitlines()[1]]
    assert all(uri.endswith(f"?token={attendee}") for uri in uris), uris

    fr_uri = re.search(r'URI="([^"]+)"', media["Français"])[1]  # type: ignore[index]
    original_uri = re.search(r'URI="([^"]+)"', media["Original"])[1]  # type: ignore[index]
    french, playlist, segment_headers = await rendition_audio(http, base, fr_uri, tmp_path, "fr")
    assert french.tone(0.3, french.seconds - 0.3) == pytest.approx(INTERPRETER_HZ, abs=25)
    segment_lines = [line for line in playlist.splitlines() if line and line[0] != "#"]
    assert all(line.endswith(f"?token={attendee}") for line in segment_lines)
    assert segment_headers["Cache-Control"] == "no-store"
    original, _, _ = await rendition_audio(http, base, original_uri, tmp_path, "original")
    assert original.tone(0.3, original.seconds - 0.3) == pytest.approx(SPEAKER_HZ, abs=25)

    # A segment without the token, or a name that is not an HLS file, is refused.
    segment = fr_uri.split("/")[0] + "/" + segment_lines[0].split("?")[0]
    status, _, _ = await fetch(http, f"{base}/hls/{segment}")
    assert status == 401
    for bad in ("../secret.key", "x/../../secret.key", "run/fr.txt", "Bad_Run/fr.m3u8"):
        status, _, _ = await fetch(http, f"{base}/hls/{bad}?token={attendee}")
        assert status == 404, bad

    await moderator.send("end_session")
    await moderator.state_where(lambda s: s["session"] is None)
    status, _, _ = await fetch(http, f"{base}/hls/index.m3u8?token={attendee}")
    assert status == 404


async def test_public_hls_asks_for_nothing_and_lets_caches_keep_segments(
    start_server: StartServer, connect: Connect, peers: list[Any], http: aiohttp.ClientSession
) -> None:
    server = await start_server(extensions=[install_live, install_hls], hls_public=True)
    on_server = functools.partial(connect, server=server)
    moderator, _speaker, _interpreter = await on_air_setup(on_server, peers)
    await moderator.state_where(lambda s: s["session"] == "plenary")
    status, headers, body = await fetch(http, f"{server.url}/hls/index.m3u8")
    assert status == 200
    assert headers["Cache-Control"] == "public, max-age=1"
    master = body.decode()
    assert "token" not in master
    program = master.strip().splitlines()[-1]
    status, headers, body = await fetch(http, f"{server.url}/hls/{program}")
    assert status == 200 and headers["Cache-Control"] == "public, max-age=1"
    first = next(line for line in body.decode().splitlines() if line.endswith(".m4s"))
    status, headers, _ = await fetch(http, f"{server.url}/hls/{program.split('/')[0]}/{first}")
    assert status == 200
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"

    status, _, body = await fetch(http, f"{server.url}/api/delivery")
    assert status == 200
    assert b'"delivery": "webrtc"' in body

    # Nobody asks any more: packaging stops (and starts again with the next request).
    delivery = server.app[HLS_KEY]
    delivery.idle_s = 1.0
    deadline = time.monotonic() + 15
    # The packager is the delivery's own state, not an event: looked at.
    while delivery.packager is not None and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    assert delivery.packager is None, "packaging went on without viewers"
    status, _, _ = await fetch(http, f"{server.url}/hls/index.m3u8")
    assert status == 200 and delivery.packager is not None
