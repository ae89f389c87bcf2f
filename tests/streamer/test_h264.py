"""H.264 end to end between real aiortc peers, on a node that prefers it: the publisher
is asked for H.264, subscribers receive the same H.264 and decode it, and HLS segments
are the publisher's access units remuxed, with not one picture decoded or encoded."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path

import av
import pytest
from aiortc import RTCRtpSender, RTCSessionDescription

from streamer import Sfu, SfuConfig
from tests.streamer.conftest import Peers
from tests.streamer.peers import LOOPBACK, PublisherPeer, eventually, peer_connection
from tests.support import ll_hls
from tests.support.tones import PatternVideoTrack, ToneTrack


@pytest.fixture
async def h264_sfu() -> AsyncIterator[Sfu]:
    instance = Sfu(SfuConfig(ice_servers=[], host_addresses=LOOPBACK, video_codec="h264"))
    yield instance
    await instance.close()


@pytest.fixture
async def h264_peers(h264_sfu: Sfu) -> AsyncIterator[Peers]:
    created = Peers(h264_sfu)
    yield created
    await created.close()


def sent_video_codec(sdp: str) -> str:
    """The codec a peer sends video with: the first one its answer's video section lists."""
    section = sdp[sdp.index("m=video") :]
    first = section.split("\r\n", 1)[0].split()[3]
    rtpmap = re.search(rf"a=rtpmap:{first} ([^/]+)/", section)
    assert rtpmap is not None, section
    return rtpmap[1]


def extinf(playlist: str) -> list[float]:
    return [float(m) for m in re.findall(r"#EXTINF:([0-9.]+),", playlist)]


def joined_segments(directory: Path, playlist: str, joined: Path) -> Path:
    """The playlist's init segment and listed segments, in one MP4 file at `joined`."""
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', playlist)
    assert init is not None
    data = (directory / init[1]).read_bytes()
    for line in playlist.splitlines():
        if line.endswith(".m4s"):
            data += (directory / line).read_bytes()
    joined.write_bytes(data)
    return joined


async def test_h264_is_negotiated_forwarded_and_remuxed_without_decoding(
    h264_sfu: Sfu, h264_peers: Peers, tmp_path: Path
) -> None:
    sfu = h264_sfu
    speaker = await h264_peers.publisher("speaker", [ToneTrack(440.0), PatternVideoTrack(320, 240)])
    # aiortc offers VP8 first: the node's answer puts H.264 first, so H.264 is sent.
    assert "VP8" in speaker.pc.localDescription.sdp
    assert sent_video_codec(speaker.pc.remoteDescription.sdp) == "H264"
    await eventually(lambda: len(sfu.sources()) == 2, what="the sources")
    sfu.declare_output("program-video", "video")
    sfu.declare_output("floor", "audio")
    sfu.point("program-video", "speaker/video")
    sfu.point("floor", "speaker/audio")

    viewer = await h264_peers.subscriber("viewer", {"video": "program-video"})
    packager = sfu.package_hls(
        tmp_path / "hls", ("program", "program-video"), [("original", "floor")], segment_s=1.0
    )
    playlist_path = tmp_path / "hls" / "program.m3u8"
    try:
        await eventually(packager.ready, within=20, what="the first segments")
        # Until the playlist lists five segments (at least four are checked below, with
        # more than 60 pictures), the viewer has decoded more than 30 and more than 60 are
        # remuxed: what a fixed 5 s gave, about 4 s of pictures.
        await eventually(
            lambda: (
                len(extinf(playlist_path.read_text())) >= 5
                and viewer.video["video"].frames > 30
                and packager.video_frames_remuxed > 60
            ),
            within=20,
            what="four segments",
        )
        assert packager.problem is None
        assert packager.video_frames_remuxed > 60
        assert packager.video_frames_encoded == 0  # nothing decoded, nothing encoded
        assert packager.size == (320, 240)
        assert packager.video_codec is not None and packager.video_codec.startswith("avc1.42")
    finally:
        packager.close()
        await asyncio.to_thread(packager.join, 10)

    # The subscriber got H.264 packets (its answer's H.264 payload type) and decoded them.
    answer = viewer.pc.localDescription.sdp
    h264_types = {int(pt) for pt in re.findall(r"a=rtpmap:(\d+) H264/90000", answer)}
    received = {packet[3] for packet in viewer.rtp["video"].packets}
    assert received and received <= h264_types, (received, h264_types)
    assert viewer.video["video"].frames > 30

    directory = tmp_path / "hls"
    playlist = (directory / "program.m3u8").read_text()
    durations = extinf(playlist)
    assert len(durations) >= 4, playlist
    # Segments start on the keyframes the node asks for: about one a segment.
    assert all(d < 2.5 for d in durations[:-1]), durations
    # Parts of a remuxed stream follow the LL-HLS rules too: a segment's first part
    # starts on the publisher's keyframe (INDEPENDENT=YES), none is over the target.
    ll_hls.parse(playlist).check(picture_gap=0.5)  # a stalled picture on a loaded machine
    joined = joined_segments(directory, playlist, tmp_path / "program.mp4")
    with av.open(str(joined)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.extradata[:1] == b"\x01"  # an avcC record
        frames = list(container.decode(video=0))
    assert len(frames) > 60
    assert (frames[-1].width, frames[-1].height) == (320, 240)


async def test_an_h264_program_is_recorded_as_matroska_without_decoding(
    h264_sfu: Sfu, h264_peers: Peers, tmp_path: Path
) -> None:
    sfu = h264_sfu
    await h264_peers.publisher("speaker", [ToneTrack(440.0), PatternVideoTrack(320, 240)])
    await eventually(lambda: len(sfu.sources()) == 2, what="the sources")
    sfu.declare_output("program-video", "video")
    sfu.declare_output("floor", "audio")
    sfu.point("floor", "speaker/audio")
    # Nobody on air at first: the file starts on its sound, once the recording has waited
    # for a keyframe (1 s here, 3 s on a node), its picture comes later.
    recording = sfu.record(tmp_path / "program.001.webm", "floor", "program-video")
    recording.first_keyframe_wait_s = 1.0
    await asyncio.sleep(1.5)
    sfu.point("program-video", "speaker/video")
    await asyncio.sleep(3.0)
    recording.close()
    assert recording.problem is None
    # WebM cannot hold H.264: the recording says where it wrote instead.
    assert recording.path == tmp_path / "program.001.mkv"
    assert not (tmp_path / "program.001.webm").exists()
    with av.open(str(recording.path)) as container:
        assert container.format.name.startswith("matroska")
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "opus"
        frames = list(container.decode(video=0))
    # The speaker's own pictures (320x240), after the in-band change of parameter sets.
    assert len(frames) > 20
    assert (frames[-1].width, frames[-1].height) == (320, 240)


async def publish_only(
    sfu: Sfu, peers: Peers, publisher_id: str, codec: str, size: tuple[int, int]
):
    """A publisher whose browser can send only `codec` (VP8 or H264) video."""
    pc = peer_connection()
    transceiver = pc.addTransceiver(PatternVideoTrack(*size), direction="sendonly")
    codecs = RTCRtpSender.getCapabilities("video").codecs
    transceiver.setCodecPreferences([c for c in codecs if c.name in (codec, "rtx")])
    await pc.setLocalDescription(await pc.createOffer())
    answer = await sfu.publish(publisher_id, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    peer = PublisherPeer(pc)
    peers.adopt(peer)
    assert sent_video_codec(answer) == codec
    return peer


async def test_a_switch_between_an_h264_and_a_vp8_speaker_plays_on(
    h264_sfu: Sfu, h264_peers: Peers, tmp_path: Path
) -> None:
    """The rule for a speaker whose browser cannot send the preferred codec: accepted; a
    subscriber follows the payload type; HLS encodes his VP8 into the same playlist."""
    sfu = h264_sfu
    await publish_only(sfu, h264_peers, "h264-speaker", "H264", (320, 240))
    await publish_only(sfu, h264_peers, "vp8-speaker", "VP8", (480, 360))
    await eventually(lambda: len(sfu.sources()) == 2, what="the sources")
    sfu.declare_output("program-video", "video")
    sfu.declare_output("floor", "audio")
    sfu.point("program-video", "h264-speaker/video")
    viewer = await h264_peers.subscriber("viewer", {"video": "program-video"})
    packager = sfu.package_hls(
        tmp_path / "hls", ("program", "program-video"), [("original", "floor")], segment_s=1.0
    )

    def streamed(codec: str) -> int:
        """The stream's pictures of a speaker sending `codec` so far: remuxed, or encoded."""
        if codec == "H264":
            return packager.video_frames_remuxed
        return packager.video_frames_encoded

    counts = []
    try:
        await eventually(packager.ready, within=20, what="the first segments")
        # A speaker stays on air until the viewer has decoded more than ten of his pictures
        # and the stream holds more than 30 of them; the last one for 3 s, so that the
        # playlist's last segments (decoded below) are a few seconds of the stream.
        on_air, shown, before = "H264", 0, 0
        for source, codec in (
            ("vp8-speaker", "VP8"),
            ("h264-speaker", "H264"),
            ("vp8-speaker", "VP8"),
        ):
            await eventually(
                lambda on_air=on_air, shown=shown, before=before: (
                    viewer.video["video"].frames > shown + 10 and streamed(on_air) > before + 30
                ),
                within=20,
                what=f"the pictures of the {on_air} speaker",
            )
            shown, before, on_air = viewer.video["video"].frames, streamed(codec), codec
            counts.append(shown)
            sfu.point("program-video", f"{source}/video")
        await asyncio.sleep(3.0)
        counts.append(viewer.video["video"].frames)
        assert packager.problem is None
        assert packager.video_frames_remuxed > 60
        assert packager.video_frames_encoded > 60
    finally:
        packager.close()
        await asyncio.to_thread(packager.join, 10)
    # The subscriber decoded pictures after every switch, whichever the codec.
    assert all(b > a + 10 for a, b in itertools.pairwise(counts)), counts
    answer = viewer.pc.localDescription.sdp
    names = dict(re.findall(r"a=rtpmap:(\d+) (\w+)/90000", answer))
    received = {names.get(str(packet[3])) for packet in viewer.rtp["video"].packets}
    assert received == {"H264", "VP8"}

    directory = tmp_path / "hls"
    playlist = (directory / "program.m3u8").read_text()
    joined = joined_segments(directory, playlist, tmp_path / "program.mp4")
    with av.open(str(joined)) as container:
        sizes = [(f.width, f.height) for f in container.decode(video=0)]
    # Both speakers' pictures, in one playlist: the remuxed ones keep their own size,
    # the VP8 ones are encoded at the size of the stream.
    assert len(sizes) > 120
    assert (320, 240) in sizes


async def test_a_remuxed_program_left_empty_repeats_its_last_keyframe_and_resumes(
    h264_sfu: Sfu, h264_peers: Peers, tmp_path: Path
) -> None:
    """Nobody on air for a while: the playlist goes on (the last keyframe repeated, not a
    picture encoded), and the speaker's pictures come back when he is on air again."""
    sfu = h264_sfu
    await h264_peers.publisher("speaker", [ToneTrack(440.0), PatternVideoTrack(320, 240)])
    await eventually(lambda: len(sfu.sources()) == 2, what="the sources")
    sfu.declare_output("program-video", "video")
    sfu.declare_output("floor", "audio")
    sfu.point("program-video", "speaker/video")
    sfu.point("floor", "speaker/audio")
    packager = sfu.package_hls(
        tmp_path / "hls", ("program", "program-video"), [("original", "floor")], segment_s=1.0
    )
    try:
        await eventually(packager.ready, within=20, what="the first segments")
        await asyncio.sleep(2.0)
        sfu.point("program-video", None)
        await asyncio.sleep(3.0)
        remuxed = packager.video_frames_remuxed
        sfu.point("program-video", "speaker/video")
        await asyncio.sleep(3.0)
        assert packager.problem is None
        assert packager.video_frames_encoded == 0
        assert packager.video_frames_remuxed > remuxed + 30
    finally:
        packager.close()
        await asyncio.to_thread(packager.join, 10)
    directory = tmp_path / "hls"
    playlist = (directory / "program.m3u8").read_text()
    joined = joined_segments(directory, playlist, tmp_path / "program.mp4")
    with av.open(str(joined)) as container:
        times = [float(frame.time) for frame in container.decode(video=0)]
    # The listed segments (the last few seconds) span the empty stretch and the return:
    # pictures all along (repeated from half a second without one): no gap a player
    # would stall on (the margin is for a loaded machine's scheduling).
    assert times[-1] - times[0] > 0.8 * sum(extinf(playlist)), playlist
    assert max(b - a for a, b in itertools.pairwise(times)) < 2.0
    assert len(times) > 60
