"""A whole live event in headless Chromium, proven by what the attendee's page hears.

One browser process per fake microphone (Chromium's fake capture file is per process):
each speaker has his own (the Russian 1000 Hz, the French 1250 Hz), so is each interpreter
of the RU<>FR booth (440 Hz and 660 Hz), and the moderator and the attendee share a
browser without one.
The steps build on each other, so they run as one scenario over the same browsers.
"""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Page, expect

from signaling.tokens import Role
from tests.e2e.conftest import (
    FRENCH_SPEAKER_HZ,
    INTERPRETER_HZ,
    PARTNER_HZ,
    SPEAKER_HZ,
    LiveNode,
    Venue,
)
from tests.e2e.listening import (
    AUDIBLE_RMS,
    readings_during,
    wait_for_silence,
    wait_for_tone,
)
from tests.e2e.watching import audio_only, choose, original_underneath

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

RUSSIAN_SPEAKER = ("alexander-tokovinin", "Alexander Tokovinin")
FRENCH_SPEAKER = ("andre-samray", "André Samray")
BOOTH = "ru-fr"
#: Pages wait for ICE, DTLS and the first keyframe: more than a click.
MEDIA_TIMEOUT_MS = 20_000


async def join_stage(page: Page) -> None:
    await page.get_by_role("button", name="Join").click()
    await expect(page.get_by_role("status").filter(has_text="not on air")).to_be_visible(
        timeout=MEDIA_TIMEOUT_MS
    )


async def go_live(studio: Page, name: str) -> None:
    button = studio.get_by_role("button", name=f"Go live: {name}", exact=True)
    await expect(button).to_be_enabled(timeout=MEDIA_TIMEOUT_MS)
    await button.click()


async def packets_on(page: Page, name: str) -> int:
    """RTP packets the page has received on one of its slots ("channel", "floor", "video")."""
    return await page.evaluate(
        """async (name) => {
            const debug = window.dragomanDebug;
            const slot = debug.slots.find((s) => s.name === name);
            const row = (await debug.received()).find((r) => slot && r.mid === slot.mid);
            return row ? row.packetsReceived : 0;
        }""",
        name,
    )


async def test_a_live_event_heard_by_an_attendee(
    live_node: LiveNode, venue: Venue, tone_wavs: dict
) -> None:
    node = live_node
    russian_speaker = await venue.browser(fake_audio_wav=tone_wavs["speaker"])
    french_speaker = await venue.browser(fake_audio_wav=tone_wavs["french_speaker"])
    interpreter = await venue.browser(fake_audio_wav=tone_wavs["interpreter"])
    partner = await venue.browser(fake_audio_wav=tone_wavs["partner"])
    audience = await venue.browser(fake_media=True)

    # The speakers join from their stage pages.
    ru_id, ru_name = RUSSIAN_SPEAKER
    fr_id, fr_name = FRENCH_SPEAKER
    ru_stage = await venue.open(
        russian_speaker, "ru-stage", node.link("stage", Role.SPEAKER, ru_id, speaker=ru_id)
    )
    fr_stage = await venue.open(
        french_speaker, "fr-stage", node.link("stage", Role.SPEAKER, fr_id, speaker=fr_id)
    )
    await join_stage(ru_stage)
    await join_stage(fr_stage)

    # Two interpreters in the RU<>FR booth; Anna goes on air.
    anna = await venue.open(
        interpreter, "anna", node.link("booth", Role.INTERPRETER, "anna", booth=BOOTH)
    )
    boris = await venue.open(
        partner, "boris", node.link("booth", Role.INTERPRETER, "boris", booth=BOOTH)
    )
    anna_mic = anna.get_by_role("button", name="Microphone")
    await expect(anna_mic).to_be_enabled(timeout=MEDIA_TIMEOUT_MS)
    await anna_mic.click()
    await expect(anna_mic).to_have_attribute("aria-pressed", "true")
    await expect(boris.get_by_role("button", name="Microphone")).to_be_disabled()
    # Her VU meter shows her own microphone (the tone is at half scale: about -6 dBFS).
    await anna.wait_for_function("() => document.getElementById('vu-meter').value > 0.5")

    # The moderator puts the Russian speaker on air.
    studio = await venue.open(audience, "studio", node.link("studio", Role.MODERATOR, "mod"))
    await go_live(studio, ru_name)
    await expect(ru_stage.get_by_role("status").filter(has_text="ON AIR")).to_be_visible()
    await expect(anna.locator("#direction")).to_have_text("RU → FR")

    # The attendee plays and picks French: he hears the interpreter.
    watch = await venue.open(audience, "watch", node.link("watch", Role.ATTENDEE, "att-1"))
    await watch.get_by_role("button", name="Play").click()
    await choose(watch, "Français")
    await wait_for_tone(watch, INTERPRETER_HZ)
    # Without the original underneath the floor is not even sent.
    await wait_for_silence(watch, slot="floor")
    assert await packets_on(watch, "floor") == 0
    await expect(watch.locator("#now-speaking")).to_contain_text(ru_name)

    # Russian: the speaker himself.
    await choose(watch, "Русский")
    await wait_for_tone(watch, SPEAKER_HZ)

    # He answers a question in French: the moderator says so, the channels follow.
    floor_language = studio.get_by_role("combobox", name="Floor language")
    await floor_language.select_option(label="Français")
    await wait_for_tone(watch, INTERPRETER_HZ)
    await expect(anna.locator("#direction")).to_have_text("FR → RU")
    await choose(watch, "Français")
    await wait_for_tone(watch, SPEAKER_HZ)
    await expect(watch.locator("#now-speaking")).to_contain_text("speaks French")
    await floor_language.select_option(label="As in the program")
    await wait_for_tone(watch, INTERPRETER_HZ)
    await expect(anna.locator("#direction")).to_have_text("RU → FR")

    # The original under the interpretation: the floor arrives once the volume is up.
    await choose(watch, "Français")
    await wait_for_tone(watch, INTERPRETER_HZ)
    await original_underneath(watch, 40)
    await wait_for_tone(watch, SPEAKER_HZ, slot="floor")
    await original_underneath(watch, None)
    await wait_for_silence(watch, slot="floor")

    # Audio only: the video stops arriving, the channel goes on.
    await audio_only(watch, True)
    await expect(watch.locator("#program-video")).to_be_hidden()
    before = await packets_on(watch, "video")
    await wait_for_tone(watch, INTERPRETER_HZ)
    await watch.wait_for_timeout(500)
    assert await packets_on(watch, "video") - before < 5
    await audio_only(watch, False)

    # A French speaker on air: the channels swap by themselves, the booth turns around.
    await go_live(studio, fr_name)
    await wait_for_tone(watch, FRENCH_SPEAKER_HZ)
    await expect(anna.locator("#direction")).to_have_text("FR → RU")
    await choose(watch, "Русский")
    await wait_for_tone(watch, INTERPRETER_HZ)

    # Cough: silence on the channel while held, the interpretation back on release.
    cough = anna.get_by_role("button", name="Cough")
    await cough.hover()
    await anna.mouse.down()
    await wait_for_silence(watch)
    await anna.mouse.up()
    await wait_for_tone(watch, INTERPRETER_HZ)
    # The space bar does the same.
    await anna.keyboard.down("Space")
    await wait_for_silence(watch)
    await anna.keyboard.up("Space")
    await wait_for_tone(watch, INTERPRETER_HZ)

    # Handover: Boris asks, Anna accepts; the channel never falls silent.
    await boris.get_by_role("button", name="Request handover").click()
    accept = anna.get_by_role("button", name="Accept handover")
    await expect(accept).to_be_visible()
    await accept.click()
    during = await readings_during(watch, 2.0)
    quiet = [r for r in during if r is None or r["rms"] < AUDIBLE_RMS]
    assert not quiet, f"the channel fell silent during the handover: {quiet[:5]}"
    await wait_for_tone(watch, PARTNER_HZ)
    await expect(boris.get_by_role("button", name="Microphone")).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(anna.get_by_role("button", name="Microphone")).to_have_attribute(
        "aria-pressed", "false"
    )

    # Anna, off air, hears the floor; she may relay from the Russian channel (Boris).
    await wait_for_tone(anna, FRENCH_SPEAKER_HZ)
    listen_to = anna.get_by_role("combobox", name="Listen to")
    await listen_to.select_option(label="Русский")
    await wait_for_tone(anna, PARTNER_HZ)
    await listen_to.select_option(label="Floor")
    await wait_for_tone(anna, FRENCH_SPEAKER_HZ)

    # The server restarts: every page reconnects, the attendee gets his channel back.
    welcomes = await watch.evaluate("window.dragomanDebug.welcomes")
    await node.stop()
    await expect(watch.get_by_role("status").first).to_contain_text("reconnecting")
    await asyncio.sleep(0.5)
    await node.start()
    await expect(watch.locator("#connection-status")).to_have_text(
        "Connected", timeout=MEDIA_TIMEOUT_MS
    )
    assert await watch.evaluate("window.dragomanDebug.welcomes") > welcomes
    assert await watch.evaluate("window.dragomanDebug.channel") == "ru"
    # Who was on air is restored from the store: the French speaker, Boris in the booth.
    await wait_for_tone(watch, PARTNER_HZ, within=30.0)
    await choose(watch, "Français")
    await wait_for_tone(watch, FRENCH_SPEAKER_HZ)

    problems = {
        # While the server restarts, the browser reports the refused WebSocket attempts.
        name: [e for e in errors if "WebSocket connection" not in e]
        for name, errors in venue.errors.items()
    }
    assert not any(problems.values()), problems
