"""The booth and the speaker's page as people use them, in Chromium.

The booth: the on-air light (red on air, amber while coughing), a handover request
withdrawn, the turn reminder, the relay rule in the listening choice, the chat with the
partner and the studio (a hostile message shown as text, unread counts), and a limiter at
the end of every listening path (booth and attendee) that bounds a loud input. The
speaker's page: preview and microphone level before joining, named devices, mute, leave,
time on air. Both pages fit at 390x844 and 1366x768 in English, French and Russian.

Set DRAGOMAN_SCREENSHOTS to a directory to keep a screenshot of each page, size and
language.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Playwright, expect

from signaling.tokens import Role
from signaling.websocket import LIVE_KEY
from tests.e2e.conftest import SPEAKER_HZ, WAV_SECONDS, LiveNode, started_node
from tests.support.browser import (
    DEFAULT_TIMEOUT_MS,
    ON_THE_MODULE_LOOP,
    chromium,
    page_errors,
)
from tests.support.tones import write_tone_wav

#: The tests share one browser (each opens its own contexts): see tests/support/browser.py.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(300), ON_THE_MODULE_LOOP]

SPEAKER_ID, SPEAKER_NAME = "grigory-tsidenkov", "Grigory Tsidenkov"
SIZES = {"phone": (390, 844), "laptop": (1366, 768)}
HOSTILE = '<img src=x onerror="window.__pwned = 1"><b>bold</b> & "quotes"'

#: Whatever is shown must fit the width: no sideways scrolling, no control cut off.
LAYOUT_PROBLEMS = """() => {
  const width = document.documentElement.clientWidth;
  const problems = [];
  const scroll = document.documentElement.scrollWidth;
  if (scroll > width) problems.push(`the page scrolls sideways: ${scroll} > ${width}`);
  const shown = (el) =>
    el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
  const name = (el) => {
    const words = (el.textContent || el.getAttribute("aria-label") || "").trim();
    return `${el.tagName.toLowerCase()}#${el.id} "${words.slice(0, 40)}"`;
  };
  const all = "button, select, input, textarea, meter, video, h1, h2, p, li, label";
  for (const el of document.querySelectorAll(all)) {
    if (!shown(el)) continue;
    const box = el.getBoundingClientRect();
    if (box.left < -0.5 || box.right > width + 0.5) {
      problems.push(`${name(el)} spans ${box.left}..${box.right}`);
    }
  }
  for (const el of document.querySelectorAll("button, select")) {
    if (shown(el) && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`${name(el)} is cut: ${el.scrollWidth} > ${el.clientWidth}`);
    }
  }
  return problems;
}"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_browser(
    module_playwright: Playwright, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Browser]:
    speaker_wav = write_tone_wav(
        tmp_path_factory.mktemp("tones") / "speaker.wav", SPEAKER_HZ, WAV_SECONDS
    )
    async with chromium(module_playwright, fake_audio_wav=speaker_wav) as browser:
        yield browser


@pytest_asyncio.fixture(loop_scope="module")
async def live_node(tmp_path: Path) -> AsyncIterator[LiveNode]:
    async with started_node(tmp_path / "node") as node:
        yield node


async def open_page(browser: Browser, url: str, *, lang: str = "en", size=(1366, 768)) -> Page:
    locale = {"en": "en-US", "fr": "fr-FR", "ru": "ru-RU"}[lang]
    context = await browser.new_context(
        locale=locale, timezone_id="UTC", viewport={"width": size[0], "height": size[1]}
    )
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = await context.new_page()
    page.errors = page_errors(page)  # type: ignore[attr-defined]
    await page.goto(url.replace("lang=en", f"lang={lang}"))
    return page


async def layout_problems_at(page: Page, width: int, height: int) -> list[str]:
    """The page's layout problems once it is resized and a frame is drawn at the new size
    (its layout is CSS alone: no script waits for the resize)."""
    await page.set_viewport_size({"width": width, "height": height})
    await page.evaluate(
        "() => new Promise((drawn) => requestAnimationFrame(() => requestAnimationFrame(drawn)))"
    )
    return await page.evaluate(LAYOUT_PROBLEMS)


def booth_link(node: LiveNode, who: str) -> str:
    return node.link("booth", Role.INTERPRETER, who, booth="ru-fr")


async def speaker_on_air(node: LiveNode, browser: Browser, lang: str = "en") -> Page:
    """The speaker joined from his page (returned: his link works on one page at a time)
    and put on air from the studio."""
    stage = await open_page(
        browser, node.link("stage", Role.SPEAKER, SPEAKER_ID, speaker=SPEAKER_ID), lang=lang
    )
    await stage.locator("#join").click()
    studio = await open_page(browser, node.link("studio", Role.MODERATOR, "mod"))
    go_live = studio.get_by_role("button", name=f"Go live: {SPEAKER_NAME}", exact=True)
    await expect(go_live).to_be_enabled()
    await go_live.click()
    await expect(stage.locator("#on-air")).to_have_attribute("data-on-air", "true")
    return stage


async def test_the_booth_light_handover_turn_and_relay(live_node: LiveNode, media_browser: Browser):
    anna = await open_page(media_browser, booth_link(live_node, "anna"))
    boris = await open_page(media_browser, booth_link(live_node, "boris"))
    light = anna.get_by_role("status").filter(has_text="air")
    microphone = anna.get_by_role("button", name="Microphone")
    await expect(microphone).to_be_enabled()
    await expect(anna.locator("#on-air-light")).to_have_text("Off air")
    await microphone.click()
    await expect(anna.locator("#on-air-light")).to_have_text("ON AIR")
    await expect(light).to_have_attribute("data-state", "on-air")
    # The cough shows as muted, not on air, for as long as it is held.
    cough = anna.get_by_role("button", name="Cough")
    await cough.hover()
    await anna.mouse.down()
    await expect(anna.locator("#on-air-light")).to_have_attribute("data-state", "muted")
    await expect(anna.locator("#on-air-light")).to_contain_text("MUTED")
    await anna.mouse.up()
    await expect(anna.locator("#on-air-light")).to_have_attribute("data-state", "on-air")
    await expect(boris.locator("#on-air-light")).to_have_text("Off air · anna is on air")

    # A request, withdrawn: the partner sees it come and go, and Boris may ask again.
    request = boris.get_by_role("button", name="Request handover")
    await request.click()
    await expect(anna.get_by_role("button", name="Accept handover")).to_be_visible()
    await expect(anna.locator("#handover-request")).to_contain_text("boris asks to take over")
    await boris.get_by_role("button", name="Withdraw request").click()
    await expect(anna.get_by_role("button", name="Accept handover")).to_be_hidden()
    await expect(anna.locator("#handover-request")).to_have_text("")
    await expect(request).to_be_visible()
    await expect(boris.get_by_role("button", name="Withdraw request")).to_be_hidden()

    # The turn: past the event's shift length both partners are told.
    await expect(anna.locator("#shift-length")).to_contain_text("30 min")
    live = live_node.app[LIVE_KEY]
    live.booths["ru-fr"].on_air_since -= 31 * 60
    live.push()
    await expect(anna.get_by_role("alert").filter(has_text="hand over")).to_contain_text(
        "You have been on air for 31 min"
    )
    await expect(boris.get_by_role("alert").filter(has_text="anna")).to_contain_text(
        "get ready to take over"
    )
    await expect(boris.locator("#time-on-air")).to_contain_text("31:")

    # The relay rule: forced into Russian, the booth cannot listen to the Russian channel.
    await anna.get_by_role("combobox", name="Working direction").select_option("ru")
    listen = anna.get_by_role("combobox", name="Listen to")
    own = listen.locator("option[value='ru']")
    await expect(own).to_be_disabled()
    await expect(own).to_contain_text("your own channel")
    await expect(listen.locator("option[value='fr']")).to_be_enabled()
    await listen.select_option("fr")
    await expect(anna.locator("#relay-note")).to_contain_text("Français channel (relay)")
    assert anna.errors == [] and boris.errors == []  # type: ignore[attr-defined]


async def test_the_chat_shows_every_message_as_text_with_unread_counts(
    live_node: LiveNode, media_browser: Browser
):
    anna = await open_page(media_browser, booth_link(live_node, "anna"))
    boris = await open_page(media_browser, booth_link(live_node, "boris"))
    studio = await open_page(media_browser, live_node.link("studio", Role.MODERATOR, "mod"))
    chat_of = {page: page.get_by_role("region", name="Chat") for page in (anna, boris, studio)}

    # Anna writes to her partner: a hostile text, shown as the characters typed.
    box = chat_of[anna].get_by_role("textbox", name="Message")
    await expect(chat_of[anna].get_by_role("button", name="Booth partner")).to_be_visible()
    await box.fill(HOSTILE)
    await box.press("Enter")
    await expect(box).to_have_value("")
    partner_thread = chat_of[boris].get_by_role("button", name="Booth partner")
    log = chat_of[boris].get_by_role("list", name="Chat messages")
    await expect(log).to_contain_text(HOSTILE)
    assert await boris.evaluate("window.__pwned") is None
    assert await boris.locator(".chat-log img, .chat-log b").count() == 0
    # Boris reads it at once (the thread is open): nothing unread; the studio never sees it.
    await expect(partner_thread).not_to_contain_text("unread")
    await expect(chat_of[studio].get_by_role("list", name="Chat messages")).not_to_contain_text(
        "bold"
    )

    # The studio writes to the booth: both partners see an unread count on "Studio".
    studio_box = chat_of[studio].get_by_role("textbox", name="Message")
    await studio_box.fill("Slide 12 is next")
    await chat_of[studio].get_by_role("button", name="Send").click()
    for page in (anna, boris):
        studio_thread = chat_of[page].get_by_role("button", name="Studio")
        await expect(studio_thread).to_contain_text("1 unread")
        await expect(page.locator("#chat-unread")).to_have_text("1 unread")
    await chat_of[anna].get_by_role("button", name="Studio").click()
    await expect(chat_of[anna].get_by_role("list", name="Chat messages")).to_contain_text(
        "Slide 12 is next"
    )
    await expect(chat_of[anna].get_by_role("button", name="Studio")).not_to_contain_text("unread")
    await expect(anna.locator("#chat-unread")).to_be_hidden()

    # Anna answers the studio; the studio's booth thread counts it until it is read.
    await box.fill("OK")
    await box.press("Enter")
    booth_thread = chat_of[studio].get_by_role("button", name="Русский ⇄ Français")
    await expect(booth_thread).to_be_visible()
    await expect(chat_of[studio].get_by_role("list", name="Chat messages")).to_contain_text("OK")

    # Too long: the server's sentence shows and the text stays in the box, not lost.
    await box.fill("x" * 500)
    await box.evaluate("(el) => { el.removeAttribute('maxlength'); el.value += 'yy'; }")
    await box.press("Enter")
    await expect(anna.locator("#console-error")).to_contain_text("at most 500 characters")
    assert len(await box.input_value()) == 502

    # The history comes back after a reload, escaped as before.
    await boris.reload()
    await expect(
        boris.get_by_role("region", name="Chat").get_by_role("list", name="Chat messages")
    ).to_contain_text(HOSTILE)
    assert await boris.evaluate("window.__pwned") is None
    for page in (anna, boris, studio):
        assert page.errors == []  # type: ignore[attr-defined]


LOUD_PROBE = """async ({ gain }) => {
  const { Mixer } = await import("/static/console/sound.js");
  const mixer = new Mixer();
  await mixer.resume();
  const tone = mixer.context.createOscillator();
  tone.frequency.value = 440;
  const level = mixer.context.createGain();
  level.gain.value = gain;
  tone.connect(level).connect(mixer.bus);
  tone.start();
  await new Promise((resolve) => setTimeout(resolve, 300));
  let peak = 0;
  const samples = new Float32Array(mixer.output.fftSize);
  for (let i = 0; i < 40; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    mixer.output.getFloatTimeDomainData(samples);
    for (const value of samples) peak = Math.max(peak, Math.abs(value));
  }
  await mixer.context.close();
  return peak;
}"""


async def test_a_limiter_ends_every_listening_path_and_bounds_a_loud_input(
    live_node: LiveNode, media_browser: Browser
):
    watch = await open_page(media_browser, live_node.link("watch", Role.ATTENDEE, "att"))
    await watch.get_by_role("button", name="Play").click()
    anna = await open_page(media_browser, booth_link(live_node, "anna"))
    await anna.get_by_role("button", name="Start listening").click()
    for page in (watch, anna):
        graph = await page.evaluate("window.dragomanDebug.graph()")
        assert graph[-3:] == [
            "DynamicsCompressorNode:limiter",
            "GainNode:trim",
            "AudioDestinationNode",
        ]
        assert graph.index("GainNode:volume") < graph.index("DynamicsCompressorNode:limiter")
    assert "BiquadFilterNode(lowshelf):bass" in graph
    assert "BiquadFilterNode(highshelf):treble" in graph

    # The headphone controls are there by name.
    for name in ("Headphone volume", "Bass", "Treble"):
        await expect(anna.get_by_role("slider", name=name)).to_be_visible()
    await expect(anna.get_by_role("meter", name="Incoming sound level")).to_be_visible()
    await expect(anna.get_by_role("meter", name="Microphone level")).to_be_visible()

    # The same chain, fed at +40 dBFS, stays below full scale; a quiet sound passes as it is.
    loud = await watch.evaluate(LOUD_PROBE, {"gain": 100.0})
    quiet = await watch.evaluate(LOUD_PROBE, {"gain": 0.1})
    assert loud < 0.9, loud
    assert 0.08 < quiet < 0.125, quiet


async def test_the_speaker_previews_mutes_and_leaves(live_node: LiveNode, media_browser: Browser):
    stage = await open_page(
        media_browser, live_node.link("stage", Role.SPEAKER, SPEAKER_ID, speaker=SPEAKER_ID)
    )
    # Before joining: his picture and his level, and devices by name.
    await stage.wait_for_function(
        "() => document.getElementById('preview').videoWidth > 0", timeout=20_000
    )
    await stage.wait_for_function("() => window.dragomanDebug.micLevel > 0.5", timeout=20_000)
    await expect(stage.locator("#stage-status")).to_contain_text("Check your picture")
    for name in ("Camera", "Microphone"):
        select = stage.get_by_role("combobox", name=name)
        await expect(select.locator("option").first).not_to_have_text("")
        # The device's own name (Chromium's fake ones say "fake"), not "Camera 1".
        assert "fake" in (await select.locator("option").first.inner_text()).lower()
    await expect(stage.get_by_role("button", name="Mute")).to_be_hidden()

    await stage.get_by_role("button", name="Join").click()
    await expect(stage.locator("#stage-status")).to_contain_text("connected")
    studio = await open_page(media_browser, live_node.link("studio", Role.MODERATOR, "mod"))
    go_live = studio.get_by_role("button", name=f"Go live: {SPEAKER_NAME}", exact=True)
    await expect(go_live).to_be_enabled()
    await go_live.click()
    await expect(stage.locator("#on-air")).to_have_text("ON AIR")
    await expect(stage.locator("#stage-status")).to_contain_text("You are on air")
    await expect(stage.locator("#time-on-air")).to_have_text("00:02", timeout=10_000)

    mute = stage.get_by_role("button", name="Mute")
    await mute.click()
    await expect(mute).to_have_attribute("aria-pressed", "true")
    await expect(stage.locator("#on-air")).to_have_text("ON AIR — MUTED")
    await expect(stage.locator("#stage-status")).to_contain_text("microphone muted: nobody hears")
    meter = stage.get_by_role("meter", name="Microphone level")
    await expect(meter).to_have_attribute("value", "0")
    await mute.click()
    await expect(stage.locator("#on-air")).to_have_text("ON AIR")

    await stage.get_by_role("button", name="Leave").click()
    await expect(stage.locator("#stage-status")).to_contain_text("You have left")
    await expect(stage.locator("#on-air")).to_have_text("Not connected yet")
    await expect(go_live).to_be_disabled()
    await expect(stage.get_by_role("button", name="Join")).to_be_visible()
    assert stage.errors == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("lang", ["en", "fr", "ru"])
async def test_booth_and_stage_fit_a_phone_and_a_laptop(
    live_node: LiveNode, media_browser: Browser, lang: str
):
    shots = os.environ.get("DRAGOMAN_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, before the browser work)
    stage_here = await speaker_on_air(live_node, media_browser, lang=lang)
    anna = await open_page(media_browser, booth_link(live_node, "anna"), lang=lang)
    boris = await open_page(media_browser, booth_link(live_node, "boris"), lang=lang)
    await anna.locator("#microphone").click()
    await expect(anna.locator("#on-air-light")).to_have_attribute("data-state", "on-air")
    await boris.locator("#request-handover").click()
    await expect(anna.locator("#accept-handover")).to_be_visible()
    await anna.locator(".chat-text").fill("Слайд 12 — la diapositive suivante, " + "x" * 80)
    await anna.locator(".chat-text").press("Enter")
    await expect(boris.locator(".chat-log")).to_contain_text("Слайд 12")

    for size_name, (width, height) in SIZES.items():
        for name, page in (("booth", anna), ("booth-partner", boris), ("stage", stage_here)):
            problems = await layout_problems_at(page, width, height)
            assert problems == [], (name, lang, size_name, problems)
            if shots:
                await page.screenshot(
                    path=str(Path(shots) / f"{name}-{size_name}-{lang}.png"), full_page=True
                )
    for page in (anna, boris, stage_here):
        assert page.errors == []  # type: ignore[attr-defined]
