"""Chromium through a 5 s network outage: media comes back without reloading the page.

The speaker's browser reaches the node through one relay, the audience's (the attendee's
and the moderator's pages) through another in front of the same node ports
(tests/support/impaired_network.py), so an outage can hit one side or both. After the
network returns, the attendee hears the speaker's tone again, the speaker is still on
air, and the pages of the side that was cut, and only those, said meanwhile that they
were restoring the connection. The time from the network's return to the tone is
printed; it is bounded generously (the goal is 3 s, the bound leaves room for a machine
shared with other browsers).

When the clients come back from where they were, ICE as negotiated would recover by
itself; when they come back from elsewhere ("moved": another Wi-Fi, a mobile network),
only the new subscription or publication the page made meanwhile brings media back.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Locator, Page, Playwright, expect

from signaling.tokens import Role
from tests.e2e.conftest import SPEAKER_HZ, LiveNode
from tests.e2e.listening import heard, is_tone, wait_for_tone
from tests.e2e.test_live_event import MEDIA_TIMEOUT_MS, RUSSIAN_SPEAKER, choose, go_live, join_stage
from tests.support.browser import DEFAULT_TIMEOUT_MS, NewContext, launch_chromium, page_errors
from tests.support.impaired_network import (
    RELAY_HOST,
    UdpRelay,
    page_behind_nat,
    relayed_node_settings,
)
from tests.support.ports import free_udp_range
from tests.support.server import free_port

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

#: The audience's own way to the node, beside the one the node announces.
AUDIENCE_RELAY_HOST = "127.0.0.3"
OUTAGE_S = 5.0
#: The goal is 3 s after the network returns; a loaded test machine gets more room.
BACK_WITHIN_S = 10.0
#: Refused WebSocket attempts after which the page's back-off waits its longest (3 to 5 s).
BACKED_OFF_ATTEMPTS = 3
#: Every state the page's status line takes is noted in `window.statusHistory`.
STATUS_HISTORY = """
window.statusHistory = [];
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("connection-status");
  new MutationObserver(() => window.statusHistory.push(status.dataset.state)).observe(status, {
    attributes: true,
    attributeFilter: ["data-state"],
  });
});
"""


class Sides:
    """The two relays: the speaker's (the address the node announces) and the audience's."""

    def __init__(self, speaker: UdpRelay, audience: UdpRelay) -> None:
        self.speaker = speaker
        self.audience = audience

    def named(self, names: str) -> list[UdpRelay]:
        return [getattr(self, name) for name in names.split("+")]


@pytest.fixture
async def sides() -> AsyncIterator[Sides]:
    first, last = free_udp_range(40, addresses=("127.0.0.1", RELAY_HOST, AUDIENCE_RELAY_HOST))
    ports = range(first, last + 1)
    speaker = await UdpRelay(ports, relay_host=RELAY_HOST, seed=3).start()
    audience = await UdpRelay(ports, relay_host=AUDIENCE_RELAY_HOST, seed=4).start()
    try:
        yield Sides(speaker, audience)
    finally:
        await speaker.close()
        await audience.close()


@pytest.fixture
async def node(tmp_path: Path, sides: Sides) -> AsyncIterator[LiveNode]:
    node = LiveNode(tmp_path / "node", free_port(), **relayed_node_settings(sides.speaker))
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def open_page(browser: Browser, url: str, through: str | None) -> Page:
    context = await browser.new_context(locale="en-US", timezone_id="UTC")
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    await context.add_init_script(page_behind_nat(reach_node_through=through))
    await context.add_init_script(STATUS_HISTORY)
    page = await context.new_page()
    await page.goto(url)
    # Gone if the page reloads: recovery must happen in the page as it is.
    await page.evaluate("window.sameDocument = true")
    return page


async def seconds_until_tone(page: Page, hz: float, within: float) -> float:
    """Seconds until the first reading of the tone (confirmed steady afterwards)."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if is_tone(await heard(page), hz):
            elapsed = time.monotonic() - start
            await wait_for_tone(page, hz, within=5.0)
            return elapsed
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {hz:.0f} Hz tone within {within:.0f} s; heard {await heard(page)}")


def connection_status(page: Page) -> Locator:
    return page.locator("#connection-status")


async def status_history(page: Page, *, forget: bool = False) -> list[str]:
    """The states the page's status line took (since it was last told to forget)."""
    return await page.evaluate(
        "(forget) => forget ? window.statusHistory.splice(0) : [...window.statusHistory]", forget
    )


#: The side cut and whether its clients come back from elsewhere, in the order they run.
OUTAGES = [
    ("audience", False),
    ("audience", True),
    ("speaker", False),
    ("speaker", True),
    ("speaker+audience", True),
]


class OnAir:
    """The speaker on air, the moderator's studio and the attendee hearing the speaker."""

    def __init__(self, stage: Page, studio: Page, watch: Page, speaker_name: str) -> None:
        self.pages = {"watch": watch, "studio": studio, "stage": stage}
        self.watch = watch
        self.studio = studio
        self.speaker_name = speaker_name
        self.on_air = stage.get_by_role("status").filter(has_text="ON AIR")

    async def still_on_air(self) -> None:
        await expect(self.on_air).to_be_visible()
        await expect(self.studio.locator("#on-air-speaker")).to_contain_text(self.speaker_name)


async def comes_back_after(world: OnAir, sides: Sides, cut: str, moved: bool) -> None:
    """One outage of `cut`'s side: silence and the speaker still on air during it, then
    the tone back within BACK_WITHIN_S, every page online in the same document, and only
    the pages of the side cut said they were restoring."""
    watch = world.watch
    for page in world.pages.values():
        await status_history(page, forget=True)
    relays = sides.named(cut)
    dropped_before = [(r.upstream.counters.cut, r.downstream.counters.cut) for r in relays]
    cut_at = time.monotonic()
    for relay in relays:
        relay.cut()
    await asyncio.sleep(2.0)
    # Nothing reaches the attendee, and the speaker stays on air.
    assert not is_tone(await heard(watch), SPEAKER_HZ), await heard(watch)
    await world.still_on_air()
    await asyncio.sleep(max(0.0, cut_at + OUTAGE_S - time.monotonic()))
    for relay, (upstream, downstream) in zip(relays, dropped_before, strict=True):
        assert relay.upstream.counters.cut > upstream, "the outage dropped nothing upstream"
        assert relay.downstream.counters.cut > downstream, "the outage dropped nothing downstream"
        relay.restore(moved=moved)

    back_after = await seconds_until_tone(watch, SPEAKER_HZ, within=BACK_WITHIN_S)
    tries = {
        name: await world.pages[name].evaluate("window.dragomanDebug.restorations")
        for name in ("watch", "stage")
    }
    print(
        f"\noutage of {OUTAGE_S:.0f} s, {cut} side, clients moved: {moved}: "
        f"the tone is back {back_after:.2f} s after the network "
        f"(new subscriptions of the attendee so far: {tries['watch']}, "
        f"publications of the speaker: {tries['stage']})"
    )
    await world.still_on_air()
    for page in world.pages.values():
        await expect(connection_status(page)).to_have_attribute("data-state", "online")
        assert await page.evaluate("window.sameDocument === true")
    # The pages that lost their media said so, the others did not.
    said = {name: await status_history(page) for name, page in world.pages.items()}
    cut_pages = {"audience": {"watch", "studio"}, "speaker": {"stage"}}
    restoring = {name for side in cut.split("+") for name in cut_pages[side]}
    assert {name for name, states in said.items() if "restoring" in states} == restoring, said


async def test_media_comes_back_after_each_outage_and_the_speaker_stays_on_air(
    node: LiveNode, sides: Sides, playwright_instance: Playwright, tone_wavs: dict
) -> None:
    """The outages run in turn over one event: each starts where the one before left it
    (every page online, the tone heard), which is what a page expects of a real network."""
    speaker_browser = await launch_chromium(
        playwright_instance, fake_audio_wav=tone_wavs["speaker"]
    )
    audience = await launch_chromium(playwright_instance, fake_media=True)
    try:
        speaker_id, speaker_name = RUSSIAN_SPEAKER
        stage = await open_page(
            speaker_browser,
            node.link("stage", Role.SPEAKER, speaker_id, speaker=speaker_id),
            through=None,
        )
        errors = {"stage": page_errors(stage)}
        await join_stage(stage)
        studio = await open_page(
            audience, node.link("studio", Role.MODERATOR, "mod"), AUDIENCE_RELAY_HOST
        )
        errors["studio"] = page_errors(studio)
        await go_live(studio, speaker_name)
        on_air = stage.get_by_role("status").filter(has_text="ON AIR")
        await expect(on_air).to_be_visible(timeout=MEDIA_TIMEOUT_MS)
        watch = await open_page(
            audience, node.link("watch", Role.ATTENDEE, "att-outage"), AUDIENCE_RELAY_HOST
        )
        errors["watch"] = page_errors(watch)
        await watch.get_by_role("button", name="Play").click()
        await choose(watch, "Русский")
        await wait_for_tone(watch, SPEAKER_HZ, within=30.0)

        world = OnAir(stage, studio, watch, speaker_name)
        for cut, moved in OUTAGES:
            try:
                await comes_back_after(world, sides, cut, moved)
            except AssertionError as exc:
                where = f"{cut} side cut" + (", its clients moved" if moved else "")
                raise AssertionError(f"outage of the {where}: {exc}") from exc
        assert errors == {"stage": [], "studio": [], "watch": []}, errors
    finally:
        await speaker_browser.close()
        await audience.close()


async def test_a_page_reconnects_as_soon_as_the_browser_says_its_network_is_back(
    live_node: LiveNode, new_context: NewContext
) -> None:
    """Its WebSocket retries wait up to 4 s (+-25 %) after a long outage: the page does
    not wait them out when the browser's `online` event says the network is back."""
    context = await new_context()
    page = await context.new_page()
    attempts: list[float] = []
    attempted = asyncio.Event()

    def attempt(_: object) -> None:
        attempts.append(time.monotonic())
        attempted.set()

    page.on("websocket", attempt)
    await page.goto(live_node.link("watch", Role.ATTENDEE, "att-online"))
    status = connection_status(page)
    await expect(status).to_have_attribute("data-state", "online")
    connected = len(attempts)
    await live_node.stop()
    await expect(status).to_have_attribute("data-state", "reconnecting")
    # Attempts at about 0.5, 1.5 and 3.5 s, each refused; from the third on the back-off
    # waits 4 s +-25 %, never less than 3 s: a failed third attempt is a long outage's.
    while len(attempts) < connected + BACKED_OFF_ATTEMPTS:
        attempted.clear()
        await asyncio.wait_for(attempted.wait(), 10)
    failed = len(attempts) - 1
    await live_node.start()
    await context.set_offline(True)
    await context.set_offline(False)
    back = time.monotonic()
    # The socket is back within 4 s ("restoring": online, its media still coming back,
    # which on a busy machine may take longer than the socket), then the media.
    await expect(status).to_have_attribute(
        "data-state", re.compile("^(restoring|online)$"), timeout=4_000
    )
    await expect(status).to_have_attribute("data-state", "online", timeout=15_000)
    # The back-off's own next attempt comes 3 s after the failed one at the earliest.
    assert attempts[failed + 1] - attempts[failed] < 3.0, "the page waited out its back-off"
    print(f"\nreconnected {time.monotonic() - back:.2f} s after the network's return")
