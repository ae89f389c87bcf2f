"""Speaker switches seen by an attendee's Chromium: the program video follows the moderator.

Two speakers publish video of different frame sizes (aiortc publishers speaking the live
WebSocket protocol, each with a tone), so the attendee's page tells which speaker it shows
from the frames it decodes. After each `put_on_air` the watch page's getStats() must show
the new speaker's frame size, one more key frame decoded and frames still being decoded,
and its `<video>` element the new size.

On loopback no packet may be lost. Behind the impairing relay (5 % loss, 30 ms jitter,
reordering, duplicates, both ways, for the publishers too) the new speaker's size must
still appear after each switch and frames keep being decoded. Freezes and pauses are
printed, not asserted, in both: Chromium's freeze is a timing judgement (a frame over
150 ms late), which a saturated machine reaches on loopback too; bench/network.py
measures them beside a baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from playwright.async_api import Page, Playwright

from signaling.app import SIGNER_KEY
from signaling.tokens import Role
from tests.e2e.conftest import LiveNode
from tests.signaling.conftest import WsClient
from tests.signaling.media_peers import FRENCH_SPEAKER, RUSSIAN_SPEAKER, peer_connection
from tests.support.browser import DEFAULT_TIMEOUT_MS, launch_chromium, page_errors
from tests.support.impaired_network import (
    PAGE_BEHIND_NAT,
    PAGE_PEERS_KEPT,
    Impairment,
    UdpRelay,
    strip_candidates,
)
from tests.support.tones import PatternVideoTrack, ToneTrack

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

BAD_WIFI = Impairment(
    loss=0.05, delay_ms=10, jitter_ms=30, duplicate=0.01, reorder=0.02, reorder_ms=20
)
#: Each speaker's frame size: what tells the attendee's decoder whom it shows.
FRAME_SIZES = {RUSSIAN_SPEAKER: (320, 240), FRENCH_SPEAKER: (480, 360)}
TONES = {RUSSIAN_SPEAKER: 1000.0, FRENCH_SPEAKER: 440.0}
SWITCHES = (FRENCH_SPEAKER, RUSSIAN_SPEAKER, FRENCH_SPEAKER, RUSSIAN_SPEAKER)

#: The watch page's program video as getStats() and its <video> element report it, from
#: the page's newest open peer connection (a re-subscription starts new counters).
VIDEO_STATS = """
async () => {
  const open = window.dragomanPeers.filter((pc) => pc.connectionState !== "closed");
  const pc = open[open.length - 1];
  const element = document.getElementById("program-video");
  const row = { videoWidth: element.videoWidth, videoHeight: element.videoHeight };
  if (!pc) return row;
  (await pc.getStats()).forEach((report) => {
    if (report.type !== "inbound-rtp" || report.kind !== "video") return;
    for (const key of ["framesDecoded", "keyFramesDecoded", "frameWidth", "frameHeight",
                       "freezeCount", "pauseCount", "totalFreezesDuration", "packetsLost",
                       "packetsReceived", "nackCount", "pliCount"]) {
      row[key] = report[key] ?? 0;
    }
  });
  return row;
}
"""


async def connect(
    node: LiveNode, session: aiohttp.ClientSession, role: Role, subject: str, **scope: str
) -> WsClient:
    assert node.app is not None
    token = node.app[SIGNER_KEY].issue(role, subject=subject, ttl=timedelta(hours=1), **scope)
    client = WsClient(await session.ws_connect(f"{node.url}/ws"))
    await client.send("auth", v=1, token=token)
    client.welcome = await client.next("welcome")
    await client.next("state")
    return client


async def publish(client: WsClient, *tracks: Any, behind_nat: bool) -> RTCPeerConnection:
    """Publish like a page; behind the relay the offer carries no candidates, so the node
    reaches the publisher only through it."""
    pc = peer_connection()
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await client.send("offer", purpose="publish", sdp=strip_candidates(sdp) if behind_nat else sdp)
    answer = await client.next("answer")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    return pc


async def read_on(client: WsClient) -> None:
    with contextlib.suppress(ConnectionError):
        while True:
            await client.receive(within=3600)


async def wait_for_video(
    page: Page, size: tuple[int, int], keyframes_before: int, within: float
) -> dict[str, Any]:
    """The stats once the page decodes `size` frames, after one more key frame, and its
    <video> element shows that size."""
    deadline = time.monotonic() + within
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline:
        stats = await page.evaluate(VIDEO_STATS)
        if (
            (stats.get("frameWidth"), stats.get("frameHeight")) == size
            and stats.get("keyFramesDecoded", 0) > keyframes_before
            and (stats["videoWidth"], stats["videoHeight"]) == size
        ):
            return stats
        await page.wait_for_timeout(100)
    raise AssertionError(f"the attendee's page never showed {size} frames: {stats}")


async def frames_beyond(page: Page, count: int, within: float) -> dict[str, Any]:
    """The stats once the page has decoded more than `count` frames."""
    deadline = time.monotonic() + within
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline:
        stats = await page.evaluate(VIDEO_STATS)
        if stats.get("framesDecoded", 0) > count:
            return stats
        await page.wait_for_timeout(100)
    raise AssertionError(f"the attendee's page stopped decoding at {stats}")


async def watch_switches(
    node: LiveNode, playwright: Playwright, *, behind_nat: bool, within: float
) -> list[dict[str, Any]]:
    """Run the scenario; one stats row per speaker shown (the first one, then each switch)."""
    peers: list[RTCPeerConnection] = []
    readers: list[asyncio.Task[None]] = []
    attendee = await launch_chromium(playwright)
    try:
        async with aiohttp.ClientSession() as session:
            moderator = await connect(node, session, Role.MODERATOR, "mod")
            for speaker_id, (width, height) in FRAME_SIZES.items():
                client = await connect(node, session, Role.SPEAKER, speaker_id, speaker=speaker_id)
                tracks = (ToneTrack(TONES[speaker_id]), PatternVideoTrack(width, height))
                peers.append(await publish(client, *tracks, behind_nat=behind_nat))
                # Read on: aiohttp answers the node's heartbeat pings only while reading,
                # and a speaker whose socket closes is no longer on the program.
                readers.append(asyncio.ensure_future(read_on(client)))
            await moderator.state_where(
                lambda s: set(FRAME_SIZES) <= set(s["publishers"]["speakers"])
            )
            await moderator.send("start_session", session_id="plenary")
            await moderator.send("put_on_air", speaker_id=RUSSIAN_SPEAKER)

            context = await attendee.new_context(locale="en-US", timezone_id="UTC")
            context.set_default_timeout(DEFAULT_TIMEOUT_MS)
            await context.add_init_script(PAGE_BEHIND_NAT if behind_nat else PAGE_PEERS_KEPT)
            watch = await context.new_page()
            errors = page_errors(watch)
            await watch.goto(node.link("watch", Role.ATTENDEE, "att-video"))
            await watch.get_by_role("button", name="Play").click()

            rows = [await wait_for_video(watch, FRAME_SIZES[RUSSIAN_SPEAKER], 0, within)]
            for speaker_id in SWITCHES:
                before = rows[-1]
                await watch.wait_for_timeout(1500)  # the old speaker's frames keep coming
                await moderator.send("put_on_air", speaker_id=speaker_id)
                # The node took it (a refusal arrives as an error and fails here, named).
                await moderator.state_where(
                    lambda s, i=speaker_id: (s["on_air"] or {}).get("speaker") == i
                )
                shown = await wait_for_video(
                    watch, FRAME_SIZES[speaker_id], before["keyFramesDecoded"], within
                )
                assert shown["framesDecoded"] > before["framesDecoded"]
                # Decoding goes on after the switch, not only the key frame.
                later = await frames_beyond(watch, shown["framesDecoded"] + 10, within)
                rows.append({"speaker": speaker_id, **later})
            assert errors == [], errors
            return rows
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for pc in peers:
            await pc.close()
        await attendee.close()


async def test_each_switch_shows_the_new_speakers_frames_without_a_freeze(
    live_node: LiveNode, playwright_instance: Playwright
) -> None:
    rows = await watch_switches(live_node, playwright_instance, behind_nat=False, within=15.0)
    print("loopback:", *rows, sep="\n  ")
    last = rows[-1]
    assert last["keyFramesDecoded"] >= 1 + len(SWITCHES)
    assert last["packetsLost"] == 0, rows
    # Chromium counts a freeze when a frame comes over 150 ms later than the ones before:
    # a timing judgement, reached on this shared machine whenever it is saturated (the
    # slot shows nothing between the switch and the new speaker's key frame). Printed
    # here; bench/network.py measures freezes and switch times beside a baseline.
    print(f"loopback: freezeCount {last['freezeCount']}, pauseCount {last['pauseCount']}")


async def test_switches_show_the_new_speaker_through_loss_jitter_and_reordering(
    node_behind_relay: LiveNode, relay: UdpRelay, playwright_instance: Playwright
) -> None:
    relay.set_impairment(BAD_WIFI)
    rows = await watch_switches(
        node_behind_relay, playwright_instance, behind_nat=True, within=30.0
    )
    counters = relay.downstream.counters
    print("behind the relay:", *rows, sep="\n  ")
    last = rows[-1]
    print(
        f"relay dropped {counters.lost} datagrams towards clients, {relay.upstream.counters.lost}"
        f" towards the node; attendee: freezeCount {last['freezeCount']}, pauseCount"
        f" {last['pauseCount']}, totalFreezesDuration {last['totalFreezesDuration']:.2f} s,"
        f" packetsLost {last['packetsLost']}, nackCount {last['nackCount']}"
    )
    assert counters.lost > 20 and relay.upstream.counters.lost > 20
    assert last["keyFramesDecoded"] >= 1 + len(SWITCHES)
