"""A speaker's Chromium on a node that prefers H.264, watched over HLS in Chromium.

Chromium offers VP8 first; a node with DRAGOMAN_VIDEO_CODEC=h264 answers H.264 first,
so the speaker's stage page sends H.264 (its getStats() says which codec its outbound
video uses). The attendee's /watch plays the HLS presentation (DRAGOMAN_DELIVERY=hls)
and shows a picture: the fake camera's frames, remuxed by the node without decoding
(the node's HLS packager counts pictures remuxed rising while none are encoded).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, Playwright, expect

from signaling.hls_delivery import HLS_KEY
from signaling.tokens import Role
from tests.e2e.conftest import LiveNode, open_page
from tests.e2e.test_speaker_switch_video import connect
from tests.e2e.test_studio_recordings import screenshots_dir
from tests.streamer.peers import eventually
from tests.support.browser import launch_chromium
from tests.support.impaired_network import PAGE_PEERS_KEPT
from tests.support.server import free_port

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

#: Set to a directory to keep a screenshot of /watch playing the remuxed picture.
SCREENSHOTS = os.environ.get("DRAGOMAN_TEST_SCREENSHOTS")

SPEAKER = "alexander-tokovinin"
MEDIA_TIMEOUT_MS = 30_000

#: The codec of the stage page's outbound video, from its peer connections' stats.
SENT_VIDEO_CODEC = """
async () => {
  for (const pc of window.dragomanPeers) {
    const stats = await pc.getStats();
    let codecId = null;
    stats.forEach((r) => {
      if (r.type === "outbound-rtp" && r.kind === "video") codecId = r.codecId;
    });
    if (codecId && stats.get(codecId)) return stats.get(codecId).mimeType;
  }
  return null;
}
"""

#: How bright the played picture is (0-255), drawn from the <video> element.
PICTURE_BRIGHTNESS = """
() => {
  const video = document.getElementById("program-video");
  if (!video.videoWidth) return -1;
  const canvas = document.createElement("canvas");
  canvas.width = 64; canvas.height = 36;
  const context = canvas.getContext("2d");
  context.drawImage(video, 0, 0, 64, 36);
  const pixels = context.getImageData(0, 0, 64, 36).data;
  let sum = 0;
  for (let i = 0; i < pixels.length; i += 4) sum += pixels[i] + pixels[i + 1] + pixels[i + 2];
  return sum / (pixels.length / 4) / 3;
}
"""


@pytest.fixture
async def h264_node(tmp_path: Path) -> AsyncIterator[LiveNode]:
    node = LiveNode(tmp_path / "node", free_port(), video_codec="h264", delivery="hls")
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def wait_for(page: Page, script: str, check, within: float, what: str):
    deadline = time.monotonic() + within
    value = None
    while time.monotonic() < deadline:
        value = await page.evaluate(script)
        if check(value):
            return value
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what}: last seen {value!r}")


async def test_a_chromium_speaker_sends_h264_and_hls_plays_it_remuxed(
    h264_node: LiveNode, playwright_instance: Playwright, http: aiohttp.ClientSession
) -> None:
    node = h264_node
    assert node.app is not None
    speaker_browser = await launch_chromium(playwright_instance, fake_media=True)
    watch_browser = await launch_chromium(playwright_instance)
    moderator = None
    try:
        stage = await open_page(
            speaker_browser,
            node.link("stage", Role.SPEAKER, SPEAKER, speaker=SPEAKER),
            PAGE_PEERS_KEPT,
        )
        await stage.get_by_role("button", name="Join").click()
        await expect(stage.get_by_role("status").filter(has_text="not on air")).to_be_visible(
            timeout=MEDIA_TIMEOUT_MS
        )
        codec = await wait_for(
            stage, SENT_VIDEO_CODEC, lambda v: v is not None, 20, "the stage's video codec"
        )
        assert codec == "video/H264"

        moderator = await connect(node, http, Role.MODERATOR, "mod")
        await moderator.state_where(lambda s: SPEAKER in s["publishers"]["speakers"])
        await moderator.send("start_session", session_id="plenary")
        await moderator.send("put_on_air", speaker_id=SPEAKER)
        await moderator.state_where(lambda s: (s["on_air"] or {}).get("speaker") == SPEAKER)

        watch = await open_page(watch_browser, node.link("watch", Role.ATTENDEE, "att-1"))
        await watch.wait_for_function(
            "() => window.dragomanDebug.delivery.status === 'playing'",
            timeout=MEDIA_TIMEOUT_MS,
        )
        await watch.get_by_role("button", name="Play").click()
        # The fake camera's picture (bright, moving), not the black of an empty program.
        brightness = await wait_for(
            watch, PICTURE_BRIGHTNESS, lambda v: v > 40, 30, "a picture in the HLS player"
        )
        assert brightness > 40
        start = await watch.evaluate("() => document.getElementById('program-video').currentTime")
        await watch.wait_for_function(
            "(t) => document.getElementById('program-video').currentTime > t + 2",
            arg=start,
            timeout=MEDIA_TIMEOUT_MS,
        )

        if SCREENSHOTS:
            await watch.screenshot(path=str(screenshots_dir(SCREENSHOTS) / "watch-hls-h264.png"))
        packager = node.app[HLS_KEY].packager
        assert packager is not None
        remuxed, encoded = packager.video_frames_remuxed, packager.video_frames_encoded
        # While the speaker is on air every picture is his, as sent: nothing is encoded.
        # (A loaded machine may starve the browser's encoder for seconds: wait for 20.)
        await eventually(
            lambda: packager.video_frames_remuxed > remuxed + 20,
            within=15.0,
            what="20 more pictures remuxed",
        )
        assert packager.video_frames_encoded == encoded
        assert packager.video_codec is not None and packager.video_codec.startswith("avc1.")
    finally:
        if moderator is not None:
            await moderator.close()
        await watch_browser.close()
        await speaker_browser.close()
