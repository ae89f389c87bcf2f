"""The booth's request to slow down and the moderator's floor language, over the real server.

A slow-down request reaches the moderator, the booths and the speaker on air (nobody
else), ends by itself, is withdrawn by a second press, is throttled, and ends when the
speaker changes. The floor language the moderator sets re-routes the channels (heard with
real aiortc peers), resets with the next speaker and survives in the stored live state.
"""

from __future__ import annotations

import json

import pytest

from signaling.live_state import LiveState, LiveStateError
from signaling.tokens import Role
from signaling.websocket import LIVE_KEY
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


def requests(state: dict) -> list[dict]:
    return state["slow_down"]


async def test_a_request_to_slow_down_reaches_the_staff_and_the_speaker_on_air(connect, peers):
    moderator, speaker, anna = await on_air_setup(connect, peers)
    waiting = await connect(Role.SPEAKER, subject=FRENCH_SPEAKER, speaker=FRENCH_SPEAKER)
    attendee = await connect(Role.ATTENDEE, subject="reg-slow")
    boris = await connect(Role.INTERPRETER, subject="boris", booth="ru-fr")
    peers.extend([waiting, attendee, boris])
    await speaker.state_where(lambda s: s["you"]["on_air"])

    await anna.send("slow_down", on=True)
    state = await moderator.state_where(lambda s: requests(s) != [])
    [request] = requests(state)
    assert (request["booth"], request["by"]) == ("ru-fr", "anna")
    assert request["until"] == pytest.approx(request["since"] + 15)
    assert requests(await speaker.state_where(lambda s: requests(s) != [])) == [request]
    assert requests(await boris.state_where(lambda s: requests(s) != [])) == [request]
    # The audience and a speaker waiting his turn are not told.
    for bystander in (attendee, waiting):
        later = await bystander.state_where(lambda s: s["server_time"] >= state["server_time"])
        assert requests(later) == []

    # Pressing again while it shows changes nothing; the partner may withdraw it.
    await anna.send("slow_down", on=True)
    await anna.alive()
    assert requests(await moderator.state_where(lambda s: True)) == [request]
    await boris.send("slow_down", on=False)
    await moderator.state_where(lambda s: requests(s) == [])
    await speaker.state_where(lambda s: requests(s) == [])

    # Asking again at once is refused, with when it will be allowed.
    ref = await anna.send("slow_down", on=True)
    error = await anna.error(ref)
    assert error["code"] == "too_soon"
    assert "ask again in" in error["message"]
    await anna.alive()


async def test_a_request_to_slow_down_ends_by_itself(connect, peers, live_server):
    booth = live_server.app[LIVE_KEY].booths["ru-fr"]
    booth.slow_down_for, booth.slow_down_every = 0.4, 0.0
    moderator, speaker, anna = await on_air_setup(connect, peers)
    await speaker.state_where(lambda s: s["you"]["on_air"])
    await anna.send("slow_down", on=True)
    await speaker.state_where(lambda s: requests(s) != [])
    # Nobody sends anything: the server pushes the end of the request itself.
    await speaker.state_where(lambda s: requests(s) == [])
    await moderator.state_where(lambda s: requests(s) == [])
    await anna.send("slow_down", on=True)
    await moderator.state_where(lambda s: requests(s) != [])


async def test_the_floor_language_reroutes_the_channels(connect, peers):
    moderator, _, _ = await on_air_setup(connect, peers)
    await moderator.state_where(lambda s: s["channels"]["fr"]["kind"] == "interpreter")
    attendee = await connect(Role.ATTENDEE, subject="reg-floor")
    peers.append(attendee)
    await attendee.send("select_channel", language="fr")
    media = await Subscription.open(attendee)
    peers.append(media)
    await media.hears("channel", INTERPRETER_HZ)

    # The Russian speaker answers in French: the French channel carries him, the booth
    # turns around into Russian.
    await moderator.send("set_floor_language", language="fr")
    state = await moderator.state_where(lambda s: s["floor_language"] == "fr")
    assert state["on_air"] == {
        "speaker": RUSSIAN_SPEAKER,
        "language": "fr",
        "connected": True,
        "media_live": True,
    }
    assert state["channels"]["fr"]["reason"] == "speaker_language"
    assert state["channels"]["ru"]["interpreter"] == "anna"
    assert state["booths"][0]["direction"] == {"source": "fr", "into": "ru"}
    await media.hears("channel", SPEAKER_HZ)

    await moderator.send("set_floor_language", language=None)
    state = await moderator.state_where(lambda s: s["floor_language"] is None)
    assert state["on_air"]["language"] == "ru"
    await media.hears("channel", INTERPRETER_HZ)


async def test_another_speaker_on_the_floor_starts_afresh(connect, peers):
    moderator, _, anna = await on_air_setup(connect, peers)
    french = await connect(Role.SPEAKER, subject=FRENCH_SPEAKER, speaker=FRENCH_SPEAKER)
    peers.append(french)
    peers.append(await publish(french, ToneTrack(700), PatternVideoTrack()))
    await moderator.state_where(lambda s: FRENCH_SPEAKER in s["publishers"]["speakers"])
    await moderator.send("set_floor_language", language="fr")
    await anna.send("slow_down", on=True)
    await moderator.state_where(lambda s: s["floor_language"] == "fr" and requests(s) != [])

    # The same speaker put on air again is no change.
    await moderator.send("put_on_air", speaker_id=RUSSIAN_SPEAKER)
    await moderator.alive()
    assert moderator.state["floor_language"] == "fr"

    await moderator.send("put_on_air", speaker_id=FRENCH_SPEAKER)
    state = await moderator.state_where(lambda s: s["on_air"]["speaker"] == FRENCH_SPEAKER)
    assert state["floor_language"] is None
    assert requests(state) == []
    assert state["on_air"]["language"] == "fr"

    await moderator.send("set_floor_language", language="ru")
    await moderator.state_where(lambda s: s["floor_language"] == "ru")
    await moderator.send("take_off_air")
    state = await moderator.state_where(lambda s: s["on_air"] is None)
    assert state["floor_language"] is None


async def test_nobody_on_the_floor_has_no_language_and_no_pace(connect):
    moderator = await connect(Role.MODERATOR)
    anna = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr")
    ref = await moderator.send("set_floor_language", language="fr")
    error = await moderator.error(ref)
    assert error["code"] == "no_speaker"
    ref = await anna.send("slow_down", on=True)
    error = await anna.error(ref)
    assert error["code"] == "no_speaker"
    assert "nobody is on the floor" in error["message"]
    # Saying "as in the program" and withdrawing are always fine.
    await moderator.send("set_floor_language", language=None)
    await anna.send("slow_down", on=False)
    await moderator.alive()
    await anna.alive()
    assert moderator.state["floor_language"] is None


def test_a_stored_state_without_a_floor_language_reads_as_the_programs() -> None:
    older = {"session_id": "plenary", "on_air_speaker": RUSSIAN_SPEAKER}
    assert LiveState.from_dict(older).floor_language is None
    state = LiveState(on_air_speaker=RUSSIAN_SPEAKER, floor_language="fr")
    assert LiveState.from_json(state.to_json()).floor_language == "fr"
    with pytest.raises(LiveStateError, match="floor_language"):
        LiveState.from_json(json.dumps({"floor_language": ["fr"]}))
