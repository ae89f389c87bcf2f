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

H.264 video goes into the file the same way (its access units as they came, the first
keyframe's parameter sets in the track's ``avcC``), but WebM holds VP8 only: a recording
whose video is H.264 is written as Matroska, its path's suffix turned to ``.mkv``. The
codec of a recording's video is the one of its first picture (or, with none within
`FIRST_KEYFRAME_WAIT_S`, the `video_codec` the recording was told to expect); pictures of
the other codec (a speaker whose browser could not send it) are left out, the sound goes on.

The file is written as a live WebM or Matroska (clusters of at most a second, flushed at every
packet): a process that dies leaves a file readable up to its last second. A write
that fails (a full disk) stops this recording, says why in `problem`, and calls
`on_failure`; the live event never sees the error.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av

from .frames import (
    OPUS_FRAME_SAMPLES,
    OPUS_RATE,
    VIDEO_RATE,
    AudioReorder,
    H264Frames,
    TapClock,
    Vp8Frames,
    add_h264_passthrough,
    opus_samples,
    vp8_keyframe_size,
)
from .h264 import (
    H264Error,
    avcc_sample,
    nal_units,
    parameter_sets,
    read_sps,
)

if TYPE_CHECKING:
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from .output import Output

logger = logging.getLogger(__name__)

#: A 20 ms Opus frame that decodes to silence (CELT, fullband, mono, no data).
OPUS_SILENCE = b"\xf8\xff\xfe"
OPUS_SILENCE_SAMPLES = OPUS_FRAME_SAMPLES
#: How long a recording with video waits for the first keyframe (keeping the audio)
#: before it writes its header with a default picture size.
FIRST_KEYFRAME_WAIT_S = 3.0
DEFAULT_SIZE = (640, 480)
#: Audio kept while the header waits for the first keyframe (over the wait, at 20 ms).
MAX_PENDING_AUDIO = 400
#: Container options: a live WebM, clusters of at most a second, flushed at each packet.
WEBM_OPTIONS = {"live": "1", "cluster_time_limit": "1000", "flush_packets": "1"}
#: The file suffix of a recording whose video is H.264 (WebM cannot hold it).
MATROSKA_SUFFIX = ".mkv"

FailureCallback = Callable[["Recording", str], None]


class _AudioTap:
    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self.reorder = AudioReorder()

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
        for in_order, ts, data, at in self.reorder.push(stream, seq, timestamp, payload, wall):
            self.recording.audio_packet(in_order, ts, data, at)
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
        video_codec: str = "vp8",
    ) -> None:
        self.path = Path(path)
        # "VP8" or "H264": fixed by the first picture, or this default without one.
        self._default_codec = "H264" if video_codec.lower() == "h264" else "VP8"
        self.video_codec: str | None = None
        self.problem: str | None = None
        self.closed = False
        self._metadata = dict(metadata or {})
        self._on_failure = on_failure
        self._clock = clock
        self._origin = clock()
        #: How long the header waits for the first keyframe (`FIRST_KEYFRAME_WAIT_S`).
        self.first_keyframe_wait_s = FIRST_KEYFRAME_WAIT_S
        self._audio_output = audio
        self._video_output = video
        self._audio_clock = TapClock(OPUS_RATE, self._origin)
        self._video_clock = TapClock(VIDEO_RATE, self._origin)
        self._audio_next = 0  # end of what the audio track holds, in samples
        self._video_last = -1  # pts of the last frame written
        self._frames = Vp8Frames()
        self._h264 = H264Frames()
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
                or wall - self._origin >= self.first_keyframe_wait_s
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
        name = codec.name.upper()
        if name not in ("VP8", "H264") or (self.video_codec not in (None, name)):
            if self._video_codec_refused != name:
                self._video_codec_refused = name
                logger.warning(
                    "%s: %s video cannot go into this file (its video is %s); "
                    "it keeps the sound until the picture is %s again",
                    self.path.name,
                    codec.name,
                    self.video_codec or "VP8",
                    self.video_codec or "VP8",
                )
            return False
        self._video_codec_refused = None
        if name == "H264":
            return self._h264_packet(stream, seq, ts, marker, payload, wall)
        frames = self._frames
        for frame in frames.push(stream, seq, ts, marker, payload):
            size = vp8_keyframe_size(frame.data)
            # A frame completed late (a repaired loss) is placed by its own timestamp.
            pts = self._video_clock.pts(stream, frame.ts, wall, self._video_last + 1)
            if pts <= self._video_last:
                continue
            if self._container is None:
                self._open(size or DEFAULT_SIZE, "VP8")
            if self.closed:
                return False
            self._mux(
                self._video_stream, frame.data, pts, None, VIDEO_RATE, keyframe=size is not None
            )
            self._video_last = pts
        return frames.need_keyframe

    def _h264_packet(
        self, stream: object, seq: int, ts: int, marker: bool, payload: bytes, wall: float
    ) -> bool:
        frames = self._h264
        for frame in frames.push(stream, seq, ts, marker, payload):
            units = nal_units(frame.data)
            pts = self._video_clock.pts(stream, frame.ts, wall, self._video_last + 1)
            if pts <= self._video_last:
                continue
            if self._container is None:
                sets = parameter_sets(units)
                if sets is None:
                    frames.need_keyframe = True
                    return True  # a keyframe without its parameter sets cannot start a file
                self._open(None, "H264", sets)
            if self.closed:
                return False
            self._mux(
                self._video_stream,
                avcc_sample(units),
                pts,
                None,
                VIDEO_RATE,
                keyframe=frame.keyframe,
            )
            self._video_last = pts
        return frames.need_keyframe

    def _open(
        self,
        size: tuple[int, int] | None,
        codec: str | None = None,
        parameter_sets: tuple[bytes, bytes] | None = None,
    ) -> None:
        """Start the file: `size` and `codec` of its video (none: sound only);
        an H.264 file's first SPS and PPS."""
        if size is not None or codec is not None:
            codec = codec or self._default_codec
            self.video_codec = codec
        h264 = codec == "H264"
        if h264:
            self.path = self.path.with_suffix(MATROSKA_SUFFIX)
        try:
            container = av.open(
                str(self.path), "w", format="matroska" if h264 else "webm", options=WEBM_OPTIONS
            )
            for key, value in self._metadata.items():
                container.metadata[key] = value
            if h264:
                self._video_stream = _h264_stream(container, parameter_sets)
            elif size is not None:
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


def _h264_stream(
    container: av.container.OutputContainer, parameter_sets: tuple[bytes, bytes] | None
) -> av.video.stream.VideoStream:
    """A video track for H.264 packets as they came, described by their SPS and PPS.

    With no picture yet (a file started on its sound, nobody on air), the ``avcC`` is
    x264's for a black picture of the default size: every keyframe carries its own
    parameter sets in-band, which decoders follow.
    """
    try:
        sps = read_sps(parameter_sets[0]) if parameter_sets is not None else None
    except H264Error as exc:
        logger.warning("recording: an H.264 SPS that cannot be read: %s", exc)
        sps = None
    if parameter_sets is None or sps is None:
        parameter_sets = _slate_parameter_sets(DEFAULT_SIZE)
        width, height = DEFAULT_SIZE
    else:
        width, height = sps.width, sps.height
    return add_h264_passthrough(container, *parameter_sets, (width, height), Fraction(1, 1000))


@functools.cache
def _slate_parameter_sets(size: tuple[int, int]) -> tuple[bytes, bytes]:
    """SPS and PPS of x264 for pictures of `size` (one black picture encoded, once)."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = size
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, VIDEO_RATE)
    # The level x264 writes follows the frame rate it is told (not the time base's).
    encoder.framerate = Fraction(30)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline"}
    frame = av.VideoFrame(size[0], size[1], "yuv420p")
    frame.pts = 0
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    units = [unit for packet in encoder.encode(frame) for unit in nal_units(bytes(packet))]
    units += [unit for packet in encoder.encode(None) for unit in nal_units(bytes(packet))]
    sets = parameter_sets(units)
    if sets is None:
        raise H264Error("x264 wrote no parameter sets")
    return sets
