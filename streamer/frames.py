"""Media frames out of forwarded RTP packets, on one timeline: for recordings and HLS.

What taps on an output (streamer/output.py) share: how long an Opus packet lasts,
how VP8 or H.264 packets make a frame (and when a keyframe is needed to go on), and the clock
that places every packet of a tapped output on the tap's own timeline. Within one
incoming stream that clock follows the packets' RTP timestamps (the sender's pacing);
when the output moves to another stream (a switch), or a stream's clock jumps, it
re-anchors on the arrival time, never going back.
"""

from __future__ import annotations

import heapq
import struct
from dataclasses import dataclass
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

    def pts(
        self, stream: object, ts: int, wall: float, not_before: int, *, resync: bool = True
    ) -> int:
        """Where a packet of `stream` (RTP time `ts`, arrived at `wall`) goes, not before
        `not_before` when it starts a stream. `resync`: whether a stream whose clock
        strayed may be re-anchored on this packet (remuxed video only on a keyframe: the
        pictures after a jump then refer to none before it)."""
        arrival = self.at(wall)
        if stream is self.stream:
            pts = self.anchor_pts + _signed32(ts - self.anchor_ts)
            if not resync or abs(pts - arrival) <= RESYNC_S * self.rate:
                return pts
        self.stream = stream
        self.anchor_ts = ts
        self.anchor_pts = max(arrival, not_before)
        return self.anchor_pts


#: How long an audio packet waits for those sent before it that jitter delayed more.
#: Audio is not repaired by NACK, so only reordering is waited for; 100 ms covers the
#: jitter of a bad mobile path, and HLS and recordings are seconds behind anyway.
AUDIO_REORDER_S = 0.1


class AudioReorder:
    """An audio output's packets put back in the order they were sent.

    A tap places each Opus packet by its RTP time and drops one that comes after a later
    one (it would overlap what is written), so a packet overtaken under jitter would be
    a 20 ms hole of silence: the packets wait here, by sequence number, up to
    `AUDIO_REORDER_S` for the ones before them. The last ones of a stream go out when
    the next stream starts (a switch); a source that stops keeps its last ~100 ms.
    """

    def __init__(self, wait_s: float = AUDIO_REORDER_S) -> None:
        self.wait_s = wait_s
        self._stream: object = None
        self._held: list[tuple[int, int, bytes, float]] = []  # heap: seq, ts, payload, wall
        self._next: int | None = None

    def push(
        self, stream: object, seq: int, ts: int, payload: bytes, wall: float
    ) -> list[tuple[object, int, bytes, float]]:
        """The packets that may go out now, in order: (stream, timestamp, payload,
        arrival time)."""
        out: list[tuple[object, int, bytes, float]] = []
        held = self._held
        if stream is not self._stream:
            old = self._stream
            out.extend((old, ts_, data, at) for _, ts_, data, at in sorted(held))
            held.clear()
            self._stream, self._next = stream, None
        if self._next is not None and seq < self._next:
            return out  # overtaken and waited for in vain: its place has been filled
        heapq.heappush(held, (seq, ts, payload, wall))
        while held:
            first = held[0]
            if self._next is not None and first[0] != self._next and wall - first[3] < self.wait_s:
                break
            heapq.heappop(held)
            self._next = first[0] + 1
            out.append((stream, first[1], first[2], first[3]))
        return out


#: How long (RTP time of the packets that came after it) a missing packet is waited
#: for: a NACK's retransmission comes back within a round trip, and HLS parts and
#: recordings can afford this much delay where a frame given up costs every picture
#: until the next keyframe.
REPAIR_WAIT_S = 0.35
#: Packets kept while frames wait for missing ones (a few seconds of video, then the
#: oldest frames are given up).
MAX_WAITING_PACKETS = 1024


@dataclass(frozen=True, slots=True)
class Frame:
    """One whole video frame: its RTP timestamp, its bytes, whether decoding may start
    on it."""

    ts: int
    data: bytes
    keyframe: bool


class _Reassembly:
    """Whole frames, in order, from one output's packets as they arrive.

    Networks reorder packets (the packets of one frame leave back to back and overtake
    each other under jitter) and lose some, which NACK repairs a round trip later. So
    the packets wait here by (extended) sequence number: a frame is whole when every
    number from the one after the previous frame's last packet up to its marker is
    there. A missing packet is waited for `REPAIR_WAIT_S`, or until a keyframe after it
    is there to go on from; then its frame is given up, and so are the frames after it
    until the next keyframe, which `need_keyframe` asks for. A frame never comes out
    with a hole: a decoder or a player would show it broken.

    Starts on a keyframe, and again after a switch to another stream.
    """

    def __init__(self) -> None:
        self._waiting_keyframe = True
        self._stream: object = None
        # Extended sequence number -> (timestamp, marker, depacketized bytes or None when
        # the payload cannot be used).
        self._packets: dict[int, tuple[int, bool, bytes | None]] = {}
        self._keyframe_starts: set[int] = set()
        self._next: int | None = None  # where the next frame starts, once known
        self._newest: int | None = None
        self._newest_ts = 0
        #: Times frames were given up for a packet that never came (or came unusable).
        self.losses = 0

    @property
    def need_keyframe(self) -> bool:
        """Whether decoding waits for a keyframe that has not started to arrive (one
        that has need not be asked for again)."""
        return self._waiting_keyframe and not self._keyframe_starts

    @property
    def keyframe_coming(self) -> bool:
        """Whether a keyframe has started to arrive (and is not given out yet)."""
        return bool(self._keyframe_starts)

    @need_keyframe.setter
    def need_keyframe(self, value: bool) -> None:
        self._waiting_keyframe = value

    def _depacketize(self, payload: bytes) -> tuple[bytes | None, bool]:
        """The payload's bytes of its frame (None if unusable), and whether it is the
        first packet of a keyframe."""
        raise NotImplementedError

    def _is_keyframe(self, whole: bytes) -> bool:
        raise NotImplementedError

    def _reset(self) -> None:
        self._waiting_keyframe = True
        self._packets.clear()
        self._keyframe_starts.clear()
        self._next = None
        self._newest = None

    def push(self, stream: object, seq: int, ts: int, marker: bool, payload: bytes) -> list[Frame]:
        """The frames this packet completes, in order, that can be decoded (often none;
        several when it filled the hole the frames after it waited on)."""
        if stream is not self._stream:
            self._stream = stream
            self._reset()  # a switch: the new source's frames need their start
        if (self._next is not None and seq < self._next) or seq in self._packets:
            return []  # a frame already given or given up, or a duplicate
        data, starts_keyframe = self._depacketize(payload)
        self._packets[seq] = (ts, marker, data)
        if starts_keyframe:
            self._keyframe_starts.add(seq)
        if self._newest is None or seq > self._newest:
            self._newest, self._newest_ts = seq, ts
        if len(self._packets) > MAX_WAITING_PACKETS:
            if self._next is None:  # waiting for a keyframe: nothing older can serve
                self._drop_before(self._newest - MAX_WAITING_PACKETS // 2)
            else:
                self._give_up(self._newest - MAX_WAITING_PACKETS // 2)
        return self._drain()

    def _drain(self) -> list[Frame]:
        frames: list[Frame] = []
        packets = self._packets
        while packets:
            if self._next is None:
                # After a loss (or at the start) only a keyframe can be decoded.
                starts = self._keyframe_starts
                if not starts:
                    break
                self._next = min(starts)
                self._drop_before(self._next)
            first = self._next
            seq = first
            ts = None
            parts: list[bytes] = []
            broken = False
            while True:
                packet = packets.get(seq)
                if packet is None:
                    break
                if ts is None:
                    ts = packet[0]
                if packet[0] != ts or packet[2] is None:
                    broken = True  # no marker before the next frame, or unusable bytes
                    break
                parts.append(packet[2])
                if packet[1]:
                    break
                seq += 1
            if broken:
                self._give_up(seq)
                continue
            if packet is None:
                if not self._stale(seq):
                    break  # a missing packet may still be repaired
                self._give_up(seq + 1)
                continue
            assert ts is not None
            for done in range(first, seq + 1):
                del packets[done]
                self._keyframe_starts.discard(done)
            self._next = seq + 1
            whole = b"".join(parts)
            keyframe = self._is_keyframe(whole)
            if self._waiting_keyframe and not keyframe:
                continue
            self._waiting_keyframe = False
            frames.append(Frame(ts, whole, keyframe))
        return frames

    def _stale(self, missing: int) -> bool:
        """Whether the frames waiting on packet `missing` should go on without it."""
        if any(s > missing and self._whole_at(s) for s in self._keyframe_starts):
            return True  # a whole keyframe after it: decoding goes on from there
        after = next((s for s in range(missing + 1, missing + 64) if s in self._packets), None)
        if after is None:
            return False
        waited = _signed32(self._newest_ts - self._packets[after][0])
        return waited > REPAIR_WAIT_S * VIDEO_RATE

    def _whole_at(self, first: int) -> bool:
        """Whether every packet of the frame starting at `first` is there."""
        packets = self._packets
        ts = packets[first][0]
        seq = first
        while (packet := packets.get(seq)) is not None and packet[0] == ts:
            if packet[1]:
                return True
            seq += 1
        return False

    def _give_up(self, before: int) -> None:
        """Drop every packet numbered below `before`; go on from the next keyframe."""
        self.losses += 1
        self._waiting_keyframe = True
        self._next = None
        self._drop_before(before)

    def _drop_before(self, before: int) -> None:
        for seq in [s for s in self._packets if s < before]:
            del self._packets[seq]
            self._keyframe_starts.discard(seq)


class Vp8Frames(_Reassembly):
    """Whole VP8 frames from a tapped output's packets (see `_Reassembly`)."""

    def _depacketize(self, payload: bytes) -> tuple[bytes | None, bool]:
        try:
            descriptor, data = VpxPayloadDescriptor.parse(payload)
        except ValueError:
            return None, False
        first = bool(descriptor.partition_start) and descriptor.partition_id == 0
        # The VP8 frame tag's first bit is 0 on a keyframe (RFC 6386, 9.1).
        return data, first and bool(data) and not data[0] & 1

    def _is_keyframe(self, whole: bytes) -> bool:
        return vp8_keyframe_size(whole) is not None


def _starts_access_unit(data: bytes) -> bool:
    # A fragment that does not start its NAL unit has no start code.
    return data[:4] == START_CODE and len(data) > 4 and data[4] & 0x1F in (NAL_SPS, NAL_AUD)


class H264Frames(_Reassembly):
    """Whole H.264 access units (Annex-B) from a tapped output's packets (see
    `_Reassembly`).

    An RTP packet of H.264 does not say that it starts a frame: a frame starts after the
    previous frame's last packet (its marker). Where that is not known (at the start,
    after a loss), an access unit that opens with its parameter sets, as a browser's
    keyframes do, is where decoding starts.
    """

    def _depacketize(self, payload: bytes) -> tuple[bytes | None, bool]:
        try:
            data = depacketize(payload)
        except H264Error:
            return None, False
        return data, _starts_access_unit(data) and data[4] & 0x1F == NAL_SPS

    def _is_keyframe(self, whole: bytes) -> bool:
        return is_idr(nal_units(whole))


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
