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
    try:
        await eventually(packager.ready, within=20, what="the first segments")
        await asyncio.sleep(3.0)
        sfu.point("channel:fr", None)  # a cough
        await asyncio.sleep(3.0)
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
