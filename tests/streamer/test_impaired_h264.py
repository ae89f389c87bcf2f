"""H.264 passed through from a publisher whose path loses and reorders packets.

The publisher (aiortc, asked for H.264 by the node) and a subscriber reach the node only
through the impairing relay: 5 % loss both ways, 20-60 ms of jitter, some packets held
back more. The subscriber's stream keeps decoding (NACK repairs, keyframe requests reach
the publisher), and the HLS packager remuxes only whole access units: every sample of
its segments is byte for byte an access unit the publisher's encoder produced, and they
decode. Without decoding at the node, a picture that lost a packet must wait for its
retransmission or be left out, never be remuxed with a hole.

First, the frame assembly itself (streamer/frames.py) on packets in a known bad order.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from aiortc.codecs.h264 import H264Encoder

from streamer.frames import REPAIR_WAIT_S, VIDEO_RATE, H264Frames
from streamer.h264 import nal_units
from tests.streamer.impaired_publisher import (
    LOSSY_REORDERING,
    ImpairedNode,
    frames_in_segments,
    impaired_node,
)
from tests.streamer.peers import eventually
from tests.streamer.test_h264_access_units import encoded

__all__ = ["impaired_node"]

FRAME_TS = VIDEO_RATE // 30


def packets_of(units: list[bytes], first_seq: int = 100) -> list[tuple[int, int, bool, bytes]]:
    """(seq, ts, marker, payload) of each access unit as aiortc sends it."""
    packets = []
    seq = first_seq
    for index, unit in enumerate(units):
        payloads = H264Encoder._packetize(H264Encoder._split_bitstream(unit))
        for position, payload in enumerate(payloads):
            packets.append((seq, index * FRAME_TS, position == len(payloads) - 1, payload))
            seq += 1
    return packets


def push_all(
    frames: H264Frames, packets: list[tuple[int, int, bool, bytes]], stream: object
) -> list[int]:
    """The indexes of the frames given out, in order."""
    out = []
    for seq, ts, marker, payload in packets:
        out.extend(f.ts // FRAME_TS for f in frames.push(stream, seq, ts, marker, payload))
    return out


def test_packets_overtaking_each_other_still_make_whole_frames_in_order() -> None:
    units = encoded(640, 480, 5)
    packets = packets_of(units)
    # Jitter: each packet may overtake the few sent just before it, across frames.
    shuffled = sorted(packets, key=lambda p: p[0] + random.Random(p[0]).uniform(0, 6))
    assert shuffled != packets
    frames = H264Frames()
    stream = object()
    got = []
    for seq, ts, marker, payload in shuffled:
        got.extend(frames.push(stream, seq, ts, marker, payload))
    assert [nal_units(f.data) for f in got] == [nal_units(u) for u in units]
    assert [f.keyframe for f in got] == [True, False, False, False, False]
    assert frames.losses == 0 and not frames.need_keyframe


def test_a_late_retransmission_completes_the_frames_that_waited_for_it() -> None:
    packets = packets_of(encoded(640, 480, 4))
    frames = H264Frames()
    stream = object()
    lost = next(p for p in packets if p[1] == FRAME_TS)  # frame 1's first packet
    rest = [p for p in packets if p is not lost]
    assert push_all(frames, rest, stream) == [0]  # frames 1-3 wait for the missing packet
    assert not frames.need_keyframe, "a keyframe asked for where a NACK repairs"
    assert push_all(frames, [lost], stream) == [1, 2, 3]
    assert frames.losses == 0


def test_a_packet_never_repaired_is_given_up_and_decoding_resumes_on_a_keyframe() -> None:
    units = encoded(320, 240, 20)
    assert len(units) / 30 > REPAIR_WAIT_S + 0.1
    packets = packets_of(units + units[:1])  # ..., then an IDR again
    idr_packets = len(packets_of(units[:1]))
    lost = next(p for p in packets if p[1] == FRAME_TS)
    frames = H264Frames()
    stream = object()
    waiting = [p for p in packets[:-idr_packets] if p is not lost]
    assert push_all(frames, waiting, stream) == [0]
    # Past the repair time, frame 1 and those that refer to it are given up: the
    # assembly asks for a keyframe, and starts again on it.
    assert frames.losses == 1 and frames.need_keyframe
    assert push_all(frames, packets[-idr_packets:], stream) == [len(units)]
    assert not frames.need_keyframe
    assert push_all(frames, [lost], stream) == []  # too late: its frame was given up


async def test_h264_through_loss_and_reordering_decodes_and_is_remuxed_whole(
    impaired_node: ImpairedNode, tmp_path: Path
) -> None:
    node = impaired_node
    sfu = node.sfu
    node.relay.set_impairment(LOSSY_REORDERING)
    sent = await node.publish_h264("speaker", 440.0)
    await eventually(lambda: len(sfu.sources()) == 2, what="the sources")
    sfu.declare_output("program-video", "video")
    sfu.declare_output("floor", "audio")
    sfu.point("program-video", "speaker/video")
    sfu.point("floor", "speaker/audio")
    viewer = await node.watch("viewer", {"video": "program-video"})
    frames = viewer["video"]
    directory = tmp_path / "hls"
    # Counts are compared over the same time: the first pictures take up to 20 s to come
    # on a loaded machine, and the publisher goes on sending while the packager finishes.
    sent_unpackaged = sent.count
    packager = sfu.package_hls(
        directory, ("program", "program-video"), [("original", "floor")], segment_s=1.0
    )
    try:
        await eventually(lambda: frames.frames >= 10, within=20, what="the first pictures")
        # From here on, pictures keep coming although packets are lost and reordered.
        started, sent_before, shown_before = time.monotonic(), sent.count, frames.frames
        plis_before = sent.plis
        await asyncio.sleep(8.0)
        elapsed = time.monotonic() - started
        sent_during, shown = sent.count - sent_before, frames.frames - shown_before
        plis = sent.plis - plis_before
        sent_packaged = sent.count - sent_unpackaged
    finally:
        packager.close()
        await asyncio.to_thread(packager.join, 10)
    remuxed = packager.video_frames_remuxed  # of every picture it was given

    up, down = node.relay.upstream.counters, node.relay.downstream.counters
    assert up.lost > 20 and down.lost > 20, (up.lost, down.lost)
    assert shown > 0.6 * sent_during, f"{shown} pictures shown of {sent_during} sent"
    viewer_stats = sfu.stats()["subscribers"]["viewer"]
    assert viewer_stats["nacked"] > 0 and viewer_stats["retransmitted"] > 0, viewer_stats
    # Keyframes were asked of the publisher (for the viewer's losses, for segments), but
    # not for every packet a reordered picture waited for (it was ~80 a second).
    assert 1 <= plis <= 3 * elapsed + 5, f"{plis} PLIs in {elapsed:.0f} s"

    assert packager.problem is None
    # Most pictures are remuxed: a loss NACK repairs costs none (it was 2 %).
    assert remuxed > 0.5 * sent_packaged, f"{remuxed} of {sent_packaged} pictures remuxed"
    playlist = (directory / "program.m3u8").read_text()
    samples, decoded = frames_in_segments(directory, playlist, tmp_path / "program.mp4")
    assert len(samples) > 30
    # Every picture in the segments is one the publisher sent, whole; the black ones
    # of a first second without a picture are the only others, and come first.
    foreign = [i for i, sample in enumerate(samples) if sample not in sent.samples]
    assert foreign == list(range(len(foreign))), foreign
    assert len(foreign) <= packager.video_frames_encoded
    assert decoded == len(samples)
