"""The media path over a bad network: real aiortc peers reach the SFU only through a
user-space relay that loses, delays, reorders and duplicates packets both ways
(testbed/impaired_network.py), as Wi-Fi and mobile networks do.

The SFU gathers on 127.0.0.1 inside a port range and announces the relay's
address; the peers' own candidates are stripped from their SDP (a NAT nobody can
reach through), so every packet crosses the relay.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import struct
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCBundlePolicy, RTCRtpTransceiver, RTCSessionDescription
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket, RtpPacket

from streamer import Sfu, SfuConfig
from streamer.vp8_munger import parse_descriptor
from tests.streamer.peers import LOOPBACK, FrameCounter, eventually, peer_connection
from tests.support.aiortc_probes import observe_received_rtp, send_rtcp
from tests.support.impaired_network import RELAY_HOST, Impairment, UdpRelay, strip_candidates
from tests.support.ports import free_udp_range
from tests.support.tones import PatternVideoTrack, ToneRecorder, ToneTrack

#: What the issue asks the media path to survive.
BAD_WIFI = Impairment(
    loss=0.05, delay_ms=10, jitter_ms=30, duplicate=0.01, reorder=0.02, reorder_ms=20
)


@pytest.fixture
async def relayed() -> AsyncIterator[tuple[Sfu, UdpRelay]]:
    first, last = free_udp_range(24, addresses=(*LOOPBACK, RELAY_HOST))
    sfu = Sfu(
        SfuConfig(
            ice_servers=[],
            host_addresses=LOOPBACK,
            port_range=(first, last),
            public_address=RELAY_HOST,
        )
    )
    relay = await UdpRelay(range(first, last + 1), seed=7).start()
    yield sfu, relay
    await sfu.close()
    await relay.close()


class Received:
    """Every packet one slot received, by stream (SSRC: media or RTX) and sequence number:
    what it carried; for VP8, the picture ids and keyframe sizes in arrival order."""

    def __init__(self, vp8_payload_type: int | None = None) -> None:
        self.vp8_payload_type = vp8_payload_type
        self.contents: dict[tuple[int, int], set[bytes]] = {}
        self.picture_ids: list[int] = []
        self.keyframe_sizes: list[tuple[int, int]] = []

    def observe(self, packet: RtpPacket) -> None:
        digest = hashlib.blake2b(packet.payload, digest_size=8).digest()
        self.contents.setdefault((packet.ssrc, packet.sequence_number), set()).add(digest)
        vp8 = packet.payload_type == self.vp8_payload_type
        descriptor = parse_descriptor(packet.payload) if vp8 else None
        if descriptor is None or descriptor.picture_id is None:
            return
        self.picture_ids.append(descriptor.picture_id)
        if descriptor.keyframe_start:
            # The VP8 key frame header: 3-byte tag, start code, 14-bit width and height.
            at = descriptor.picture_id_at + descriptor.picture_id_width + 3 + 3
            width, height = struct.unpack_from("<HH", packet.payload, at)
            self.keyframe_sizes.append((width & 0x3FFF, height & 0x3FFF))


async def publish(sfu: Sfu, publisher_id: str, *tracks: object):
    pc = peer_connection()
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    answer = await sfu.publish(publisher_id, strip_candidates(pc.localDescription.sdp))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return pc


async def test_tones_video_and_switches_survive_loss_jitter_reordering_and_duplicates(
    relayed: tuple[Sfu, UdpRelay],
) -> None:
    sfu, relay = relayed
    relay.set_impairment(BAD_WIFI)
    peers = [
        await publish(sfu, "first", ToneTrack(1000), PatternVideoTrack()),
        await publish(sfu, "second", ToneTrack(440), PatternVideoTrack(width=192, height=144)),
    ]
    sfu.declare_output("program-video", "video")
    sfu.declare_output("floor", "audio")
    sfu.point("program-video", "first/video")
    sfu.point("floor", "first/audio")

    offer = await sfu.subscribe("viewer", {"video": "program-video", "voice": "floor"})
    pc = peer_connection(RTCBundlePolicy.MAX_BUNDLE)
    peers.append(pc)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    video_in, voice_in = pc.getTransceivers()
    vp8_payload_type = int(re.findall(r"a=rtpmap:(\d+) VP8/90000", offer)[0])
    received = {"video": Received(vp8_payload_type), "voice": Received()}
    observe_received_rtp(video_in.receiver, received["video"].observe)
    observe_received_rtp(voice_in.receiver, received["voice"].observe)
    voice = ToneRecorder(voice_in.receiver.track)
    frames = FrameCounter(video_in.receiver.track)
    reporter = asyncio.ensure_future(report_frozen_picture(video_in, frames, received["video"]))
    await pc.setLocalDescription(await pc.createAnswer())
    await sfu.accept_answer("viewer", strip_candidates(pc.localDescription.sdp))
    try:
        video = received["video"]
        for publisher, hz, size in (
            ("first", 1000, (160, 120)),
            ("second", 440, (192, 144)),
            ("first", 1000, (160, 120)),
        ):
            keyframes = len(video.keyframe_sizes)
            sfu.point("program-video", f"{publisher}/video")
            sfu.point("floor", f"{publisher}/audio")
            await hears(voice, hz)
            await eventually(
                lambda size=size, keyframes=keyframes: size in video.keyframe_sizes[keyframes:],
                within=15,
                what=f"a keyframe of {publisher}'s video",
            )
        # aiortc's receiver recovers from a lost keyframe packet slowly (it never NACKs the
        # first packet it missed), so decoding is only checked over the whole run.
        await eventually(lambda: frames.frames >= 30, within=20, what="30 frames decoded")
        # Picture ids continue across the switches: each step is small and forwards
        # (reordering makes some steps go back a little; a switch never jumps).
        steps = [(b - a) % 0x8000 for a, b in itertools.pairwise(video.picture_ids)]
        assert all(step < 64 or step > 0x8000 - 64 for step in steps), max(steps)
        stats = sfu.stats()
        viewer = stats["subscribers"]["viewer"]
        assert viewer["nacked"] > 0 and viewer["retransmitted"] > 0, viewer
        assert relay.downstream.counters.lost > 0 and relay.upstream.counters.duplicated > 0
        # No outgoing sequence number ever carried two different packets.
        for name, slot in received.items():
            reused = {seq: c for seq, c in slot.contents.items() if len(c) > 1}
            assert not reused, f"{name}: sequence numbers reused for other content: {reused}"
    finally:
        reporter.cancel()
        await voice.stop()
        await frames.stop()
        for peer in peers:
            await peer.close()


async def report_frozen_picture(
    transceiver: RTCRtpTransceiver, frames: FrameCounter, received: Received
) -> None:
    """What a browser does and aiortc's receiver does not: when no frame has been decoded
    for a second (a lost keyframe packet it never knew to NACK), send a PLI."""
    last = -1
    while True:
        await asyncio.sleep(1.0)
        if frames.frames == last and received.contents:
            media_ssrc = next(iter(received.contents))[0]
            await send_rtcp(
                transceiver.receiver.transport,
                RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=media_ssrc),
            )
        last = frames.frames


async def hears(recorder: ToneRecorder, frequency: float, within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    heard = None
    while asyncio.get_running_loop().time() < deadline:
        await recorder.wait_for_samples(0.3, within=within)
        heard = recorder.dominant_frequency()
        if abs(heard - frequency) <= 30:
            return
    raise AssertionError(f"did not hear {frequency} Hz (last heard {heard})")


async def test_relay_impairs_and_cuts_both_ways() -> None:
    """The relay itself: a UDP echo server behind it, 30 % loss, then an outage."""
    first, last = free_udp_range(1, addresses=(*LOOPBACK, RELAY_HOST))
    loop = asyncio.get_running_loop()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(data, addr)  # type: ignore[attr-defined]

    echo_transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", first))
    relay = await UdpRelay(range(first, last + 1), seed=3).start()
    relay.set_impairment(Impairment(loss=0.3, duplicate=0.1))
    replies: list[bytes] = []

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            replies.append(data)

    client, _ = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0))
    try:
        for n in range(400):
            client.sendto(n.to_bytes(2, "big"), (RELAY_HOST, first))
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.2)
        up, down = relay.upstream.counters, relay.downstream.counters
        assert up.received == 400 and 80 < up.lost < 160 and up.duplicated > 10
        assert down.received == up.forwarded
        assert len(replies) == down.forwarded
        relay.cut()
        before = len(replies)
        for n in range(20):
            client.sendto(n.to_bytes(2, "big"), (RELAY_HOST, first))
        await asyncio.sleep(0.1)
        assert len(replies) == before and up.cut == 20
        relay.restore()
        relay.set_impairment(Impairment())
        client.sendto(b"back", (RELAY_HOST, first))
        await eventually(lambda: b"back" in replies, within=2, what="traffic after the outage")
        with pytest.raises(ValueError, match="probability"):
            Impairment(loss=1.5)
    finally:
        client.close()
        echo_transport.close()
        await relay.close()
