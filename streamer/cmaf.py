"""Low-latency HLS media playlists: samples cut into CMAF parts and segments.

A `PartedPlaylist` takes the encoded samples of one track (its init segment comes from
libav's mp4 muxer) and writes, in its directory:

- ``<name>_init.mp4``: the init segment (``ftyp`` + ``moov``);
- ``<name>_00007.2.m4s``: part 2 of segment 7, one fMP4 fragment (``moof`` + ``mdat``)
  of at most `part_s`. One exception: a sample longer than that (a picture shown while
  the source stalled, until the packager repeats it) cannot be split, and its part is
  longer than PART-TARGET: players take it; the alternative, a hole in the timeline,
  stalls them;
- ``<name>_00007.m4s``: segment 7, the concatenation of its parts, for players that
  ignore parts. A segment starts on a sync sample (a keyframe) once the last one is
  long enough, and is cut anyway before it could round above the target duration
  (`sync_due` tells a caller when, so that it can put a sync sample there);
- ``<name>.m3u8``: the media playlist (``EXT-X-VERSION:9``), rewritten atomically after
  each part: the last segments, the parts of the last complete segment and of the one
  in progress, and a preload hint for the next part.

Fragments are written here rather than by libav's muxers because their boundaries must
be the playlist's: a part ends where the playlist says, and a segment is exactly its
parts. `on_publish` is told (from the writer's thread) whenever the playlist changes,
and `progress` says what it shows, so a server can answer blocking playlist reloads.
"""

from __future__ import annotations

import math
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

#: Part length: a third to a half second is what LL-HLS players are tuned for.
PART_S = 0.5
#: Segments the playlist lists; files of older ones are deleted a little later.
LIST_SIZE = 6
#: Segments kept on disk past the list, for players still fetching them.
KEEP_EXTRA = 2

_SYNC = 0x02000000  # sample_depends_on = 2: depends on no other sample
_NON_SYNC = 0x01010000  # depends on others, sample_is_non_sync_sample


@dataclass
class _Sample:
    dts: int
    data: bytes
    sync: bool
    duration: int = 0


@dataclass
class _Part:
    index: int
    duration: int
    independent: bool
    uri: str


@dataclass
class _Segment:
    msn: int
    started: datetime
    parts: list[_Part] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    duration: int = 0
    complete: bool = False

    def uri(self, name: str) -> str:
        return f"{name}_{self.msn:05d}.m4s"


def target_duration(segment_s: float) -> int:
    """EXT-X-TARGETDURATION of segments of `segment_s`."""
    return max(1, math.ceil(segment_s))


def longest_segment_s(segment_s: float) -> float:
    """Where a segment is cut even without a keyframe: its EXTINF rounded to the nearest
    second must not exceed the target."""
    return target_duration(segment_s) + 0.45


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full_box(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return _box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


def fragment(sequence: int, track_id: int, base_dts: int, samples: list[_Sample]) -> bytes:
    """One CMAF fragment: a ``moof`` describing `samples`, then their ``mdat``."""

    def moof(data_offset: int) -> bytes:
        # data-offset, per-sample duration, size and flags
        trun_flags = 0x000001 | 0x000100 | 0x000200 | 0x000400
        entries = b"".join(
            struct.pack(">III", s.duration, len(s.data), _SYNC if s.sync else _NON_SYNC)
            for s in samples
        )
        trun = _full_box(
            b"trun", 0, trun_flags, struct.pack(">Ii", len(samples), data_offset) + entries
        )
        tfhd = _full_box(b"tfhd", 0, 0x020000, struct.pack(">I", track_id))  # base is moof
        tfdt = _full_box(b"tfdt", 1, 0, struct.pack(">Q", base_dts))
        mfhd = _full_box(b"mfhd", 0, 0, struct.pack(">I", sequence))
        return _box(b"moof", mfhd + _box(b"traf", tfhd + tfdt + trun))

    size = len(moof(0))
    mdat = _box(b"mdat", b"".join(s.data for s in samples))
    return moof(size + 8) + mdat


def init_track(init: bytes) -> tuple[int, int]:
    """(track ID, timescale) of the one track of an init segment."""
    tkhd = init.find(b"tkhd")
    mdhd = init.find(b"mdhd")
    if tkhd < 0 or mdhd < 0:
        raise ValueError("an init segment without tkhd or mdhd")
    at = tkhd + 8 + (16 if init[tkhd + 4] == 1 else 8)
    (track_id,) = struct.unpack_from(">I", init, at)
    at = mdhd + 8 + (16 if init[mdhd + 4] == 1 else 8)
    (timescale,) = struct.unpack_from(">I", init, at)
    return track_id, timescale


class PartedPlaylist:
    """One track's LL-HLS media playlist, parts and segments, in `directory`."""

    def __init__(
        self,
        directory: Path,
        name: str,
        init: bytes,
        *,
        segment_s: float,
        part_s: float = PART_S,
        list_size: int = LIST_SIZE,
        keyframe_lead: float = 1.0,
        on_publish: Callable[[str], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.name = name
        self.track_id, self.timescale = init_track(init)
        self.segment_s = segment_s
        self.part_s = part_s
        self.list_size = list_size
        self.keyframe_lead = keyframe_lead
        self.on_publish = on_publish
        #: (segment in progress, parts of it published): what the playlist shows.
        self.progress = (0, 0)
        #: (segment, part index) of the last part published, for rendition reports.
        self.last_part: tuple[int, int] | None = None
        self.ended = False
        self.target = target_duration(segment_s)
        self._segment_ticks = round(segment_s * self.timescale)
        self._part_ticks = round(part_s * self.timescale)
        self._longest = round(longest_segment_s(segment_s) * self.timescale)
        self._pending: _Sample | None = None
        self._part: list[_Sample] = []
        self._part_dts = 0
        self._segments: list[_Segment] = []
        self._sequence = 0
        self._next_msn = 0
        self._write(f"{name}_init.mp4", init)
        self._publish()

    # -- what a server asks -------------------------------------------------------

    @property
    def init_uri(self) -> str:
        return f"{self.name}_init.mp4"

    @property
    def sync_due(self) -> int | None:
        """When the segment that the sample waiting for its duration ends up in must end
        (None before any sample). A next sample later than this makes it too long: the
        segment is cut before the waiting sample, or has to be longer than the target
        allows. A next sample there or later must be a sync sample: one that is not
        would start a segment that a player starting there cannot decode. A caller that
        can repeat a sync sample puts one here first."""
        pending = self._pending
        if pending is None:
            return None
        if pending.sync:  # where it ends up, a segment may start on it
            return pending.dts + self._longest
        segment = self._segments[-1]
        so_far = segment.duration + sum(s.duration for s in self._part)
        return pending.dts + self._longest - so_far

    def add(self, dts: int, data: bytes, sync: bool) -> None:
        """One encoded sample at decode time `dts` (the track's timescale, on the one
        clock every rendition shares); written when the next one tells its duration."""
        if dts < 0:
            return  # decode times start at the packager's origin
        pending = self._pending
        if pending is not None:
            if dts <= pending.dts:
                return
            pending.duration = dts - pending.dts
            self._place(pending)
        elif not sync:
            return  # a track starts on a sync sample
        self._pending = _Sample(dts, data, sync)

    def close(self) -> None:
        """Write what is buffered (the last sample lasts as long as the one before, or
        less where its segment must end: it would start a segment of its own)."""
        due = self.sync_due
        pending, self._pending = self._pending, None
        if pending is not None and due is not None:
            previous = self._part[-1].duration if self._part else self.timescale // 30
            pending.duration = max(1, min(previous or 1, due - pending.dts))
            self._place(pending)
        self._end_part()
        if self._segments and not self._segments[-1].complete:
            self._end_segment()
        self._publish(ended=True)

    # -- cutting ---------------------------------------------------------------------

    def _place(self, sample: _Sample) -> None:
        segment = self._segments[-1] if self._segments else None
        if segment is None or segment.complete:
            segment = self._start_segment()
        so_far = segment.duration + sum(s.duration for s in self._part)
        whole = so_far + sample.duration > self._segment_ticks
        lead = so_far >= self.keyframe_lead * self._segment_ticks
        if self._segment_has_media(segment) and (
            (sample.sync and (whole or lead)) or so_far + sample.duration > self._longest
        ):
            self._end_part()
            self._end_segment()
            self._start_segment()
        elif (
            self._part and sum(s.duration for s in self._part) + sample.duration > self._part_ticks
        ):
            self._end_part()
        if not self._part:
            self._part_dts = sample.dts
        self._part.append(sample)

    def _segment_has_media(self, segment: _Segment) -> bool:
        return bool(segment.parts or self._part)

    def _start_segment(self) -> _Segment:
        segment = _Segment(self._next_msn, datetime.now(UTC))
        self._next_msn += 1
        self._segments.append(segment)
        return segment

    def _end_part(self) -> None:
        if not self._part:
            return
        samples, self._part = self._part, []
        segment = self._segments[-1]
        self._sequence += 1
        data = fragment(self._sequence, self.track_id, self._part_dts, samples)
        index = len(segment.parts)
        uri = f"{self.name}_{segment.msn:05d}.{index}.m4s"
        self._write(uri, data)
        duration = sum(s.duration for s in samples)
        segment.parts.append(_Part(index, duration, samples[0].sync, uri))
        segment.data.append(data)
        segment.duration += duration
        self._publish()

    def _end_segment(self) -> None:
        segment = self._segments[-1]
        self._write(segment.uri(self.name), b"".join(segment.data))
        segment.data = []
        segment.complete = True
        complete = [s for s in self._segments if s.complete]
        for old in complete[: -(self.list_size + KEEP_EXTRA)]:
            for part in old.parts:
                (self.directory / part.uri).unlink(missing_ok=True)
            (self.directory / old.uri(self.name)).unlink(missing_ok=True)
            self._segments.remove(old)
        self._publish()

    # -- the playlist ---------------------------------------------------------------------

    def _publish(self, ended: bool = False) -> None:
        complete = [s for s in self._segments if s.complete][-self.list_size :]
        current = self._segments[-1] if self._segments and not self._segments[-1].complete else None
        listed = [*complete, *([current] if current is not None else [])]
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:9",
            f"#EXT-X-TARGETDURATION:{self.target}",
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * self.part_s:.3f}",
            f"#EXT-X-PART-INF:PART-TARGET={self.part_s:.3f}",
            f"#EXT-X-MEDIA-SEQUENCE:{listed[0].msn if listed else self._next_msn}",
            f'#EXT-X-MAP:URI="{self.init_uri}"',
        ]
        if all(s.parts[0].independent for s in listed if s.parts):
            # Not when a source sent no keyframe for too long and a segment was cut
            # without one: the tag would promise what a player cannot do.
            lines.insert(-1, "#EXT-X-INDEPENDENT-SEGMENTS")
        # Parts are listed for the last complete segment and the one in progress: well
        # within the three target durations the specification allows.
        with_parts = listed[-2:] if current is not None else listed[-1:]
        for i, segment in enumerate(listed):
            if i == 0:
                lines.append(
                    "#EXT-X-PROGRAM-DATE-TIME:"
                    + segment.started.isoformat(timespec="milliseconds").replace("+00:00", "Z")
                )
            if segment in with_parts:
                for part in segment.parts:
                    lines.append(
                        f"#EXT-X-PART:DURATION={part.duration / self.timescale:.5f},"
                        f'URI="{part.uri}"' + (",INDEPENDENT=YES" if part.independent else "")
                    )
            if segment.complete:
                lines.append(f"#EXTINF:{segment.duration / self.timescale:.5f},")
                lines.append(segment.uri(self.name))
        if ended:
            lines.append("#EXT-X-ENDLIST")
        else:
            msn, index = (current.msn, len(current.parts)) if current else (self._next_msn, 0)
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.name}_{msn:05d}.{index}.m4s"')
        self._write(f"{self.name}.m3u8", ("\n".join(lines) + "\n").encode())
        self.progress = (current.msn, len(current.parts)) if current else (self._next_msn, 0)
        with_any = [s for s in self._segments if s.parts]
        if with_any:
            self.last_part = (with_any[-1].msn, len(with_any[-1].parts) - 1)
        self.ended = ended
        if self.on_publish is not None:
            self.on_publish(self.name)

    def _write(self, name: str, data: bytes) -> None:
        # A file appears under its name only once complete: readers never see half of it.
        path = self.directory / name
        temporary = path.with_name(f".{name}.{time.monotonic_ns()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
