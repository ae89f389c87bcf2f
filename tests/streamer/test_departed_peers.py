"""Listeners who leave give their memory back soon, not tens of departures later.

A closed aiortc peer connection is freed only by a full cycle collection (see
streamer/departed_peers.py). These tests switch the interpreter's own collector off, as
it is in effect for peers that reached the oldest generation, and check that the SFU's
collections free every departed subscriber's peer connection by themselves.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from streamer import Sfu
from tests.streamer.conftest import Peers
from tests.streamer.peers import eventually
from tests.support.tones import PatternVideoTrack, ToneTrack


@pytest.fixture
def no_automatic_collection() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_departed_subscribers_are_freed_by_the_sfus_collection(
    sfu: Sfu, peers: Peers, no_automatic_collection: None
) -> None:
    # Seconds, not the production delay: the test waits for it.
    sfu.departed.collect_after_s = 3.0
    await peers.publisher("speaker", [ToneTrack(1000), PatternVideoTrack()])
    sfu.declare_output("floor", "audio")
    sfu.declare_output("program-video", "video")
    sfu.point("floor", "speaker/audio")
    sfu.point("program-video", "speaker/video")

    gone: list[weakref.ref[object]] = []
    for round_ in range(3):
        names = [f"listener-{round_}-{n}" for n in range(2)]
        listeners = [
            await peers.subscriber(name, {"video": "program-video", "voice": "floor"}, False)
            for name in names
        ]
        await eventually(
            lambda group=listeners: all(p.rtp["voice"].count() > 5 for p in group), what="media"
        )
        for name, listener in zip(names, listeners, strict=True):
            subscriber = sfu._subscribers[name]
            gone.append(weakref.ref(subscriber.pc))
            # A subscriber's video section only sends: its receiver holds no bandwidth
            # estimator (a thousand objects per listener otherwise).
            receiver = subscriber.slots["video"].transceiver.receiver
            assert receiver._RTCRtpReceiver__remote_bitrate_estimator is None
            del subscriber, receiver
            await sfu.close_subscriber(name)
            await listener.close()

    await eventually(
        lambda: all(ref() is None for ref in gone),
        within=30.0,
        what="the departed subscribers' peer connections to be freed",
    )
    # Departures close together share a collection.
    assert 1 <= sfu.departed.collections < len(gone)
    assert sfu.departed.freed_objects > 0


async def test_a_closed_sfu_schedules_no_collection(sfu: Sfu, peers: Peers) -> None:
    sfu.declare_output("floor", "audio")
    await peers.publisher("speaker", [ToneTrack(1000)])
    sfu.point("floor", "speaker/audio")
    listener = await peers.subscriber("listener", {"voice": "floor"}, False)
    await eventually(lambda: listener.rtp["voice"].count() > 5, what="media")
    await sfu.close()
    # The departures of the close itself were scheduled and cancelled with it.
    assert sfu.departed._pending is None
    sfu.departed.left()
    assert sfu.departed._pending is None
