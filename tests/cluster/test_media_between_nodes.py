"""Media between nodes: an attendee on node B hears what the staff on node A do.

The speaker and the interpreter publish to node A, the moderator works there; the
attendee is on node B (one redis-server, one secret). B pulls the outputs its attendee
listens to from A over the node link, forwarded without decoding: he hears the channels
by tone, and follows a cough, an interpreter's handover and a speaker switch made on A,
on the same connection (nobody renegotiates).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from signaling.tokens import Role
from signaling.websocket import SFU_KEY
from tests.signaling.media_peers import (
    FRENCH_SPEAKER,
    RUSSIAN_SPEAKER,
    PatternVideoTrack,
    Subscription,
    ToneTrack,
    publish,
)
from tests.support.tones import ToneRecorder

SECRET = "cluster-secret-" + "x" * 24
RUSSIAN_HZ, FRENCH_HZ, ANNA_HZ, BORIS_HZ = 1000.0, 700.0, 440.0, 550.0
#: The product follows within a second (bench/cluster.py measures it); a loaded machine
#: gets more.
FOLLOW_S = 5.0


async def _quiet(recorder: ToneRecorder, within: float = FOLLOW_S) -> None:
    """Wait until the slot brings nothing audible for half a second."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        recorder.clear()
        await asyncio.sleep(0.5)
        samples = recorder.samples()
        if len(samples) == 0 or float(np.sqrt(np.mean(samples.astype(float) ** 2))) < 300:
            return
    raise AssertionError("the slot still carries sound")


async def _frames_arrive(media: Subscription, count: int = 3) -> None:
    """The program's pictures are decoded on B (keyframes reached it across the link)."""
    counter = media.video["video"]
    start = counter.frames
    deadline = time.monotonic() + FOLLOW_S * 2
    while counter.frames < start + count:
        assert time.monotonic() < deadline, "no picture on the other node"
        await asyncio.sleep(0.05)


async def test_an_attendee_on_another_node_hears_and_follows_the_event(start_node, connect, peers):
    a, b = [await start_node() for _ in range(2)]
    moderator = await connect(Role.MODERATOR, server=a)
    russian = await connect(
        Role.SPEAKER, subject=RUSSIAN_SPEAKER, speaker=RUSSIAN_SPEAKER, server=a
    )
    french = await connect(Role.SPEAKER, subject=FRENCH_SPEAKER, speaker=FRENCH_SPEAKER, server=a)
    anna = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr", server=a)
    boris = await connect(Role.INTERPRETER, subject="boris", booth="ru-fr", server=a)
    peers.extend([moderator, russian, french, anna, boris])
    peers.append(await publish(russian, ToneTrack(RUSSIAN_HZ), PatternVideoTrack()))
    peers.append(await publish(french, ToneTrack(FRENCH_HZ), PatternVideoTrack()))
    peers.append(await publish(anna, ToneTrack(ANNA_HZ)))
    peers.append(await publish(boris, ToneTrack(BORIS_HZ)))
    await moderator.state_where(
        lambda s: (
            len(s["publishers"]["speakers"]) == 2
            and len(s["publishers"]["interpreters"]["ru-fr"]) == 2
        )
    )
    await anna.send("mic", on=True)
    await moderator.send("start_session", session_id="plenary")
    await moderator.send("put_on_air", speaker_id=RUSSIAN_SPEAKER)

    attendee = await connect(Role.ATTENDEE, subject="reg-b", server=b)
    peers.append(attendee)
    await attendee.send("select_channel", language="fr")
    await attendee.state_where(lambda s: s["you"]["channel"] == "fr")
    media = await Subscription.open(attendee, video=True)
    peers.append(media)
    await media.hears("channel", ANNA_HZ)
    # The floor under the interpretation is off: its slot is paused, and B does not pull
    # what nobody on it listens to.
    assert "floor" not in b.app[SFU_KEY].pulls()
    await attendee.send("set_original_under", on=True)
    await media.hears("original", RUSSIAN_HZ)
    await _frames_arrive(media)

    # Only what B's attendee listens to crosses, from A, where the publishers are.
    pulls = b.app[SFU_KEY].pulls()
    assert {"channel:fr", "floor", "program-video"} <= set(pulls)
    assert "channel:ru" not in pulls
    assert a.app[SFU_KEY].pulls() == {}

    # A cough on A silences B's channel; its end brings anna back.
    await anna.send("cough", on=True)
    await _quiet(media.audio["channel"])
    await anna.send("cough", on=False)
    await media.hears("channel", ANNA_HZ, within=FOLLOW_S)

    # Handover on A: boris is heard on B.
    await boris.send("request_handover")
    await anna.state_where(lambda s: s["booths"][0]["handover"] is not None)
    await anna.send("accept_handover")
    await media.hears("channel", BORIS_HZ, within=FOLLOW_S)

    # The French speaker on air: the French channel carries him directly, on B too.
    await moderator.send("put_on_air", speaker_id=FRENCH_SPEAKER)
    await media.hears("channel", FRENCH_HZ, within=FOLLOW_S)
    await media.hears("original", FRENCH_HZ, within=FOLLOW_S)
    await _frames_arrive(media)

    # Audio only: the program's pictures stop crossing to B, and come back with them.
    await attendee.send("set_audio_only", on=True)
    await attendee.state_where(lambda s: s["you"]["audio_only"])
    assert "program-video" not in b.app[SFU_KEY].pulls()
    await media.hears("channel", FRENCH_HZ)
    await attendee.send("set_audio_only", on=False)
    await attendee.state_where(lambda s: not s["you"]["audio_only"])
    assert "program-video" in b.app[SFU_KEY].pulls()
    await _frames_arrive(media)
