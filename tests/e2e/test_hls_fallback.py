"""/watch over HLS in headless Chromium, proven by what the page hears.

A Russian speaker (1000 Hz) and the RU<>FR interpreter into French (440 Hz) publish
from aiortc peers. The attendee's Chromium reaches the node's media only through a UDP
relay that lets nothing through (a network that blocks WebRTC; its HTTP still works):
the page falls back to HLS by itself, says so, and its language menu switches the
audio rendition: the tone heard changes (WebAudio analysis of what the video element
plays). With DRAGOMAN_DELIVERY=hls the page plays HLS from the start.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from playwright.async_api import Locator, Page, Playwright, expect

from signaling.tokens import Role
from testbed.impaired_network import RELAY_HOST, UdpRelay, page_behind_nat, relayed_node_settings
from tests.e2e.conftest import LiveNode, started_node
from tests.e2e.listening import wait_for_tone
from tests.e2e.test_studio_recordings import screenshots_dir
from tests.e2e.watching import choose
from tests.signaling.conftest import WsClient
from tests.signaling.media_peers import (
    INTERPRETER_HZ,
    RUSSIAN_SPEAKER,
    SPEAKER_HZ,
    peer_connection,
)
from tests.support.browser import DEFAULT_TIMEOUT_MS, launch_chromium, page_errors
from tests.support.server import free_port
from tests.support.tones import PatternVideoTrack, ToneTrack

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

#: Set to a directory to keep screenshots of the page over HLS (en/fr/ru, laptop, phone).
SCREENSHOTS = os.environ.get("DRAGOMAN_TEST_SCREENSHOTS")

#: The page gives WebRTC 10 s by default, then hls.js needs the first segments.
FALLBACK_WITHIN_MS = 40_000
#: The node's DRAGOMAN_WEBRTC_FALLBACK_S here: the time matters not, giving up does.
WEBRTC_FALLBACK_S = 2.0


async def publish_direct(client: WsClient, *tracks: MediaStreamTrack) -> RTCPeerConnection:
    """Publish as `media_peers.publish` does, reaching the node at its own address rather
    than the relay's it announces: publishers are not the ones whose network is cut."""
    pc = peer_connection()
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    await client.send("offer", purpose="publish", sdp=pc.localDescription.sdp)
    answer = await client.next("answer")
    sdp = answer["sdp"].replace(f" {RELAY_HOST} ", " 127.0.0.1 ")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
    return pc


class OnAir:
    """The session in progress: moderator, speaker and interpreter, media from aiortc."""

    def __init__(self) -> None:
        self.opened: list[Any] = []

    async def start(self, node: LiveNode, http: aiohttp.ClientSession) -> None:
        async def client(role: Role, subject: str, **scope: str) -> WsClient:
            link = node.link("watch", role, subject, **scope)
            ws = WsClient(await http.ws_connect(f"{node.url}/ws"))
            await ws.send("auth", v=1, token=link.split("token=")[1].split("&")[0])
            ws.welcome = await ws.next("welcome")
            await ws.next("state")
            self.opened.append(ws)
            return ws

        moderator = await client(Role.MODERATOR, "mod")
        speaker = await client(Role.SPEAKER, RUSSIAN_SPEAKER, speaker=RUSSIAN_SPEAKER)
        self.opened.append(
            await publish_direct(speaker, ToneTrack(SPEAKER_HZ), PatternVideoTrack())
        )
        interpreter = await client(Role.INTERPRETER, "anna", booth="ru-fr")
        self.opened.append(await publish_direct(interpreter, ToneTrack(INTERPRETER_HZ)))
        await interpreter.send("mic", on=True)
        await moderator.state_where(lambda s: RUSSIAN_SPEAKER in s["publishers"]["speakers"])
        await moderator.send("start_session", session_id="plenary")
        await moderator.send("put_on_air", speaker_id=RUSSIAN_SPEAKER)
        await moderator.state_where(lambda s: (s["on_air"] or {}).get("speaker") == RUSSIAN_SPEAKER)

    async def close(self) -> None:
        for item in reversed(self.opened):
            await item.close()


@pytest.fixture
async def node_giving_up_soon(tmp_path: Path, relay: UdpRelay) -> AsyncIterator[LiveNode]:
    """`node_behind_relay` whose pages give WebRTC `WEBRTC_FALLBACK_S` to connect."""
    settings = relayed_node_settings(relay)
    async with started_node(
        tmp_path / "node", webrtc_fallback_s=WEBRTC_FALLBACK_S, **settings
    ) as node:
        yield node


@pytest.fixture
async def on_air() -> AsyncIterator[OnAir]:
    session = OnAir()
    yield session
    await session.close()


def behind(watch: Page) -> Locator:
    """The notice that the page plays HLS, behind the room."""
    return watch.get_by_role("status").filter(has_text="few seconds behind")


async def switches_renditions_by_ear(watch: Page) -> None:
    """The language menu switches the audio rendition: the tone heard follows."""
    await watch.get_by_role("button", name="Play").click()
    await choose(watch, "Français")
    await watch.wait_for_function(
        "(code) => window.dragomanDebug.delivery.rendition === code", arg="fr"
    )
    await wait_for_tone(watch, INTERPRETER_HZ, within=30)
    await choose(watch, "Русский")  # the floor's language: the speaker himself
    await watch.wait_for_function(
        "(code) => window.dragomanDebug.delivery.rendition === code", arg="ru"
    )
    await wait_for_tone(watch, SPEAKER_HZ, within=30)
    await choose(watch, "Français")
    await wait_for_tone(watch, INTERPRETER_HZ, within=30)


async def screenshots(playwright: Playwright, node: LiveNode, out: Path) -> None:
    """The page over HLS in English, French and Russian, on a laptop and a phone."""
    browser = await launch_chromium(playwright)
    try:
        for lang in ("en", "fr", "ru"):
            for width, height in ((1366, 768), (390, 844)):
                page = await browser.new_page(viewport={"width": width, "height": height})
                link = node.link("watch", Role.ATTENDEE, "reg-2").replace("lang=en", f"lang={lang}")
                await page.goto(link)
                await page.wait_for_function(
                    "() => window.dragomanDebug.delivery.status === 'playing'",
                    timeout=FALLBACK_WITHIN_MS,
                )
                await page.wait_for_timeout(1500)
                await page.screenshot(path=str(out / f"watch-hls-{lang}-{width}.png"))
                await page.close()
    finally:
        await browser.close()


async def open_watch(playwright: Playwright, node: LiveNode, init_script: str | None = None):
    browser = await launch_chromium(playwright)
    context = await browser.new_context(locale="en-US", timezone_id="UTC")
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    if init_script is not None:
        await context.add_init_script(init_script)
    page = await context.new_page()
    errors = page_errors(page)
    await page.goto(node.link("watch", Role.ATTENDEE, "reg-1"))
    return browser, page, errors


async def test_watch_falls_back_to_hls_when_webrtc_cannot_connect(
    node_giving_up_soon: LiveNode,
    relay: UdpRelay,
    playwright_instance: Playwright,
    on_air: OnAir,
    http: aiohttp.ClientSession,
) -> None:
    # The publishers reach the node around the relay (their own addresses); the page
    # hides its own, so the relay is its only way, and the relay lets nothing through.
    await on_air.start(node_giving_up_soon, http)
    relay.cut()
    browser, watch, errors = await open_watch(
        playwright_instance, node_giving_up_soon, page_behind_nat()
    )
    try:
        await expect(
            watch.get_by_role("status").filter(has_text="few seconds behind")
        ).to_be_visible(timeout=FALLBACK_WITHIN_MS)
        await expect(watch.get_by_role("status").filter(has_text="does not let")).to_be_visible()
        await watch.wait_for_function(
            "() => window.dragomanDebug.delivery.status === 'playing'",
            timeout=FALLBACK_WITHIN_MS,
        )
        # The WebRTC attempt was given up (its peer closed), HLS plays instead.
        assert await watch.evaluate("() => window.dragomanDebug.peerState") == "none"
        assert await watch.evaluate("() => window.dragomanDebug.offers") >= 1
        renditions = await watch.evaluate("() => window.dragomanDebug.delivery.renditions")
        assert sorted(renditions) == ["fr", "original", "ru"]
        await switches_renditions_by_ear(watch)
        # The picture plays too (the program video, H.264 from the node).
        await watch.wait_for_function(
            "() => document.getElementById('program-video').videoWidth > 0"
        )
        assert not [e for e in errors if "hls" in e.lower()], errors
    finally:
        await browser.close()


async def test_the_organizer_can_choose_hls_for_everyone(
    playwright_instance: Playwright, on_air: OnAir, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    node = LiveNode(tmp_path / "node", free_port(), delivery="hls")
    await node.start()
    try:
        await on_air.start(node, http)
        browser, watch, _errors = await open_watch(playwright_instance, node)
        requested: list[str] = []
        watch.on("request", lambda request: requested.append(request.url))
        try:
            await expect(
                watch.get_by_role("status").filter(has_text="few seconds behind")
            ).to_be_visible(timeout=FALLBACK_WITHIN_MS)
            await watch.wait_for_function(
                "() => window.dragomanDebug.delivery.status === 'playing'",
                timeout=FALLBACK_WITHIN_MS,
            )
            # Never tried WebRTC: no offer was even answered.
            assert await watch.evaluate("() => window.dragomanDebug.offers") == 0
            await switches_renditions_by_ear(watch)
            # hls.js plays low-latency HLS: blocking playlist reloads, and parts.
            assert any("_HLS_msn=" in url for url in requested), requested[-20:]
            assert any(re.search(r"_\d{5}\.\d+\.m4s", url) for url in requested)
            if SCREENSHOTS:
                await screenshots(playwright_instance, node, screenshots_dir(SCREENSHOTS))
        finally:
            await browser.close()
    finally:
        await on_air.close()
        await node.stop()
