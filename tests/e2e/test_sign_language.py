"""A sign-language interpreter in Chromium: his booth page publishes his camera, the
attendee shows him over the program video when he chooses to, the studio sees him."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import expect

from signaling.tokens import Role
from tests.e2e.conftest import LiveNode, Venue
from tests.e2e.test_live_event import MEDIA_TIMEOUT_MS, RUSSIAN_SPEAKER, go_live, join_stage
from tests.e2e.watching import sign_language
from tests.support.server import free_port, program_with

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

SIGN_BOOTH = {"id": "lsfb", "name": "Langue des signes", "kind": "sign", "works_into": ["lsfb"]}


@pytest.fixture
async def sign_node(tmp_path: Path) -> AsyncIterator[LiveNode]:
    program = program_with(tmp_path, booths=[SIGN_BOOTH])
    node = LiveNode(tmp_path / "node", free_port(), event_file=program)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def test_the_attendee_shows_the_sign_interpreter_over_the_program(
    sign_node: LiveNode, venue: Venue, tone_wavs: dict
) -> None:
    node = sign_node
    speakers = await venue.browser(fake_audio_wav=tone_wavs["speaker"])
    signer_browser = await venue.browser(fake_media=True)
    audience = await venue.browser(fake_media=True)
    ru_id, ru_name = RUSSIAN_SPEAKER
    stage = await venue.open(
        speakers, "stage", node.link("stage", Role.SPEAKER, ru_id, speaker=ru_id)
    )
    await join_stage(stage)
    signer = await venue.open(
        signer_browser, "signer", node.link("booth", Role.INTERPRETER, "sofia", booth="lsfb")
    )
    camera = signer.get_by_role("button", name="Camera")
    await expect(camera).to_be_enabled(timeout=MEDIA_TIMEOUT_MS)
    await camera.click()
    await expect(camera).to_have_attribute("aria-pressed", "true")
    studio = await venue.open(audience, "studio", node.link("studio", Role.MODERATOR, "mod"))
    await go_live(studio, ru_name)

    watch = await venue.open(audience, "watch", node.link("watch", Role.ATTENDEE, "att-sign"))
    await watch.get_by_role("button", name="Play").click()
    sign_video = watch.get_by_label("Sign-language interpreter")
    await expect(sign_video).to_be_hidden()
    await sign_language(watch, "Langue des signes")
    await expect(sign_video).to_be_visible()
    await watch.wait_for_function(
        "() => document.getElementById('sign-video').videoWidth > 0", timeout=MEDIA_TIMEOUT_MS
    )
    await studio.wait_for_function(
        "() => document.querySelector('video[data-sign=\"lsfb\"]')?.videoWidth > 0",
        timeout=MEDIA_TIMEOUT_MS,
    )
    await sign_language(watch, "None")
    await expect(sign_video).to_be_hidden()
    for name in ("watch", "studio", "signer"):
        assert venue.errors[name] == [], (name, venue.errors[name])
