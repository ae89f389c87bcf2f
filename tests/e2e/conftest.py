"""End-to-end fixtures: a Dragoman node with the live service and the consoles, which
can be restarted on the same port and data directory (pages reconnect by themselves),
tone WAVs for the fake microphones, links for every role, and a `venue`: the browsers
of one scenario (one process per fake microphone), closed together."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, Playwright, expect

from signaling.app import SIGNER_KEY, create_app, make_runner
from signaling.settings import load_settings
from signaling.tls import server_ssl_context
from signaling.tokens import Role
from tests.support.browser import DEFAULT_TIMEOUT_MS, launch_chromium, page_errors
from tests.support.impaired_network import RELAY_HOST, UdpRelay, relayed_node_settings
from tests.support.ports import free_udp_range
from tests.support.server import LOOPBACK_MEDIA, free_port
from tests.support.tones import write_tone_wav

SPEAKER_HZ = 1000.0
#: A second speaker, of the other language: a switch of speaker is heard, not assumed.
FRENCH_SPEAKER_HZ = 1250.0
INTERPRETER_HZ = 440.0
#: The second interpreter of the booth: another tone, so a handover is heard, not assumed.
PARTNER_HZ = 660.0
#: Whole seconds: every tone above completes whole cycles, so Chromium's loop has no click.
WAV_SECONDS = 3.0


#: Media pages wait for ICE, DTLS and a keyframe, on a machine shared with other browsers:
#: expectations in these tests get longer than Playwright's 5 s default.
EXPECT_TIMEOUT_MS = 20_000


@pytest.fixture(autouse=True)
def patient_expectations() -> Iterator[None]:
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    try:
        yield
    finally:
        expect.set_options(timeout=5_000)


class LiveNode:
    """A node on a fixed port and data directory: `stop()` then `start()` is a restart.

    `settings` are more settings of the node (`tls_cert=`, `tls_key=`: HTTPS and WSS)."""

    def __init__(self, data_dir: Path, port: int, **settings: Any) -> None:
        self.data_dir = data_dir
        self.port = port
        self.settings = settings
        scheme = "https" if settings.get("tls_cert") else "http"
        self.url = f"{scheme}://127.0.0.1:{port}"
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        settings = load_settings(
            host="127.0.0.1",
            port=self.port,
            data_dir=self.data_dir,
            **{"rtc_addresses": list(LOOPBACK_MEDIA), **self.settings},
        )
        # The extensions of `dragoman serve`: live service, consoles, metrics.
        self.app = create_app(settings)
        self._runner = make_runner(self.app)
        await self._runner.setup()
        await web.TCPSite(
            self._runner,
            "127.0.0.1",
            self.port,
            reuse_address=True,
            ssl_context=server_ssl_context(settings),
        ).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def link(self, page: str, role: Role, subject: str, **scope: str) -> str:
        """The page's URL with a fresh token, in English (the accessible names tested)."""
        assert self.app is not None
        token = self.app[SIGNER_KEY].issue(role, subject=subject, ttl=timedelta(hours=1), **scope)
        return f"{self.url}/{page}?token={token}&lang=en"


@contextlib.asynccontextmanager
async def started_node(data_dir: Path, **settings: Any) -> AsyncIterator[LiveNode]:
    """A LiveNode on a free port, started, and stopped at the end."""
    node = LiveNode(data_dir, free_port(), **settings)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


@pytest.fixture
async def live_node(tmp_path: Path) -> AsyncIterator[LiveNode]:
    async with started_node(tmp_path / "node") as node:
        yield node


@pytest.fixture
def tone_wavs(tmp_path: Path) -> dict[str, Path]:
    return {
        "speaker": write_tone_wav(tmp_path / "speaker.wav", SPEAKER_HZ, WAV_SECONDS),
        "french_speaker": write_tone_wav(
            tmp_path / "french-speaker.wav", FRENCH_SPEAKER_HZ, WAV_SECONDS
        ),
        "interpreter": write_tone_wav(tmp_path / "interpreter.wav", INTERPRETER_HZ, WAV_SECONDS),
        "partner": write_tone_wav(tmp_path / "partner.wav", PARTNER_HZ, WAV_SECONDS),
    }


class Venue:
    """The browsers of one scenario, closed together."""

    def __init__(self, playwright: Playwright) -> None:
        self.playwright = playwright
        self.browsers: list[Browser] = []
        self.errors: dict[str, list[str]] = {}

    async def browser(self, **options: object) -> Browser:
        browser = await launch_chromium(self.playwright, **options)  # type: ignore[arg-type]
        self.browsers.append(browser)
        return browser

    async def open(self, browser: Browser, name: str, url: str) -> Page:
        context: BrowserContext = await browser.new_context(locale="en-US", timezone_id="UTC")
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        page = await context.new_page()
        self.errors[name] = page_errors(page)
        await page.goto(url)
        return page

    async def close(self) -> None:
        for browser in self.browsers:
            await browser.close()


@pytest.fixture
async def venue(playwright_instance: Playwright) -> AsyncIterator[Venue]:
    venue = Venue(playwright_instance)
    try:
        yield venue
    finally:
        await venue.close()


@pytest.fixture
async def relay() -> AsyncIterator[UdpRelay]:
    """An impairing relay in front of `node_behind_relay` (impairs nothing until told)."""
    first, last = free_udp_range(40, addresses=("127.0.0.1", RELAY_HOST))
    relay = await UdpRelay(range(first, last + 1), seed=11).start()
    yield relay
    await relay.close()


@pytest.fixture
async def node_behind_relay(tmp_path: Path, relay: UdpRelay) -> AsyncIterator[LiveNode]:
    """A node whose media is reached only through `relay` (see testbed/impaired_network.py)."""
    node = LiveNode(tmp_path / "node", free_port(), **relayed_node_settings(relay))
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def open_page(browser: Browser, url: str, init_script: str | None = None) -> Page:
    """A page in a fresh English context, with `init_script` run before the page's own."""
    context = await browser.new_context(locale="en-US", timezone_id="UTC")
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    if init_script is not None:
        await context.add_init_script(init_script)
    page = await context.new_page()
    await page.goto(url)
    return page
