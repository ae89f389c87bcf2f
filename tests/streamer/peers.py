"""Real aiortc peers for the streamer tests: publishers and subscribers over loopback.

No STUN: every peer uses `RTCConfiguration(iceServers=[])`. Peers and the SFU
gather host candidates on 127.0.0.1 only (`LOOPBACK`), so test media never
leaves the machine, whatever its interfaces.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from streamer import Sfu
from streamer.aiortc_internals import restrict_ice
from tests.support.aiortc_probes import observe_received_rtp
from tests.support.tones import ToneRecorder

#: Where test peers and test SFUs gather their host candidates (aioice alone skips it).
LOOPBACK = ("127.0.0.1",)


def peer_connection(
    bundle_policy: RTCBundlePolicy = RTCBundlePolicy.BALANCED,
) -> RTCPeerConnection:
    """aiortc's defaults (a balanced bundle policy) unless told otherwise, minus STUN,
    on loopback."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=bundle_policy))
    restrict_ice(pc, LOOPBACK)
    return pc


async def eventually(
    condition: Callable[[], bool], within: float = 10.0, what: str = "condition"
) -> None:
    """Wait until `condition()` holds (a liveness check, not a timing assertion)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.05)


class PublisherPeer:
    """A browser-like publisher: sends the given tracks to the SFU."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc

    @classmethod
    async def connect(
        cls, sfu: Sfu, publisher_id: str, tracks: list[MediaStreamTrack]
    ) -> PublisherPeer:
        pc = peer_connection()
        for track in tracks:
            pc.addTransceiver(track, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        answer = await sfu.publish(publisher_id, pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return cls(pc)

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class ReceivedRtp:
    """Header fields of the RTP packets one subscriber slot received."""

    packets: list[tuple[float, int, int, int, int]] = field(default_factory=list)

    def observe(self, packet: RtpPacket) -> None:
        self.packets.append(
            (
                time.monotonic(),
                packet.sequence_number,
                packet.timestamp,
                packet.payload_type,
                packet.ssrc,
            )
        )

    def count(self) -> int:
        return len(self.packets)


class FrameCounter:
    """Reads a received video track and counts decoded frames."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.frames = 0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while True:
                await self.track.recv()
                self.frames += 1
        except MediaStreamError:
            pass

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class SubscriberPeer:
    """A browser-like subscriber: answers the SFU's offer, records what arrives per slot."""

    def __init__(self, pc: RTCPeerConnection, slot_names: list[str]) -> None:
        self.pc = pc
        self.slot_names = slot_names
        self.rtp: dict[str, ReceivedRtp] = {name: ReceivedRtp() for name in slot_names}
        self.audio: dict[str, ToneRecorder] = {}
        self.video: dict[str, FrameCounter] = {}

    @classmethod
    async def connect(
        cls,
        sfu: Sfu,
        subscriber_id: str,
        slots: Mapping[str, str],
        decode: bool = True,
        bundle_policy: RTCBundlePolicy = RTCBundlePolicy.BALANCED,
        refuse: frozenset[str] = frozenset(),
        streams: Mapping[str, str] | None = None,
    ) -> SubscriberPeer:
        """Answer the SFU's offer; slots named in `refuse` are answered inactive."""
        offer = await sfu.subscribe(subscriber_id, slots, streams)
        pc = peer_connection(bundle_policy)
        peer = cls(pc, list(slots))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        # Transceivers follow the offer's sections, which follow the slots' order.
        for name, transceiver in zip(peer.slot_names, pc.getTransceivers(), strict=True):
            if name in refuse:
                transceiver.direction = "inactive"
            observe_received_rtp(transceiver.receiver, peer.rtp[name].observe, decode=decode)
            track = transceiver.receiver.track
            if not decode:
                continue
            if track.kind == "audio":
                peer.audio[name] = ToneRecorder(track)
            else:
                peer.video[name] = FrameCounter(track)
        await pc.setLocalDescription(await pc.createAnswer())
        await sfu.accept_answer(subscriber_id, pc.localDescription.sdp)
        return peer

    async def close(self) -> None:
        for recorder in self.audio.values():
            await recorder.stop()
        for counter in self.video.values():
            await counter.stop()
        await self.pc.close()
