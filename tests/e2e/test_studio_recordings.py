"""The studio lists the sessions' recordings and downloads them, as a moderator finds
them by role and name; in French and Russian too."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Playwright, expect

from signaling.tokens import Role
from tests.e2e.conftest import LiveNode
from tests.support.browser import DEFAULT_TIMEOUT_MS, launch_chromium

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

#: Set to a directory to keep screenshots of the section (en/fr/ru, desktop and phone).
SCREENSHOTS = os.environ.get("DRAGOMAN_TEST_SCREENSHOTS")


def screenshots_dir(path: str) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
async def browser(playwright_instance: Playwright) -> AsyncIterator[Browser]:
    instance = await launch_chromium(playwright_instance)
    try:
        yield instance
    finally:
        await instance.close()


async def test_the_studio_lists_and_downloads_the_recordings(
    live_node: LiveNode, browser: Browser, tmp_path: Path
) -> None:
    context = await browser.new_context(locale="en-US", timezone_id="UTC", accept_downloads=True)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    studio = await context.new_page()
    await studio.goto(live_node.link("studio", Role.MODERATOR, "mod"))
    recordings = studio.get_by_role("region", name="Recordings")
    await expect(recordings.get_by_role("status")).to_contain_text("Nothing is recorded yet")

    session = studio.get_by_role("region", name="Session 1", exact=False)
    await session.get_by_role("button", name="Start session").click()
    await studio.wait_for_timeout(2000)
    await session.get_by_role("button", name="End session").click()

    link = recordings.get_by_role("link", name="Download the original (floor), part 1", exact=False)
    await expect(link).to_be_visible()
    await expect(recordings.get_by_role("link")).to_have_count(4)  # program, original, ru, fr
    await expect(
        recordings.get_by_role("link", name="Download Français, part 1", exact=False)
    ).to_be_visible()
    async with studio.expect_download() as waiting:
        await link.click()
    download = await waiting.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    assert download.suggested_filename.endswith("-original.001.webm")
    recorded = next((live_node.data_dir / "recordings").glob("*/original.001.webm"))
    assert saved.read_bytes() == recorded.read_bytes()

    # The refresh button reads the list again (a second session's files appear).
    await recordings.get_by_role("button", name="Refresh the recordings").click()
    await expect(recordings.get_by_role("link")).to_have_count(4)

    if SCREENSHOTS:
        out = screenshots_dir(SCREENSHOTS)
        for locale, lang in (("en-US", "en"), ("fr-FR", "fr"), ("ru-RU", "ru")):
            for width, height in ((1366, 768), (390, 844)):
                page = await browser.new_page(
                    locale=locale, viewport={"width": width, "height": height}
                )
                url = live_node.link("studio", Role.MODERATOR, "mod").replace(
                    "lang=en", f"lang={lang}"
                )
                await page.goto(url)
                section = page.locator("section.studio-recordings")
                await expect(section.get_by_role("link")).to_have_count(4)
                await section.scroll_into_view_if_needed()
                await page.screenshot(path=str(out / f"studio-recordings-{lang}-{width}.png"))
                await page.close()
    await context.close()
