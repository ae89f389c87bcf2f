"""Chromium over a bad network: the speaker's and the attendee's pages reach the node
only through a relay that loses 5 % of packets, delays them with 30 ms of jitter,
reorders and duplicates them, both ways (testbed/impaired_network.py).

The channel still carries the speaker's tone, and what the attendee's page reports in
getStats() says how: packets still missing after NACK, samples concealed. With nobody on
air, a few seconds in which nothing reaches the page (reports and a check's answer lost on
the way, or late from a busy server) do not make it drop its working connection.
"""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Playwright, expect

from signaling.tokens import Role
from tests.e2e.conftest import SPEAKER_HZ, LiveNode, open_page
from tests.e2e.listening import wait_for_tone
from tests.e2e.test_live_event import MEDIA_TIMEOUT_MS, RUSSIAN_SPEAKER, choose, go_live, join_stage
from tests.e2e.test_network_outage import STATUS_HISTORY, status_history
from tests.support.browser import launch_chromium, page_errors
from tests.support.impaired_network import (
    PAGE_BEHIND_NAT,
    Impairment,
    UdpRelay,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

BAD_WIFI = Impairment(
    loss=0.05, delay_ms=10, jitter_ms=30, duplicate=0.01, reorder=0.02, reorder_ms=20
)

#: Nothing on air: time for the connectivity checks to settle to their steady pace.
QUIET_SETTLE_S = 4.0
#: Nothing reaches the page for this long: a check's answer (every 2.5 s) and the server's
#: reports (every 0.5 to 1.5 s) lost. Longer than a page with media waits (3 s).
NOTHING_ARRIVES_S = 3.5
#: Watched after that: the page would have taken the connection for lost within it.
QUIET_AFTER_S = 5.0

#: The attendee's inbound audio as getStats() reports it, summed over its peers.
INBOUND_AUDIO = """
async () => {
  const totals = { packetsReceived: 0, packetsLost: 0, nackCount: 0, concealedSamples: 0,
                   totalSamplesReceived: 0 };
  for (const pc of window.dragomanPeers) {
    const stats = await pc.getStats();
    stats.forEach((report) => {
      if (report.type !== "inbound-rtp" || report.kind !== "audio") return;
      for (const key of Object.keys(totals)) totals[key] += report[key] ?? 0;
    });
  }
  return totals;
}
"""


async def test_the_channel_carries_the_speaker_through_loss_jitter_and_reordering(
    node_behind_relay: LiveNode, relay: UdpRelay, playwright_instance: Playwright, tone_wavs: dict
) -> None:
    node = node_behind_relay
    relay.set_impairment(BAD_WIFI)
    speaker_browser = await launch_chromium(
        playwright_instance, fake_audio_wav=tone_wavs["speaker"]
    )
    audience = await launch_chromium(playwright_instance, fake_media=True)
    try:
        speaker_id, speaker_name = RUSSIAN_SPEAKER
        stage = await open_page(
            speaker_browser,
            node.link("stage", Role.SPEAKER, speaker_id, speaker=speaker_id),
            PAGE_BEHIND_NAT,
        )
        errors = {"stage": page_errors(stage)}
        await join_stage(stage)
        studio = await open_page(
            audience, node.link("studio", Role.MODERATOR, "mod"), PAGE_BEHIND_NAT
        )
        await go_live(studio, speaker_name)
        await expect(stage.get_by_role("status").filter(has_text="ON AIR")).to_be_visible(
            timeout=MEDIA_TIMEOUT_MS
        )
        watch = await open_page(
            audience, node.link("watch", Role.ATTENDEE, "att-lossy"), PAGE_BEHIND_NAT
        )
        errors["watch"] = page_errors(watch)
        await watch.get_by_role("button", name="Play").click()
        await choose(watch, "Русский")
        await wait_for_tone(watch, SPEAKER_HZ, within=30.0)
        await watch.wait_for_timeout(5000)
        await wait_for_tone(watch, SPEAKER_HZ, within=10.0)
        audio = await watch.evaluate(INBOUND_AUDIO)
        # Every packet crossed the relay, and the relay really lost some.
        assert relay.downstream.counters.lost > 20 and relay.upstream.counters.lost > 20
        assert audio["packetsReceived"] > 200
        concealed = audio["concealedSamples"] / max(1, audio["totalSamplesReceived"])
        print(f"attendee audio under 5 % loss: {audio}, concealed {concealed:.1%}")
        # About the loss of both legs (Opus is not retransmitted); the bound only catches a
        # broken path, not a loaded machine.
        assert concealed < 0.25, audio
        assert errors == {"stage": [], "watch": []}, errors
    finally:
        await speaker_browser.close()
        await audience.close()


async def test_a_quiet_connection_that_misses_one_answer_is_not_torn_down(
    node_behind_relay: LiveNode, relay: UdpRelay, playwright_instance: Playwright
) -> None:
    """Nobody on air: only the server's reports and the answers to the browser's
    connectivity checks arrive. Losing some (here: nothing reaches the page for
    `NOTHING_ARRIVES_S`) must not make the page take its working connection for dead and
    connect a new one, as it did when it waited 3 s whatever usually arrived, and again
    when it took the reports, a few a second, for media."""
    node = node_behind_relay
    audience = await launch_chromium(playwright_instance, fake_media=True)
    try:
        watch = await open_page(
            audience,
            node.link("watch", Role.ATTENDEE, "att-quiet"),
            PAGE_BEHIND_NAT + STATUS_HISTORY,
        )
        errors = page_errors(watch)
        await watch.get_by_role("button", name="Play").click()
        status = watch.locator("#connection-status")
        await expect(status).to_have_attribute("data-state", "online", timeout=MEDIA_TIMEOUT_MS)
        await asyncio.sleep(QUIET_SETTLE_S)  # the checks slow down to their steady pace
        await expect(status).to_have_attribute("data-state", "online")
        await status_history(watch, forget=True)
        # Right after something reached the page, nothing does for a while.
        arrived = relay.downstream.counters.received
        while relay.downstream.counters.received == arrived:  # noqa: ASYNC110 (a counter, no event)
            await asyncio.sleep(0.005)
        relay.cut(upstream=False)
        await asyncio.sleep(NOTHING_ARRIVES_S)
        relay.restore()
        await asyncio.sleep(QUIET_AFTER_S)
        assert relay.downstream.counters.cut >= 1, "nothing was held back: the test proved nothing"
        assert "restoring" not in await status_history(watch)
        await expect(status).to_have_attribute("data-state", "online")
        assert errors == [], errors
    finally:
        await audience.close()
