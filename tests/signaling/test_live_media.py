"""The live service with real aiortc peers: what attendees and interpreters actually hear.

A Russian-speaking speaker sends 1000 Hz, the interpreter of the RU<>FR booth 440 Hz.
"""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest

from signaling.store import SqliteStore
from signaling.tokens import Role
from signaling.websocket import LIVE_KEY, SFU_KEY, install_live
from tests.signaling.conftest import token
from tests.signaling.media_peers import (
    FRENCH_SPEAKER,
    INTERPRETER_HZ,
    RUSSIAN_SPEAKER,
    SPEAKER_HZ,
    Subscription,
    on_air_setup,
    publish,
)
from tests.support.tones import PatternVideoTrack, ToneTrack

pytestmark = pytest.mark.timeout(90)

#: After the cough is pressed, what was already in flight may still play for this long.
COUGH_SETTLE_S = 0.5
COUGH_LISTEN_S = 1.5
#: A tone of these tests is about 11 600 RMS; silence (or nothing at all) far below.
SILENCE_RMS = 300


async def test_attendee_hears_the_channel_he_chooses(connect, peers, live_server):
    moderator, _, _ = await on_air_setup(connect, peers)
    state = await moderator.state_where(
        lambda s: s["on_air"] is not None and s["channels"]["fr"]["kind"] == "interpreter"
    )
    assert state["on_air"] == {
        "speaker": RUSSIAN_SPEAKER,
        "language": "ru",
        "connected": True,
        "media_live": True,
    }
    assert state["session"] == "plenary"
    assert state["channels"]["ru"] == {
        "kind": "floor",
        "reason": "speaker_language",
        "booth": None,
        "interpreter": None,
    }
    assert state["channels"]["fr"]["interpreter"] == "anna"
    assert state["booths"][0]["direction"] == {"source": "ru", "into": "fr"}

    attendee = await connect(Role.ATTENDEE, subject="reg-1")
    assert attendee.state["you"]["channel"] == "original"
    media = await Subscription.open(attendee)
    peers.append(media)
    await media.hears("channel", SPEAKER_HZ)

    await attendee.send("select_channel", language="fr")
    await media.hears("channel", INTERPRETER_HZ)
    state = await moderator.state_where(lambda s: s["listeners"]["fr"] == 1)
    assert state["listeners"] == {"original": 0, "ru": 0, "fr": 1}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live_server.url}/metrics") as response:
            assert 'dragoman_live_listeners{channel="fr"} 1.0' in await response.text()

    await attendee.send("select_channel", language="ru")
    await media.hears("channel", SPEAKER_HZ)

    # the original under the interpretation arrives on its own slot once asked for
    await attendee.send("select_channel", language="fr")
    await attendee.send("set_original_under", on=True)
    await media.hears("original", SPEAKER_HZ)
    await media.hears("channel", INTERPRETER_HZ)

    def slots() -> dict:
        (subscriber,) = live_server.app[SFU_KEY].stats()["subscribers"].values()
        return {
            name: (slot["output"], slot["paused"]) for name, slot in subscriber["slots"].items()
        }

    await attendee.send("set_audio_only", on=True)
    await attendee.state_where(lambda s: s["you"]["audio_only"])
    assert slots() == {
        "channel": ("channel:fr", False),
        "original": ("floor", False),
        "video": ("program-video", True),
    }
    # choosing the original itself: the floor comes on the channel slot, not twice
    await attendee.send("select_channel", language="original")
    await attendee.state_where(lambda s: s["you"]["channel"] == "original")
    assert slots()["channel"] == ("floor", False)
    assert slots()["original"] == ("floor", True)


async def test_channels_swap_when_a_speaker_of_the_other_language_goes_on_air(connect, peers):
    moderator, _, interpreter = await on_air_setup(connect, peers)
    french = await connect(Role.SPEAKER, subject=FRENCH_SPEAKER, speaker=FRENCH_SPEAKER)
    peers.append(await publish(french, ToneTrack(700), PatternVideoTrack()))
    attendee = await connect(Role.ATTENDEE, subject="reg-2")
    await attendee.send("select_channel", language="ru")
    media = await Subscription.open(attendee)
    peers.append(media)
    await media.hears("channel", SPEAKER_HZ)

    await moderator.state_where(lambda s: FRENCH_SPEAKER in s["publishers"]["speakers"])
    await moderator.send("put_on_air", speaker_id=FRENCH_SPEAKER)
    await media.hears("channel", INTERPRETER_HZ)  # ru is now interpreted from French
    state = await interpreter.state_where(lambda s: (s["on_air"] or {}).get("language") == "fr")
    assert state["booths"][0]["direction"] == {"source": "fr", "into": "ru"}
    assert state["channels"]["fr"]["kind"] == "floor"


async def test_cough_silences_the_channel_and_the_interpreter_hears_the_floor(connect, peers):
    moderator, _, interpreter = await on_air_setup(connect, peers)
    listening = await Subscription.open(interpreter)
    peers.append(listening)
    await listening.hears("listen", SPEAKER_HZ)  # an interpreter listens to the floor
    attendee = await connect(Role.ATTENDEE, subject="reg-cough")
    await attendee.send("select_channel", language="fr")
    media = await Subscription.open(attendee)
    peers.append(media)
    await media.hears("channel", INTERPRETER_HZ)

    await interpreter.send("cough", on=True)
    state = await moderator.state_where(lambda s: s["channels"]["fr"]["reason"] == "cough")
    assert state["channels"]["fr"]["kind"] == "silence"
    assert state["booths"][0]["coughing"] is True
    # What the attendee hears: nothing, neither the interpreter nor the floor.
    await asyncio.sleep(COUGH_SETTLE_S)
    channel = media.audio["channel"]
    channel.clear()
    await asyncio.sleep(COUGH_LISTEN_S)
    heard = channel.samples().astype(float)
    loudness = float(np.sqrt(np.mean(heard**2))) if len(heard) else 0.0
    assert loudness < SILENCE_RMS, f"the coughing channel carried sound (RMS {loudness:.0f})"
    await listening.hears("listen", SPEAKER_HZ)  # the interpreter still hears the floor

    await interpreter.send("cough", on=False)
    await moderator.state_where(lambda s: s["channels"]["fr"]["kind"] == "interpreter")
    await media.hears("channel", INTERPRETER_HZ)


async def test_handover_moves_the_channel_to_the_partner(connect, peers):
    _, _, anna = await on_air_setup(connect, peers)
    boris = await connect(Role.INTERPRETER, subject="boris", booth="ru-fr")
    peers.append(await publish(boris, ToneTrack(600)))
    attendee = await connect(Role.ATTENDEE, subject="reg-3")
    await attendee.send("select_channel", language="fr")
    media = await Subscription.open(attendee)
    peers.append(media)
    await media.hears("channel", INTERPRETER_HZ)

    await boris.send("request_handover")
    state = await anna.state_where(lambda s: s["booths"][0]["handover"] is not None)
    assert state["booths"][0]["handover"]["by"] == "boris"
    assert state["you"]["on_air"] is True
    await anna.send("accept_handover")
    await media.hears("channel", 600)
    state = await boris.state_where(lambda s: s["booths"][0]["on_air"] == "boris")
    assert state["you"]["on_air"] is True
    assert state["channels"]["fr"]["interpreter"] == "boris"


@pytest.fixture
async def shared_store(tmp_path):
    """One SQLite store that outlives the servers using it, as a data directory does."""
    store = SqliteStore(tmp_path / "shared.sqlite3")
    await store.open()
    yield store
    await store.close()


async def test_restart_restores_who_was_on_air(start_server, open_ws, shared_store, peers):
    first = await start_server(extensions=[install_live], store=shared_store)

    async def connect_to(server, role, subject=None, **scope):
        client = await open_ws(server)
        await client.send("auth", v=1, token=token(server, role, subject, **scope))
        client.welcome = await client.next("welcome")
        await client.next("state")
        return client

    moderator = await connect_to(first, Role.MODERATOR)
    speaker = await connect_to(first, Role.SPEAKER, RUSSIAN_SPEAKER, speaker=RUSSIAN_SPEAKER)
    speaker_pc = await publish(speaker, ToneTrack(SPEAKER_HZ), PatternVideoTrack())
    interpreter = await connect_to(first, Role.INTERPRETER, "anna", booth="ru-fr")
    await interpreter.send("mic", on=True)
    await interpreter.send("set_direction", into="fr")
    await moderator.state_where(lambda s: RUSSIAN_SPEAKER in s["publishers"]["speakers"])
    await moderator.send("start_session", session_id="session-1")
    await moderator.send("put_on_air", speaker_id=RUSSIAN_SPEAKER)
    await moderator.state_where(lambda s: s["on_air"] is not None)
    # He answers a question in French.
    await moderator.send("set_floor_language", language="fr")
    await moderator.state_where(lambda s: s["floor_language"] == "fr")
    await speaker_pc.close()
    await first.stop()

    second = await start_server(extensions=[install_live], store=shared_store)
    attendee = await connect_to(second, Role.ATTENDEE, "reg-4")
    state = attendee.state
    assert state["session"] == "session-1"
    # Restored on air, not back yet: nothing arrives from him, and pages say so.
    assert state["on_air"] == {
        "speaker": RUSSIAN_SPEAKER,
        "language": "fr",
        "connected": False,
        "media_live": False,
    }
    assert state["floor_language"] == "fr"
    booth = state["booths"][0]
    assert (booth["on_air"], booth["on_air_connected"]) == ("anna", False)
    assert booth["direction_override"] == "fr"

    # the speaker comes back and is on air again without the moderator doing anything
    speaker = await connect_to(second, Role.SPEAKER, RUSSIAN_SPEAKER, speaker=RUSSIAN_SPEAKER)
    peers.append(await publish(speaker, ToneTrack(SPEAKER_HZ), PatternVideoTrack()))
    media = await Subscription.open(attendee)
    peers.append(media)
    await media.hears("channel", SPEAKER_HZ)
    state = await speaker.state_where(lambda s: s["you"]["publishing"])
    assert state["you"]["on_air"] is True


async def test_an_attendee_who_reconnects_gets_his_channel_back(connect):
    first = await connect(Role.ATTENDEE, subject="reg-5")
    await first.send("select_channel", language="fr")
    await first.send("set_audio_only", on=True)
    await first.state_where(lambda s: s["you"]["channel"] == "fr" and s["you"]["audio_only"])
    await first.close()
    again = await connect(Role.ATTENDEE, subject="reg-5")
    assert again.state["you"] == {
        "channel": "fr",
        "original_under": False,
        "audio_only": True,
        "sign": None,
    }


async def test_a_publisher_that_left_is_released_after_the_grace_period(
    connect, peers, live_server
):
    live_server.app[LIVE_KEY].publisher_grace_s = 0.2
    moderator = await connect(Role.MODERATOR)
    speaker = await connect(Role.SPEAKER, subject=FRENCH_SPEAKER, speaker=FRENCH_SPEAKER)
    peers.append(await publish(speaker, ToneTrack(SPEAKER_HZ)))
    await moderator.state_where(lambda s: FRENCH_SPEAKER in s["publishers"]["speakers"])
    await speaker.close()
    await moderator.state_where(lambda s: FRENCH_SPEAKER not in s["publishers"]["speakers"])
    assert "speaker:andre-samray" not in live_server.app[SFU_KEY].stats()["publishers"]


async def test_an_interpreter_with_a_long_or_odd_name_publishes(connect, peers):
    subject = "Анна/" + "x" * 190
    interpreter = await connect(Role.INTERPRETER, subject=subject, booth="ru-fr")
    peers.append(interpreter)
    peers.append(await publish(interpreter, ToneTrack(INTERPRETER_HZ)))
    state = await interpreter.state_where(lambda s: s["publishers"]["interpreters"]["ru-fr"])
    assert state["publishers"]["interpreters"]["ru-fr"] == [subject]


async def test_an_interpreter_on_air_whose_audio_is_not_arriving_falls_back(connect, peers):
    moderator, _, anna = await on_air_setup(connect, peers)
    await moderator.state_where(lambda s: s["channels"]["fr"]["kind"] == "interpreter")
    await anna.send("mic", on=False)
    boris = await connect(Role.INTERPRETER, subject="boris", booth="ru-fr")
    peers.append(boris)
    await boris.send("mic", on=True)  # on air, but his page publishes nothing
    state = await moderator.state_where(lambda s: s["booths"][0]["on_air"] == "boris")
    assert state["channels"]["fr"] == {
        "kind": "floor",  # the seed's fallback
        "reason": "fallback",
        "booth": None,
        "interpreter": None,
    }


async def test_a_speaker_who_publishes_again_stays_on_air_and_is_heard_anew(
    connect, peers, live_server
):
    """What the stage page does after a network outage, or after its WebSocket came back
    within the grace period: it publishes again, and the floor follows the new tracks.
    (Another tone for each publication, so the attendee hears which one the floor carries.)"""
    live = live_server.app[LIVE_KEY]
    live.publisher_grace_s = 1.0
    _, speaker, _ = await on_air_setup(connect, peers)
    on_air = {
        "speaker": RUSSIAN_SPEAKER,
        "language": "ru",
        "connected": True,
        "media_live": True,
    }

    async def current_state() -> dict:
        # A client that joins gets the state as it is now.
        observer = await connect(Role.MODERATOR)
        peers.append(observer)
        return observer.state

    attendee = await connect(Role.ATTENDEE, subject="reg-outage")
    peers.append(attendee)
    media = await Subscription.open(attendee)
    peers.append(media)
    await media.hears("channel", SPEAKER_HZ)

    # The network went away and came back; the WebSocket stayed up.
    second_hz, third_hz = 1300.0, 700.0
    first_tracks = peers[0]
    peers.append(await publish(speaker, ToneTrack(second_hz), PatternVideoTrack()))
    await first_tracks.close()
    await media.hears("channel", second_hz)
    assert (await current_state())["on_air"] == on_air

    # The WebSocket dropped too, and the page is back before the grace period ends.
    await speaker.close()
    again = await connect(Role.SPEAKER, subject=RUSSIAN_SPEAKER, speaker=RUSSIAN_SPEAKER)
    peers.append(again)
    assert again.state["you"]["on_air"] is True
    peers.append(await publish(again, ToneTrack(third_hz), PatternVideoTrack()))
    await media.hears("channel", third_hz)
    # Long after the grace period, the new publication is still on air and heard.
    await asyncio.sleep(live.publisher_grace_s * 2)
    assert "speaker:" + RUSSIAN_SPEAKER in live_server.app[SFU_KEY].stats()["publishers"]
    await media.hears("channel", third_hz, within=3.0)
    assert (await current_state())["on_air"] == on_air
