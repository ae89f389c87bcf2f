"""Headless Chromium for tests, driven by Playwright: Debian's `chromium`, a fresh profile.

Fixtures:
- `playwright_instance`: the Playwright driver.
- `browser`: Chromium launched with the test flags (no sandbox, no GPU, no network
  chatter); a new one per test.
- `new_context`: a factory, `await new_context(locale="fr-FR", timezone_id="Asia/Tokyo")`
  (any `Browser.new_context` option); every context is closed at teardown.
- `page`: a page in a fresh English context (locale en-US, time zone UTC).
- `module_playwright`: the Playwright driver of a module whose tests share a browser (below).

For media pages launch your own browser with fake devices:
`await launch_chromium(playwright_instance, fake_media=True, fake_audio_wav=path)`.
`page_errors(page)` collects uncaught page errors and console errors, to assert none.

One browser for all the tests of a module (launching the driver and Chromium costs about a
second a test): Playwright's objects belong to the event loop that made them, so such a
module runs its tests on one loop (`pytestmark = [..., ON_THE_MODULE_LOOP]`), launches its
browser from `module_playwright` in a module-scoped fixture with `loop_scope="module"`, and
gives each test that browser through a function-scoped fixture that closes, after the test,
the contexts it opened (`close_contexts`, or `contexts_in` for a `new_context`): every test
still starts from fresh contexts. The async fixtures such a test uses run on the module's
loop too (`loop_scope="module"`; `servers_in` and `started_node` make the usual ones).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright

CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    # Test nodes gather their host candidates on 127.0.0.1 only: Chromium leaves
    # loopback out of its own candidates unless told, and hides host addresses behind
    # mDNS names, which a node would have to resolve over multicast.
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
)
FAKE_MEDIA_ARGS: tuple[str, ...] = (
    # Grant camera/microphone without a prompt and feed synthetic devices.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
)
#: The mark of a module whose tests share one browser (and so one event loop).
ON_THE_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")
#: Playwright's default would wait 30 s on a missing element; a page of ours answers in far less.
DEFAULT_TIMEOUT_MS = 10_000


def chromium_executable() -> str:
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("Chromium is not installed: install the Debian package 'chromium'")
    return path


def chromium_args(
    *,
    fake_media: bool = False,
    fake_audio_wav: Path | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command-line flags for a test Chromium.

    `fake_audio_wav` makes the fake microphone play that WAV file (implies `fake_media`).
    """
    args = list(CHROMIUM_ARGS)
    if fake_media or fake_audio_wav is not None:
        args += FAKE_MEDIA_ARGS
    if fake_audio_wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={Path(fake_audio_wav).resolve()}")
    args += list(extra_args)
    return args


async def launch_chromium(
    playwright: Playwright,
    *,
    fake_media: bool = False,
    fake_audio_wav: Path | None = None,
    extra_args: Sequence[str] = (),
) -> Browser:
    """Launch headless Debian Chromium with the test flags (and fake media devices if asked)."""
    return await playwright.chromium.launch(
        executable_path=chromium_executable(),
        headless=True,
        args=chromium_args(
            fake_media=fake_media, fake_audio_wav=fake_audio_wav, extra_args=extra_args
        ),
    )


@contextlib.asynccontextmanager
async def chromium(playwright: Playwright, **options: Any) -> AsyncIterator[Browser]:
    """`launch_chromium(playwright, **options)`, closed on leaving."""
    browser = await launch_chromium(playwright, **options)
    try:
        yield browser
    finally:
        await browser.close()


def page_errors(page: Page) -> list[str]:
    """A list that fills with the page's uncaught errors and console errors from now on."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"console.{message.type}: {message.text}")
            if message.type == "error"
            else None
        ),
    )
    return errors


async def close_contexts(browser: Browser) -> None:
    """Close every context open in `browser` (and so their pages): what a test opened."""
    for context in list(browser.contexts):
        await context.close()


@pytest.fixture
async def playwright_instance() -> AsyncIterator[Playwright]:
    async with async_playwright() as playwright:
        yield playwright


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_playwright() -> AsyncIterator[Playwright]:
    """The Playwright driver of a module whose tests run on one loop (ON_THE_MODULE_LOOP)."""
    async with async_playwright() as playwright:
        yield playwright


@pytest_asyncio.fixture(loop_scope="module")
async def media_browser(module_browser: Browser) -> AsyncIterator[Browser]:
    """The module's shared browser (its own `module_browser` fixture, launched with what
    its tests need) for one test: the contexts the test opened are closed after it."""
    try:
        yield module_browser
    finally:
        await close_contexts(module_browser)


@pytest.fixture
async def browser(playwright_instance: Playwright) -> AsyncIterator[Browser]:
    browser = await launch_chromium(playwright_instance)
    try:
        yield browser
    finally:
        await browser.close()


NewContext = Callable[..., Awaitable[BrowserContext]]


@contextlib.asynccontextmanager
async def contexts_in(browser: Browser) -> AsyncIterator[NewContext]:
    """`new_context`'s factory for `browser`; every context made is closed at the end."""
    contexts: list[BrowserContext] = []

    async def make(**options: Any) -> BrowserContext:
        options.setdefault("locale", "en-US")
        options.setdefault("timezone_id", "UTC")
        context = await browser.new_context(**options)
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        contexts.append(context)
        return context

    try:
        yield make
    finally:
        for context in contexts:
            await context.close()


@pytest.fixture
async def new_context(browser: Browser) -> AsyncIterator[NewContext]:
    async with contexts_in(browser) as make:
        yield make


@pytest.fixture
async def page(new_context: NewContext) -> Page:
    context = await new_context()
    return await context.new_page()
