"""Bad input gets a typed error naming the problem, and nobody else is disturbed."""

from __future__ import annotations

import pytest
from aiortc import RTCBundlePolicy, RTCSessionDescription

from streamer import (
    InvalidSdp,
    KindMismatch,
    Sfu,
    SfuClosed,
    StreamerError,
    UnknownOutput,
    UnknownPublisher,
    UnknownSlot,
    UnknownSource,
    UnknownSubscriber,
)
from streamer.negotiation import MAX_SDP_LENGTH
from tests.streamer.conftest import Peers
from tests.streamer.peers import SubscriberPeer, eventually, peer_connection
from tests.support.tones import PatternVideoTrack, ToneTrack


async def publisher_offer(*tracks) -> str:
    pc = peer_connection()
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


@pytest.fixture
async def flowing(sfu: Sfu, peers: Peers) -> SubscriberPeer:
    """A listener receiving audio; every bad call below must leave it untouched."""
    await peers.publisher("speaker", [ToneTrack(1000)])
    sfu.declare_output("floor", "audio")
    sfu.point("floor", "speaker/audio")
    listener = await peers.subscriber("listener", {"voice": "floor"}, decode=False)
    await eventually(lambda: listener.rtp["voice"].count() > 5, what="media")
    return listener


async def still_flowing(listener: SubscriberPeer) -> None:
    count = listener.rtp["voice"].count()
    await eventually(lambda: listener.rtp["voice"].count() > count + 10, what="media to go on")


@pytest.mark.parametrize(
    ("offer", "problem"),
    [
        ("", "empty"),
        ("hello", "not SDP"),
        ("v=0\r\nthis is not sdp at all\r\n", "no audio or video"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9", "could not be parsed"),
        ("v=0" + "a" * MAX_SDP_LENGTH, "at most"),
    ],
    ids=["empty", "not-sdp", "no-media", "truncated", "oversized"],
)
async def test_malformed_offer(sfu: Sfu, flowing: SubscriberPeer, offer: str, problem: str) -> None:
    with pytest.raises(InvalidSdp, match=problem):
        await sfu.publish("intruder", offer)
    assert "intruder" not in sfu.stats()["publishers"]
    await still_flowing(flowing)


async def test_offer_with_two_audio_tracks(sfu: Sfu) -> None:
    offer = await publisher_offer(ToneTrack(1000), ToneTrack(440))
    with pytest.raises(InvalidSdp, match="2 audio sections"):
        await sfu.publish("twice", offer)


async def test_offer_without_forwardable_codec(sfu: Sfu) -> None:
    offer = await publisher_offer(PatternVideoTrack())
    offer = offer.replace("VP8/90000", "VP9/90000").replace("H264/90000", "AV1/90000")
    with pytest.raises(InvalidSdp, match=r"no codec the streamer forwards .*VP9"):
        await sfu.publish("vp9", offer)


async def test_offer_without_ice_credentials(sfu: Sfu) -> None:
    offer = await publisher_offer(ToneTrack(1000))
    offer = "\r\n".join(line for line in offer.split("\r\n") if "ice-pwd" not in line)
    with pytest.raises(InvalidSdp, match="ICE credentials"):
        await sfu.publish("no-ice", offer)


async def test_offer_that_is_not_text(sfu: Sfu) -> None:
    with pytest.raises(InvalidSdp, match="must be SDP text"):
        await sfu.publish("bytes", b"v=0")  # type: ignore[arg-type]


async def test_malformed_answer(sfu: Sfu, flowing: SubscriberPeer) -> None:
    await sfu.subscribe("second", {"voice": "floor"})
    with pytest.raises(InvalidSdp, match="not SDP"):
        await sfu.accept_answer("second", "garbage")
    with pytest.raises(InvalidSdp, match=r"media sections \(none\)"):
        await sfu.accept_answer("second", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n")
    await still_flowing(flowing)
    await sfu.close_subscriber("second")


async def test_answer_for_another_offer(sfu: Sfu, flowing: SubscriberPeer) -> None:
    await sfu.subscribe("second", {"voice": "floor", "again": "floor"})
    other_offer = await sfu.subscribe("third", {"voice": "floor"})
    pc = peer_connection()
    await pc.setRemoteDescription(RTCSessionDescription(other_offer, "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    with pytest.raises(InvalidSdp, match=r"do not match the offer's \(audio, audio\)"):
        await sfu.accept_answer("second", pc.localDescription.sdp)
    await pc.close()
    await still_flowing(flowing)


async def test_answer_that_does_not_bundle_every_section(sfu: Sfu, flowing: SubscriberPeer) -> None:
    offer = await sfu.subscribe("second", {"voice": "floor", "again": "floor"})
    pc = peer_connection(RTCBundlePolicy.MAX_BUNDLE)
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription.sdp
        assert "a=group:BUNDLE 0 1\r\n" in answer
        unbundled = answer.replace("a=group:BUNDLE 0 1\r\n", "")
        with pytest.raises(InvalidSdp, match=r"does not bundle section\(s\) 0, 1"):
            await sfu.accept_answer("second", unbundled)
        partly = answer.replace("a=group:BUNDLE 0 1\r\n", "a=group:BUNDLE 0\r\n")
        with pytest.raises(InvalidSdp, match=r"does not bundle section\(s\) 1:"):
            await sfu.accept_answer("second", partly)
        # Any other first section would make aiortc stop the transport every slot is on.
        swapped = answer.replace("a=group:BUNDLE 0 1\r\n", "a=group:BUNDLE 1 0\r\n")
        with pytest.raises(InvalidSdp, match="must start with the offer's first section, 0"):
            await sfu.accept_answer("second", swapped)
        # Nothing was applied: the genuine answer still completes the subscription.
        await sfu.accept_answer("second", answer)

        def sent() -> list[int]:
            slots = sfu.stats()["subscribers"]["second"]["slots"]
            return [slot["packets"] for slot in slots.values()]

        await eventually(lambda: min(sent()) > 10, what="both slots of the second subscriber")
    finally:
        await pc.close()
    await still_flowing(flowing)


async def test_unknown_names(sfu: Sfu, flowing: SubscriberPeer) -> None:
    with pytest.raises(UnknownOutput, match="unknown output 'nowhere'"):
        await sfu.subscribe("lost", {"voice": "nowhere"})
    assert "lost" not in sfu.stats()["subscribers"]
    with pytest.raises(UnknownOutput, match="nowhere"):
        sfu.point("nowhere", "speaker/audio")
    with pytest.raises(UnknownSource, match="unknown source 'ghost/audio'"):
        sfu.point("floor", "ghost/audio")
    with pytest.raises(UnknownSlot, match="listener/elsewhere"):
        sfu.point_slot("listener", "elsewhere", "floor")
    with pytest.raises(UnknownSlot):
        sfu.pause_slot("listener", "elsewhere", True)
    with pytest.raises(UnknownOutput):
        sfu.point_slot("listener", "voice", "nowhere")
    with pytest.raises(UnknownSubscriber, match="nobody"):
        sfu.point_slot("nobody", "voice", "floor")
    with pytest.raises(UnknownSubscriber):
        await sfu.accept_answer("nobody", "v=0")
    with pytest.raises(UnknownSubscriber):
        await sfu.close_subscriber("nobody")
    with pytest.raises(UnknownPublisher):
        await sfu.close_publisher("nobody")
    # Unknown names are lookup errors too, for callers that think in those terms.
    with pytest.raises(LookupError):
        sfu.point("nowhere", None)
    assert sfu.stats()["outputs"]["floor"]["source"] == "speaker/audio"
    await still_flowing(flowing)


async def test_kind_mismatches(sfu: Sfu, flowing: SubscriberPeer) -> None:
    sfu.declare_output("program-video", "video")
    with pytest.raises(KindMismatch, match="carries video; source 'speaker/audio' is audio"):
        sfu.point("program-video", "speaker/audio")
    with pytest.raises(KindMismatch, match="carries audio; output 'program-video' is video"):
        sfu.point_slot("listener", "voice", "program-video")
    with pytest.raises(KindMismatch, match="already declared as audio"):
        sfu.declare_output("floor", "video")
    with pytest.raises(KindMismatch, match="'audio' or 'video'"):
        sfu.declare_output("subtitles", "text")
    sfu.declare_output("floor", "audio")  # the same declaration again is fine
    await still_flowing(flowing)


async def test_bad_names(sfu: Sfu) -> None:
    with pytest.raises(StreamerError, match="publisher id"):
        await sfu.publish("", "v=0")
    with pytest.raises(StreamerError, match="output name"):
        sfu.declare_output("x" * 201, "audio")
    with pytest.raises(StreamerError, match="at least one slot"):
        await sfu.subscribe("empty", {})


async def test_closed_sfu_refuses_work(sfu: Sfu) -> None:
    await sfu.close()
    with pytest.raises(SfuClosed):
        sfu.declare_output("floor", "audio")
    with pytest.raises(SfuClosed):
        await sfu.subscribe("late", {"voice": "floor"})
