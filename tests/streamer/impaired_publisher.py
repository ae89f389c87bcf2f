"""An H.264 publisher whose path to the node loses and reorders packets, for the tests of
what the node makes of it (a subscriber's stream, HLS segments and parts).

The node gathers on 127.0.0.1 inside a port range and announces the impairing relay's
address (testbed/impaired_network.py); the peers' own candidates are stripped from
their SDP, so every packet, both ways, crosses the relay. The publisher's sender is
watched: every access unit its encoder produced is kept (`SentAccessUnits`), so what the
node packaged can be compared with what was really sent, byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc import (
    RTCBundlePolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.rtcrtpsender import RTCEncodedFrame
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket
from av import VideoFrame

from streamer import Sfu, SfuConfig
from streamer.h264 import avcc_sample, depacketize, nal_units
from tests.streamer.peers import LOOPBACK, FrameCounter, peer_connection
from tests.support.aiortc_probes import observe_received_rtp, observe_sent_rtcp
from tests.support.impaired_network import RELAY_HOST, Impairment, UdpRelay, strip_candidates
from tests.support.ports import free_udp_range
from tests.support.tones import ToneRecorder, ToneTrack

#: A bad mobile or Wi-Fi path: 5 % loss, 20-60 ms of delay (packets of one frame, sent
#: back to back, overtake each other), some held back 30 ms more.
LOSSY_REORDERING = Impairment(loss=0.05, delay_ms=20, jitter_ms=40, reorder=0.05, reorder_ms=30)


class DetailedVideoTrack(VideoStreamTrack):
    """Video whose pictures do not compress to one packet, as a camera's: a detailed
    picture panning, and a band of it always new, so a picture spans several RTP
    packets (FU-A fragments). Like a camera's, it has no scene cut: after the first,
    keyframes come only when asked for."""

    def __init__(self, width: int = 320, height: int = 240, seed: int = 5) -> None:
        super().__init__()
        self.width, self.height = width, height
        self._rng = np.random.default_rng(seed)
        self._scene = self._rng.integers(0, 256, size=(height, width), dtype=np.uint8)
        self._count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        self._count += 1
        luma = np.roll(self._scene, self._count * 2, axis=1)
        band = self.height // 4
        luma[:band] = self._rng.integers(0, 256, size=(band, self.width), dtype=np.uint8)
        frame = VideoFrame.from_ndarray(np.dstack((luma, luma, luma)), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


@dataclass
class SentAccessUnits:
    """What a publisher's video sender encoded: each access unit as an MP4 sample would
    carry it (`avcc_sample`), and how many of them were keyframes asked for by PLI."""

    samples: set[bytes] = field(default_factory=set)
    count: int = 0
    plis: int = 0

    def watch(self, sender: RTCRtpSender) -> None:
        encoded = sender._next_encoded_frame

        async def next_encoded_frame(codec: object) -> RTCEncodedFrame | None:
            frame = await encoded(codec)
            if frame is not None:
                whole = b"".join(depacketize(p) for p in frame.payloads)
                self.samples.add(avcc_sample(nal_units(whole)))
                self.count += 1
            return frame

        sender._next_encoded_frame = next_encoded_frame  # type: ignore[method-assign]

        def count_pli(packet: object) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
                self.plis += 1

        observe_sent_rtcp(sender, count_pli)


def frames_in_segments(directory: Path, playlist: str, joined: Path) -> tuple[list[bytes], int]:
    """The video samples of a media playlist's segments (joined behind its init segment
    at `joined`), and how many pictures they decode to with a decoder that stops at the
    first error it detects."""
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', playlist)
    assert init is not None, playlist
    data = (directory / init[1]).read_bytes()
    for line in playlist.splitlines():
        if line.endswith(".m4s"):
            data += (directory / line).read_bytes()
    joined.write_bytes(data)
    with av.open(str(joined)) as container:
        stream = container.streams.video[0]
        samples = [bytes(p) for p in container.demux(stream) if p.size]
    with av.open(str(joined)) as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {"err_detect": "explode"}
        decoded = sum(1 for _ in container.decode(stream))
    return samples, decoded


@dataclass
class ImpairedNode:
    sfu: Sfu
    relay: UdpRelay
    peers: list[RTCPeerConnection] = field(default_factory=list)
    readers: list[FrameCounter | ToneRecorder] = field(default_factory=list)

    async def publish_h264(self, publisher_id: str, tone_hz: float) -> SentAccessUnits:
        """An aiortc publisher (the node asks it for H.264) of a tone and detailed video,
        reaching the node only through the relay."""
        pc = peer_connection()
        self.peers.append(pc)
        pc.addTransceiver(ToneTrack(tone_hz), direction="sendonly")
        video = pc.addTransceiver(DetailedVideoTrack(), direction="sendonly")
        sent = SentAccessUnits()
        sent.watch(video.sender)
        await pc.setLocalDescription(await pc.createOffer())
        answer = await self.sfu.publish(publisher_id, strip_candidates(pc.localDescription.sdp))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return sent

    async def watch(self, subscriber_id: str, slots: dict[str, str]) -> dict[str, object]:
        """A subscriber through the relay: per slot, a FrameCounter or a ToneRecorder,
        and under `<slot>/rtp` the RTP packets it received."""
        offer = await self.sfu.subscribe(subscriber_id, slots)
        pc = peer_connection(RTCBundlePolicy.MAX_BUNDLE)
        self.peers.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        readers: dict[str, object] = {}
        for name, transceiver in zip(slots, pc.getTransceivers(), strict=True):
            packets: list[int] = []
            observe_received_rtp(transceiver.receiver, lambda p, k=packets: k.append(p.ssrc))
            track = transceiver.receiver.track
            reader = FrameCounter(track) if track.kind == "video" else ToneRecorder(track)
            self.readers.append(reader)
            readers[name] = reader
            readers[f"{name}/rtp"] = packets
            readers[f"{name}/transceiver"] = transceiver
        await pc.setLocalDescription(await pc.createAnswer())
        await self.sfu.accept_answer(subscriber_id, strip_candidates(pc.localDescription.sdp))
        return readers

    async def close(self) -> None:
        for reader in self.readers:
            await reader.stop()
        for pc in self.peers:
            await pc.close()
        await self.sfu.close()
        await self.relay.close()


@pytest.fixture
async def impaired_node() -> AsyncIterator[ImpairedNode]:
    """An H.264 node that every peer reaches through one impairing relay (clean until the
    test sets its impairment)."""
    first, last = free_udp_range(16, addresses=(*LOOPBACK, RELAY_HOST))
    sfu = Sfu(
        SfuConfig(
            ice_servers=[],
            host_addresses=LOOPBACK,
            port_range=(first, last),
            public_address=RELAY_HOST,
            video_codec="h264",
        )
    )
    relay = await UdpRelay(range(first, last + 1), seed=11).start()
    node = ImpairedNode(sfu, relay)
    yield node
    await node.close()
