"""The media path over a bad network: real aiortc peers reach the SFU only through a
user-space relay that loses, delays, reorders and duplicates packets both ways
(tests/support/impaired_network.py), as Wi-Fi and mobile networks do.

The SFU gathers on 127.0.0.1 inside a port range and announces the relay's
address; the peers' own candidates are stripped from their SDP (a NAT nobody can
reach through), so every packet crosses the relay.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCBundlePolicy, RTCSessionDescription
from aiortc.rtp import RtpPacket

from streamer import Sfu, SfuConfig
from streamer.aiortc_internals import observe_received_rtp
from tests.streamer.peers import LOOPBACK, FrameCounter, eventually, peer_connection
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
    what it carried."""

    def __init__(self) -> None:
        self.contents: dict[tuple[int, int], set[bytes]] = {}

    def observe(self, packet: RtpPacket) -> None:
        digest = hashlib.blake2b(packet.payload, digest_size=8).digest()
        self.contents.setdefault((packet.ssrc, packet.sequence_number), set()).add(digest)


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
    received = {"video": Received(), "voice": Received()}
    observe_received_rtp(video_in.receiver, received["video"].observe)
    observe_received_rtp(voice_in.receiver, received["voice"].observe)
    voice = ToneRecorder(voice_in.receiver.track)
    frames = FrameCounter(video_in.receiver.track)
    await pc.setLocalDescription(await pc.createAnswer())
    await sfu.accept_answer("viewer", strip_candidates(pc.localDescription.sdp))
    try:
        for publisher, hz in (("first", 1000), ("second", 440), ("first", 1000)):
            sfu.point("program-video", f"{publisher}/video")
            sfu.point("floor", f"{publisher}/audio")
            await hears(voice, hz)
            shown = frames.frames
            await eventually(
                lambda shown=shown: frames.frames >= shown + 15,
                within=15,
                what=f"{publisher}'s video decoded under loss",
            )
        stats = sfu.stats()
        viewer = stats["subscribers"]["viewer"]
        assert viewer["nacked"] > 0 and viewer["retransmitted"] > 0, viewer
        assert relay.downstream.counters.lost > 0 and relay.upstream.counters.duplicated > 0
        # No outgoing sequence number ever carried two different packets.
        for name, slot in received.items():
            reused = {seq: c for seq, c in slot.contents.items() if len(c) > 1}
            assert not reused, f"{name}: sequence numbers reused for other content: {reused}"
    finally:
        await voice.stop()
        await frames.stop()
        for peer in peers:
            await peer.close()


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
