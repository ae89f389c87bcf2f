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
from tests.support import ll_hls
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
    assert b'"webrtc_fallback_s": 10.0' in body

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


async def timed_fetch(
    http: aiohttp.ClientSession, url: str
) -> tuple[int, dict[str, str], bytes, float]:
    started = time.monotonic()
    status, headers, body = await fetch(http, url)
    return status, headers, body, time.monotonic() - started


async def test_low_latency_playlists_block_until_the_part_exists(
    connect: Connect,
    peers: list[Any],
    live_server: RunningServer,
    http: aiohttp.ClientSession,
    tmp_path,
) -> None:
    base = live_server.url
    attendee = token(live_server, Role.ATTENDEE, "reg-1")
    moderator, _speaker, _interpreter = await on_air_setup(connect, peers)
    await moderator.state_where(lambda s: s["session"] == "plenary")
    status, _, body = await fetch(http, f"{base}/hls/index.m3u8?token={attendee}")
    assert status == 200
    fr_uri = re.search(r'URI="([^"]+fr\.m3u8[^"]*)"', body.decode())[1]  # type: ignore[index]
    run = fr_uri.split("/")[0]
    url = f"{base}/hls/{fr_uri}"
    status, _, body = await fetch(http, url)
    playlist = ll_hls.parse(body.decode())
    playlist.check()
    # The token goes into every URI a player follows: parts and the preload hint too.
    uris = re.findall(r'URI="([^"]+)"', body.decode())
    assert any(".m4s" in uri for uri in uris) and playlist.preload_hint
    assert all(uri.endswith(f"?token={attendee}") for uri in uris), uris
    # Where the other audio renditions are, for a language switch at the live edge.
    reports = {
        r["URI"].split("?")[0]: r
        for r in (
            ll_hls.attributes(line)
            for line in body.decode().splitlines()
            if line.startswith("#EXT-X-RENDITION-REPORT:")
        )
    }
    assert set(reports) == {"original.m3u8", "ru.m3u8"}, reports
    for report in reports.values():
        assert abs(int(report["LAST-MSN"]) - playlist.last_part()[0]) <= 1
        assert int(report["LAST-PART"]) >= 0

    # The next part: the request is held until it exists, then lists it.
    msn, part = playlist.last_part()
    wanted = (msn, part + 1)
    status, _, body, took = await timed_fetch(
        http, f"{url}&_HLS_msn={wanted[0]}&_HLS_part={wanted[1]}"
    )
    assert status == 200, body
    after = ll_hls.parse(body.decode())
    after.check()
    assert after.last_part() >= wanted or after.complete[-1].msn >= wanted[0], after
    assert took < 3 * 2.0 + 1.0
    # The next segment as a whole (no part): held until it is complete.
    next_msn = after.complete[-1].msn + 1  # not complete when asked for
    status, _, body, took = await timed_fetch(http, f"{url}&_HLS_msn={next_msn}")
    assert status == 200, body
    assert ll_hls.parse(body.decode()).complete[-1].msn >= next_msn
    assert took < 3 * 2.0 + 1.0

    # The part a preload hint names is fetched before it exists: held, then served.
    current = ll_hls.parse((await fetch(http, url))[2].decode())
    hint = current.preload_hint
    assert hint is not None
    status, headers, part_data, took = await timed_fetch(http, f"{base}/hls/{run}/{hint}")
    assert status == 200 and part_data[4:8] == b"moof"
    assert headers["Content-Type"] == "video/iso.segment"
    assert headers["Cache-Control"] == "no-store"  # the URL carries a token
    # A part nobody hints at, and which is not there, is not waited for.
    status, _, _, took = await timed_fetch(
        http, f"{base}/hls/{run}/fr_{current.media_sequence + 50:05d}.0.m4s?token={attendee}"
    )
    assert status == 404 and took < 1.0

    # Nonsense is refused at once with a reason.
    for query, reason in (
        ("_HLS_msn=abc", b"_HLS_msn must be a whole number"),
        ("_HLS_msn=-1", b"_HLS_msn must be a whole number"),
        ("_HLS_msn=1&_HLS_part=x", b"_HLS_part must be a whole number"),
        ("_HLS_part=1", b"_HLS_part needs _HLS_msn"),
        (f"_HLS_msn={current.segments[-1].msn + 5}", b"too far ahead"),
    ):
        status, headers, body, took = await timed_fetch(http, f"{url}&{query}")
        assert status == 400 and reason in body, (query, body)
        assert took < 1.0 and headers["Cache-Control"] == "no-store"

    delivery = live_server.app[HLS_KEY]
    # A segment that does not come in time: 503 after the bounded wait.
    delivery.block_s = 0.3
    ahead = ll_hls.parse((await fetch(http, url))[2].decode()).complete[-1].msn + 2
    status, headers, body, took = await timed_fetch(http, f"{url}&_HLS_msn={ahead}")
    assert status == 503 and b"did not come in time" in body, body
    assert 0.25 < took < 2.0 and headers["Retry-After"] == "1"
    assert delivery.waiting == 0

    # Waiting requests are capped: one over the cap is refused at once, not held.
    delivery.block_s = 3 * 2.0
    delivery.max_waiting = 1
    ahead = ll_hls.parse((await fetch(http, url))[2].decode()).complete[-1].msn + 1
    held = asyncio.ensure_future(timed_fetch(http, f"{url}&_HLS_msn={ahead}"))
    deadline = time.monotonic() + 5
    while delivery.waiting < 1 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    assert delivery.waiting == 1
    status, _, body, took = await timed_fetch(http, f"{url}&_HLS_msn={ahead}")
    assert status == 503 and b"too many viewers are waiting" in body and took < 1.0
    status, _, _, _ = await held
    assert status == 200 and delivery.waiting == 0

    # A player that ignores parts still gets whole segments, which decode.
    french, _, _ = await rendition_audio(http, base, fr_uri, tmp_path, "fr")
    assert french.tone(0.3, french.seconds - 0.3) == pytest.approx(INTERPRETER_HZ, abs=25)
