"""Video through the SFU: late joiners get a keyframe, NACKs are answered, PLIs relayed.

aiortc's VP8 encoder sends a keyframe only every 3000 frames unless asked, so
a subscriber that joins late decodes nothing unless the SFU asks the
publisher for a keyframe on its behalf.
"""

from __future__ import annotations

import asyncio
import itertools

from aiortc import RTCRtpSender, RTCSessionDescription
from aiortc.rtp import RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPsfbPacket, RtcpRtpfbPacket

from streamer import Sfu
from tests.streamer.conftest import Peers
from tests.streamer.peers import PublisherPeer, eventually, peer_connection
from tests.support.aiortc_probes import send_rtcp
from tests.support.tones import PatternVideoTrack, ToneTrack


async def test_late_video_subscriber_gets_frames_through_keyframe_relay(
    sfu: Sfu, peers: Peers
) -> None:
    await peers.publisher("speaker", [ToneTrack(1000), PatternVideoTrack()])
    sfu.declare_output("program-video", "video")
    sfu.point("program-video", "speaker/video")
    await eventually(
        lambda: sfu.stats()["sources"]["speaker/video"]["packets"] > 30, what="video flowing"
    )
    await asyncio.sleep(1.0)  # well past the publisher's first (and only natural) keyframe

    viewer = await peers.subscriber("viewer", {"video": "program-video"})
    await eventually(lambda: viewer.video["video"].frames >= 10, what="decoded frames")
    assert sfu.stats()["sources"]["speaker/video"]["keyframe_requests"] >= 1


async def test_program_video_switch_reaches_viewer(sfu: Sfu, peers: Peers) -> None:
    await peers.publisher("first", [PatternVideoTrack()])
    await peers.publisher("second", [PatternVideoTrack()])
    sfu.declare_output("program-video", "video")
    sfu.point("program-video", "first/video")
    viewer = await peers.subscriber("viewer", {"video": "program-video"})
    frames = viewer.video["video"]
    await eventually(lambda: frames.frames >= 5, what="first speaker's frames")

    sfu.point("program-video", "second/video")
    await eventually(
        lambda: sfu.stats()["sources"]["second/video"]["keyframe_requests"] >= 1,
        what="a keyframe request to the new speaker",
    )
    switched_at = frames.frames
    await eventually(lambda: frames.frames >= switched_at + 10, what="second speaker's frames")
    rtp = viewer.rtp["video"].packets
    assert len({p[4] for p in rtp}) == 1, "the viewer saw another SSRC"
    # Loopback loses nothing: the numbering goes on one by one across the switch (a gap
    # would read as loss to the viewer, a step back as a duplicate).
    sequence = [p[1] for p in rtp]
    steps = [(b - a) & 0xFFFF for a, b in itertools.pairwise(sequence)]
    assert steps and set(steps) == {1}, [s for s in steps if s != 1]


async def test_nack_is_answered_from_history_with_rtx(sfu: Sfu, peers: Peers) -> None:
    await peers.publisher("speaker", [PatternVideoTrack()])
    sfu.declare_output("program-video", "video")
    sfu.point("program-video", "speaker/video")
    viewer = await peers.subscriber("viewer", {"video": "program-video"})
    rtp = viewer.rtp["video"]
    await eventually(lambda: rtp.count() >= 10, what="video packets")

    _, wanted_seq, _, media_pt, media_ssrc = rtp.packets[-3]
    transceiver = viewer.pc.getTransceivers()[0]
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1234, media_ssrc=media_ssrc)
    nack.lost = [wanted_seq]
    await send_rtcp(transceiver.receiver.transport, nack)

    def retransmitted() -> list[tuple]:
        return [p for p in rtp.packets if p[4] != media_ssrc]

    await eventually(lambda: bool(retransmitted()), what="the RTX retransmission")
    _, _, _, rtx_pt, _ = retransmitted()[0]
    assert rtx_pt != media_pt
    slot = sfu.stats()["subscribers"]["viewer"]["slots"]["video"]
    assert slot["nacked"] == 1
    assert slot["retransmitted"] == 1


async def test_subscriber_pli_is_relayed_to_publisher_throttled(sfu: Sfu, peers: Peers) -> None:
    await peers.publisher("speaker", [PatternVideoTrack()])
    sfu.declare_output("program-video", "video")
    sfu.point("program-video", "speaker/video")
    viewer = await peers.subscriber("viewer", {"video": "program-video"})
    await eventually(lambda: viewer.video["video"].frames >= 3, what="frames")
    before = sfu.stats()["sources"]["speaker/video"]["keyframe_requests"]
    await asyncio.sleep(0.3)  # past the throttle window of the join request

    transceiver = viewer.pc.getTransceivers()[0]
    media_ssrc = viewer.rtp["video"].packets[-1][4]
    for _ in range(5):  # a burst: the publisher is asked once
        await send_rtcp(
            transceiver.receiver.transport,
            RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1234, media_ssrc=media_ssrc),
        )
    await eventually(
        lambda: sfu.stats()["subscribers"]["viewer"]["slots"]["video"]["keyframe_requests"] >= 5,
        what="the PLIs to arrive",
    )
    after = sfu.stats()["sources"]["speaker/video"]["keyframe_requests"]
    assert after == before + 1
    assert sfu.stats()["outputs"]["program-video"]["keyframe_requests"] >= 5


async def test_h264_only_publisher_is_forwarded(sfu: Sfu, peers: Peers) -> None:
    pc = peer_connection()
    transceiver = pc.addTransceiver(PatternVideoTrack(), direction="sendonly")
    transceiver.setCodecPreferences(
        [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() in ("video/h264", "video/rtx")
        ]
    )
    await pc.setLocalDescription(await pc.createOffer())
    assert "VP8" not in pc.localDescription.sdp
    answer = await sfu.publish("h264", pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    peers.adopt(PublisherPeer(pc))
    sfu.declare_output("program-video", "video")
    sfu.point("program-video", "h264/video")
    viewer = await peers.subscriber("viewer", {"video": "program-video"})
    await eventually(lambda: viewer.video["video"].frames >= 5, within=15, what="H.264 frames")
    assert "H264" in answer
