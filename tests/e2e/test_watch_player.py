"""The attendee's player as a person meets it, in Chromium at a laptop's and a phone's
size and in the three languages: nothing scrolls sideways, Play and the language menu
are on the first screen, the waiting room counts down and turns into the player when
the first speaker goes on air, the program marks who speaks, going off air shows a card
instead of a frozen frame, the menu works from the keyboard, mute silences what reaches
the speakers. (The channel switch from the menu, heard by tone, is in test_live_event.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import pytest_asyncio
import yaml
from playwright.async_api import Browser, Page, Playwright, expect

from signaling.tokens import Role
from tests.e2e.conftest import LiveNode, started_node
from tests.e2e.test_live_event import MEDIA_TIMEOUT_MS, join_stage
from tests.support.browser import (
    DEFAULT_TIMEOUT_MS,
    ON_THE_MODULE_LOOP,
    chromium,
    launch_chromium,
    page_errors,
)
from tests.support.server import SEED_PROGRAM

#: The tests share one browser (each opens its own contexts): see tests/support/browser.py.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(240), ON_THE_MODULE_LOOP]

SIZES = {"laptop": (1366, 768), "phone": (390, 844)}
LOCALES = {"en": "en-GB", "fr": "fr-FR", "ru": "ru-RU"}
PLAY = {"en": "Play", "fr": "Lecture", "ru": "Воспроизвести"}
MENU = {"en": "Language", "fr": "Langue", "ru": "Язык"}
SPEAKER = ("alexander-tokovinin", "Alexander Tokovinin")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_browser(module_playwright: Playwright) -> AsyncIterator[Browser]:
    async with chromium(module_playwright, fake_media=True) as browser:
        yield browser


@pytest.fixture
def playwright_instance(module_playwright: Playwright) -> Playwright:
    return module_playwright


@pytest_asyncio.fixture(loop_scope="module")
async def live_node(tmp_path: Path) -> AsyncIterator[LiveNode]:
    async with started_node(tmp_path / "node") as node:
        yield node


@pytest_asyncio.fixture(loop_scope="module")
async def soon_node(tmp_path: Path) -> AsyncIterator[tuple[LiveNode, datetime]]:
    """A node whose event starts in about two hours (the seed's is months away), and
    that start (programs give it to the minute, so it is rounded up)."""
    data = yaml.safe_load(SEED_PROGRAM.read_text("utf-8"))
    zone = ZoneInfo(data["timezone"])
    start = (datetime.now(zone) + timedelta(hours=2, minutes=1)).replace(second=0, microsecond=0)
    data["starts_at"] = start.replace(tzinfo=None).isoformat(timespec="minutes")
    program = tmp_path / "soon.yaml"
    program.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    async with started_node(tmp_path / "node", event_file=program) as node:
        yield node, start


async def open_sized(
    browser: Browser, url: str, lang: str = "en", size: tuple[int, int] = SIZES["laptop"]
) -> Page:
    width, height = size
    context = await browser.new_context(
        locale=LOCALES[lang],
        timezone_id="America/New_York",
        viewport={"width": width, "height": height},
    )
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = await context.new_page()
    await page.goto(url)
    return page


async def no_sideways_scroll(page: Page) -> None:
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow} px"


async def on_first_screen(page: Page, locator, what: str) -> None:
    await expect(locator).to_be_visible()
    box = await locator.bounding_box()
    height = page.viewport_size["height"] if page.viewport_size else 0
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height, (
        f"{what} is not on the first screen of {page.url}: {box}, screen {height} px"
    )


async def studio(node: LiveNode, *commands: dict) -> None:
    """The moderator's commands over the live protocol, as the studio page sends them."""
    assert node.app is not None
    url = node.link("studio", Role.MODERATOR, "mod")
    token = url.split("token=", 1)[1].split("&", 1)[0]
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{node.url}/ws") as ws:
        await ws.send_json({"type": "auth", "v": 1, "token": token})
        while (await ws.receive_json())["type"] != "welcome":
            pass
        # As the studio's Go live button does: a speaker is put on air once his media
        # has reached the node (his page may say it joined a moment before).
        wanted = {c["speaker_id"] for c in commands if c["type"] == "put_on_air"}
        publishing: set[str] = set()
        while not wanted <= publishing:
            message = await ws.receive_json(timeout=MEDIA_TIMEOUT_MS / 1000)
            if message["type"] == "state":
                publishing = set(message["publishers"]["speakers"])
        for number, command in enumerate(commands):
            await ws.send_json({**command, "id": number})
        # Each command is answered by a state (or refused by an error naming it).
        answered = 0
        while answered < len(commands):
            reply = await ws.receive_json(timeout=10)
            assert reply["type"] != "error", reply
            if reply["type"] == "state":
                answered += 1


@pytest.mark.parametrize("lang", ["en", "fr", "ru"])
@pytest.mark.parametrize("size", ["laptop", "phone"])
async def test_every_page_fits_and_the_player_controls_are_on_the_first_screen(
    live_node: LiveNode, media_browser: Browser, lang: str, size: str
) -> None:
    watch_url = live_node.link("watch", Role.ATTENDEE, f"att-{lang}-{size}").replace(
        "lang=en", f"lang={lang}"
    )
    page = await open_sized(media_browser, watch_url, lang, SIZES[size])
    errors = page_errors(page)
    await expect(page.locator("#connection-status")).to_have_attribute("data-state", "online")
    await on_first_screen(page, page.get_by_role("button", name=PLAY[lang]), "Play")
    menu_button = page.get_by_role("button", name=re.compile(rf"^{MENU[lang]}\s"))
    await on_first_screen(page, menu_button, "the language button")
    await no_sideways_scroll(page)
    # The menu opens on the first screen, the channels in their own names.
    await menu_button.click()
    group = page.get_by_role("radiogroup", name=MENU[lang])
    for name in ("Français", "Русский"):
        await on_first_screen(page, group.get_by_role("radio", name=name, exact=True), name)
    await no_sideways_scroll(page)
    assert errors == []

    # The refusal pages answer 401/403 (the browser logs those statuses), and fit too.
    others = {
        "event": f"{live_node.url}/?lang={lang}",
        "register": f"{live_node.url}/register?lang={lang}",
        "no link": f"{live_node.url}/watch?lang={lang}",
        "wrong console": watch_url.replace("/watch?", "/stage?"),
    }
    for url in others.values():
        await page.goto(url)
        await expect(page.get_by_role("heading", level=1)).to_be_visible()
        await no_sideways_scroll(page)


async def test_the_waiting_room_counts_down_then_becomes_the_player(
    soon_node: tuple[LiveNode, datetime], media_browser: Browser
) -> None:
    node, start = soon_node
    watch = await open_sized(
        media_browser, node.link("watch", Role.ATTENDEE, "early"), "en", SIZES["phone"]
    )
    errors = page_errors(watch)
    countdown = watch.get_by_role("timer")
    await expect(countdown).to_have_text(re.compile(r"^Starts in (01|02):\d\d:\d\d$"))
    first = int(await countdown.get_attribute("data-seconds") or 0)
    # What it shows is the time left until the program's start, however long the
    # node and the browser took to come up.
    left = (start - datetime.now(start.tzinfo)).total_seconds()
    assert abs(first - left) <= 5, (first, left)
    await watch.wait_for_timeout(2200)
    later = int(await countdown.get_attribute("data-seconds") or 0)
    assert 1 <= first - later <= 4, (first, later)
    # The start in the attendee's own zone, the title, and the program below.
    await expect(watch.locator("#waiting-start")).to_contain_text("America/New_York")
    await expect(watch.locator("#waiting-title")).to_have_text(
        "Shared Historical Memory: Resistance Movement"
    )
    await expect(watch.locator("#program li[data-speaker]")).to_have_count(13)
    await expect(watch.locator("#program-video")).to_be_hidden()
    await watch.get_by_role("button", name="Play").click()

    # The first speaker goes on air: the page turns into the player by itself.
    speaker_id, speaker_name = SPEAKER
    stage = await open_sized(
        media_browser, node.link("stage", Role.SPEAKER, speaker_id, speaker=speaker_id)
    )
    await join_stage(stage)
    await studio(
        node,
        {"type": "start_session", "session_id": "plenary"},
        {"type": "put_on_air", "speaker_id": speaker_id},
    )
    await expect(countdown).to_be_hidden()
    await watch.wait_for_function(
        "() => document.getElementById('program-video').videoWidth > 0", timeout=MEDIA_TIMEOUT_MS
    )
    await expect(watch.locator("#program-video")).to_be_visible()
    on_air = watch.locator("#program li[aria-current='true']")
    await expect(on_air).to_have_count(1)
    await expect(on_air).to_have_attribute("data-speaker", speaker_id)
    await expect(on_air).to_contain_text("Speaking now")
    await expect(on_air).to_contain_text(speaker_name)

    # Off air: a card says so and no frozen frame is left on screen.
    await studio(node, {"type": "take_off_air"})
    card = watch.get_by_role("status").filter(has_text="The speaker is off air")
    await expect(card).to_be_visible()
    await expect(watch.locator("#program-video")).not_to_be_visible()
    await expect(watch.locator("#program li[aria-current='true']")).to_have_count(0)
    # Not the waiting room again: the event has begun.
    await expect(countdown).to_be_hidden()

    await studio(node, {"type": "put_on_air", "speaker_id": speaker_id})
    await expect(card).to_be_hidden()
    await expect(watch.locator("#program-video")).to_be_visible()
    assert errors == []


async def test_the_menu_works_from_the_keyboard_and_mute_silences_the_speakers(
    live_node: LiveNode, playwright_instance: Playwright, tone_wavs: dict
) -> None:
    node = live_node
    speaker_browser = await launch_chromium(
        playwright_instance, fake_audio_wav=tone_wavs["speaker"]
    )
    audience = await launch_chromium(playwright_instance, fake_media=True)
    try:
        speaker_id, _ = SPEAKER
        stage = await open_sized(
            speaker_browser, node.link("stage", Role.SPEAKER, speaker_id, speaker=speaker_id)
        )
        await join_stage(stage)
        await studio(node, {"type": "put_on_air", "speaker_id": speaker_id})
        watch = await open_sized(audience, node.link("watch", Role.ATTENDEE, "keys"))
        errors = page_errors(watch)
        await watch.get_by_role("button", name="Play").click()

        # Tab to the language button, open with Enter, move with the arrows.
        menu_button = watch.get_by_role("button", name=re.compile(r"^Language\s"))
        await menu_button.focus()
        await watch.keyboard.press("Enter")
        await expect(menu_button).to_have_attribute("aria-expanded", "true")
        original = watch.get_by_role("radio", name="Original", exact=True)
        await expect(original).to_be_focused()
        await expect(original).to_have_accessible_description(
            "The speaker's own voice, without interpretation"
        )
        await watch.keyboard.press("ArrowDown")
        await expect(watch.get_by_role("radio", name="Русский", exact=True)).to_be_checked()
        await watch.wait_for_function("() => window.dragomanDebug.channel === 'ru'")
        await expect(menu_button).to_have_accessible_name("Language Русский")
        await watch.keyboard.press("Escape")
        await expect(watch.locator("#language-menu")).to_be_hidden()
        await expect(menu_button).to_be_focused()

        # The speaker speaks Russian: his tone reaches the speakers, until muted.
        await watch.wait_for_function(
            "() => (window.dragomanDebug.outputPeak() ?? 0) > 0.05", timeout=MEDIA_TIMEOUT_MS
        )
        mute = watch.get_by_role("button", name="Mute")
        await mute.click()
        await expect(mute).to_have_attribute("aria-pressed", "true")
        await watch.wait_for_function("() => window.dragomanDebug.outputPeak() < 0.005")
        await mute.click()
        await watch.wait_for_function("() => window.dragomanDebug.outputPeak() > 0.05")
        # The volume slider: at 0, silence again.
        await watch.get_by_role("slider", name="Volume").fill("0")
        await watch.wait_for_function("() => window.dragomanDebug.outputPeak() < 0.005")

        # Full screen takes the whole player, controls and all.
        fullscreen = watch.get_by_role("button", name="Full screen")
        await fullscreen.click()
        await expect(fullscreen).to_have_attribute("aria-pressed", "true")
        assert await watch.evaluate("() => document.fullscreenElement?.id") == "player"
        await fullscreen.click()
        await expect(fullscreen).to_have_attribute("aria-pressed", "false")
        assert errors == []
    finally:
        await speaker_browser.close()
        await audience.close()
