"""Remuxed H.264 cut into HLS segments, packets fed by hand on a clock the test keeps.

The packager's two halves run here without its thread: its video tap (on the forwarding
loop: frame assembly, timing, keyframe requests) and its video track (in the worker:
segments, and the last keyframe repeated while no picture comes). A player may start on
any segment the playlist lists, so each one must decode on its own, whatever the path
did: a keyframe asked for that comes late, a picture lost for good, pictures held up on
their way, a publisher that falls behind. And the pictures must come back at the next
keyframe, not be refused for coming after a repeated one.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from streamer.frames import VIDEO_RATE
from streamer.h264 import avcc_sample, nal_units
from streamer.hls import _PlaylistOptions, _VideoTap, _VideoTrack
from tests.streamer.test_impaired_h264 import FRAME_TS, packets_of
from tests.support import ll_hls

H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=VIDEO_RATE, payloadType=102)
SEGMENT_S = 1.0
#: Time between two turns of the worker's loop.
TICK_S = 0.01


def pictures(count: int, keyframes: set[int]) -> list[bytes]:
    """Annex-B access units of a camera-like encoder: IDR pictures (with their parameter
    sets) only where asked for, as a browser sends them."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = 320, 240
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, VIDEO_RATE)
    encoder.framerate = Fraction(30)
    encoder.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "g": "100000",
        "keyint_min": "100000",
        "sc_threshold": "0",
    }
    noise = np.random.default_rng(3)
    units = []
    for index in range(count):
        image = noise.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index * FRAME_TS
        if index in keyframes:
            frame.pict_type = av.video.frame.PictureType.I
        units.extend(bytes(packet) for packet in encoder.encode(frame))
    assert len(units) == count
    return units


class Packager:
    """An HLS packager's video tap and track, run turn by turn."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.queued: list[tuple[str, int, int, bytes]] = []
        packager = SimpleNamespace(origin=0.0, segment_s=SEGMENT_S, put=self.queued.append)
        self.tap = _VideoTap(packager)  # type: ignore[arg-type]
        options = _PlaylistOptions(SEGMENT_S, 0.5, 100, lambda _: None, {})
        self.track = _VideoTrack(directory, "program", options, SEGMENT_S, 0.0)
        self.stream = object()
        #: Arrival time of each packet for which the tap asked for a keyframe.
        self.asked: list[float] = []

    def run(self, units: list[bytes], arrival: dict[int, float], lost: set[int]) -> None:
        """The packets of `units` (picture i sent at i/30 s), each picture's arriving at
        `arrival[i]` (never, for those in `lost`), the worker turning every `TICK_S`."""
        packets = [p for p in packets_of(units) if p[0] not in lost]
        packets.sort(key=lambda p: (arrival[p[1] // FRAME_TS], p[0]))
        now = 0.0
        for seq, ts, marker, payload in packets:
            at = arrival[ts // FRAME_TS]
            while now < at:
                self.turn(now)
                now += TICK_S
            if self.tap.on_packet(self.stream, H264, seq, ts, marker, payload, at):
                self.asked.append(at)
        for _ in range(100):
            self.turn(now)
            now += TICK_S
        self.track.close()

    def turn(self, now: float) -> None:
        for _, _, pts, data in self.queued:
            self.track.remux(pts, data, now)
        self.queued.clear()
        self.track.idle(round(now * VIDEO_RATE), now)

    def segments(self) -> list[list[bytes]]:
        """The samples of each segment the playlist lists, checking that the segment
        decodes on its own (behind the init segment, as a player starting there gets
        it) to as many pictures."""
        playlist = ll_hls.parse((self.directory / "program.m3u8").read_text())
        init = (self.directory / playlist.init).read_bytes()
        found = []
        for segment in playlist.complete:
            alone = self.directory / f"alone-{segment.msn}.mp4"
            alone.write_bytes(init + (self.directory / (segment.uri or "")).read_bytes())
            with av.open(str(alone)) as container:
                samples = [bytes(p) for p in container.demux(video=0) if p.size]
            with av.open(str(alone)) as container:
                stream = container.streams.video[0]
                stream.codec_context.options = {"err_detect": "explode"}
                decoded = sum(1 for _ in container.decode(stream))
            assert decoded == len(samples), f"segment {segment.msn}: {decoded} of {len(samples)}"
            found.append(samples)
        playlist.check()
        assert playlist.independent_segments
        return found


def sample(unit: bytes) -> bytes:
    return avcc_sample(nal_units(unit))


def test_a_keyframe_too_late_for_the_segment_is_not_waited_for_on_a_picture_that_needs_another(
    tmp_path: Path,
) -> None:
    # The keyframe asked for before the first second ends comes only at 2 s: the segment
    # cannot wait for it (it would round above the target duration).
    units = pictures(80, keyframes={0, 60})
    packager = Packager(tmp_path)
    packager.run(units, {i: i / 30 + 0.02 for i in range(80)}, lost=set())
    segments = packager.segments()

    # The segment ends before the picture that would make it too long, and the next one
    # starts on the last keyframe again: the pictures until the next keyframe are left out.
    first, second = segments[0], segments[1]
    assert first == [sample(u) for u in units[: len(first)]]
    assert 1.3 * 30 < len(first) <= 1.45 * 30 + 1
    assert second[0] == sample(units[0])
    written = {s for segment in segments for s in segment}
    assert not written & {sample(u) for u in units[len(first) : 60]}
    assert {sample(u) for u in units[60:]} <= written
    # Meanwhile, the tap asks for that keyframe at every packet until it starts to come.
    cut = len(first) / 30
    waited = [at for at in packager.asked if cut + 0.05 < at < 2.0]
    assert len(waited) >= 0.9 * len([p for p in packets_of(units[45:60])]), len(waited)


def test_a_picture_lost_mid_gop_leaves_out_the_pictures_after_it_until_the_next_keyframe(
    tmp_path: Path,
) -> None:
    units = pictures(70, keyframes={0, 45})
    frame_20 = [p[0] for p in packets_of(units) if p[1] == 20 * FRAME_TS]
    assert len(frame_20) > 2
    packager = Packager(tmp_path)
    lost = {frame_20[len(frame_20) // 2]}  # never repaired
    packager.run(units, {i: i / 30 + 0.02 for i in range(70)}, lost)
    segments = packager.segments()

    written = [s for segment in segments for s in segment]
    assert set(written) <= {sample(u) for u in units}
    assert not set(written) & {sample(u) for u in units[20:45]}
    assert {sample(u) for u in units[:20] + units[45:]} <= set(written)
    assert packager.asked, "the keyframe after the loss was not asked for"


def test_pictures_held_up_on_their_way_resume_at_the_next_keyframe(tmp_path: Path) -> None:
    # From the second second on, pictures come 0.6 s later than the first did (a path,
    # or a publisher, that fell behind): for a moment none comes, the last keyframe is
    # repeated, and then the source's pictures must take over again at its next keyframe.
    units = pictures(100, keyframes={0, 60})
    arrival = {i: i / 30 + 0.02 + (0.6 if i >= 30 else 0.0) for i in range(100)}
    packager = Packager(tmp_path)
    packager.run(units, arrival, lost=set())
    segments = packager.segments()

    written = {s for segment in segments for s in segment}
    assert packager.track.repeated > 0
    assert {sample(u) for u in units[60:]} <= written
    assert {sample(u) for u in units[:30]} <= written


def test_a_publisher_slower_than_its_clock_jumps_ahead_on_a_keyframe_and_loses_no_picture(
    tmp_path: Path,
) -> None:
    # A loaded publisher: it sends its pictures ever later than their RTP times say
    # (two thirds of the rate), until the tap's clock re-anchors it on arrival and its
    # timeline jumps 2 s ahead. It jumps on the next keyframe: a jump before a picture
    # that refers to earlier ones would leave out every picture until the next keyframe
    # (the last one repeated in between keeps the segments short and decodable).
    units = pictures(165, keyframes={0, 30, 60, 90, 120, 150})
    packager = Packager(tmp_path)
    packager.run(units, {i: 0.02 + i / 30 * 1.5 for i in range(165)}, lost=set())
    segments = packager.segments()

    assert {sample(u) for u in units} <= {s for segment in segments for s in segment}
    assert packager.track.repeated > 5
