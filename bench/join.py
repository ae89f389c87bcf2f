"""How fast an attendee hears the event: open the link -> first audio, click a language -> hear it.

Runs a real node (the `dragoman serve` application, embedded SQLite store) on loopback,
a speaker (fake microphone: 1000 Hz) and an interpreter (440 Hz) in headless Chromium,
puts them on air from the studio page, then, for each run, opens the attendee's link in a
fresh browser context and measures, inside the page (performance.now(), milliseconds
since the navigation started):

- ``first packet``: the received channel track unmutes (first RTP packet decoded);
- ``first audio``: the interpretation is audible in WebAudio (Play is clicked as soon as
  the page shows it, as an attendee would; the autoplay rule needs that gesture);
- ``switch``: from clicking "Русский" (or back to "Français") to the new tone being what
  the page hears, judged on the last 21 ms of received audio (zero crossings).

    python -m bench.join                 # 5 runs, medians
    python -m bench.join --runs 9 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import socket
import statistics
import sys
import tempfile
import wave
from array import array
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from playwright.async_api import Browser, Page, Playwright, async_playwright, expect

from signaling.app import SIGNER_KEY, create_app, make_runner
from signaling.registration import RegistrationLimits
from signaling.settings import load_settings
from signaling.tokens import Role

SPEAKER = ("alexander-tokovinin", "Alexander Tokovinin")  # speaks Russian
BOOTH = "ru-fr"
SPEAKER_HZ = 1000.0
INTERPRETER_HZ = 440.0
SWITCHES_PER_RUN = 4
# The test browsers' flags (tests/support/browser.py) plus fake devices: a Chromium that
# talks to nothing but the node. Kept here so that a benchmark needs nothing from tests/.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    # The node offers its media on 127.0.0.1 only.
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]

# In-page probes. `near` accepts the zero-crossing estimate within 10 % of the tone.
WAIT_AUDIBLE = """async (hz) => {
  const near = (r) => r && r.rms > 0.02 && Math.abs(r.frequency - hz) < hz * 0.1;
  while (!near(window.dragomanDebug.recent("channel"))) await new Promise((r) => setTimeout(r, 2));
  const nav = performance.getEntriesByType("navigation")[0];
  return { audible: performance.now(), packet: window.dragomanDebug.firstAudioAt,
           marks: { page: nav.responseEnd, scripts: nav.domContentLoadedEventEnd,
                    socket: window.__socketCreated, socket_open: window.__socketOpen,
                    ...window.dragomanDebug.marks } };
}"""
# Notes when the page's WebSocket opens (the console does not time that itself).
NOTE_SOCKET_OPEN = """
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    window.__socketCreated ??= performance.now();
    this.addEventListener("open", () => { window.__socketOpen ??= performance.now(); });
  }
};
"""
SWITCH = """async ([label, hz]) => {
  const near = (r) => r && r.rms > 0.02 && Math.abs(r.frequency - hz) < hz * 0.1;
  const radio = [...document.querySelectorAll("input[type=radio]")].find(
    (input) => input.parentElement.textContent.trim() === label);
  const start = performance.now();
  radio.click();
  while (!near(window.dragomanDebug.recent("channel"))) await new Promise((r) => setTimeout(r, 2));
  return performance.now() - start;
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_tone(path: Path, hz: float, seconds: int = 3, rate: int = 48000) -> Path:
    samples = array(
        "h", (int(16383 * math.sin(2 * math.pi * hz * n / rate)) for n in range(seconds * rate))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


async def launch(playwright: Playwright, wav: Path | None = None) -> Browser:
    args = list(CHROMIUM_ARGS)
    if wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={wav}")
    executable = shutil.which("chromium")
    if executable is None:
        sys.exit("bench/join.py needs Debian's chromium on PATH")
    return await playwright.chromium.launch(executable_path=executable, headless=True, args=args)


async def open_page(browser: Browser, url: str) -> Page:
    context = await browser.new_context(locale="en-US")
    context.set_default_timeout(20_000)
    page = await context.new_page()
    await page.goto(url)
    return page


async def register(http: aiohttp.ClientSession, base: str, n: int) -> str:
    """A personal link, as registration gives it: French preferred, so the page starts there."""
    form = {"name": f"Bench {n}", "email": f"bench-{n}@example.org", "language": "fr"}
    async with http.post(f"{base}/api/registrations", json=form) as response:
        response.raise_for_status()
        return f"{(await response.json())['link']}&lang=en"


async def one_join(browser: Browser, link: str) -> dict[str, Any]:
    context = await browser.new_context(locale="en-US")
    context.set_default_timeout(20_000)
    try:
        page = await context.new_page()
        await page.add_init_script(NOTE_SOCKET_OPEN)
        await page.goto(link)
        await page.get_by_role("button", name="Play").click()
        joined = await page.evaluate(WAIT_AUDIBLE, INTERPRETER_HZ)
        switches = []
        for i in range(SWITCHES_PER_RUN):
            label, hz = ("Русский", SPEAKER_HZ) if i % 2 == 0 else ("Français", INTERPRETER_HZ)
            switches.append(await page.evaluate(SWITCH, [label, hz]))
        return {
            "marks": joined["marks"],
            "first_packet_ms": joined["packet"],
            "first_audio_ms": joined["audible"],
            "switch_ms": switches,
        }
    finally:
        await context.close()


async def bench(runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dragoman-join-") as tmp:
        root = Path(tmp)
        port = free_port()
        settings = load_settings(
            host="127.0.0.1", port=port, data_dir=root / "data", rtc_addresses=["127.0.0.1"]
        )
        # Every run registers an attendee from this one address.
        app = create_app(settings, registration_limits=RegistrationLimits(per_client=10_000))
        runner = make_runner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        signer = app[SIGNER_KEY]
        base = f"http://127.0.0.1:{port}"

        def link(page: str, role: Role, subject: str, **scope: str) -> str:
            token = signer.issue(role, subject=subject, ttl=timedelta(hours=1), **scope)
            return f"{base}/{page}?token={token}&lang=en"

        try:
            async with async_playwright() as playwright:
                speaker = await launch(playwright, write_tone(root / "s.wav", SPEAKER_HZ))
                interpreter = await launch(playwright, write_tone(root / "i.wav", INTERPRETER_HZ))
                audience = await launch(playwright)
                speaker_id, speaker_name = SPEAKER
                stage = await open_page(
                    speaker, link("stage", Role.SPEAKER, speaker_id, speaker=speaker_id)
                )
                await stage.get_by_role("button", name="Join").click()
                booth = await open_page(
                    interpreter, link("booth", Role.INTERPRETER, "anna", booth=BOOTH)
                )
                microphone = booth.get_by_role("button", name="Microphone")
                await expect(microphone).to_be_enabled()
                await microphone.click()
                studio = await open_page(audience, link("studio", Role.MODERATOR, "mod"))
                go_live = studio.get_by_role("button", name=f"Go live: {speaker_name}", exact=True)
                await expect(go_live).to_be_enabled()
                await go_live.click()
                results = []
                async with aiohttp.ClientSession() as http:
                    for n in range(runs):
                        attendee = await register(http, base, n)
                        results.append(await one_join(audience, attendee))
                for browser in (speaker, interpreter, audience):
                    await browser.close()
        finally:
            await runner.cleanup()
    switches = [ms for result in results for ms in result["switch_ms"]]
    packets = [r["first_packet_ms"] for r in results if r["first_packet_ms"] is not None]
    steps = (
        "page",
        "scripts",
        "socket",
        "socket_open",
        "welcome",
        "offer",
        "answer",
        "connected",
        "first_packet",
    )
    marks = {
        step: statistics.median(r["marks"][step] for r in results)
        for step in steps
        if all(step in r["marks"] for r in results)
    }
    return {
        "runs": runs,
        "steps_ms_median": marks,
        "first_packet_ms_median": statistics.median(packets) if packets else None,
        "first_audio_ms_median": statistics.median(r["first_audio_ms"] for r in results),
        "first_audio_ms_min": min(r["first_audio_ms"] for r in results),
        "first_audio_ms_max": max(r["first_audio_ms"] for r in results),
        "switch_ms_median": statistics.median(switches),
        "switch_ms_min": min(switches),
        "switch_ms_max": max(switches),
        "switches": len(switches),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="attendee joins (default 5)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    options = parser.parse_args()
    result = asyncio.run(bench(options.runs))
    if options.json:
        print(json.dumps(result))
        return
    print(f"attendee joins on loopback, {result['runs']} runs, headless Chromium")
    steps = ", ".join(f"{step} {ms:.0f}" for step, ms in result["steps_ms_median"].items())
    print(f"  steps after opening the link (ms, medians): {steps}")
    if result["first_packet_ms_median"] is not None:
        print(
            f"  open link -> first audio packet : {result['first_packet_ms_median']:7.0f} ms median"
        )
    print(
        f"  open link -> audible channel    : {result['first_audio_ms_median']:7.0f} ms median"
        f" (min {result['first_audio_ms_min']:.0f}, max {result['first_audio_ms_max']:.0f})"
    )
    print(
        f"  click language -> hear it       : {result['switch_ms_median']:7.0f} ms median"
        f" (min {result['switch_ms_min']:.0f}, max {result['switch_ms_max']:.0f},"
        f" {result['switches']} switches)"
    )


if __name__ == "__main__":
    main()
