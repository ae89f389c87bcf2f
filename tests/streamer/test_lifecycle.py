"""Closing subscribers, publishers and the SFU frees what they held."""

from __future__ import annotations

import asyncio
import threading

import aioice.ice
import pytest

from streamer import Sfu, SfuConfig
from tests.streamer.conftest import Peers
from tests.streamer.peers import LOOPBACK, PublisherPeer, SubscriberPeer, eventually
from tests.support.tones import PatternVideoTrack, ToneTrack, dominant_frequency


def other_tasks() -> set[asyncio.Task]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def test_closing_a_subscriber_frees_its_tasks(sfu: Sfu, peers: Peers) -> None:
    await peers.publisher("speaker", [ToneTrack(1000), PatternVideoTrack()])
    sfu.declare_output("floor", "audio")
    sfu.declare_output("program-video", "video")
    sfu.point("floor", "speaker/audio")
    sfu.point("program-video", "speaker/video")
    await eventually(lambda: sfu.stats()["sources"]["speaker/video"]["packets"] > 0, what="media")
    baseline = other_tasks()

    viewer = await SubscriberPeer.connect(
        sfu, "viewer", {"video": "program-video", "voice": "floor"}
    )
    await eventually(lambda: viewer.video["video"].frames >= 3, what="frames")
    assert len(other_tasks() - baseline) > 0

    await sfu.close_subscriber("viewer")
    await viewer.close()
    await eventually(lambda: not (other_tasks() - baseline), what="the subscriber's tasks to end")
    stats = sfu.stats()
    assert "viewer" not in stats["subscribers"]
    assert stats["outputs"]["floor"]["slots"] == 0
    assert stats["outputs"]["program-video"]["slots"] == 0


async def test_closing_everything_frees_tasks_and_threads() -> None:
    tasks_before = other_tasks()
    threads_before = {t.name for t in threading.enumerate()}
    sfu = Sfu(SfuConfig(host_addresses=LOOPBACK))
    sfu.declare_output("floor", "audio")
    speaker = await PublisherPeer.connect(sfu, "speaker", [ToneTrack(1000)])
    sfu.point("floor", "speaker/audio")
    listener = await SubscriberPeer.connect(sfu, "listener", {"voice": "floor"})
    await eventually(lambda: listener.rtp["voice"].count() > 10, what="media")

    await sfu.close()
    await listener.close()
    await speaker.close()
    await eventually(lambda: not (other_tasks() - tasks_before), what="every task to end")
    # The decoder threads of aiortc's receivers, on both sides, are gone; the
    # event loop's default executor (the test peers' encoders) may stay.
    await eventually(
        lambda: (
            not [
                t.name
                for t in threading.enumerate()
                if t.name not in threads_before and "decoder" in t.name
            ]
        ),
        what="decoder threads to end",
    )
    stats = sfu.stats()
    assert (stats["publishers"], stats["sources"], stats["subscribers"]) == ({}, {}, {})
    # The output stays declared and pointed at its source (were it back, it would carry
    # it), fed by nothing and held by no slot.
    assert list(stats["outputs"]) == ["floor"]
    floor = stats["outputs"]["floor"]
    assert (floor["source"], floor["live"], floor["slots"]) == ("speaker/audio", False, 0)
    assert floor["packets"] > 10  # it did carry the media before
    # No subscriber slot is left on the node's sender-report timer.
    assert stats["sender_reports"]["senders"] == 0


async def test_vanished_publisher_keeps_subscribers_connected(sfu: Sfu, peers: Peers) -> None:
    speaker = await PublisherPeer.connect(sfu, "speaker", [ToneTrack(1000)])
    sfu.declare_output("floor", "audio")
    sfu.point("floor", "speaker/audio")
    listener = await peers.subscriber("listener", {"voice": "floor"})
    await eventually(lambda: listener.rtp["voice"].count() > 10, what="media")

    await speaker.close()  # the browser goes away without telling anyone
    await eventually(
        lambda: "speaker" not in sfu.stats()["publishers"], within=60, what="the SFU to notice"
    )
    assert sfu.stats()["outputs"]["floor"]["live"] is False
    assert listener.pc.connectionState == "connected"


async def test_publishing_again_replaces_the_publisher(sfu: Sfu, peers: Peers) -> None:
    removed: list[str] = []
    sfu.on_source_removed = lambda source, kind: removed.append(source)
    await peers.publisher("speaker", [ToneTrack(1000)])
    sfu.declare_output("floor", "audio")
    sfu.point("floor", "speaker/audio")
    listener = await peers.subscriber("listener", {"voice": "floor"})
    await peers.publisher("speaker", [ToneTrack(440)])  # reload without closing first
    assert removed == ["speaker/audio"]
    assert list(sfu.stats()["publishers"]) == ["speaker"]
    recorder = listener.audio["voice"]
    await asyncio.sleep(0.3)
    assert abs(dominant_frequency(await recorder.wait_for_samples(0.5)) - 440) < 15


async def test_public_address_is_advertised_on_host_candidates() -> None:
    sfu = Sfu(SfuConfig(ice_servers=[], public_address="203.0.113.7", host_addresses=LOOPBACK))
    try:
        sfu.declare_output("floor", "audio")
        offer = await sfu.subscribe("listener", {"voice": "floor"})
        hosts = [line for line in offer.splitlines() if " typ host" in line]
        assert hosts
        assert all(" 203.0.113.7 " in line for line in hosts)
    finally:
        await sfu.close()


async def test_publisher_that_crashes_is_removed_by_ice_consent(
    sfu: Sfu, peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aioice checks consent every ~5 s and gives up after 6 misses; shorten both
    # so a peer that vanishes without a word is noticed within the test.
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.2)
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 2)
    speaker = await PublisherPeer.connect(sfu, "speaker", [ToneTrack(1000)])
    sfu.declare_output("floor", "audio")
    sfu.point("floor", "speaker/audio")
    listener = await peers.subscriber("listener", {"voice": "floor"}, decode=False)
    await eventually(lambda: listener.rtp["voice"].count() > 10, what="media")

    # The browser process dies: its sockets close, no DTLS close_notify is sent.
    ice = speaker.pc.getTransceivers()[0].receiver.transport.transport
    await ice.stop()
    await eventually(
        lambda: "speaker" not in sfu.stats()["publishers"], within=30, what="the SFU to notice"
    )
    floor = sfu.stats()["outputs"]["floor"]
    assert (floor["source"], floor["live"], floor["slots"]) == ("speaker/audio", False, 1)
    assert listener.pc.connectionState == "connected"
    await speaker.close()
