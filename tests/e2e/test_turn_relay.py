"""Pages that can reach the node only through TURN: a real coturn on loopback relays.

Both the speaker's and the attendee's pages are forced to relay-only ICE (as behind a
firewall that lets nothing but the TURN server through), using the credentials their
welcome carries; the attendee still hears the speaker, and each page's selected
candidate pair starts at a relayed candidate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Playwright, expect

from signaling.tokens import Role
from tests.e2e.conftest import SPEAKER_HZ, LiveNode, open_page
from tests.e2e.listening import wait_for_tone
from tests.e2e.test_live_event import MEDIA_TIMEOUT_MS, RUSSIAN_SPEAKER, choose, go_live, join_stage
from tests.support.browser import launch_chromium, page_errors
from tests.support.server import free_port
from tests.support.turn_server import TurnServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

#: Every peer connection the page makes gathers relayed candidates only; kept for getStats.
RELAY_ONLY = """
(() => {
  const Native = window.RTCPeerConnection;
  window.relayedPeers = [];
  window.RTCPeerConnection = class extends Native {
    constructor(configuration, ...rest) {
      super({ ...(configuration || {}), iceTransportPolicy: "relay" }, ...rest);
      window.relayedPeers.push(this);
    }
  };
})();
"""

#: The types of the local candidates of the selected pairs of the page's connected peers.
SELECTED_LOCAL_TYPES = """
async () => {
  const types = [];
  for (const pc of window.relayedPeers) {
    if (pc.connectionState !== "connected") continue;
    const stats = await pc.getStats();
    stats.forEach((report) => {
      if (report.type === "transport" && report.selectedCandidatePairId) {
        const pair = stats.get(report.selectedCandidatePairId);
        types.push(stats.get(pair.localCandidateId).candidateType);
      }
    });
  }
  return types;
}
"""


@pytest.fixture
async def turn_node(tmp_path: Path, turn_server: TurnServer) -> AsyncIterator[LiveNode]:
    node = LiveNode(
        tmp_path / "node",
        free_port(),
        turn_urls=",".join(turn_server.urls),
        turn_secret=turn_server.secret,
    )
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def test_speaker_and_attendee_behind_turn_only_hear_each_other(
    turn_node: LiveNode, playwright_instance: Playwright, tone_wavs: dict, turn_server: TurnServer
) -> None:
    node = turn_node
    speaker_browser = await launch_chromium(
        playwright_instance, fake_audio_wav=tone_wavs["speaker"]
    )
    audience = await launch_chromium(playwright_instance, fake_media=True)
    try:
        speaker_id, speaker_name = RUSSIAN_SPEAKER
        stage = await open_page(
            speaker_browser,
            node.link("stage", Role.SPEAKER, speaker_id, speaker=speaker_id),
            RELAY_ONLY,
        )
        errors = {"stage": page_errors(stage)}
        await join_stage(stage)

        studio = await open_page(audience, node.link("studio", Role.MODERATOR, "mod"))
        await go_live(studio, speaker_name)
        await expect(stage.get_by_role("status").filter(has_text="ON AIR")).to_be_visible(
            timeout=MEDIA_TIMEOUT_MS
        )

        watch = await open_page(audience, node.link("watch", Role.ATTENDEE, "att-turn"), RELAY_ONLY)
        errors["watch"] = page_errors(watch)
        await watch.get_by_role("button", name="Play").click()
        await choose(watch, "Русский")
        await wait_for_tone(watch, SPEAKER_HZ, within=30.0)

        for name, page in (("stage", stage), ("watch", watch)):
            types = await page.evaluate(SELECTED_LOCAL_TYPES)
            assert types and set(types) == {"relay"}, (name, types)
        # The credentials the pages used came from their welcome, never the secret.
        for page in (stage, watch):
            assert turn_server.secret not in await page.content()
        assert errors == {"stage": [], "watch": []}, errors
    finally:
        await speaker_browser.close()
        await audience.close()
