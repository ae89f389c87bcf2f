"""The consoles without measuring sound: refusals, languages, the studio's warnings and
sessions, the booth's request to slow down, as a person (or a screen reader) finds them
by role and name."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Playwright, expect

from signaling.app import SIGNER_KEY
from signaling.tokens import Role
from signaling.websocket import LIVE_KEY
from tests.e2e.conftest import LiveNode, started_node
from tests.e2e.watching import open_language_menu
from tests.support.browser import (
    DEFAULT_TIMEOUT_MS,
    ON_THE_MODULE_LOOP,
    chromium,
)

#: The tests share one browser (each opens its own contexts): see tests/support/browser.py.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(180), ON_THE_MODULE_LOOP]

MEDIA_TIMEOUT_MS = 20_000
# Counts the WebSockets a page opens, to see that a refused page stops retrying.
COUNT_SOCKETS = """
const Native = window.WebSocket;
window.__sockets = 0;
window.WebSocket = class extends Native {
  constructor(...args) { super(...args); window.__sockets += 1; }
};
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_browser(module_playwright: Playwright) -> AsyncIterator[Browser]:
    async with chromium(module_playwright, fake_media=True) as browser:
        yield browser


@pytest_asyncio.fixture(loop_scope="module")
async def live_node(tmp_path: Path) -> AsyncIterator[LiveNode]:
    async with started_node(tmp_path / "node") as node:
        yield node


async def open_page(browser: Browser, url: str, locale: str = "en-US") -> Page:
    context = await browser.new_context(locale=locale, timezone_id="UTC")
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = await context.new_page()
    await page.add_init_script(COUNT_SOCKETS)
    await page.goto(url)
    return page


@pytest.mark.parametrize("console", ["watch", "booth", "studio", "stage"])
async def test_a_forged_link_gets_a_page_that_says_so_and_no_console(
    live_node: LiveNode, media_browser: Browser, console: str
) -> None:
    page = await open_page(media_browser, f"{live_node.url}/{console}?token=forged.token&lang=en")
    await expect(page.get_by_role("heading", level=1)).to_have_text("This link does not work")
    await page.wait_for_timeout(500)
    assert await page.evaluate("window.__sockets") == 0


async def test_a_link_that_expires_while_the_page_is_open_is_said_in_the_page_language(
    live_node: LiveNode, media_browser: Browser
) -> None:
    assert live_node.app is not None
    issued = time.monotonic()
    token = live_node.app[SIGNER_KEY].issue(
        Role.ATTENDEE, subject="short", ttl=timedelta(seconds=3)
    )
    page = await open_page(media_browser, f"{live_node.url}/watch?token={token}&lang=fr")
    await expect(page.locator("#connection-status")).to_have_text("Connecté")
    # Until the link has expired: 3.5 s after it was issued (the page took some of it).
    await asyncio.sleep(max(0.0, issued + 3.5 - time.monotonic()))
    # The server restarts: the page reconnects with a link that has expired meanwhile.
    await live_node.stop()
    await live_node.start()
    status = page.locator("#connection-status")
    await expect(status).to_contain_text("Ce lien a expiré.", timeout=MEDIA_TIMEOUT_MS)
    assert "expired" not in await status.inner_text()


async def test_a_page_without_its_link_says_what_it_needs(
    live_node: LiveNode, media_browser: Browser
) -> None:
    page = await open_page(media_browser, f"{live_node.url}/watch?lang=en")
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "This page needs your personal link"
    )
    await page.get_by_role("link", name="Register or get your link again").click()
    await expect(page.get_by_role("button", name="Register")).to_be_visible()
    assert await page.evaluate("window.__sockets") == 0


async def test_the_consoles_speak_french_and_russian(
    live_node: LiveNode, media_browser: Browser
) -> None:
    watch = await open_page(
        media_browser,
        live_node.link("watch", Role.ATTENDEE, "att-fr").replace("lang=en", "lang=fr"),
        locale="fr-FR",
    )
    await expect(watch.get_by_role("button", name="Lecture")).to_be_visible()
    await open_language_menu(watch, "fr")
    group = watch.get_by_role("radiogroup", name="Langue")
    for name in ("Original", "Français", "Русский"):
        await expect(group.get_by_role("radio", name=name, exact=True)).to_be_visible()
    # Listening to the original, there is nothing to put under it.
    underneath = watch.get_by_role("checkbox", name="Entendre l'original en fond")
    await group.get_by_role("radio", name="Original", exact=True).check()
    await expect(underneath).to_be_disabled()
    await group.get_by_role("radio", name="Français", exact=True).check()
    await underneath.check()
    await expect(watch.get_by_role("slider", name="Volume de l'original")).to_be_visible()
    await expect(watch.locator("#connection-status")).to_have_text("Connecté")

    booth = await open_page(
        media_browser,
        live_node.link("booth", Role.INTERPRETER, "olga", booth="ru-fr").replace(
            "lang=en", "lang=ru"
        ),
        locale="ru-RU",
    )
    await expect(booth.get_by_role("button", name="Микрофон")).to_be_enabled(
        timeout=MEDIA_TIMEOUT_MS
    )
    await expect(booth.get_by_role("button", name="Кашель")).to_be_disabled()
    await expect(booth.get_by_role("combobox", name="Слушать")).to_have_value("floor")


async def test_the_studio_runs_sessions_and_warns_of_a_channel_without_interpreter(
    live_node: LiveNode, media_browser: Browser
) -> None:
    speaker_id, name = "grigory-tsidenkov", "Grigory Tsidenkov"
    studio = await open_page(media_browser, live_node.link("studio", Role.MODERATOR, "mod"))
    watch = await open_page(media_browser, live_node.link("watch", Role.ATTENDEE, "att"))
    go_live = studio.get_by_role("button", name=f"Go live: {name}", exact=True)
    # Not connected yet: he cannot be put on air.
    await expect(go_live).to_be_disabled()

    session = studio.get_by_role("region", name="Session 1", exact=False)
    await session.get_by_role("button", name="Start session").click()
    await expect(
        watch.locator("section.session[aria-current='true']").get_by_role("heading")
    ).to_contain_text("Session 1")

    stage = await open_page(
        media_browser, live_node.link("stage", Role.SPEAKER, speaker_id, speaker=speaker_id)
    )
    await stage.get_by_role("button", name="Join").click()
    await expect(go_live).to_be_enabled(timeout=MEDIA_TIMEOUT_MS)
    # His preview plays in the studio before he is on air.
    await studio.wait_for_function(
        "(id) => document.querySelector(`video[data-preview='${id}']`)?.videoWidth > 0",
        arg=speaker_id,
        timeout=MEDIA_TIMEOUT_MS,
    )
    await go_live.click()
    await expect(stage.locator("#on-air")).to_have_text("ON AIR")
    await expect(studio.get_by_role("alert").filter(has_text="Français")).to_contain_text(
        "Nobody is interpreting"
    )
    await expect(watch.locator("#now-speaking")).to_contain_text(name)

    # An interpreter on air: the warning goes.
    booth = await open_page(
        media_browser, live_node.link("booth", Role.INTERPRETER, "olga", booth="ru-fr")
    )
    microphone = booth.get_by_role("button", name="Microphone")
    await expect(microphone).to_be_enabled(timeout=MEDIA_TIMEOUT_MS)
    await microphone.click()
    await expect(
        studio.get_by_role("alert").filter(has_text="Nobody is interpreting")
    ).to_have_count(0)
    await expect(booth.locator("#direction")).to_have_text("RU → FR")

    # The booth asks the speaker to slow down: the studio and the stage say so, each in
    # its own language; the audience is not told.
    slow_down = booth.get_by_role("button", name="Slow down")
    await slow_down.click()
    await expect(slow_down).to_have_attribute("aria-pressed", "true")
    studio_alert = studio.get_by_role("alert").filter(has_text="slow down")
    await expect(studio_alert).to_have_text(
        "Booth Русский ⇄ Français asks the speaker to slow down"
    )
    await expect(stage.get_by_role("alert")).to_have_text("Please slow down")
    # His link works on one page at a time: opened in French on another page, it takes
    # over once the English page lets go, and is handed back the same way.
    stage_fr = await open_page(
        media_browser,
        live_node.link("stage", Role.SPEAKER, speaker_id, speaker=speaker_id).replace(
            "lang=en", "lang=fr"
        ),
        locale="fr-FR",
    )
    await stage_fr.get_by_role("button", name="Reprendre sur cette page").click()
    await stage.get_by_role("button", name="Let it take over").click()
    await expect(stage_fr.get_by_role("alert")).to_have_text("Veuillez parler plus lentement")
    await stage.get_by_role("button", name="Take over on this page").click()
    await stage_fr.get_by_role("button", name="Lui laisser la place").click()
    await expect(stage.locator("#connection-status")).to_have_attribute("data-state", "online")
    await expect(stage.get_by_role("alert")).to_have_text("Please slow down")
    await expect(watch.get_by_role("alert")).to_have_count(0)
    # Pressed again: withdrawn everywhere.
    await slow_down.click()
    await expect(slow_down).to_have_attribute("aria-pressed", "false")
    await expect(studio_alert).to_have_count(0)
    await expect(stage.get_by_role("alert")).to_have_count(0)
    # Asked again (the server's throttle relaxed for the test), then the speaker leaves
    # the floor: the request goes with him.
    live_node.app[LIVE_KEY].booths["ru-fr"].slow_down_every = 0.0
    await slow_down.click()
    await expect(stage.get_by_role("alert")).to_have_text("Please slow down")

    await studio.get_by_role("button", name="Take off air").click()
    await expect(stage.locator("#on-air")).not_to_have_text("ON AIR")
    await expect(stage.get_by_role("alert")).to_have_count(0)
    await expect(studio_alert).to_have_count(0)
    await expect(slow_down).to_have_attribute("aria-pressed", "false")
    await expect(slow_down).to_be_disabled()
    await session.get_by_role("button", name="End session").click()
    await expect(watch.locator("section.session[aria-current='true']")).to_have_count(0)


async def test_the_partner_takes_over_when_the_interpreter_on_air_drops(
    live_node: LiveNode, media_browser: Browser
) -> None:
    anna = await open_page(
        media_browser, live_node.link("booth", Role.INTERPRETER, "anna", booth="ru-fr")
    )
    boris = await open_page(
        media_browser, live_node.link("booth", Role.INTERPRETER, "boris", booth="ru-fr")
    )
    anna_mic = anna.get_by_role("button", name="Microphone")
    await expect(anna_mic).to_be_enabled(timeout=MEDIA_TIMEOUT_MS)
    await anna_mic.click()
    await expect(anna_mic).to_have_attribute("aria-pressed", "true")
    await expect(boris.get_by_role("button", name="Request handover")).to_be_visible()
    await expect(boris.get_by_role("button", name="Take over")).to_be_hidden()

    await anna.context.close()
    take_over = boris.get_by_role("button", name="Take over")
    await expect(take_over).to_be_visible()
    await take_over.click()
    await expect(boris.get_by_role("button", name="Microphone")).to_have_attribute(
        "aria-pressed", "true"
    )
