"""CMAF parts and segments cut from samples fed one by one, without peers: where parts
and segments end (audio frames, regular and irregular pictures, a source that sends no
keyframe), what the playlist then says, and that what it lists decodes with libav."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from streamer.cmaf import PartedPlaylist, init_track
from streamer.h264 import avcc_sample, nal_units
from tests.support import ll_hls


def aac_track() -> tuple[bytes, list[av.Packet]]:
    """An AAC init segment and 7 s of encoded 440 Hz."""
    header = io.BytesIO()
    container = av.open(header, "w", format="mp4", options={"movflags": "empty_moov+frag_custom"})
    stream = container.add_stream("aac", rate=48000)
    stream.codec_context.layout = "mono"
    stream.time_base = Fraction(1, 48000)
    container.start_encoding()
    packets = []
    t = np.arange(48000 * 7) / 48000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for i in range(0, len(tone) - 1024, 1024):
        frame = av.AudioFrame.from_ndarray(tone[None, i : i + 1024], format="fltp", layout="mono")
        frame.sample_rate = 48000
        frame.pts = i
        frame.time_base = Fraction(1, 48000)
        packets += stream.encode(frame)
    return header.getvalue(), packets


def h264_track(keyframe_every: int, seconds: float) -> tuple[bytes, list[av.Packet]]:
    """An H.264 init segment and pictures at 30 fps (x264, avcC), keyframes every so many."""
    header = io.BytesIO()
    container = av.open(header, "w", format="mp4", options={"movflags": "empty_moov+frag_custom"})
    stream = container.add_stream("libx264", rate=30)
    stream.width, stream.height = 160, 120
    stream.pix_fmt = "yuv420p"
    stream.time_base = Fraction(1, 90000)
    stream.codec_context.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "g": str(keyframe_every),
        "keyint_min": str(keyframe_every),
        "sc_threshold": "0",
    }
    container.start_encoding()
    packets = []
    for i in range(int(seconds * 30)):
        frame = av.VideoFrame.from_ndarray(
            np.full((120, 160, 3), i % 256, dtype=np.uint8), format="rgb24"
        ).reformat(format="yuv420p")
        frame.pts = i * 3000
        frame.time_base = Fraction(1, 90000)
        packets += stream.encode(frame)
    packets += stream.encode(None)
    return header.getvalue(), packets


def feed(playlist: PartedPlaylist, init: bytes, packets: list[av.Packet]) -> None:
    """The packets, timed in the init segment's timescale (the encoder's differs)."""
    timescale = init_track(init)[1]
    for packet in packets:
        dts = round(packet.dts * packet.time_base * timescale)
        data = bytes(packet)
        if packet.stream.type == "video":  # Annex B from x264, length-prefixed in MP4
            data = avcc_sample(nal_units(data))
        playlist.add(dts, data, packet.is_keyframe)
    playlist.close()


def joined(directory: Path, playlist: ll_hls.MediaPlaylist, out: Path) -> Path:
    data = (directory / playlist.init).read_bytes()
    for segment in playlist.segments:
        data += (directory / (segment.uri or "")).read_bytes()
    out.write_bytes(data)
    return out


def test_audio_frames_make_parts_under_the_target_and_segments_of_two_seconds(
    tmp_path: Path,
) -> None:
    init, packets = aac_track()
    assert init_track(init) == (1, 48000)
    published: list[str] = []
    playlist = PartedPlaylist(tmp_path, "fr", init, segment_s=2.0, on_publish=published.append)
    for packet in packets:
        playlist.add(packet.dts + 1024, bytes(packet), True)
        if packet.dts == 48000 * 5:
            live = ll_hls.parse((tmp_path / "fr.m3u8").read_text())
            live.check()
            assert playlist.progress == (live.segments[-1].msn, len(live.segments[-1].parts))
    playlist.close()
    assert published and set(published) == {"fr"}
    final = ll_hls.parse((tmp_path / "fr.m3u8").read_text())
    final.check()
    assert final.ended and len(final.complete) == 4
    assert all(s.duration == pytest.approx(1.984, abs=0.001) for s in final.complete[:-1])
    container = av.open(str(joined(tmp_path, final, tmp_path / "fr.mp4")))
    samples = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    assert len(samples) == pytest.approx(48000 * 7, abs=48000 * 0.1)
    spectrum = np.abs(np.fft.rfft(samples[48000:96000]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=3)  # 1 Hz bins


def test_segments_start_on_keyframes_and_a_long_stretch_without_one_is_cut_anyway(
    tmp_path: Path,
) -> None:
    # Keyframes every second: segments end on the one at 2 s (not earlier), parts 0.5 s.
    init, packets = h264_track(keyframe_every=30, seconds=7)
    playlist = PartedPlaylist(tmp_path, "program", init, segment_s=2.0, keyframe_lead=0.8)
    feed(playlist, init, packets)
    text = (tmp_path / "program.m3u8").read_text()
    final = ll_hls.parse(text)
    final.check()
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in text
    assert [s.duration for s in final.complete[:3]] == [2.0, 2.0, 2.0]
    with av.open(str(joined(tmp_path, final, tmp_path / "program.mp4"))) as container:
        assert len(list(container.decode(video=0))) == 7 * 30

    # A source whose keyframes come every 4 s: a segment may not round above the
    # target, so it is cut without one, says so, and the playlist stops promising
    # independent segments.
    other = tmp_path / "sparse"
    other.mkdir()
    init, packets = h264_track(keyframe_every=120, seconds=9)
    playlist = PartedPlaylist(other, "program", init, segment_s=2.0, keyframe_lead=0.8)
    feed(playlist, init, packets)
    text = (other / "program.m3u8").read_text()
    final = ll_hls.parse(text)
    assert all(round(s.duration or 0) <= final.target for s in final.complete)
    assert max(s.duration or 0 for s in final.complete) < 2.5
    assert "#EXT-X-INDEPENDENT-SEGMENTS" not in text
    assert any(s.parts and not s.parts[0].independent for s in final.segments)
    for segment in final.segments:
        assert all(p.duration <= final.part_target + 1e-6 for p in segment.parts)


def test_the_last_picture_is_not_made_to_start_a_segment_by_the_duration_it_is_given(
    tmp_path: Path,
) -> None:
    # The last picture is given the duration of the one before it, which here would take
    # its segment past the longest (1.45 s of one-second segments): it ends there instead
    # of starting a segment of its own, which a player starting there could not decode.
    init, packets = h264_track(keyframe_every=300, seconds=44 / 30)
    assert len(packets) == 44
    playlist = PartedPlaylist(tmp_path, "program", init, segment_s=1.0)
    feed(playlist, init, packets)
    final = ll_hls.parse((tmp_path / "program.m3u8").read_text())
    final.check()
    assert [s.duration for s in final.complete] == [1.45]


def test_an_init_segment_without_a_track_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="without tkhd or mdhd"):
        PartedPlaylist(tmp_path, "x", b"\x00\x00\x00\x08free", segment_s=2.0)
    assert not (tmp_path / "x.m3u8").exists()
