"""Low-latency HLS while the publisher's path reorders and loses packets.

The same impaired path as test_impaired_h264.py (5 % loss, 20-60 ms of jitter, some
packets held back more), with the default two-second segments: the video and audio
playlists stay valid LL-HLS at every reload (streamer/cmaf.py), parts keep their half
second, the sound keeps its tone without the holes packets overtaken by jitter used to
leave, and what a player at the live edge fetches decodes.
"""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

import av
import numpy as np
import pytest

from streamer.frames import AUDIO_REORDER_S, AudioReorder
from tests.streamer.impaired_publisher import LOSSY_REORDERING, ImpairedNode, impaired_node
from tests.streamer.peers import eventually
from tests.support import ll_hls
from tests.support.recordings import decode_audio

__all__ = ["impaired_node"]

TONE_HZ = 1000.0
PART_TARGET = 0.5
#: How much longer than the target a video part may be: a picture that waited for a
#: keyframe after a loss never repaired is shown until then (after 0.5 s the packager
#: repeats it: streamer/hls.py); a loaded machine adds its own stalls.
PICTURE_GAP_S = 1.5


def test_audio_packets_overtaken_are_put_back_in_order() -> None:
    reorder = AudioReorder()
    first, second = object(), object()

    def push(stream: object, seq: int, at: float) -> list[int]:
        return [ts for _, ts, _, _ in reorder.push(stream, seq, seq, b"opus", at)]

    assert push(first, 1, 0.0) == [1]
    assert push(first, 3, 0.02) == []  # 2 is late: 3 waits
    assert push(first, 2, 0.03) == [2, 3]
    assert push(first, 5, 0.06) == []  # 4 lost for good
    assert push(first, 6, 0.08) == []
    assert push(first, 7, 0.06 + AUDIO_REORDER_S) == [5, 6, 7]  # waited long enough
    assert push(first, 4, 0.2) == []  # too late: its place went on without it
    assert push(first, 9, 0.2) == []
    # A switch: what the old stream held goes out first, then the new one's.
    released = reorder.push(second, 500, 500, b"opus", 0.22)
    assert [(stream, ts) for stream, ts, _, _ in released] == [(first, 9), (second, 500)]


async def test_ll_hls_parts_and_playlists_hold_through_reordering_and_loss(
    impaired_node: ImpairedNode, tmp_path: Path
) -> None:
    node = impaired_node
    sfu = node.sfu
    node.relay.set_impairment(LOSSY_REORDERING)
    await node.publish_h264("speaker", TONE_HZ)
    await eventually(lambda: len(sfu.sources()) == 2, what="the sources")
    sfu.declare_output("program-video", "video")
    sfu.declare_output("floor", "audio")
    sfu.point("program-video", "speaker/video")
    sfu.point("floor", "speaker/audio")
    directory = tmp_path / "hls"
    packager = sfu.package_hls(directory, ("program", "program-video"), [("original", "floor")])
    snapshots: dict[str, list[ll_hls.MediaPlaylist]] = {"program": [], "original": []}
    parts_seen: dict[str, bytes] = {}
    try:
        await eventually(packager.ready, within=20, what="the first segments")
        for _ in range(28):  # 7 s of reloads, as a player at the live edge makes
            for name, seen in snapshots.items():
                playlist = ll_hls.parse((directory / f"{name}.m3u8").read_text())
                if name == "program":
                    # A picture that waited for a keyframe (its packets lost for good)
                    # is shown longer, and its part with it. A keyframe that comes too
                    # late over this path does not leave a segment starting without
                    # one: the last is repeated there (streamer/hls.py).
                    playlist.check(picture_gap=PICTURE_GAP_S)
                else:
                    playlist.check()
                assert not playlist.ended
                for segment in playlist.segments:
                    for part in segment.parts:
                        data = (directory / part.uri).read_bytes()
                        assert parts_seen.setdefault(part.uri, data) == data, part.uri
                seen.append(playlist)
            await asyncio.sleep(0.25)
        assert packager.problem is None
        edge = {}
        for name, seen in snapshots.items():
            playlist = seen[-1]
            data = (directory / playlist.init).read_bytes()
            for segment in playlist.segments:
                data += b"".join(parts_seen[part.uri] for part in segment.parts)
            edge[name] = tmp_path / f"{name}-edge.mp4"
            edge[name].write_bytes(data)
    finally:
        packager.close()
        await asyncio.to_thread(packager.join, 10)

    assert node.relay.upstream.counters.lost > 20
    for name, seen in snapshots.items():
        progress = [playlist.last_part() for playlist in seen]
        assert progress == sorted(progress), progress
        assert progress[-1][0] >= progress[0][0] + 2, progress  # ~7 s of 2 s segments
        parts = {
            part.uri: part.duration
            for playlist in seen
            for segment in playlist.complete
            for part in segment.parts[:-1]  # a segment's last part may be cut short
        }
        durations = sorted(parts.values())
        assert len(durations) >= 4, name
        # Parts keep their half second: a loss may end one early (the picture after a
        # gap would not fit in it) or late (a picture that waited), not most of them.
        assert statistics.median(durations) == pytest.approx(PART_TARGET, abs=0.05), durations
        usual = [d for d in durations if 0.3 < d <= PART_TARGET + 1e-6]
        assert len(usual) >= 0.75 * len(durations), (name, durations)
        if name == "original":
            assert all(d > 0.3 for d in durations), durations
            assert all(s.duration == pytest.approx(2.0, abs=0.05) for s in seen[-1].complete)

    sound = decode_audio(edge["original"])
    assert sound.seconds > 1.5
    assert sound.tone(0.1, sound.seconds - 0.1) == pytest.approx(TONE_HZ, abs=25)
    # Holes: 10 ms windows far quieter than the tone. Loss leaves some (audio is not
    # repaired); overtaken packets dropped left about a third of them.
    windows = sound.samples[: len(sound.samples) // 480 * 480].reshape(-1, 480)
    rms = np.sqrt(np.mean(windows.astype(np.float64) ** 2, axis=1))
    holes = float(np.mean(rms < 0.2 * np.median(rms)))
    assert holes < 0.15, f"{holes:.0%} of the sound is holes"
    frames = decoded_pictures(edge["program"])
    assert frames > 30


def decoded_pictures(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
