"""Audio through the SFU between real aiortc peers: the right tone, continuous RTP.

Two publishers send 1000 Hz and 440 Hz; subscribers decode what they get and
an FFT says which tone it was. Re-pointing outputs and slots never
renegotiates, and the subscriber sees one continuous RTP stream.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from streamer import Sfu
from tests.streamer.conftest import Peers
from tests.streamer.peers import ReceivedRtp, eventually
from tests.support.tones import ToneTrack
from tests.support.tones import dominant_frequency as dominant

HIGH = 1000.0
LOW = 440.0
OPUS_CLOCK = 48000


def assert_tone(heard: float, expected: float) -> None:
    assert heard == pytest.approx(expected, abs=15), f"heard {heard:.0f} Hz, expected {expected}"


def assert_continuous(rtp: ReceivedRtp) -> None:
    """One stream: one SSRC, one payload type, seq +1 each time, timestamps never go back."""
    packets = rtp.packets
    assert len(packets) > 20
    assert len({p[4] for p in packets}) == 1, "SSRC changed"
    assert len({p[3] for p in packets}) == 1, "payload type changed"
    steps = [(after[1] - before[1]) & 0xFFFF for before, after in itertools.pairwise(packets)]
    # +1 each time; a rare +2/+3 is a datagram lost on a busy machine, not a switch.
    assert all(1 <= step <= 3 for step in steps), f"sequence jumped: {sorted(set(steps))}"
    assert steps.count(1) >= 0.95 * len(steps)
    for before, after in itertools.pairwise(packets):
        step = (after[2] - before[2]) & 0xFFFFFFFF
        assert 0 < step < 0x80000000, f"timestamp went backwards {before[2]} -> {after[2]}"
        # The timestamp gap follows the wall-clock gap (generous: scheduling jitter).
        wall = (after[0] - before[0]) * OPUS_CLOCK
        assert step <= wall + 0.2 * OPUS_CLOCK, f"timestamp leapt {step} for {wall:.0f}"


async def two_tones(sfu: Sfu, peers: Peers) -> None:
    await peers.publisher("high", [ToneTrack(HIGH)])
    await peers.publisher("low", [ToneTrack(LOW)])


async def test_output_repoint_switches_tone_with_continuous_rtp(sfu: Sfu, peers: Peers) -> None:
    await two_tones(sfu, peers)
    sfu.declare_output("floor", "audio")
    sfu.point("floor", "high/audio")
    listener = await peers.subscriber("listener", {"voice": "floor"})
    recorder = listener.audio["voice"]

    assert_tone(dominant(await recorder.wait_for_samples(1.0)), HIGH)
    sfu.point("floor", "low/audio")  # speaker change: no renegotiation
    await asyncio.sleep(0.3)
    assert_tone(dominant(await recorder.wait_for_samples(1.0)), LOW)
    sfu.point("floor", "high/audio")
    await asyncio.sleep(0.3)
    assert_tone(dominant(await recorder.wait_for_samples(1.0)), HIGH)

    assert listener.pc.signalingState == "stable"
    assert_continuous(listener.rtp["voice"])
    stats = sfu.stats()
    assert stats["outputs"]["floor"]["switches"] >= 3
    assert stats["subscribers"]["listener"]["slots"]["voice"]["packets"] > 100


async def test_slot_repoint_switches_language(sfu: Sfu, peers: Peers) -> None:
    await two_tones(sfu, peers)
    sfu.declare_output("channel-fr", "audio")
    sfu.declare_output("channel-ru", "audio")
    sfu.point("channel-fr", "high/audio")
    sfu.point("channel-ru", "low/audio")
    listener = await peers.subscriber("listener", {"voice": "channel-fr"})
    other = await peers.subscriber("other", {"voice": "channel-fr"})

    assert_tone(dominant(await listener.audio["voice"].wait_for_samples(1.0)), HIGH)
    sfu.point_slot("listener", "voice", "channel-ru")  # a language switch
    await asyncio.sleep(0.3)
    assert_tone(dominant(await listener.audio["voice"].wait_for_samples(1.0)), LOW)
    # Only that listener switched.
    assert_tone(dominant(await other.audio["voice"].wait_for_samples(0.5)), HIGH)
    assert_continuous(listener.rtp["voice"])
    assert sfu.stats()["subscribers"]["listener"]["slots"]["voice"]["output"] == "channel-ru"


async def test_paused_slot_carries_nothing(sfu: Sfu, peers: Peers) -> None:
    await two_tones(sfu, peers)
    sfu.declare_output("floor", "audio")
    sfu.declare_output("channel", "audio")
    sfu.point("floor", "high/audio")
    sfu.point("channel", "low/audio")
    listener = await peers.subscriber("listener", {"voice": "channel", "floor": "floor"})
    floor_rtp, voice_rtp = listener.rtp["floor"], listener.rtp["voice"]
    await eventually(lambda: floor_rtp.count() > 10 and voice_rtp.count() > 10, what="media")

    sfu.pause_slot("listener", "floor", True)
    await asyncio.sleep(0.2)  # packets already in flight
    paused_at, voice_at = floor_rtp.count(), voice_rtp.count()
    await asyncio.sleep(1.0)
    assert floor_rtp.count() == paused_at, "a paused slot still carried packets"
    assert voice_rtp.count() >= voice_at + 30, "the other slot stopped too"
    assert sfu.stats()["subscribers"]["listener"]["slots"]["floor"]["paused"] is True

    sfu.pause_slot("listener", "floor", False)
    await eventually(lambda: floor_rtp.count() > paused_at + 20, what="resumed floor")
    assert_continuous(floor_rtp)
    assert_tone(dominant(await listener.audio["floor"].wait_for_samples(0.5)), HIGH)


async def test_publisher_leaves_and_comes_back(sfu: Sfu, peers: Peers) -> None:
    added: list[tuple[str, str]] = []
    removed: list[tuple[str, str]] = []
    sfu.on_source_added = lambda source, kind: added.append((source, kind))
    sfu.on_source_removed = lambda source, kind: removed.append((source, kind))
    speaker = await peers.publisher("speaker", [ToneTrack(HIGH)])
    sfu.declare_output("floor", "audio")
    sfu.point("floor", "speaker/audio")
    listener = await peers.subscriber("listener", {"voice": "floor"})
    rtp = listener.rtp["voice"]
    assert_tone(dominant(await listener.audio["voice"].wait_for_samples(0.5)), HIGH)

    await sfu.close_publisher("speaker")
    await speaker.close()
    assert removed == [("speaker/audio", "audio")]
    assert sfu.stats()["outputs"]["floor"] == sfu.stats()["outputs"]["floor"] | {
        "source": "speaker/audio",
        "live": False,
    }
    await asyncio.sleep(0.2)
    silent_at = rtp.count()
    await asyncio.sleep(0.5)
    assert rtp.count() == silent_at, "an output without a live source carried packets"
    assert listener.pc.connectionState == "connected"

    # The same speaker reconnects (a page reload) with another microphone.
    await peers.publisher("speaker", [ToneTrack(LOW)])
    assert added[-1] == ("speaker/audio", "audio")
    await eventually(lambda: rtp.count() > silent_at + 20, what="media after the comeback")
    assert_tone(dominant(await listener.audio["voice"].wait_for_samples(0.5)), LOW)
    assert_continuous(rtp)
    assert listener.pc.connectionState == "connected"


async def test_twenty_subscribers_each_receive_the_whole_stream(sfu: Sfu, peers: Peers) -> None:
    await peers.publisher("speaker", [ToneTrack(HIGH)])
    sfu.declare_output("floor", "audio")
    sfu.point("floor", "speaker/audio")
    listeners = [
        await peers.subscriber(f"listener-{i}", {"voice": "floor"}, decode=False) for i in range(20)
    ]
    await eventually(
        lambda: all(p.rtp["voice"].count() > 5 for p in listeners), within=20, what="all media"
    )

    # Counting, not timing: however busy the machine, every listener gets every packet
    # of a stretch of 100 the speaker sent (2 s at 50 packets/s); loopback loses none.
    def source_packets() -> int:
        return sfu.stats()["sources"]["speaker/audio"]["packets"]

    start_source = source_packets()
    before = [p.rtp["voice"].count() for p in listeners]
    await eventually(lambda: source_packets() >= start_source + 100, within=30, what="speaker")
    sent = source_packets() - start_source

    def received() -> list[int]:
        return [p.rtp["voice"].count() - b for p, b in zip(listeners, before, strict=True)]

    await eventually(lambda: min(received()) >= sent, within=20, what="every listener")
    for listener in listeners:
        sequence = [packet[1] for packet in listener.rtp["voice"].packets]
        gaps = [(b - a) & 0xFFFF for a, b in itertools.pairwise(sequence) if (b - a) & 0xFFFF != 1]
        assert not gaps, f"a listener missed packets: steps {gaps}"
    assert sfu.stats()["outputs"]["floor"]["slots"] == 20
