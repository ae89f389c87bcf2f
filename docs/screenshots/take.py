"""Screenshots of every page state an attendee or an organizer meets, into docs/screenshots/.

Run from the repository root: `python docs/screenshots/take.py` (Chromium from the system,
as the tests use it). It starts a node on loopback with a fresh data directory, a speaker
page with a fake camera, and takes each state at 1366x768 and 390x844 in English, French
and Russian: the event page, the registration form and its confirmation, the console
refusals (no link, a bad link, an expired link, a link for another console), and the
player before the start (waiting room), with its language menu open, on air, off air.

`--only en` (or fr, ru) and `--sizes 390x844` take fewer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from playwright.async_api import Browser, Page, async_playwright  # noqa: E402

from signaling.app import SIGNER_KEY, create_app, make_runner  # noqa: E402
from signaling.settings import load_settings  # noqa: E402
from signaling.tokens import Role  # noqa: E402
from tests.support.browser import launch_chromium  # noqa: E402
from tests.support.server import LOOPBACK_MEDIA, free_port  # noqa: E402

OUT = Path(__file__).resolve().parent
SIZES = {"laptop": (1366, 768), "phone": (390, 844)}
LOCALES = {"en": "en-GB", "fr": "fr-FR", "ru": "ru-RU"}
ZONES = {"en": "Europe/London", "fr": "Europe/Paris", "ru": "Europe/Moscow"}
SPEAKER = "alexander-tokovinin"


class Node:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = load_settings(
            host="127.0.0.1",
            port=self.port,
            data_dir=data_dir,
            rtc_addresses=list(LOOPBACK_MEDIA),
        )
        self.app = create_app(settings)
        self.runner = make_runner(self.app)

    async def start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        await self.runner.cleanup()

    def token(self, role: Role, subject: str, hours: float = 2, **scope: str) -> str:
        return self.app[SIGNER_KEY].issue(
            role, subject=subject, ttl=timedelta(hours=hours), **scope
        )


async def moderator(node: Node, *commands: dict) -> None:
    """Send the studio's commands over the live protocol, as the studio page would."""
    token = node.token(Role.MODERATOR, "screenshots")
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{node.url}/ws") as ws:
        await ws.send_json({"type": "auth", "v": 1, "token": token})
        while (await ws.receive_json())["type"] != "welcome":
            pass
        for command in commands:
            await ws.send_json(command)
            await asyncio.sleep(0.3)
            while True:
                try:
                    reply = await ws.receive_json(timeout=0.2)
                except TimeoutError:
                    break
                if reply.get("type") == "error":
                    raise RuntimeError(json.dumps(reply))


async def shoot(page: Page, name: str) -> None:
    path = OUT / f"{name}.png"
    await page.screenshot(path=str(path))
    print(path.relative_to(ROOT))


async def open_page(browser: Browser, url: str, lang: str, size: tuple[int, int]) -> Page:
    width, height = size
    context = await browser.new_context(
        locale=LOCALES[lang],
        timezone_id=ZONES[lang],
        viewport={"width": width, "height": height},
        device_scale_factor=1,
    )
    page = await context.new_page()
    await page.goto(url)
    return page


async def take(langs: list[str], sizes: dict[str, tuple[int, int]]) -> None:
    with tempfile.TemporaryDirectory() as data:
        node = Node(Path(data))
        await node.start()
        async with async_playwright() as playwright:
            browser = await launch_chromium(playwright, fake_media=True)
            try:
                await _pages(node, browser, langs, sizes)
            finally:
                await browser.close()
                await node.stop()


async def _pages(
    node: Node, browser: Browser, langs: list[str], sizes: dict[str, tuple[int, int]]
) -> None:
    attendee = node.token(Role.ATTENDEE, "screenshots-attendee")
    expired = node.app[SIGNER_KEY].issue(Role.ATTENDEE, subject="old", ttl=timedelta(seconds=1))
    await asyncio.sleep(1.5)
    refusals = {
        "no-link": "/watch",
        "bad-link": "/watch?token=damaged.link",
        "expired-link": f"/watch?token={expired}",
        "wrong-console": f"/booth?token={attendee}",
    }
    watch_url = f"/watch?token={attendee}"
    stage = None
    for state in ("waiting", "on-air", "off-air"):
        if state == "on-air":
            token = node.token(Role.SPEAKER, SPEAKER, speaker=SPEAKER)
            stage = await open_page(
                browser, f"{node.url}/stage?token={token}&lang=en", "en", (1366, 768)
            )
            await stage.get_by_role("button", name="Join").click()
            await stage.wait_for_function(
                "() => document.querySelector('#on-air')?.textContent.includes('not on air')",
                timeout=30_000,
            )
            await moderator(
                node,
                {"type": "start_session", "session_id": "plenary"},
                {"type": "put_on_air", "speaker_id": SPEAKER},
            )
        if state == "off-air":
            await moderator(node, {"type": "take_off_air"})
        for lang in langs:
            for size_name, size in sizes.items():
                page = await open_page(browser, f"{node.url}{watch_url}&lang={lang}", lang, size)
                if state == "on-air":
                    await page.wait_for_function(
                        "() => document.getElementById('program-video').videoWidth > 0",
                        timeout=30_000,
                    )
                    await page.wait_for_timeout(1500)
                else:
                    await page.wait_for_timeout(1200)
                if state == "off-air":
                    # The card replaces the picture for a page that saw the speaker.
                    await page.wait_for_selector("#off-air-card:not([hidden])", timeout=10_000)
                await shoot(page, f"watch-{state}-{size_name}-{lang}")
                if state == "waiting":
                    await page.click("#language-button")
                    await shoot(page, f"watch-menu-{size_name}-{lang}")
                await page.context.close()
    if stage is not None:
        await stage.context.close()

    for lang in langs:
        for size_name, size in sizes.items():
            page = await open_page(browser, f"{node.url}/?lang={lang}", lang, size)
            await shoot(page, f"event-{size_name}-{lang}")
            await page.goto(f"{node.url}/register?lang={lang}")
            await page.wait_for_selector("#language option", state="attached")
            await shoot(page, f"register-{size_name}-{lang}")
            await page.fill(
                "#name", {"en": "Jane Doe", "fr": "Élise Dubois", "ru": "Анна Петрова"}[lang]
            )
            await page.fill("#email", f"{lang}-{size_name}@example.org")
            # English is not a language of the seed event: the form asks, it does not guess.
            await page.select_option("#language", "fr" if lang == "en" else lang)
            await page.click("button[type=submit]")
            await page.wait_for_selector("#result:not([hidden])")
            await shoot(page, f"registered-{size_name}-{lang}")
            for name, path in refusals.items():
                separator = "&" if "?" in path else "?"
                await page.goto(f"{node.url}{path}{separator}lang={lang}")
                await shoot(page, f"refused-{name}-{size_name}-{lang}")
            await page.context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(LOCALES), action="append")
    parser.add_argument("--sizes", choices=sorted(SIZES), action="append")
    args = parser.parse_args()
    langs = args.only or list(LOCALES)
    sizes = {name: SIZES[name] for name in (args.sizes or list(SIZES))}
    asyncio.run(take(langs, sizes))


if __name__ == "__main__":
    main()
