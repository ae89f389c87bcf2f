"""A low-latency HLS media playlist read as a player reads it, and checked against the
rules of the specification (RFC 8216bis) that Dragoman's playlists rely on."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def attributes(line: str) -> dict[str, str]:
    """The attribute list of a tag line, quotes removed."""
    return {key: value.strip('"') for key, value in _ATTRIBUTE.findall(line.split(":", 1)[1])}


@dataclass
class Part:
    uri: str
    duration: float
    independent: bool


@dataclass
class Segment:
    msn: int
    uri: str | None  # None: the segment in progress
    duration: float | None
    parts: list[Part] = field(default_factory=list)


@dataclass
class MediaPlaylist:
    version: int
    target: int
    part_target: float
    part_hold_back: float
    can_block: bool
    media_sequence: int
    init: str
    segments: list[Segment]
    preload_hint: str | None
    ended: bool
    independent_segments: bool = False

    @property
    def complete(self) -> list[Segment]:
        return [s for s in self.segments if s.uri is not None]

    def check(self, picture_gap: float = 0.0) -> None:
        """Assert what the specification asks of a low-latency media playlist.

        `picture_gap`: live video from peers on a loaded machine may go without a
        picture for a moment; a part that is one such picture is longer than the target
        by up to that much (see streamer/cmaf.py). Every segment starts on a keyframe."""
        assert self.version >= 9
        assert self.can_block
        assert self.part_hold_back >= 2 * self.part_target
        for segment in self.segments:
            for part in segment.parts:
                assert part.duration <= self.part_target + picture_gap + 1e-6, (segment.msn, part)
            if segment.duration is not None:
                assert round(segment.duration) <= self.target, segment
                if segment.parts:
                    total = sum(p.duration for p in segment.parts)
                    assert total == pytest.approx(segment.duration, abs=1e-3)
            if segment.parts:
                assert segment.parts[0].independent, segment
        msns = [s.msn for s in self.segments]
        assert msns == list(range(self.media_sequence, self.media_sequence + len(msns)))
        if not self.ended:
            assert self.preload_hint is not None
        # Parts are listed for segments of the last three target durations at most.
        with_parts = [s for s in self.complete if s.parts]
        assert sum(s.duration or 0 for s in with_parts) <= 3 * self.target

    def last_part(self) -> tuple[int, int]:
        """(msn, part index) of the last part listed."""
        for segment in reversed(self.segments):
            if segment.parts:
                return segment.msn, len(segment.parts) - 1
        raise AssertionError("no part listed")


def parse(text: str) -> MediaPlaylist:
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U", text
    values: dict[str, str] = {}
    segments: list[Segment] = []
    parts: list[Part] = []
    duration: float | None = None
    preload = None
    sequence = None
    for line in lines[1:]:
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PART:"):
            found = attributes(line)
            parts.append(
                Part(found["URI"], float(found["DURATION"]), found.get("INDEPENDENT") == "YES")
            )
        elif line.startswith("#EXT-X-PRELOAD-HINT:"):
            found = attributes(line)
            assert found["TYPE"] == "PART"
            preload = found["URI"]
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].rstrip(","))
        elif line.startswith("#"):
            key, _, value = line.partition(":")
            values[key] = value
        elif line:
            assert duration is not None and sequence is not None
            segments.append(Segment(sequence + len(segments), line, duration, parts))
            parts, duration = [], None
    assert sequence is not None
    if parts:
        segments.append(Segment(sequence + len(segments), None, None, parts))
    control = attributes("X:" + values["#EXT-X-SERVER-CONTROL"])
    init = attributes("X:" + values["#EXT-X-MAP"])["URI"]
    return MediaPlaylist(
        version=int(values["#EXT-X-VERSION"]),
        target=int(values["#EXT-X-TARGETDURATION"]),
        part_target=float(attributes("X:" + values["#EXT-X-PART-INF"])["PART-TARGET"]),
        part_hold_back=float(control["PART-HOLD-BACK"]),
        can_block=control.get("CAN-BLOCK-RELOAD") == "YES",
        media_sequence=sequence,
        init=init,
        segments=segments,
        preload_hint=preload,
        ended="#EXT-X-ENDLIST" in values,
        independent_segments="#EXT-X-INDEPENDENT-SEGMENTS" in values,
    )
