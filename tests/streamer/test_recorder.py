"""Recordings between real aiortc peers: the file holds what the output carried.

Tones identify the sources (1000 Hz and 440 Hz); the output is switched between them
and left empty for a while (what a cough or an empty booth does): the decoded file
carries each tone where it was on air and silence in between, and lasts as long as
the recording did. Video is muxed from the forwarded VP8 packets and decodes. A file
still being written is readable (a crashed node keeps what it wrote), and a full disk
stops the recording, never the forwarding.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer import Sfu
from streamer.errors import KindMismatch, UnknownOutput
from streamer.frames import opus_samples
from tests.streamer.conftest import Peers
from tests.streamer.peers import eventually
from tests.support.recordings import decode_audio, small_filesystem, video_frames
from tests.support.tones import PatternVideoTrack, ToneTrack, dominant_frequency

HIGH = 1000.0
LOW = 440.0


def assert_tone(heard: float, expected: float) -> None:
    assert heard == pytest.approx(expected, abs=20), f"heard {heard:.0f} Hz, expected {expected}"


async def test_a_channel_recording_carries_each_source_where_it_was_on_air(
    sfu: Sfu, peers: Peers, tmp_path: Path
) -> None:
    await peers.publisher("high", [ToneTrack(HIGH)])
    await peers.publisher("low", [ToneTrack(LOW)])
    await eventually(lambda: len(sfu.sources()) == 2, what="both sources")
    sfu.declare_output("channel", "audio")
    sfu.point("channel", "high/audio")
    started = time.monotonic()
    recording = sfu.record(tmp_path / "fr.webm", "channel")
    await asyncio.sleep(2.0)
    sfu.point("channel", None)  # nothing on air: a cough, an empty booth
    await asyncio.sleep(1.0)
    sfu.point("channel", "low/audio")
    await asyncio.sleep(2.0)
    recording.close()
    elapsed = time.monotonic() - started
    assert recording.problem is None

    audio = decode_audio(tmp_path / "fr.webm")
    assert audio.seconds == pytest.approx(elapsed, abs=0.25)
    assert_tone(audio.tone(0.3, 1.8), HIGH)
    assert audio.level(2.2, 2.8) < 0.01, "the time nothing was on air is not silent"
    assert audio.level(0.3, 1.8) > 0.1
    assert_tone(audio.tone(3.3, 4.8), LOW)


async def test_the_program_recording_holds_the_video_and_the_floor(
    sfu: Sfu, peers: Peers, tmp_path: Path
) -> None:
    await peers.publisher("speaker", [ToneTrack(HIGH), PatternVideoTrack(320, 240)])
    await eventually(lambda: len(sfu.sources()) == 2, what="both tracks")
    sfu.declare_output("program-video", "video")
    sfu.declare_output("floor", "audio")
    sfu.point("program-video", "speaker/video")
    sfu.point("floor", "speaker/audio")
    recording = sfu.record(tmp_path / "program.webm", "floor", "program-video")
    await asyncio.sleep(3.0)
    recording.close()
    assert recording.problem is None

    frames = video_frames(tmp_path / "program.webm")
    # 30 fps sent; a loaded machine sends fewer, and the first wait for a keyframe.
    assert len(frames) > 20
    assert (frames[-1].width, frames[-1].height) == (320, 240)
    times = [frame.time for frame in frames]
    assert times == sorted(times)
    assert times[-1] == pytest.approx(3.0, abs=0.5)
    audio = decode_audio(tmp_path / "program.webm")
    assert_tone(audio.tone(0.5, 2.5), HIGH)


async def test_a_file_being_written_is_readable_up_to_its_last_second(
    sfu: Sfu, peers: Peers, tmp_path: Path
) -> None:
    await peers.publisher("high", [ToneTrack(HIGH)])
    await eventually(lambda: bool(sfu.sources()), what="the source")
    sfu.declare_output("floor", "audio")
    sfu.point("floor", "high/audio")
    recording = sfu.record(tmp_path / "original.webm", "floor")
    await asyncio.sleep(3.0)
    # What a node that dies now leaves on the disk: no trailer, no index.
    shutil.copy(tmp_path / "original.webm", tmp_path / "crashed.webm")
    recording.close()

    audio = decode_audio(tmp_path / "crashed.webm")
    assert audio.seconds > 1.5, f"only {audio.seconds:.2f} s of 3 s survived"
    assert_tone(audio.tone(0.3, 1.3), HIGH)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "small") as mount_point:
        yield mount_point


async def test_a_full_disk_stops_the_recording_and_never_the_listeners(
    sfu: Sfu, peers: Peers, small_disk: Path
) -> None:
    await peers.publisher("high", [ToneTrack(HIGH)])
    await eventually(lambda: bool(sfu.sources()), what="the source")
    sfu.declare_output("floor", "audio")
    sfu.point("floor", "high/audio")
    listener = await peers.subscriber("listener", {"voice": "floor"})
    failures: list[str] = []
    recording = sfu.record(
        small_disk / "original.webm", "floor", on_failure=lambda _, why: failures.append(why)
    )
    await eventually(lambda: bool(failures), within=30, what="the disk to fill up")
    assert "No space left on device" in failures[0]
    assert recording.problem == failures[0]
    assert recording.closed
    # The listener still hears the floor after the recording stopped.
    samples = await listener.audio["voice"].wait_for_samples(1.0)
    assert_tone(dominant_frequency(samples), HIGH)
    recording.close()  # closing a failed recording is harmless


async def test_recording_what_does_not_exist_is_refused(sfu: Sfu, tmp_path: Path) -> None:
    sfu.declare_output("floor", "audio")
    sfu.declare_output("program-video", "video")
    with pytest.raises(UnknownOutput, match="nowhere"):
        sfu.record(tmp_path / "x.webm", "nowhere")
    with pytest.raises(KindMismatch, match="carries video"):
        sfu.record(tmp_path / "x.webm", "program-video")
    with pytest.raises(KindMismatch, match="carries audio"):
        sfu.record(tmp_path / "x.webm", "floor", "floor")


def test_opus_packet_durations_follow_the_toc_byte() -> None:
    assert opus_samples(b"\xf8\xff\xfe") == 960  # CELT 20 ms, one frame
    assert opus_samples(bytes([0x79, 0])) == 2 * 960  # hybrid 20 ms (config 15), two frames
    assert opus_samples(bytes([(1 << 3) | 3, 3])) == 3 * 960  # SILK 20 ms, three frames
    assert opus_samples(b"") == 960
