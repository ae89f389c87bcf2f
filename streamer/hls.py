"""HLS packaging: outputs turned into fMP4 (CMAF) segments and media playlists, once each.

An `HlsPackager` taps a video output and any number of audio outputs and writes, in
its directory, one media playlist per output (``<name>.m3u8``), its init segment
(``<name>_init.mp4``) and its segments (``<name>_00001.m4s``...), about `segment_s`
long. Encoding happens once per output, whatever the number of viewers (an HTTP cache
or CDN serves those):

- audio: the forwarded Opus is decoded and encoded to AAC-LC (what every HLS player
  plays); a time the output carries nothing (a cough, nobody on air) is silence;
- video: VP8 is decoded and encoded once to H.264 (x264, constrained baseline,
  zero-latency, a keyframe at every segment start). While the output carries no
  picture, the last one is repeated (black before any), so the presentation never
  stalls.

Every track is timed on the packager's one clock (the RTP time of each source, re-
anchored on arrival at switches, as recordings are), so the renditions stay in sync
however the outputs switch. Decoding and encoding run in one worker thread the
packager owns (libav's codecs block; the forwarding loop must not): taps only queue
packets. The master playlist is the caller's to write (it knows the languages):
`video_codec` and `size` tell it what the video is.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from .frames import OPUS_RATE, VIDEO_RATE, TapClock, Vp8Frames, opus_samples

if TYPE_CHECKING:
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from .output import Output

logger = logging.getLogger(__name__)

SEGMENT_S = 2.0
#: Segments each media playlist lists (older ones are deleted).
LIST_SIZE = 6
AAC_BITRATE = 64_000
VIDEO_BITRATE = 800_000
AAC_FRAME = 1024
#: Silence is written this far behind the clock: live packets arrive before it.
AUDIO_LAG_S = 0.5
#: Without a new picture for this long, the last one is repeated...
VIDEO_IDLE_S = 0.5
#: ...at this rate.
SLATE_FPS = 5
DEFAULT_SIZE = (640, 360)
#: Largest queue of packets waiting for the worker (a few seconds of everything).
MAX_QUEUE = 2000


@dataclass(frozen=True)
class Rendition:
    """One output packaged as one media playlist, named `name` (``name.m3u8``)."""

    name: str
    output: Output


class _AudioTap:
    def __init__(self, packager: HlsPackager, index: int) -> None:
        self.packager = packager
        self.index = index
        self.clock = TapClock(OPUS_RATE, packager.origin)
        self.next_pts = 0

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
        pts = self.clock.pts(stream, timestamp, wall, self.next_pts)
        if pts < self.next_pts:
            return False
        self.next_pts = pts + opus_samples(payload)
        self.packager.put(("audio", self.index, pts, payload))
        return False


class _VideoTap:
    def __init__(self, packager: HlsPackager) -> None:
        self.packager = packager
        self.clock = TapClock(VIDEO_RATE, packager.origin)
        self.frames = Vp8Frames()
        self.last_pts = -1
        self.refused: str | None = None

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
        if codec.name != "VP8":
            if self.refused != codec.name:
                self.refused = codec.name
                logger.warning("HLS: %s video is not packaged (VP8 only)", codec.name)
            return False
        whole = self.frames.push(stream, seq, timestamp, marker, payload)
        if whole is None:
            return self.frames.need_keyframe
        pts = self.clock.pts(stream, timestamp, wall, self.last_pts + 1)
        if pts > self.last_pts:
            self.last_pts = pts
            self.packager.put(("video", 0, pts, whole))
        return False


class _AudioTrack:
    """Worker side of one audio rendition: Opus in, AAC segments out."""

    def __init__(self, directory: Path, name: str, options: dict[str, str]) -> None:
        self.decoder = av.CodecContext.create("opus", "r")
        self.decoder.sample_rate = OPUS_RATE
        self.decoder.layout = "stereo"
        self.resampler = av.AudioResampler(format="fltp", layout="mono", rate=OPUS_RATE)
        self.fifo = av.AudioFifo()
        self.container = av.open(
            str(directory / f"{name}.m3u8"),
            "w",
            format="hls",
            options=_segments(directory, name, options),
        )
        self.stream = self.container.add_stream("aac", rate=OPUS_RATE)
        self.stream.codec_context.layout = "mono"
        self.stream.codec_context.bit_rate = AAC_BITRATE
        self.stream.time_base = Fraction(1, OPUS_RATE)
        self.next_pts = 0  # samples handed to the encoder so far
        self.encoded = 0

    def packet(self, pts: int, payload: bytes) -> None:
        if pts < self.next_pts:
            return
        self.silence_until(pts)
        try:
            frames = self.decoder.decode(av.Packet(payload))
        except av.FFmpegError:
            frames = []
        for frame in frames:
            for mono in self.resampler.resample(frame):
                mono.pts = None
                self._push(mono)

    def silence_until(self, pts: int) -> None:
        while pts - self.next_pts >= 960:
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 960), dtype=np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate = OPUS_RATE
            self._push(frame)

    def _push(self, frame: av.AudioFrame) -> None:
        frame.pts = self.next_pts
        frame.time_base = Fraction(1, OPUS_RATE)
        self.next_pts += frame.samples
        self.fifo.write(frame)
        while self.fifo.samples >= AAC_FRAME:
            chunk = self.fifo.read(AAC_FRAME)
            chunk.pts = self.encoded
            chunk.time_base = Fraction(1, OPUS_RATE)
            self.encoded += AAC_FRAME
            for packet in self.stream.encode(chunk):
                self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()


class _VideoTrack:
    """Worker side of the video rendition: VP8 in, H.264 segments out."""

    def __init__(self, directory: Path, name: str, options: dict[str, str], segment_s: float):
        self.directory = directory
        self.name = name
        self.options = options
        self.segment_s = segment_s
        self.decoder = av.CodecContext.create("vp8", "r")
        self.container: av.container.OutputContainer | None = None
        self.stream: av.video.stream.VideoStream | None = None
        self.size: tuple[int, int] | None = None
        self.last_frame: av.VideoFrame | None = None
        self.last_pts = -1
        self.last_keyframe = -(10**12)
        self.last_input = 0.0

    def open(self, size: tuple[int, int]) -> None:
        self.size = size
        self.container = av.open(
            str(self.directory / f"{self.name}.m3u8"),
            "w",
            format="hls",
            options=_segments(self.directory, self.name, self.options),
        )
        stream = self.container.add_stream(
            "libx264",
            rate=30,
            options={
                "preset": "ultrafast",
                "tune": "zerolatency",
                "profile": "baseline",
                # Keyframes come where the packager says (a segment's start), not by count.
                "g": "100000",
                "keyint_min": "100000",
                "sc_threshold": "0",
            },
        )
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = VIDEO_BITRATE
        stream.codec_context.time_base = Fraction(1, VIDEO_RATE)
        stream.time_base = Fraction(1, VIDEO_RATE)
        self.stream = stream

    def frame(self, pts: int, data: bytes, wall: float) -> None:
        try:
            decoded = self.decoder.decode(av.Packet(data))
        except av.FFmpegError:
            return
        self.last_input = wall
        for frame in decoded:
            self._encode(frame, pts)

    def idle(self, pts: int, wall: float) -> None:
        """No picture lately: repeat the last one (black before any)."""
        if wall - self.last_input < VIDEO_IDLE_S:
            return
        if pts - self.last_pts < VIDEO_RATE // SLATE_FPS:
            return
        frame = self.last_frame
        if frame is None:
            width, height = self.size or DEFAULT_SIZE
            frame = av.VideoFrame.from_ndarray(
                np.zeros((height, width, 3), dtype=np.uint8), format="rgb24"
            )
        self._encode(frame, pts)

    def _encode(self, frame: av.VideoFrame, pts: int) -> None:
        if pts <= self.last_pts:
            return
        if self.container is None:
            self.open((frame.width, frame.height))
        assert self.stream is not None and self.container is not None and self.size is not None
        if (frame.width, frame.height) != self.size or frame.format.name != "yuv420p":
            frame = frame.reformat(width=self.size[0], height=self.size[1], format="yuv420p")
        self.last_frame = frame
        out = av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p")
        out.pts = pts
        out.time_base = Fraction(1, VIDEO_RATE)
        if pts - self.last_keyframe >= self.segment_s * VIDEO_RATE:
            out.pict_type = av.video.frame.PictureType.I
            self.last_keyframe = pts
        self.last_pts = pts
        for packet in self.stream.encode(out):
            self.container.mux(packet)

    @property
    def codec(self) -> str | None:
        """The RFC 6381 codec of the stream (``avc1.42c01e``), once it is encoding."""
        if self.stream is None:
            return None
        extradata = self.stream.codec_context.extradata or b""
        at = extradata.find(b"\x00\x00\x01\x67")
        if at < 0 or len(extradata) < at + 7:
            return "avc1.42c01f"
        return "avc1." + extradata[at + 4 : at + 7].hex()

    def close(self) -> None:
        if self.stream is not None and self.container is not None:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
            self.container.close()


def _segments(directory: Path, name: str, options: dict[str, str]) -> dict[str, str]:
    return {
        **options,
        "hls_fmp4_init_filename": f"{name}_init.mp4",
        "hls_segment_filename": str(directory / f"{name}_%05d.m4s"),
    }


class HlsPackager:
    """Packages a video output and audio outputs into `directory` until `close()`."""

    def __init__(
        self,
        directory: Path,
        video: Rendition | None,
        audio: Sequence[Rendition],
        *,
        segment_s: float = SEGMENT_S,
        list_size: int = LIST_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_s = segment_s
        self.clock = clock
        self.origin = clock()
        self.problem: str | None = None
        self.dropped = 0
        self._options = {
            "hls_time": f"{segment_s:g}",
            "hls_list_size": str(list_size),
            "hls_segment_type": "fmp4",
            # temp_file: a segment appears under its name only once complete.
            "hls_flags": "delete_segments+independent_segments+temp_file+program_date_time",
        }
        self._queue: queue.SimpleQueue[tuple[str, int, int, bytes] | None] = queue.SimpleQueue()
        self._video = video
        self._audio = list(audio)
        self._audio_taps = [_AudioTap(self, i) for i in range(len(self._audio))]
        self._video_tap = _VideoTap(self) if video is not None else None
        self._video_track: _VideoTrack | None = None
        self._audio_tracks: list[_AudioTrack] = []
        self._closed = False
        self._cpu_s = 0.0
        self._thread = threading.Thread(target=self._run, name="hls-packager", daemon=True)
        self._thread.start()
        for rendition, tap in zip(self._audio, self._audio_taps, strict=True):
            rendition.output.add_tap(tap)
        if video is not None and self._video_tap is not None:
            video.output.add_tap(self._video_tap)

    # -- what the master playlist needs ---------------------------------------------

    @property
    def video_codec(self) -> str | None:
        track = self._video_track
        return track.codec if track is not None else None

    @property
    def size(self) -> tuple[int, int] | None:
        track = self._video_track
        return track.size if track is not None else None

    @property
    def cpu_s(self) -> float:
        """CPU time the worker thread has used (decoding, encoding, writing)."""
        return self._cpu_s

    def ready(self) -> bool:
        """Every playlist lists at least one segment."""
        names = [r.name for r in self._audio] + ([self._video.name] if self._video else [])
        for name in names:
            playlist = self.directory / f"{name}.m3u8"
            try:
                if ".m4s" not in playlist.read_text():
                    return False
            except OSError:
                return False
        return True

    # -- the loop side ----------------------------------------------------------------

    def put(self, item: tuple[str, int, int, bytes]) -> None:
        if self._closed:
            return
        if self._queue.qsize() > MAX_QUEUE:
            self.dropped += 1  # the worker cannot keep up: drop rather than grow
            return
        self._queue.put(item)

    def close(self) -> None:
        """Stop tapping and let the worker finish the playlists (not waiting for it)."""
        if self._closed:
            return
        self._closed = True
        for rendition, tap in zip(self._audio, self._audio_taps, strict=True):
            rendition.output.remove_tap(tap)
        if self._video is not None and self._video_tap is not None:
            self._video.output.remove_tap(self._video_tap)
        self._queue.put(None)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the worker to finish (blocking: call it off the event loop)."""
        self._thread.join(timeout)

    # -- the worker thread --------------------------------------------------------------

    def _run(self) -> None:
        started_cpu = time.thread_time()
        try:
            self._audio_tracks = [
                _AudioTrack(self.directory, r.name, self._options) for r in self._audio
            ]
            if self._video is not None:
                self._video_track = _VideoTrack(
                    self.directory, self._video.name, self._options, self.segment_s
                )
            self._work()
        except Exception as exc:  # a full disk, a codec refusing: HLS stops, live goes on
            self.problem = str(exc) or type(exc).__name__
            logger.exception("HLS packaging stopped")
            self.close()
        finally:
            for track in [*self._audio_tracks, self._video_track]:
                if track is None:
                    continue
                try:
                    track.close()
                except Exception:
                    logger.warning("HLS: a playlist could not be finished", exc_info=True)
            self._cpu_s = time.thread_time() - started_cpu

    def _work(self) -> None:
        started_cpu = time.thread_time()
        while True:
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                item = ()
            if item is None:
                return
            if item:
                kind, index, pts, data = item
                if kind == "audio":
                    self._audio_tracks[index].packet(pts, data)
                elif self._video_track is not None:
                    self._video_track.frame(pts, data, self.clock())
            wall = self.clock()
            behind = round((wall - self.origin - AUDIO_LAG_S) * OPUS_RATE)
            for track in self._audio_tracks:
                track.silence_until(behind)
            if self._video_track is not None:
                self._video_track.idle(round((wall - self.origin) * VIDEO_RATE), wall)
            self._cpu_s = time.thread_time() - started_cpu
