"""HLS packaging between real aiortc peers: each output becomes a media playlist of fMP4
segments, encoded once (AAC, H.264); what a player downloads decodes to the right tone
and picture, silence where the output carried nothing, and the renditions share one
timeline."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import av
import pytest

from streamer import Sfu
from tests.streamer.conftest import Peers
from tests.streamer.peers import eventually
from tests.support import ll_hls
from tests.support.recordings import decode_audio
from tests.support.tones import PatternVideoTrack, ToneTrack

HIGH = 1000.0
LOW = 440.0


def playlist_segments(directory: Path, name: str) -> list[str]:
    text = (directory / f"{name}.m3u8").read_text()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def joined(directory: Path, name: str, out: Path) -> Path:
    """What a player gets: the init segment, then the listed segments."""
    text = (directory / f"{name}.m3u8").read_text()
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text)
    assert init is not None, text
    data = (directory / init[1]).read_bytes()
    for segment in playlist_segments(directory, name):
        data += (directory / segment).read_bytes()
    out.write_bytes(data)
    return out


async def test_outputs_become_playlists_of_segments_that_decode(
    sfu: Sfu, peers: Peers, tmp_path: Path
) -> None:
    await peers.publisher("speaker", [ToneTrack(HIGH), PatternVideoTrack(320, 240)])
    await peers.publisher("interpreter", [ToneTrack(LOW)])
    await eventually(lambda: len(sfu.sources()) == 3, what="the sources")
    for name, kind in (("program-video", "video"), ("floor", "audio"), ("channel:fr", "audio")):
        sfu.declare_output(name, kind)
    sfu.point("program-video", "speaker/video")
    sfu.point("floor", "speaker/audio")
    sfu.point("channel:fr", "interpreter/audio")
    packager = sfu.package_hls(
        tmp_path / "hls",
        ("program", "program-video"),
        [("original", "floor"), ("fr", "channel:fr")],
        segment_s=1.0,
    )

    def segments_done(name: str) -> int:
        """Complete segments of playlist `name` so far."""
        return (packager.progress(name) or (0, 0))[0]

    try:
        await eventually(packager.ready, within=20, what="the first segments")
        # The interpreter for two segments, then a cough for three more: the French
        # playlist starts on his tone and ends on two whole segments of silence.
        await eventually(lambda: segments_done("fr") >= 2, within=20, what="two segments")
        sfu.point("channel:fr", None)  # a cough
        coughed_in = segments_done("fr")
        await eventually(
            lambda: all(
                segments_done(name) >= coughed_in + 3 for name in ("program", "original", "fr")
            ),
            within=20,
            what="three segments more",
        )
        assert packager.problem is None
        assert packager.video_codec is not None and packager.video_codec.startswith("avc1.42")
        assert packager.size == (320, 240)
    finally:
        packager.close()
        await asyncio.to_thread(packager.join, 10)

    directory = tmp_path / "hls"
    for name in ("program", "original", "fr"):
        segments = playlist_segments(directory, name)
        assert len(segments) >= 4, segments
        assert all(segment.endswith(".m4s") for segment in segments)
    program = joined(directory, "program", tmp_path / "program.mp4")
    with av.open(str(program)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        frames = list(container.decode(video=0))
    assert len(frames) > 20
    assert (frames[0].width, frames[0].height) == (320, 240)

    original = decode_audio(joined(directory, "original", tmp_path / "original.mp4"))
    assert original.tone(0.5, 2.0) == pytest.approx(HIGH, abs=25)
    french = decode_audio(joined(directory, "fr", tmp_path / "fr.mp4"))
    # The playlist keeps its last segments: the tone first, the silence of the cough last.
    assert french.tone(0.2, 1.2) == pytest.approx(LOW, abs=25)
    assert french.level(french.seconds - 1.5, french.seconds - 0.2) < 0.01


async def test_low_latency_parts_are_listed_cut_and_decode(
    sfu: Sfu, peers: Peers, tmp_path: Path
) -> None:
    await peers.publisher("speaker", [ToneTrack(HIGH), PatternVideoTrack(320, 240)])
    await eventually(lambda: len(sfu.sources()) == 2, what="the sources")
    sfu.declare_output("program-video", "video")
    sfu.declare_output("floor", "audio")
    sfu.point("program-video", "speaker/video")
    sfu.point("floor", "speaker/audio")
    directory = tmp_path / "hls"
    packager = sfu.package_hls(
        directory, ("program", "program-video"), [("original", "floor")], segment_s=2.0
    )
    snapshots: dict[str, list[ll_hls.MediaPlaylist]] = {"program": [], "original": []}
    parts_seen: dict[str, bytes] = {}
    try:
        await eventually(packager.ready, within=20, what="the first segments")
        for _ in range(25):
            for name, seen in snapshots.items():
                playlist = ll_hls.parse((directory / f"{name}.m3u8").read_text())
                playlist.check(picture_gap=0.5 if name == "program" else 0.0)
                assert playlist.part_target == 0.5
                assert not playlist.ended
                # What the playlist lists is there, and a part never changes.
                for segment in playlist.segments:
                    for part in segment.parts:
                        data = (directory / part.uri).read_bytes()
                        assert parts_seen.setdefault(part.uri, data) == data
                seen.append(playlist)
            await asyncio.sleep(0.25)
        assert packager.problem is None
        # A snapshot's parts, after the init segment, are what a player at the live
        # edge decodes: taken while packaging goes on.
        for name in snapshots:
            playlist = snapshots[name][-1]
            data = (directory / playlist.init).read_bytes()
            for segment in playlist.segments:
                for part in segment.parts:
                    data += parts_seen[part.uri]
            (tmp_path / f"{name}-edge.mp4").write_bytes(data)
    finally:
        packager.close()
        await asyncio.to_thread(packager.join, 10)

    for name, seen in snapshots.items():
        # The media sequence moves on coherently: a URI keeps its number, parts grow.
        numbers: dict[str, int] = {}
        for playlist in seen:
            for segment in playlist.complete:
                assert numbers.setdefault(segment.uri or "", segment.msn) == segment.msn
        progress = [playlist.last_part() for playlist in seen]
        assert progress == sorted(progress), progress
        assert progress[-1][0] >= progress[0][0] + 2, progress  # ~6 s of 2 s segments
        # The preload hint names the part that comes next.
        hinted = {p.preload_hint for p in seen}
        listed = {part.uri for p in seen for s in p.segments for part in s.parts}
        assert len(hinted & listed) >= 5
        # Parts are ~0.5 s: not much shorter, except a segment's last one.
        for playlist in seen:
            for segment in playlist.complete:
                assert all(part.duration > 0.3 for part in segment.parts[:-1]), segment
                # A segment is its parts, byte for byte.
                if segment.parts and segment.uri:
                    joined_parts = b"".join(parts_seen[part.uri] for part in segment.parts)
                    assert (directory / segment.uri).read_bytes() == joined_parts
        if name == "original":  # AAC frames are cut where 2 s are reached
            assert all(s.duration == pytest.approx(2.0, abs=0.05) for s in seen[-1].complete)

    with av.open(str(tmp_path / "program-edge.mp4")) as container:
        frames = list(container.decode(video=0))
    assert len(frames) > 10
    assert (frames[0].width, frames[0].height) == (320, 240)
    edge = decode_audio(tmp_path / "original-edge.mp4")
    assert edge.seconds > 1.0
    assert edge.tone(0.1, edge.seconds - 0.1) == pytest.approx(HIGH, abs=25)
    # After close, every playlist ends and still follows the rules.
    for name in snapshots:
        final = ll_hls.parse((directory / f"{name}.m3u8").read_text())
        final.check(picture_gap=0.5 if name == "program" else 0.0)
        assert final.ended and final.preload_hint is None
