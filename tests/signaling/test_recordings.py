"""Recordings of a session: every channel as attendees got it, listed and downloadable.

A Russian speaker (1000 Hz) is on air with the RU<>FR interpreter (440 Hz) on air; the
interpreter coughs; the moderator switches to a French speaker (700 Hz). The files of
the session decode with PyAV: the French channel carries 440 Hz, the silence of the
cough where it happened, then the French floor; the original carries 1000 Hz then
700 Hz; the Russian channel the floor then the interpretation into Russian; every
file lasts as long as the session.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import aiohttp
import pytest

from signaling.recordings import list_recordings
from signaling.session_media import install_session_media
from signaling.tokens import Role
from signaling.websocket import install_live
from tests.signaling.conftest import Connect, token
from tests.signaling.media_peers import (
    FRENCH_SPEAKER,
    INTERPRETER_HZ,
    SPEAKER_HZ,
    Subscription,
    on_air_setup,
    publish,
)
from tests.support.recordings import decode_audio, small_filesystem, video_frames
from tests.support.server import RunningServer, StartServer
from tests.support.tones import PatternVideoTrack, ToneTrack

FRENCH_HZ = 700.0


@pytest.fixture
async def live_server(start_server: StartServer) -> RunningServer:
    return await start_server(extensions=[install_live, install_session_media])


def assert_tone(heard: float, expected: float, where: str) -> None:
    assert heard == pytest.approx(expected, abs=25), f"{where}: heard {heard:.0f} Hz"


async def test_every_channel_of_a_session_is_recorded_as_attendees_got_it(
    connect: Connect, peers: list[Any], live_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    started = time.monotonic()
    moderator, _speaker, interpreter = await on_air_setup(connect, peers)
    french = await connect(Role.SPEAKER, subject=FRENCH_SPEAKER, speaker=FRENCH_SPEAKER)
    peers.append(await publish(french, ToneTrack(FRENCH_HZ), PatternVideoTrack()))
    peers.append(french)
    await moderator.state_where(lambda s: FRENCH_SPEAKER in s["publishers"]["speakers"])
    await asyncio.sleep(3.0 - (time.monotonic() - started))
    cough_at = time.monotonic() - started
    await interpreter.send("cough", on=True)
    await asyncio.sleep(1.5)
    await interpreter.send("cough", on=False)
    cough_end = time.monotonic() - started
    await asyncio.sleep(2.5)
    switch_at = time.monotonic() - started
    await moderator.send("put_on_air", speaker_id=FRENCH_SPEAKER)
    await asyncio.sleep(3.0)
    await moderator.send("end_session")
    await moderator.state_where(lambda s: s["session"] is None)
    elapsed = time.monotonic() - started

    data_dir = live_server.settings.data_dir
    found = {info.channel: info for info in list_recordings(data_dir, "plenary")}
    assert set(found) == {"program", "original", "ru", "fr"}
    assert {info.part for info in found.values()} == {1}
    assert found["fr"].path == "recordings/plenary/fr.001.webm"
    for info in found.values():
        # Counted from the session's start, which came a moment after `started`.
        assert info.duration_s == pytest.approx(elapsed, abs=0.8), info
        assert info.started_at is not None and info.bytes > 1000

    fr = decode_audio(data_dir / found["fr"].path)
    assert_tone(fr.tone(1.0, cough_at - 0.3), INTERPRETER_HZ, "fr before the cough")
    assert fr.level(cough_at + 0.3, cough_end - 0.3) < 0.01, "the cough is not silent in fr"
    assert_tone(fr.tone(cough_end + 0.4, switch_at - 0.3), INTERPRETER_HZ, "fr after the cough")
    assert_tone(fr.tone(switch_at + 0.5, elapsed - 0.8), FRENCH_HZ, "fr: the French floor")

    original = decode_audio(data_dir / found["original"].path)
    assert_tone(original.tone(1.0, switch_at - 0.3), SPEAKER_HZ, "original, Russian floor")
    # The floor is never silenced by an interpreter's cough.
    assert original.level(cough_at + 0.3, cough_end - 0.3) > 0.05
    assert_tone(original.tone(switch_at + 0.5, elapsed - 0.8), FRENCH_HZ, "original, French")

    ru = decode_audio(data_dir / found["ru"].path)
    assert_tone(ru.tone(1.0, cough_at - 0.3), SPEAKER_HZ, "ru: the Russian floor")
    assert_tone(ru.tone(switch_at + 0.8, elapsed - 0.8), INTERPRETER_HZ, "ru: interpreted")

    program = data_dir / found["program"].path
    assert len(video_frames(program)) > 30
    assert_tone(decode_audio(program).tone(1.0, switch_at - 0.3), SPEAKER_HZ, "program sound")

    # The studio lists and downloads them with the moderator's link, and nobody else.
    moderator_token = token(live_server, Role.MODERATOR)
    async with http.get(
        f"{live_server.url}/api/recordings", params={"token": moderator_token}
    ) as response:
        assert response.status == 200
        listed = (await response.json())["recordings"]
    assert {item["channel"] for item in listed} == {"program", "original", "ru", "fr"}
    async with http.get(
        f"{live_server.url}/recordings/plenary/fr.001.webm", params={"token": moderator_token}
    ) as response:
        assert response.status == 200
        assert "attachment" in response.headers["Content-Disposition"]
        assert await response.read() == (data_dir / found["fr"].path).read_bytes()
    attendee = token(live_server, Role.ATTENDEE, registration="r1")
    for url in ("/api/recordings", "/recordings/plenary/fr.001.webm"):
        async with http.get(f"{live_server.url}{url}", params={"token": attendee}) as response:
            assert response.status == 403, url
        async with http.get(f"{live_server.url}{url}") as response:
            assert response.status in (401, 403), url
    for bad in ("../secret.key", "fr.001.webm.json", "x.webm"):
        async with http.get(
            f"{live_server.url}/recordings/plenary/{bad}", params={"token": moderator_token}
        ) as response:
            assert response.status == 404, bad
    async with http.get(
        f"{live_server.url}/api/recordings",
        params={"token": moderator_token, "session": "no-such-session"},
    ) as response:
        assert response.status == 404
        assert (
            "no recordings of session 'no-such-session'"
            in (await response.json())["error"]["message"]
        )


async def test_a_full_disk_raises_an_alarm_in_the_studio_and_the_event_goes_on(
    start_server: StartServer, connect: Connect, peers: list[Any]
) -> None:
    server = await start_server(extensions=[install_live, install_session_media])
    with small_filesystem(server.settings.data_dir / "recordings"):
        on_server = functools.partial(connect, server=server)
        moderator, _speaker, _interpreter = await on_air_setup(on_server, peers)
        attendee = await on_server(Role.ATTENDEE, subject="reg-1")
        peers.append(attendee)
        listening = await Subscription.open(attendee)
        peers.append(listening)
        state = await moderator.state_where(
            lambda s: any(a["kind"] == "recording_stopped" for a in s["alarms"]), within=30
        )
        stopped = {a["channel"] for a in state["alarms"] if a["kind"] == "recording_stopped"}
        assert stopped <= {"program", "original", "ru", "fr"} and stopped
        # The audience still hears its channel (the attendee's default: Russian, the floor).
        await listening.hears("channel", SPEAKER_HZ)
        await moderator.send("end_session")
        await moderator.state_where(
            lambda s: not any(a["kind"] == "recording_stopped" for a in s["alarms"])
        )
