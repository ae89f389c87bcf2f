"""Media frames out of forwarded RTP packets, on one timeline: for recordings and HLS.

What taps on an output (streamer/output.py) share: how long an Opus packet lasts,
how VP8 or H.264 packets make a frame (and when a keyframe is needed to go on), and the clock
that places every packet of a tapped output on the tap's own timeline. Within one
incoming stream that clock follows the packets' RTP timestamps (the sender's pacing);
when the output moves to another stream (a switch), or a stream's clock jumps, it
re-anchors on the arrival time, never going back.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from fractions import Fraction

import av
from aiortc.codecs.vpx import VpxPayloadDescriptor

from .h264 import (
    NAL_AUD,
    NAL_SPS,
    START_CODE,
    H264Error,
    avc_decoder_configuration,
    depacketize,
    is_idr,
    nal_units,
)

OPUS_RATE = 48000
VIDEO_RATE = 90000
OPUS_FRAME_SAMPLES = 960
#: libavcodec's AV_CODEC_FLAG_GLOBAL_HEADER.
GLOBAL_HEADER = 1 << 22
#: Within one stream, a packet whose RTP time strays this far from its arrival time
#: means the sender's clock jumped: the stream is re-anchored on arrival time.
RESYNC_S = 2.0


def opus_samples(payload: bytes) -> int:
    """Samples at 48 kHz in one Opus packet (RFC 6716, section 3.1), 960 if unreadable."""
    if not payload:
        return OPUS_FRAME_SAMPLES
    toc = payload[0]
    config = toc >> 3
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        frame = (480, 960, 1920, 2880)[config & 3]
    elif config < 16:  # hybrid: 10, 20 ms
        frame = (480, 960)[config & 1]
    else:  # CELT: 2.5, 5, 10, 20 ms
        frame = (120, 240, 480, 960)[config & 3]
    code = toc & 3
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        count = payload[1] & 0x3F if len(payload) > 1 else 1
    return frame * max(count, 1)


def vp8_keyframe_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height of a VP8 keyframe (RFC 6386, 9.1); None for an inter frame."""
    if len(frame) < 10 or frame[0] & 1 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width, height = struct.unpack_from("<HH", frame, 6)
    return width & 0x3FFF, height & 0x3FFF


def _signed32(delta: int) -> int:
    delta &= 0xFFFFFFFF
    return delta - (1 << 32) if delta >= 1 << 31 else delta


@dataclass
class TapClock:
    """Places one tapped track's packets on its timeline (in `rate` units from `origin`,
    a monotonic time)."""

    rate: int
    origin: float
    stream: object = None
    anchor_ts: int = 0
    anchor_pts: int = 0

    def at(self, wall: float) -> int:
        return round((wall - self.origin) * self.rate)

    def pts(self, stream: object, ts: int, wall: float, not_before: int) -> int:
        arrival = self.at(wall)
        if stream is self.stream:
            pts = self.anchor_pts + _signed32(ts - self.anchor_ts)
            if abs(pts - arrival) <= RESYNC_S * self.rate:
                return pts
        self.stream = stream
        self.anchor_ts = ts
        self.anchor_pts = max(arrival, not_before)
        return self.anchor_pts


@dataclass
class _Frame:
    """The packets of one video frame (one RTP timestamp) while it arrives."""

    ts: int
    parts: dict[int, bytes] = field(default_factory=dict)
    first: int | None = None
    last: int | None = None

    def complete(self) -> bytes | None:
        if self.first is None or self.last is None:
            return None
        if len(self.parts) != self.last - self.first + 1:
            return None
        if any(seq not in self.parts for seq in range(self.first, self.last + 1)):
            return None
        return b"".join(self.parts[seq] for seq in range(self.first, self.last + 1))


class Vp8Frames:
    """Whole VP8 frames from a tapped output's packets.

    Starts on a keyframe, and waits for the next one after a lost packet or when the
    output moves to another stream: `need_keyframe` says so (the tap asks for one).
    """

    def __init__(self) -> None:
        self.need_keyframe = True
        self._stream: object = None
        self._frame: _Frame | None = None

    def push(self, stream: object, seq: int, ts: int, marker: bool, payload: bytes) -> bytes | None:
        """The frame this packet completes, if it does and can be decoded."""
        if stream is not self._stream:
            self._stream = stream
            self.need_keyframe = True  # a switch: the new source's frames need their start
            self._frame = None
        try:
            descriptor, data = VpxPayloadDescriptor.parse(payload)
        except ValueError:
            return None
        frame = self._frame
        if frame is None or frame.ts != ts:
            if frame is not None and frame.complete() is None:
                self.need_keyframe = True  # a frame was lost: wait for the next keyframe
            frame = self._frame = _Frame(ts)
        frame.parts[seq] = data
        if descriptor.partition_start and descriptor.partition_id == 0:
            frame.first = seq
        if marker:
            frame.last = seq
        whole = frame.complete()
        if whole is None:
            return None
        self._frame = None
        if self.need_keyframe:
            if vp8_keyframe_size(whole) is None:
                return None
            self.need_keyframe = False
        return whole


def _starts_access_unit(data: bytes) -> bool:
    # A fragment that does not start its NAL unit has no start code.
    return data[:4] == START_CODE and len(data) > 4 and data[4] & 0x1F in (NAL_SPS, NAL_AUD)


class H264Frames:
    """Whole H.264 access units (Annex-B) from a tapped output's packets.

    An RTP packet of H.264 does not say that it starts a frame: a frame is whole
    when every sequence number from the one after the previous frame's last packet
    (its marker) up to its own marker arrived. Starts on an IDR picture, and waits for
    the next one after a loss or a switch, as `Vp8Frames` does (`need_keyframe`).
    """

    def __init__(self) -> None:
        self.need_keyframe = True
        self._stream: object = None
        self._frame: _Frame | None = None
        # Sequence number of the last packet of the newest frame seen ending.
        self._last_end: int | None = None
        self.keyframe = False  # whether the access unit last returned is an IDR

    def push(self, stream: object, seq: int, ts: int, marker: bool, payload: bytes) -> bytes | None:
        """The access unit this packet completes, if it does and can be decoded."""
        if stream is not self._stream:
            self._stream = stream
            self.need_keyframe = True
            self._frame = None
            self._last_end = None
        try:
            data = depacketize(payload)
        except H264Error:
            self.need_keyframe = True
            return None
        frame = self._frame
        if frame is None or frame.ts != ts:
            if frame is not None and frame.complete() is None:
                self.need_keyframe = True
            frame = self._frame = _Frame(ts)
            if self._last_end is not None:
                frame.first = self._last_end + 1
        frame.parts[seq] = data
        if frame.first is None and _starts_access_unit(data):
            # Nothing comes before a parameter set or a delimiter in an access unit:
            # how a keyframe is recognised as whole when the frame before it is unknown.
            frame.first = seq
        if not marker:
            return None
        frame.last = seq
        self._last_end = seq
        whole = frame.complete()
        self._frame = None
        if whole is None:
            self.need_keyframe = True
            return None
        units = nal_units(whole)
        self.keyframe = is_idr(units)
        if self.need_keyframe:
            if not self.keyframe:
                return None
            self.need_keyframe = False
        return whole


def add_h264_passthrough(
    container: av.container.OutputContainer,
    sps: bytes,
    pps: bytes,
    size: tuple[int, int],
    time_base: Fraction,
) -> av.video.stream.VideoStream:
    """A video track of `container` for H.264 access units muxed as they came (nothing
    decoded), described by their SPS and PPS (the ``avcC``) and picture `size`.

    Without the global-header flag, the encoder PyAV opens behind the stream (and never
    feeds) leaves the ``avcC`` set here alone."""
    stream = container.add_stream("h264", rate=30)
    context = stream.codec_context
    context.flags = context.flags & ~GLOBAL_HEADER
    context.pix_fmt = "yuv420p"
    context.extradata = avc_decoder_configuration(sps, pps)
    context.width, context.height = size
    stream.time_base = time_base
    return stream
