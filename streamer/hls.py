"""HLS packaging: outputs turned into fMP4 (CMAF) segments and media playlists, once each.

An `HlsPackager` taps a video output and any number of audio outputs and writes, in
its directory, one low-latency media playlist per output (``<name>.m3u8``), its init
segment (``<name>_init.mp4``), its segments (``<name>_00001.m4s``...), about `segment_s`
long, and their ~0.5 s parts (``<name>_00001.0.m4s``...), cut by streamer/cmaf.py.
Encoding happens once per output, whatever the number of viewers (an HTTP cache or CDN
serves those):

- audio: the forwarded Opus is decoded and encoded to AAC-LC (what every HLS player
  plays); a time the output carries nothing (a cough, nobody on air) is silence;
- video: H.264 from the publisher is remuxed, never decoded (its access units go
  into the segments as they came; a keyframe is asked of the publisher shortly
  before each segment is due, since a segment starts on one); VP8 is decoded and
  encoded once to H.264 (x264, constrained baseline, zero-latency, a keyframe at
  every segment start). While the output carries no picture, the last one is
  repeated (black before any), so the presentation never stalls.
  `video_frames_remuxed` and `video_frames_encoded` count which way each went.

Every track is timed on the packager's one clock (the RTP time of each source, re-
anchored on arrival at switches, as recordings are), so the renditions stay in sync
however the outputs switch. Decoding and encoding run in one worker thread the
packager owns (libav's codecs block; the forwarding loop must not): taps only queue
packets. The master playlist is the caller's to write (it knows the languages):
`video_codec` and `size` tell it what the video is.
"""

from __future__ import annotations

import io
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

from .cmaf import LIST_SIZE, PART_S, PartedPlaylist, longest_segment_s
from .frames import (
    OPUS_RATE,
    VIDEO_RATE,
    AudioReorder,
    H264Frames,
    TapClock,
    Vp8Frames,
    add_h264_passthrough,
    opus_samples,
)
from .h264 import (
    H264Error,
    avcc_sample,
    is_idr,
    nal_units,
    parameter_sets,
    read_sps,
)

if TYPE_CHECKING:
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from .output import Output

logger = logging.getLogger(__name__)

SEGMENT_S = 2.0
AAC_BITRATE = 64_000
VIDEO_BITRATE = 800_000
AAC_FRAME = 1024
#: Silence is written this far behind the clock: live packets arrive before it.
AUDIO_LAG_S = 0.5
#: Without a new picture for this long, the last one is repeated...
VIDEO_IDLE_S = 0.5
VIDEO_IDLE_TICKS = round(VIDEO_IDLE_S * VIDEO_RATE)
#: ...at this rate.
SLATE_FPS = 5
DEFAULT_SIZE = (640, 360)
#: How long the video playlist waits for a first picture before it shows black.
FIRST_PICTURE_WAIT_S = 1.0
#: A remuxed stream asks its publisher for a keyframe this far into a segment. Early
#: enough that over a lossy path (the request lost and sent again, the keyframe's lost
#: packets retransmitted) it still comes before the segment must be cut without one:
#: at 0.9 of two seconds, a 5 % loss path often cut segments on a picture that needs
#: an earlier one, which a player starting there cannot decode.
KEYFRAME_LEAD = 0.75
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
        self.reorder = AudioReorder()
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
        for in_order, ts, data, at in self.reorder.push(stream, seq, timestamp, payload, wall):
            pts = self.clock.pts(in_order, ts, at, self.next_pts)
            if pts < self.next_pts:
                continue
            self.next_pts = pts + opus_samples(data)
            self.packager.put(("audio", self.index, pts, data))
        return False


class _VideoTap:
    def __init__(self, packager: HlsPackager) -> None:
        self.packager = packager
        self.clock = TapClock(VIDEO_RATE, packager.origin)
        self.vp8 = Vp8Frames()
        self.h264 = H264Frames()
        self.last_pts = -1
        # Where the segment in progress started, as far as the tap can tell (see
        # `_follow_segments`), and whether it had to start without a keyframe.
        self.segment_start = -(10**12)
        self.keyframe_owed = False
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
        name = codec.name.upper()
        if name == "H264":
            frames = self.h264.push(stream, seq, timestamp, marker, payload)
            need_keyframe = self.h264.need_keyframe
        elif name == "VP8":
            frames = self.vp8.push(stream, seq, timestamp, marker, payload)
            need_keyframe = self.vp8.need_keyframe
        else:
            if self.refused != codec.name:
                self.refused = codec.name
                logger.warning("HLS: %s video is not packaged (VP8 and H.264 are)", codec.name)
            return False
        for frame in frames:
            # A frame completed late (a repaired loss) is placed by its own timestamp. A
            # remuxed stream whose clock strayed jumps on a keyframe: a jump before a
            # picture that refers to earlier ones would leave those out until the next.
            resync = frame.keyframe or name != "H264"
            pts = self.clock.pts(stream, frame.ts, wall, self.last_pts + 1, resync=resync)
            if pts > self.last_pts:
                self.last_pts = pts
                if name == "H264":  # VP8 is encoded again: its keyframes are the encoder's
                    self._follow_segments(pts, frame.keyframe)
                self.packager.put((name.lower(), 0, pts, frame.data))
        return need_keyframe or (name == "H264" and self._keyframe_due(wall))

    def _keyframe_due(self, wall: float) -> bool:
        # Remuxed segments can only start where the publisher sent a keyframe: one is
        # asked for shortly before each segment is due (the forwarder keeps it to one
        # request at a time, so every packet may say so), unless one is arriving: its
        # packets may wait for a retransmission, and asking then would bring another.
        if self.h264.keyframe_coming:
            return False
        if self.keyframe_owed:
            return True
        at = self.clock.at(wall)
        return at - self.segment_start >= KEYFRAME_LEAD * self.packager.segment_s * VIDEO_RATE

    def _follow_segments(self, pts: int, keyframe: bool) -> None:
        # The packager cuts a segment on a keyframe once it is long enough, or, when none
        # came in time, where it would be too long, on the last keyframe repeated
        # (streamer/cmaf.py, `_VideoTrack`): the pictures then wait for the next one, which
        # is asked for until it comes. Requests are timed from where the segment started,
        # not from the last keyframe: one that came early (asked for by a subscriber that
        # lost a picture) starts no segment, and timing from it put the next request off
        # past the cut.
        segment = self.packager.segment_s
        since = (pts - self.segment_start) / VIDEO_RATE
        if keyframe:
            self.keyframe_owed = False
            if since >= (KEYFRAME_LEAD - 0.1) * segment:
                self.segment_start = pts
        elif since > longest_segment_s(segment):
            self.segment_start += round(longest_segment_s(segment) * VIDEO_RATE)
            self.keyframe_owed = True


class _AudioTrack:
    """Worker side of one audio rendition: Opus in, AAC segments out."""

    def __init__(self, directory: Path, name: str, playlist: _PlaylistOptions) -> None:
        self.decoder = av.CodecContext.create("opus", "r")
        self.decoder.sample_rate = OPUS_RATE
        self.decoder.layout = "stereo"
        self.resampler = av.AudioResampler(format="fltp", layout="mono", rate=OPUS_RATE)
        self.fifo = av.AudioFifo()
        self.container, header = _header_only()
        self.stream = self.container.add_stream("aac", rate=OPUS_RATE)
        self.stream.codec_context.layout = "mono"
        self.stream.codec_context.bit_rate = AAC_BITRATE
        self.stream.time_base = Fraction(1, OPUS_RATE)
        self.container.start_encoding()
        self.playlist = playlist.open(directory, name, header.getvalue())
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
                self._add(packet)

    def _add(self, packet: av.Packet) -> None:
        # The encoder's priming samples come first: decode times start at the origin.
        if packet.dts is not None:
            self.playlist.add(packet.dts + AAC_FRAME, bytes(packet), True)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self._add(packet)
        self.playlist.close()
        self.container.close()


class _VideoTrack:
    """Worker side of the video rendition: H.264 remuxed, VP8 encoded once, into one
    H.264 playlist.

    H.264 access units go into the segments as they came (no decoding): the init
    segment's ``avcC`` holds the first picture's parameter sets, and each keyframe
    keeps its own in-band, so a speaker with another picture size, or a stretch
    encoded here, decodes too. VP8 pictures, and the picture repeated while the
    output carries nothing, are encoded with x264 (constrained baseline, a keyframe
    at every segment start).

    Every remuxed segment starts on a keyframe, so that a player starting on any of them
    decodes all it gets: when the publisher's keyframe comes too late for the segment
    to end on it, the last keyframe is repeated where the segment must end, and the
    pictures after it (which refer to ones a player starting there never got) are left
    out until the next keyframe.
    """

    def __init__(
        self,
        directory: Path,
        name: str,
        playlist: _PlaylistOptions,
        segment_s: float,
        started: float,
    ):
        self.directory = directory
        self.name = name
        self.playlist_options = playlist
        self.playlist: PartedPlaylist | None = None
        self.segment_s = segment_s
        self.decoders: dict[str, av.CodecContext] = {}
        self.encoder: av.CodecContext | None = None
        self.container: av.container.OutputContainer | None = None
        self.stream: av.video.stream.VideoStream | None = None
        self.size: tuple[int, int] | None = None
        self.codec: str | None = None
        self.last_frame: av.VideoFrame | None = None
        self.last_keyframe_unit: bytes | None = None
        self.last_pts = -1
        self.last_keyframe = -(10**12)
        self.origin = started
        # How far behind the packager's clock the source's pictures are placed (the
        # tap's clock follows their RTP times, which lag arrival as delays grow): a
        # repeated picture goes where the source's next one will land, not ahead of it.
        self.behind = 0
        # The first picture is awaited a moment, so that a remuxed stream's own
        # parameter sets make the init segment.
        self.last_input = started + FIRST_PICTURE_WAIT_S - VIDEO_IDLE_S
        self.remuxing = False  # whether the last sample written was remuxed
        # A repeated keyframe reset the decoder's references: the publisher's stream
        # goes on from its next keyframe only.
        self.resume_on_keyframe = False
        #: Pictures repeated while the output carried none, or where a segment had to end
        #: before a keyframe came (remuxing: its last keyframe).
        self.repeated = 0
        #: Pictures written as the publisher sent them / encoded here.
        self.remuxed = 0
        self.encoded = 0

    def open(self, sps: bytes, pps: bytes) -> None:
        parameters = read_sps(sps)
        self.size = (parameters.width, parameters.height)
        self.codec = parameters.codec
        self.container, header = _header_only()
        self.stream = add_h264_passthrough(
            self.container, sps, pps, self.size, Fraction(1, VIDEO_RATE)
        )
        self.container.start_encoding()
        self.playlist = self.playlist_options.open(
            # A segment may end on a keyframe a little early: a remuxed stream's is asked
            # for shortly before the segment is due (margin: it may come a bit sooner).
            self.directory,
            self.name,
            header.getvalue(),
            KEYFRAME_LEAD - 0.1,
        )

    def remux(self, pts: int, data: bytes, wall: float) -> None:
        """One H.264 access unit from the publisher, into the segments as it is."""
        units = nal_units(data)
        keyframe = is_idr(units)
        if self.container is None:
            sets = parameter_sets(units)
            if sets is None:
                return
            try:
                self.open(*sets)
            except H264Error as exc:
                logger.warning("HLS: H.264 video without a usable SPS: %s", exc)
                return
        self._follow_source(pts, wall)
        if (not self.remuxing or self.resume_on_keyframe) and not keyframe:
            return  # after encoded or repeated pictures, resume on a keyframe
        if pts <= self.last_pts:
            return  # behind a repeated picture: the repeats go on until one is written
        due = self._sync_due() if self.remuxing else None
        if due is not None and (pts > due or (pts == due and not keyframe)):
            # The segment must end before this picture, and no keyframe came in time (or
            # the source's clock jumped ahead): the last keyframe again from there (or
            # from where a pause would have started to repeat it), as in a pause, up to
            # this picture, and the pictures wait for the next keyframe. A picture that
            # needs others cannot take the last place either: nothing would fit after it.
            at = max(min(due, self.last_pts + VIDEO_IDLE_TICKS), self.last_pts + 1)
            while True:
                self._repeat_keyframe(at)
                at += VIDEO_RATE // SLATE_FPS
                if at >= pts:
                    break
            if not keyframe:
                return
        self.last_input = wall
        if keyframe:
            self.last_keyframe_unit = data
            self.resume_on_keyframe = False
        self._write(avcc_sample(units), pts, keyframe)
        self.remuxing = True
        self.remuxed += 1

    def transcode(self, codec: str, pts: int, data: bytes, wall: float) -> None:
        """One VP8 frame, decoded and encoded into the H.264 segments."""
        decoder = self.decoders.get(codec)
        if decoder is None:
            decoder = self.decoders[codec] = av.CodecContext.create(codec, "r")
        try:
            decoded = decoder.decode(av.Packet(data))
        except av.FFmpegError:
            return
        self._follow_source(pts, wall)
        self.last_input = wall
        for frame in decoded:
            self.last_frame = frame
            self._encode(frame, pts)

    def idle(self, pts: int, wall: float) -> None:
        """No picture lately (`pts`: the packager's clock now): repeat the last one (black
        before any)."""
        if wall - self.last_input < VIDEO_IDLE_S:
            return
        pts -= self.behind
        if self.remuxing and self.last_keyframe_unit is not None:
            # The publisher's last keyframe again: nothing is decoded for a pause. One
            # repeat behind where the source's next picture lands: a little jitter must
            # not put that one (the keyframe the repeats wait for) behind a repeat.
            pts -= VIDEO_RATE // SLATE_FPS
            due = self._sync_due()
            if due is not None and pts > due:
                self._repeat_keyframe(max(due, self.last_pts + 1))
            elif pts - self.last_pts >= VIDEO_RATE // SLATE_FPS:
                self._repeat_keyframe(pts)
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

    def _follow_source(self, pts: int, wall: float) -> None:
        self.behind = max(0, round((wall - self.origin) * VIDEO_RATE) - pts)

    def _sync_due(self) -> int | None:
        return self.playlist.sync_due if self.playlist is not None else None

    def _repeat_keyframe(self, pts: int) -> None:
        """The publisher's last keyframe again at `pts`; its pictures resume on the next."""
        assert self.last_keyframe_unit is not None
        self._write(avcc_sample(nal_units(self.last_keyframe_unit)), pts, True)
        self.resume_on_keyframe = True
        self.repeated += 1

    def _encode(self, frame: av.VideoFrame, pts: int) -> None:
        if pts <= self.last_pts:
            return
        encoder = self.encoder
        if encoder is None:
            encoder = self.encoder = _h264_encoder(self.size or (frame.width, frame.height))
        size = (encoder.width, encoder.height)
        if (frame.width, frame.height) != size or frame.format.name != "yuv420p":
            frame = frame.reformat(width=size[0], height=size[1], format="yuv420p")
        out = av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p")
        out.pts = pts
        out.time_base = Fraction(1, VIDEO_RATE)
        if self.remuxing or pts - self.last_keyframe >= self.segment_s * VIDEO_RATE:
            out.pict_type = av.video.frame.PictureType.I
        self.encoded += 1
        for packet in encoder.encode(out):
            units = nal_units(bytes(packet))
            if self.container is None:
                sets = parameter_sets(units)
                if sets is None:
                    continue
                self.open(*sets)
            self._write(avcc_sample(units), packet.pts, packet.is_keyframe)
            self.remuxing = False

    def _write(self, sample: bytes, pts: int, keyframe: bool) -> None:
        if pts <= self.last_pts or self.playlist is None:
            return
        if keyframe:
            self.last_keyframe = pts
        self.last_pts = pts
        # No B-frames (constrained baseline, as browsers send and x264 is told): the
        # decode time is the presentation time.
        self.playlist.add(pts, sample, keyframe)

    def close(self) -> None:
        if self.playlist is not None:
            self.playlist.close()
        if self.container is not None:
            self.container.close()


def _h264_encoder(size: tuple[int, int]) -> av.CodecContext:
    """x264 for the pictures the node encodes itself; parameter sets in-band, so its
    keyframes decode in a stream whose init segment holds another encoder's."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = size
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, VIDEO_RATE)
    # The level x264 writes follows the frame rate it is told (not the time base's).
    encoder.framerate = Fraction(30)
    encoder.bit_rate = VIDEO_BITRATE
    encoder.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "profile": "baseline",
        # Keyframes come where the packager says (a segment's start), not by count.
        "g": "100000",
        "keyint_min": "100000",
        "sc_threshold": "0",
    }
    return encoder


def _header_only() -> tuple[av.container.OutputContainer, io.BytesIO]:
    """An mp4 muxer whose only product is the init segment (``ftyp`` + ``moov``, made
    for fragments): the fragments themselves are cut by the playlist."""
    header = io.BytesIO()
    container = av.open(
        header, "w", format="mp4", options={"movflags": "empty_moov+default_base_moof+frag_custom"}
    )
    return container, header


@dataclass(frozen=True)
class _PlaylistOptions:
    segment_s: float
    part_s: float
    list_size: int
    on_publish: Callable[[str], None]
    playlists: dict[str, PartedPlaylist]

    def open(
        self, directory: Path, name: str, init: bytes, keyframe_lead: float = 1.0
    ) -> PartedPlaylist:
        playlist = self.playlists[name] = PartedPlaylist(
            directory,
            name,
            init,
            segment_s=self.segment_s,
            part_s=self.part_s,
            list_size=self.list_size,
            keyframe_lead=keyframe_lead,
            on_publish=self.on_publish,
        )
        return playlist


class HlsPackager:
    """Packages a video output and audio outputs into `directory` until `close()`."""

    def __init__(
        self,
        directory: Path,
        video: Rendition | None,
        audio: Sequence[Rendition],
        *,
        segment_s: float = SEGMENT_S,
        part_s: float = PART_S,
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
        self.part_s = part_s
        #: Told (from the worker thread) the name of each playlist that changed.
        self.on_publish: Callable[[str], None] | None = None
        self._playlists: dict[str, PartedPlaylist] = {}
        self._options = _PlaylistOptions(
            segment_s, part_s, list_size, self._published, self._playlists
        )
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
    def video_frames_remuxed(self) -> int:
        """Pictures written as the publisher sent them (H.264), never decoded."""
        track = self._video_track
        return track.remuxed if track is not None else 0

    @property
    def video_frames_encoded(self) -> int:
        """Pictures this node encoded (VP8 sources, and the picture shown while the
        program carries none)."""
        track = self._video_track
        return track.encoded if track is not None else 0

    @property
    def cpu_s(self) -> float:
        """CPU time the worker thread has used (decoding, encoding, writing)."""
        return self._cpu_s

    def ready(self) -> bool:
        """Every playlist lists at least one complete segment."""
        names = [r.name for r in self._audio] + ([self._video.name] if self._video else [])
        return all((self.progress(name) or (0, 0))[0] > 0 for name in names)

    def progress(self, name: str) -> tuple[int, int] | None:
        """(media sequence number of the segment in progress, parts of it published) in
        playlist `name`; None before it exists."""
        playlist = self._playlists.get(name)
        return playlist.progress if playlist is not None else None

    def last_part(self, name: str) -> tuple[int, int] | None:
        """(media sequence number, part index) of the last part of playlist `name`."""
        playlist = self._playlists.get(name)
        return playlist.last_part if playlist is not None else None

    def _published(self, name: str) -> None:
        if self.on_publish is not None:
            self.on_publish(name)

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
                    self.directory, self._video.name, self._options, self.segment_s, self.origin
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
                elif self._video_track is None:
                    pass
                elif kind == "h264":
                    self._video_track.remux(pts, data, self.clock())
                else:
                    self._video_track.transcode(kind, pts, data, self.clock())
            wall = self.clock()
            behind = round((wall - self.origin - AUDIO_LAG_S) * OPUS_RATE)
            for track in self._audio_tracks:
                track.silence_until(behind)
            if self._video_track is not None:
                self._video_track.idle(round((wall - self.origin) * VIDEO_RATE), wall)
            self._cpu_s = time.thread_time() - started_cpu
