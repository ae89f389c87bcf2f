"""aiortc peers speaking the live protocol: a publisher and a subscriber per WebSocket client.

No STUN: `RTCConfiguration(iceServers=[])`; peers gather on 127.0.0.1 only, where the
test servers offer their media too. `on_air_setup` brings a live event to
the point most media tests start from: a Russian speaker on air (1000 Hz), the interpreter
of the RU<>FR booth on air (440 Hz).
"""

from __future__ import annotations

import time
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from signaling.tokens import Role
from streamer.aiortc_internals import restrict_ice
from tests.signaling.conftest import Connect, WsClient
from tests.streamer.peers import FrameCounter
from tests.support.server import LOOPBACK_MEDIA
from tests.support.tones import PatternVideoTrack, ToneRecorder, ToneTrack

#: A tone counts as heard when the dominant frequency is this close to it.
TONE_TOLERANCE_HZ = 30

SPEAKER_HZ = 1000
INTERPRETER_HZ = 440
RUSSIAN_SPEAKER = "alexander-tokovinin"
FRENCH_SPEAKER = "andre-samray"


def peer_connection() -> RTCPeerConnection:
    pc = RTCPeerConnection(
        # Like browsers: one transport for every section (the server requires it).
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )
    restrict_ice(pc, LOOPBACK_MEDIA)
    return pc


async def publish(client: WsClient, *tracks: MediaStreamTrack) -> RTCPeerConnection:
    """Publish tracks the way a page does: offer over the WebSocket, apply the answer."""
    pc = peer_connection()
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    await client.send("offer", purpose="publish", sdp=pc.localDescription.sdp)
    answer = await client.next("answer")
    assert answer["purpose"] == "publish"
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    return pc


class Subscription:
    """The media a client receives, with a `ToneRecorder` on each audio slot."""

    def __init__(self, pc: RTCPeerConnection, slots: list[dict]) -> None:
        self.pc = pc
        self.slots = slots
        self.audio: dict[str, ToneRecorder] = {}
        #: Decoded frames per video slot, when opened with `video=True`.
        self.video: dict[str, FrameCounter] = {}

    @classmethod
    async def open(cls, client: WsClient, video: bool = False) -> Subscription:
        await client.send("subscribe")
        offer = await client.next("offer")
        assert offer["purpose"] == "subscribe"
        pc = peer_connection()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        subscription = cls(pc, offer["slots"])
        by_mid = {slot["mid"]: slot for slot in offer["slots"]}
        for transceiver in pc.getTransceivers():
            slot = by_mid[transceiver.mid]
            assert transceiver.kind == slot["kind"]
            if slot["kind"] == "audio":
                subscription.audio[slot["name"]] = ToneRecorder(transceiver.receiver.track)
            elif video:
                subscription.video[slot["name"]] = FrameCounter(transceiver.receiver.track)
        await pc.setLocalDescription(await pc.createAnswer())
        await client.send("answer", purpose="subscribe", sdp=pc.localDescription.sdp)
        return subscription

    async def hears(self, slot: str, frequency: float, within: float = 15.0) -> None:
        """Wait until the slot carries the tone (a liveness check, not a timing one)."""
        recorder = self.audio[slot]
        deadline = time.monotonic() + within
        heard = None
        while time.monotonic() < deadline:
            try:
                samples_s = min(0.5, max(0.1, deadline - time.monotonic()))
                await recorder.wait_for_samples(samples_s, within=deadline - time.monotonic())
            except AssertionError:
                break
            heard = recorder.dominant_frequency()
            if abs(heard - frequency) <= TONE_TOLERANCE_HZ:
                return
        raise AssertionError(f"slot {slot} did not carry {frequency} Hz (last heard: {heard})")

    async def close(self) -> None:
        for recorder in self.audio.values():
            await recorder.stop()
        for counter in self.video.values():
            await counter.stop()
        await self.pc.close()


async def on_air_setup(
    connect: Connect,
    peers: list[Any],
    speaker_id: str = RUSSIAN_SPEAKER,
    speaker_hz: float = SPEAKER_HZ,
) -> tuple[WsClient, WsClient, WsClient]:
    """Moderator, speaker on air and interpreter on air (all held open by `peers`)."""
    moderator = await connect(Role.MODERATOR)
    speaker = await connect(Role.SPEAKER, subject=speaker_id, speaker=speaker_id)
    peers.append(await publish(speaker, ToneTrack(speaker_hz), PatternVideoTrack()))
    interpreter = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr")
    peers.append(await publish(interpreter, ToneTrack(INTERPRETER_HZ)))
    await interpreter.send("mic", on=True)
    peers.extend([moderator, speaker, interpreter])
    await moderator.state_where(lambda s: speaker_id in s["publishers"]["speakers"])
    await moderator.send("start_session", session_id="plenary")
    await moderator.send("put_on_air", speaker_id=speaker_id)
    return moderator, speaker, interpreter
