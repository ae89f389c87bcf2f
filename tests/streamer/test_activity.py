"""What the SFU tells about its streams without decoding them: whether packets arrive,
whether they carry sound (their audio-level extension), and how well they arrive."""

from __future__ import annotations

import math

from streamer import Sfu
from tests.streamer.conftest import Peers
from tests.streamer.peers import eventually
from tests.support.tones import PatternVideoTrack, ToneTrack


def sound_age(sfu: Sfu, source_id: str) -> float:
    activity = sfu.activity().get(source_id)
    if activity is None or activity.sound_age is None:
        return math.inf
    return activity.sound_age


async def test_activity_follows_packets_and_sound(sfu: Sfu, peers: Peers) -> None:
    tone = ToneTrack(440)
    publisher = await peers.publisher("interpreter", [tone, PatternVideoTrack()])
    await eventually(
        lambda: sound_age(sfu, "interpreter/audio") < 0.3, what="sound from the interpreter"
    )
    video = sfu.activity()["interpreter/video"]
    assert video.kind == "video" and video.sound_age is None and video.packet_age < 1

    tone.amplitude = 0.0  # he stops talking: packets keep coming, sound does not
    await eventually(lambda: sound_age(sfu, "interpreter/audio") > 1.0, what="silence noticed")
    assert sfu.activity()["interpreter/audio"].packet_age < 0.5
    tone.amplitude = 0.5
    await eventually(lambda: sound_age(sfu, "interpreter/audio") < 0.3, what="sound again")

    # His browser freezes: nothing arrives any more, though the connection is not over yet.
    for sender in publisher.pc.getSenders():
        await sender.stop()
    await eventually(
        lambda: sfu.activity()["interpreter/audio"].packet_age > 1.0, what="packets stopped"
    )


async def test_health_reports_loss_and_jitter_of_sources_and_outputs(
    sfu: Sfu, peers: Peers
) -> None:
    await peers.publisher("speaker", [ToneTrack(1000)])
    sfu.declare_output("floor", "audio")
    sfu.point("floor", "speaker/audio")
    await peers.subscriber("listener", {"voice": "floor"})
    await eventually(
        lambda: "floor" in sfu.health()["outputs"] and "speaker/audio" in sfu.health()["sources"],
        within=15,
        what="a receiver report from the listener",
    )
    health = sfu.health()
    source = health["sources"]["speaker/audio"]
    assert source.loss == 0.0 and 0 <= source.jitter_ms < 50
    floor = health["outputs"]["floor"]
    assert floor.loss == 0.0 and math.isfinite(floor.jitter_ms)
    assert health["outputs"]["floor:worst"].loss == 0.0
