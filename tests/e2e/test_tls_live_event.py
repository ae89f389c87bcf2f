"""The proof that a node serving HTTPS and WSS itself carries an event: a speaker
publishes from Chromium, the moderator puts him on air, and an attendee hears his tone,
every page over https:// with its WebSocket over wss:// and no violation of the
security policy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Playwright, expect

from signaling.tokens import Role
from tests.e2e.conftest import SPEAKER_HZ, LiveNode
from tests.e2e.listening import wait_for_tone
from tests.e2e.watching import choose
from tests.support.browser import DEFAULT_TIMEOUT_MS, launch_chromium, page_errors
from tests.support.certificates import write_self_signed
from tests.support.server import free_port

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

#: The certificate is self-signed: this test's browsers only are told not to check it.
IGNORE_CERTIFICATE = ("--ignore-certificate-errors",)
MEDIA_TIMEOUT_MS = 20_000
SPEAKER = ("alexander-tokovinin", "Alexander Tokovinin")
#: Runs before the page's scripts: every WebSocket URL opened, and every policy violation.
WATCH_PAGE = """
window.__sockets = [];
window.__violations = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(url, ...rest) { super(url, ...rest); window.__sockets.push(String(url)); }
};
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.effectiveDirective} blocked ${event.blockedURI || "inline"}`);
});
"""


@pytest.fixture
async def tls_node(tmp_path: Path) -> AsyncIterator[LiveNode]:
    cert, key = write_self_signed(tmp_path / "tls")
    node = LiveNode(tmp_path / "node", free_port(), tls_cert=cert, tls_key=key)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


class Browsers:
    def __init__(self, playwright: Playwright) -> None:
        self.playwright = playwright
        self.opened: list[Browser] = []
        self.errors: dict[str, list[str]] = {}

    async def launch(self, **options: object) -> Browser:
        browser = await launch_chromium(
            self.playwright,
            extra_args=IGNORE_CERTIFICATE,
            **options,  # type: ignore[arg-type]
        )
        self.opened.append(browser)
        return browser

    async def open(self, browser: Browser, name: str, url: str) -> Page:
        context = await browser.new_context(locale="en-US", timezone_id="UTC")
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        page = await context.new_page()
        await page.add_init_script(WATCH_PAGE)
        self.errors[name] = page_errors(page)
        await page.goto(url)
        return page


@pytest.fixture
async def browsers(playwright_instance: Playwright) -> AsyncIterator[Browsers]:
    opened = Browsers(playwright_instance)
    try:
        yield opened
    finally:
        for browser in opened.opened:
            await browser.close()


async def test_an_attendee_hears_the_speaker_over_https_and_wss(
    tls_node: LiveNode, browsers: Browsers, tone_wavs: dict[str, Path]
) -> None:
    node = tls_node
    assert node.url.startswith("https://")
    speaker_browser = await browsers.launch(fake_audio_wav=tone_wavs["speaker"])
    audience = await browsers.launch(fake_media=True)
    speaker_id, speaker_name = SPEAKER

    stage = await browsers.open(
        speaker_browser, "stage", node.link("stage", Role.SPEAKER, speaker_id, speaker=speaker_id)
    )
    await stage.get_by_role("button", name="Join").click()
    await expect(stage.get_by_role("status").filter(has_text="not on air")).to_be_visible(
        timeout=MEDIA_TIMEOUT_MS
    )

    studio = await browsers.open(audience, "studio", node.link("studio", Role.MODERATOR, "mod"))
    go_live = studio.get_by_role("button", name=f"Go live: {speaker_name}", exact=True)
    await expect(go_live).to_be_enabled(timeout=MEDIA_TIMEOUT_MS)
    await go_live.click()
    await expect(stage.get_by_role("status").filter(has_text="ON AIR")).to_be_visible()

    watch = await browsers.open(audience, "watch", node.link("watch", Role.ATTENDEE, "att-1"))
    await watch.get_by_role("button", name="Play").click()
    await choose(watch, "Русский")
    await wait_for_tone(watch, SPEAKER_HZ)

    wss = node.url.replace("https://", "wss://") + "/ws"
    for name, page in {"stage": stage, "studio": studio, "watch": watch}.items():
        assert page.url.startswith(f"{node.url}/"), name
        assert await page.evaluate("window.isSecureContext"), name
        assert await page.evaluate("window.__sockets") == [wss], name
        assert await page.evaluate("window.__violations") == [], name
    assert browsers.errors == {"stage": [], "studio": [], "watch": []}
