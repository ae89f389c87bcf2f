"""Every page works in Chromium under the node's Content-Security-Policy: it loads,
reads its catalog, talks to the API and the WebSocket, and the browser reports no
violation of the policy and no error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from playwright.async_api import Browser, Page, Playwright, expect

from signaling.tokens import Role
from tests.support.browser import DEFAULT_TIMEOUT_MS, launch_chromium, page_errors
from tests.support.server import RunningServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

#: Installed before any script of the page: the browser fires this event for every
#: resource, inline script or connection the policy blocks.
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline"} ` +
    `(${event.sourceFile}:${event.lineNumber})`
  );
});
"""


async def violations(page: Page) -> list[str]:
    return await page.evaluate("window.__violations")


class PolicyWatch:
    """Pages opened with the violation listener and an error collector."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.errors: dict[str, list[str]] = {}

    async def open(self, url: str, name: str) -> Page:
        context = await self.browser.new_context(locale="en-US", timezone_id="UTC")
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        page = await context.new_page()
        await page.add_init_script(WATCH_VIOLATIONS)
        self.errors[name] = page_errors(page)
        await page.goto(url)
        return page


@pytest.fixture
async def media_browser(playwright_instance: Playwright) -> AsyncIterator[Browser]:
    browser = await launch_chromium(playwright_instance, fake_media=True)
    try:
        yield browser
    finally:
        await browser.close()


def link(server: RunningServer, page: str, role: Role, subject: str, **scope: str) -> str:
    token = server.signer.issue(role, subject=subject, ttl=timedelta(hours=1), **scope)
    return f"{server.url}/{page}?token={token}&lang=en"


async def test_every_page_works_without_a_policy_violation(
    server: RunningServer, media_browser: Browser
) -> None:
    watch = PolicyWatch(media_browser)
    pages: dict[str, Page] = {}

    pages["event"] = await watch.open(f"{server.url}/?lang=en", "event")
    await expect(pages["event"].get_by_role("heading", level=1)).to_contain_text("Resistance")
    await expect(pages["event"].locator("#local-time")).to_contain_text("UTC")

    pages["register"] = await watch.open(f"{server.url}/register?lang=en", "register")
    language = pages["register"].get_by_role("combobox", name="Preferred language")
    await expect(language.get_by_role("option")).to_have_count(3)

    speaker = server.event.speakers[0].id
    booth = server.event.booths[0].id
    consoles = {
        "watch": link(server, "watch", Role.ATTENDEE, "att-1"),
        "booth": link(server, "booth", Role.INTERPRETER, "anna", booth=booth),
        "studio": link(server, "studio", Role.MODERATOR, "mod"),
        "stage": link(server, "stage", Role.SPEAKER, speaker, speaker=speaker),
    }
    for name, url in consoles.items():
        pages[name] = await watch.open(url, name)
        # "online": the WebSocket to this origin was allowed and the token accepted.
        await expect(pages[name].locator("#connection-status")).to_have_attribute(
            "data-state", "online"
        )

    # The speaker's camera and microphone go out over WebRTC; the attendee plays.
    await pages["stage"].get_by_role("button", name="Join").click()
    await expect(pages["stage"].get_by_role("status").filter(has_text="not on air")).to_be_visible(
        timeout=20_000
    )
    await pages["watch"].get_by_role("button", name="Play").click()

    for name, page in pages.items():
        assert await violations(page) == [], name
    assert watch.errors == {name: [] for name in pages}

    # The listener does hear a violation: an inline script injected now is blocked.
    event = pages["event"]
    await event.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.__ran = true";
            document.body.append(script);
        }"""
    )
    await event.wait_for_function("window.__violations.length === 1")
    assert await event.evaluate("window.__ran") is None
    assert (await violations(event))[0].startswith("script-src-elem blocked inline")
