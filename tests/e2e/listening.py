"""What a console page receives, measured in the page: tones and silence.

The attendee page exposes `window.dragomanDebug.analyse(slot)`: the dominant
frequency and RMS level of the audio it *receives* on a slot ("channel" or
"floor"), from a WebAudio AnalyserNode on the received track. These helpers poll
it until what is heard is steady, so a test asserts on sound, not on labels.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from playwright.async_api import Page

#: A fake microphone's WAV is a sine at half scale (RMS ~0.35); Opus and the
#: browser's jitter buffer keep it well above this.
AUDIBLE_RMS = 0.02
#: A muted or paused stream decays to digital silence (or comfort noise far below this).
SILENT_RMS = 0.003
#: The analyser's bins are 48000 / 8192 = 5.9 Hz wide.
FREQUENCY_TOLERANCE_HZ = 20.0
POLL_S = 0.15
#: Consecutive agreeing readings needed before a tone (or silence) counts as heard.
STEADY_READINGS = 3


async def heard(page: Page, slot: str = "channel") -> dict[str, Any] | None:
    """One reading: {frequency, rms, peakDb}, or None before the slot plays."""
    return await page.evaluate("(slot) => window.dragomanDebug.analyse(slot)", slot)


def is_tone(reading: dict[str, Any] | None, hz: float) -> bool:
    return (
        reading is not None
        and reading["rms"] >= AUDIBLE_RMS
        and abs(reading["frequency"] - hz) <= FREQUENCY_TOLERANCE_HZ
    )


def is_silence(reading: dict[str, Any] | None) -> bool:
    return reading is not None and reading["rms"] <= SILENT_RMS


async def _wait(page: Page, slot: str, accept: Any, what: str, within: float) -> None:
    deadline = time.monotonic() + within
    steady = 0
    history: list[Any] = []
    while time.monotonic() < deadline:
        reading = await heard(page, slot)
        history = [*history[-5:], reading]
        steady = steady + 1 if accept(reading) else 0
        if steady >= STEADY_READINGS:
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"expected {what} on {slot!r} within {within:.0f} s; heard {history}")


async def wait_for_tone(
    page: Page, hz: float, *, slot: str = "channel", within: float = 20.0
) -> None:
    """Returns once the page steadily receives a tone of `hz` on `slot`."""
    await _wait(page, slot, lambda r: is_tone(r, hz), f"a {hz:.0f} Hz tone", within)


async def wait_for_silence(page: Page, *, slot: str = "channel", within: float = 20.0) -> None:
    """Returns once the page steadily receives nothing audible on `slot`."""
    await _wait(page, slot, is_silence, "silence", within)


async def readings_during(page: Page, seconds: float, slot: str = "channel") -> list[Any]:
    """Readings taken as fast as the page answers for `seconds`."""
    readings = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        readings.append(await heard(page, slot))
        await asyncio.sleep(0.03)
    return readings
