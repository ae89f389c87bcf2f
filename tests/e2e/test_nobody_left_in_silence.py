"""Nobody left in silence, in Chromium: what the attendee hears and what the studio and
the booth show when an interpreter's or the speaker's browser dies, and when an
interpreter on air goes quiet.

One browser process per fake microphone: the speaker (1000 Hz), Anna (440 Hz), Boris
(660 Hz) or a silent interpreter; the moderator and the attendee share one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from signaling.tokens import Role
from tests.e2e.conftest import (
    INTERPRETER_HZ,
    PARTNER_HZ,
    SPEAKER_HZ,
    WAV_SECONDS,
    LiveNode,
    Venue,
)
from tests.e2e.listening import heard, is_tone, wait_for_tone
from tests.e2e.test_live_event import (
    BOOTH,
    MEDIA_TIMEOUT_MS,
    RUSSIAN_SPEAKER,
    choose,
    go_live,
    join_stage,
)
from tests.support.server import free_port
from tests.support.tones import write_tone_wav

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


async def first_tone_after(page: Page, hz: float, since: float, within: float = 10.0) -> float:
    """Seconds from `since` (time.monotonic()) to the first reading of `hz` on the channel."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if is_tone(await heard(page), hz):
            return time.monotonic() - since
        await page.wait_for_timeout(20)
    raise AssertionError(f"no {hz} Hz within {within} s; last heard {await heard(page)}")


async def interpreter_on_air(page: Page) -> None:
    mic = page.get_by_role("button", name="Microphone")
    await expect(mic).to_be_enabled(timeout=MEDIA_TIMEOUT_MS)
    await mic.click()
    await expect(mic).to_have_attribute("aria-pressed", "true")


@dataclass
class Booth:
    """The speaker on air, Anna on air and Boris ready in the RU<>FR booth, the studio."""

    speakers: Browser
    anna_browser: Browser
    boris_browser: Browser
    audience: Browser
    anna: Page
    boris: Page
    studio: Page


async def booth_on_air(
    node: LiveNode, venue: Venue, speaker_wav: Path, anna_wav: Path, boris_wav: Path
) -> Booth:
    speakers = await venue.browser(fake_audio_wav=speaker_wav)
    anna_browser = await venue.browser(fake_audio_wav=anna_wav)
    boris_browser = await venue.browser(fake_audio_wav=boris_wav)
    audience = await venue.browser(fake_media=True)
    ru_id, ru_name = RUSSIAN_SPEAKER
    stage = await venue.open(
        speakers, "stage", node.link("stage", Role.SPEAKER, ru_id, speaker=ru_id)
    )
    await join_stage(stage)
    anna = await venue.open(
        anna_browser, "anna", node.link("booth", Role.INTERPRETER, "anna", booth=BOOTH)
    )
    boris = await venue.open(
        boris_browser, "boris", node.link("booth", Role.INTERPRETER, "boris", booth=BOOTH)
    )
    await interpreter_on_air(anna)
    studio = await venue.open(audience, "studio", node.link("studio", Role.MODERATOR, "mod"))
    await go_live(studio, ru_name)
    return Booth(speakers, anna_browser, boris_browser, audience, anna, boris, studio)


async def test_interpreters_and_speaker_dropping_out(
    live_node: LiveNode, venue: Venue, tone_wavs: dict
) -> None:
    node = live_node
    booth = await booth_on_air(
        node, venue, tone_wavs["speaker"], tone_wavs["interpreter"], tone_wavs["partner"]
    )
    audience, boris, studio = booth.audience, booth.boris, booth.studio
    anna_browser, boris_browser, speakers = booth.anna_browser, booth.boris_browser, booth.speakers
    await expect(studio.locator("#on-air-light")).to_have_text("ON AIR")
    watch = await venue.open(audience, "watch", node.link("watch", Role.ATTENDEE, "att-1"))
    await watch.get_by_role("button", name="Play").click()
    await choose(watch, "Français")
    await wait_for_tone(watch, INTERPRETER_HZ)

    # The moderator listens to the French channel, as its attendees hear it.
    await studio.get_by_role("button", name="Start listening").click()
    await wait_for_tone(studio, SPEAKER_HZ, slot="listen")
    await studio.get_by_role("combobox", name="Listen to").select_option(label="Français")
    await wait_for_tone(studio, INTERPRETER_HZ, slot="listen")

    # Anna's browser dies: Boris, whose microphone is live, takes the channel.
    closed_at = time.monotonic()
    await anna_browser.close()
    failover_s = await first_tone_after(watch, PARTNER_HZ, closed_at)
    print(f"Anna's browser closed -> Boris heard by the attendee: {failover_s * 1000:.0f} ms")
    # One second without packets is the sign; the rest is the next look and the page.
    assert failover_s < 4.0
    await expect(boris.locator("#booth-alerts")).to_contain_text("you are on air now")
    await expect(studio.locator("#booths")).to_contain_text("anna dropped out")
    await expect(studio.locator("#booths")).to_contain_text("boris took over")

    # Boris's browser dies too: nobody is ready, the channel falls back to the floor.
    closed_at = time.monotonic()
    await boris_browser.close()
    fallback_s = await first_tone_after(watch, SPEAKER_HZ, closed_at)
    print(f"Boris's browser closed -> the floor as fallback: {fallback_s * 1000:.0f} ms")
    await expect(studio.locator("#booths")).to_contain_text("nobody else was ready")

    # The speaker's browser dies: the studio raises the alarm, the attendee is told.
    await speakers.close()
    alarm = studio.get_by_role("alert").filter(has_text="connection was lost")
    await expect(alarm).to_be_visible()
    await expect(studio.locator("#on-air-light")).to_have_text("SIGNAL LOST")
    await expect(
        watch.get_by_role("status").filter(has_text="speaker's connection was lost")
    ).to_be_visible()
    await expect(watch.locator("#program-video")).not_to_be_visible()
    for name in ("studio", "watch", "boris"):
        assert venue.errors[name] == [], (name, venue.errors[name])


@pytest.fixture
async def quick_dead_air_node(tmp_path: Path) -> AsyncIterator[LiveNode]:
    node = LiveNode(tmp_path / "node", free_port(), dead_air_s=2)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def test_a_silent_interpreter_on_air_raises_dead_air_until_the_partner_takes_over(
    quick_dead_air_node: LiveNode, venue: Venue, tone_wavs: dict, tmp_path: Path
) -> None:
    node = quick_dead_air_node
    silent = write_tone_wav(tmp_path / "silent.wav", INTERPRETER_HZ, WAV_SECONDS, amplitude=0)
    booth = await booth_on_air(node, venue, tone_wavs["speaker"], silent, tone_wavs["partner"])
    anna, boris, studio = booth.anna, booth.boris, booth.studio

    dead_air = studio.get_by_role("alert").filter(has_text="Dead air on Français")
    await expect(dead_air).to_be_visible(timeout=MEDIA_TIMEOUT_MS)
    await expect(anna.locator("#booth-alerts")).to_contain_text("has been silent")
    # Boris takes over: the channel carries a voice again and the warning clears.
    await boris.get_by_role("button", name="Request handover").click()
    accept = anna.get_by_role("button", name="Accept handover")
    await expect(accept).to_be_visible()
    await accept.click()
    await expect(dead_air).to_have_count(0)
    await expect(anna.locator("#booth-alerts .alarm")).to_have_count(0)
    for name in ("studio", "anna", "boris"):
        assert venue.errors[name] == [], (name, venue.errors[name])
