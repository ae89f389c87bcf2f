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
    TapClock,
    Vp8Frames,
    opus_samples,
    vp8_keyframe_size,
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

FailureCallback = Callable[["Recording", str], None]


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
        self._audio_clock = TapClock(OPUS_RATE, self._origin)
        self._video_clock = TapClock(VIDEO_RATE, self._origin)
        self._audio_next = 0  # end of what the audio track holds, in samples
        self._video_last = -1  # pts of the last frame written
        self._frames = Vp8Frames()
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
        frames = self._frames
        whole = frames.push(stream, seq, ts, marker, payload)
        if whole is None:
            return frames.need_keyframe
        size = vp8_keyframe_size(whole)
        pts = self._video_clock.pts(stream, ts, wall, self._video_last + 1)
        if pts <= self._video_last:
            return False
        if self._container is None:
            self._open(size or DEFAULT_SIZE)
        if self.closed:
            return False
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
