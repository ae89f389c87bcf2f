"""Recordings: what outputs carried, written to WebM files from the forwarded packets.

A `Recording` taps one audio output and, optionally, one video output, and muxes
their packets with PyAV as they are forwarded: Opus frames and VP8 frames go into
the file as they came, never decoded nor re-encoded. What is written is exactly
what subscribers got, switches included:

- Timestamps come from the packets (RTP clock) within one incoming stream, and from
  the arrival clock when the output moves to another stream (a switch) or when a
  stream's clock jumps; every track shares the recording's start as its zero.
- Audio is continuous: a time the output carried nothing (a cough, nobody on air, a
  lost publisher) is filled with Opus silence frames, so the file lasts as long as
  the recording and a moment in it is a moment of the event.
- Video starts on a keyframe and, after a lost packet or a switch, waits for the next
  one (the tap asks the publisher for it, as a joining subscriber does).

The file is written as a live WebM (clusters of at most a second, flushed at every
packet): a process that dies leaves a file readable up to its last second. A write
that fails (a full disk) stops this recording, says why in `problem`, and calls
`on_failure`; the live event never sees the error.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
from aiortc.codecs.vpx import VpxPayloadDescriptor

if TYPE_CHECKING:
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from .output import Output

logger = logging.getLogger(__name__)

OPUS_RATE = 48000
VIDEO_RATE = 90000
#: A 20 ms Opus frame that decodes to silence (CELT, fullband, mono, no data).
OPUS_SILENCE = b"\xf8\xff\xfe"
OPUS_SILENCE_SAMPLES = 960
#: Within one stream, a packet whose RTP time strays this far from its arrival time
#: means the sender's clock jumped: the stream is re-anchored on arrival time.
RESYNC_S = 2.0
#: How long a recording with video waits for the first keyframe (keeping the audio)
#: before it writes its header with a default picture size.
FIRST_KEYFRAME_WAIT_S = 3.0
DEFAULT_SIZE = (640, 480)
#: Audio kept while the header waits for the first keyframe (over the wait, at 20 ms).
MAX_PENDING_AUDIO = 400
#: Container options: a live WebM, clusters of at most a second, flushed at each packet.
WEBM_OPTIONS = {"live": "1", "cluster_time_limit": "1000", "flush_packets": "1"}

FailureCallback = Callable[["Recording", str], None]


def opus_samples(payload: bytes) -> int:
    """Samples at 48 kHz in one Opus packet (RFC 6716, section 3.1), 960 if unreadable."""
    if not payload:
        return OPUS_SILENCE_SAMPLES
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
class _Clock:
    """Maps one track's packets to its timeline: RTP time within a stream, arrival
    time across streams."""

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


class _AudioTap:
    def __init__(self, recording: Recording) -> None:
        self.recording = recording

    def on_packet(
        self,
        stream: object,
        codec: RTCRtpCodecParameters,
        seq: int,
        timestamp: int,
        marker: bool,
        payload: bytes,
        wall: float,
    ) -> bool:
        self.recording.audio_packet(stream, timestamp, payload, wall)
        return False


class _VideoTap:
    def __init__(self, recording: Recording) -> None:
        self.recording = recording

    def on_packet(
        self,
        stream: object,
        codec: RTCRtpCodecParameters,
        seq: int,
        timestamp: int,
        marker: bool,
        payload: bytes,
        wall: float,
    ) -> bool:
        return self.recording.video_packet(stream, codec, seq, timestamp, marker, payload, wall)


class Recording:
    """One WebM file: an audio output, and a video output with it if given.

    Made by `Sfu.record`; `close()` detaches it and finishes the file. `problem` says
    why it stopped early (None while it records, or after a clean close).
    """

    def __init__(
        self,
        path: Path,
        audio: Output,
        video: Output | None = None,
        *,
        metadata: dict[str, str] | None = None,
        on_failure: FailureCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.problem: str | None = None
        self.closed = False
        self._metadata = dict(metadata or {})
        self._on_failure = on_failure
        self._clock = clock
        self._origin = clock()
        self._audio_output = audio
        self._video_output = video
        self._audio_clock = _Clock(OPUS_RATE, self._origin)
        self._video_clock = _Clock(VIDEO_RATE, self._origin)
        self._audio_next = 0  # end of what the audio track holds, in samples
        self._video_last = -1  # pts of the last frame written
        self._frame: _Frame | None = None
        self._need_keyframe = True
        self._video_codec_refused: str | None = None
        self._pending_audio: list[tuple[int, int, bytes]] = []
        self._container: av.container.OutputContainer | None = None
        self._audio_stream: av.audio.stream.AudioStream | None = None
        self._video_stream: av.video.stream.VideoStream | None = None
        self.audio_tap = _AudioTap(self)
        self.video_tap = _VideoTap(self) if video is not None else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        audio.add_tap(self.audio_tap)
        if video is not None and self.video_tap is not None:
            video.add_tap(self.video_tap)
        if video is None:
            self._open(None)

    # -- packets ------------------------------------------------------------------

    def audio_packet(self, stream: object, ts: int, payload: bytes, wall: float) -> None:
        if self.closed:
            return
        pts = self._audio_clock.pts(stream, ts, wall, self._audio_next)
        if pts < self._audio_next:
            return  # overlaps what is written: a retransmission, or the old source's tail
        samples = opus_samples(payload)
        if self._container is None:
            self._pending_audio.append((pts, samples, payload))
            if (
                len(self._pending_audio) >= MAX_PENDING_AUDIO
                or wall - self._origin >= FIRST_KEYFRAME_WAIT_S
            ):
                self._open(DEFAULT_SIZE)
            else:
                self._audio_next = pts + samples
            return
        self._write_audio(pts, samples, payload)

    def video_packet(
        self,
        stream: object,
        codec: RTCRtpCodecParameters,
        seq: int,
        ts: int,
        marker: bool,
        payload: bytes,
        wall: float,
    ) -> bool:
        """Returns True while the recording waits for a keyframe."""
        if self.closed:
            return False
        if codec.name != "VP8":
            if self._video_codec_refused is None:
                self._video_codec_refused = codec.name
                logger.warning(
                    "%s: %s video cannot go into WebM; this recording keeps the sound only",
                    self.path.name,
                    codec.name,
                )
            return False
        if stream is not self._video_clock.stream:
            self._need_keyframe = True  # a switch: the new source's frames need their start
        try:
            descriptor, data = VpxPayloadDescriptor.parse(payload)
        except ValueError:
            return self._need_keyframe
        frame = self._frame
        if frame is None or frame.ts != ts:
            if frame is not None and frame.complete() is None:
                self._need_keyframe = True  # a frame was lost: wait for the next keyframe
            frame = self._frame = _Frame(ts)
        frame.parts[seq] = data
        if descriptor.partition_start and descriptor.partition_id == 0:
            frame.first = seq
        if marker:
            frame.last = seq
        whole = frame.complete()
        if whole is None:
            return self._need_keyframe
        self._frame = None
        size = vp8_keyframe_size(whole)
        if self._need_keyframe and size is None:
            return True
        pts = self._video_clock.pts(stream, ts, wall, self._video_last + 1)
        if pts <= self._video_last:
            return self._need_keyframe
        if self._container is None:
            self._open(size or DEFAULT_SIZE)
        if self.closed:
            return False
        self._need_keyframe = False
        self._mux(self._video_stream, whole, pts, None, VIDEO_RATE, keyframe=size is not None)
        self._video_last = pts
        return False

    # -- file ---------------------------------------------------------------------

    def _open(self, size: tuple[int, int] | None) -> None:
        try:
            container = av.open(str(self.path), "w", format="webm", options=WEBM_OPTIONS)
            for key, value in self._metadata.items():
                container.metadata[key] = value
            if size is not None:
                video = container.add_stream("libvpx", rate=30)
                video.codec_context.width, video.codec_context.height = size
                video.codec_context.pix_fmt = "yuv420p"
                video.time_base = Fraction(1, 1000)
                self._video_stream = video
            audio = container.add_stream("libopus", rate=OPUS_RATE)
            audio.codec_context.layout = "stereo"
            self._audio_stream = audio
            self._container = container
        except (OSError, av.FFmpegError) as exc:
            self._fail(exc)
            return
        pending, self._pending_audio = self._pending_audio, []
        self._audio_next = 0
        for pts, samples, payload in pending:
            self._write_audio(pts, samples, payload)

    def _write_audio(self, pts: int, samples: int, payload: bytes) -> None:
        self._fill_silence(pts)
        if self.closed:
            return
        self._mux(self._audio_stream, payload, pts, samples, OPUS_RATE)
        self._audio_next = pts + samples

    def _fill_silence(self, until: int) -> None:
        # The time the output carried nothing is silence in the file.
        while until - self._audio_next >= OPUS_SILENCE_SAMPLES and not self.closed:
            self._mux(
                self._audio_stream,
                OPUS_SILENCE,
                self._audio_next,
                OPUS_SILENCE_SAMPLES,
                OPUS_RATE,
            )
            self._audio_next += OPUS_SILENCE_SAMPLES

    def _mux(
        self,
        stream: av.stream.Stream | None,
        data: bytes,
        pts: int,
        duration: int | None,
        rate: int,
        *,
        keyframe: bool = False,
    ) -> None:
        if self._container is None or stream is None:
            return
        packet = av.Packet(data)
        packet.stream = stream
        packet.time_base = Fraction(1, rate)
        packet.pts = packet.dts = pts
        if duration is not None:
            packet.duration = duration
        if keyframe:
            packet.is_keyframe = True
        try:
            self._container.mux(packet)
        except (OSError, av.FFmpegError) as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        self.problem = f"{self.path.name}: {reason}"
        logger.error("recording stopped: %s", self.problem)
        self._detach()
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except (OSError, av.FFmpegError):
                pass  # the disk refuses the trailer too: the clusters written stay readable
        if self._on_failure is not None:
            self._on_failure(self, self.problem)

    def _detach(self) -> None:
        self.closed = True
        self._audio_output.remove_tap(self.audio_tap)
        if self._video_output is not None and self.video_tap is not None:
            self._video_output.remove_tap(self.video_tap)

    def close(self) -> None:
        """Stop listening, fill the sound up to now and finish the file."""
        if self.closed:
            return
        if self._container is None:
            self._open(DEFAULT_SIZE if self._video_output is not None else None)
        self._fill_silence(self._audio_clock.at(self._clock()))
        if self.closed:
            return
        self._detach()
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except (OSError, av.FFmpegError) as exc:
                self.problem = f"{self.path.name}: {exc}"
                logger.error("recording could not be finished: %s", self.problem)

    @property
    def bytes_written(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0
