"""Every slot of a subscriber starts, whatever the order of its slots and their kinds.

Under aiortc's default ("balanced") bundle policy the second section of a kind
is created on that kind's own transport and then left there when bundling moves
everything onto the first section's transport: with slots ordered video, audio,
audio the server never started the last audio slot. The SFU now offers with
max-bundle. An aiortc answerer has the same flaw on its side (it never listens
to such a section), so answerers here use max-bundle as browsers do; with a
balanced one the server still sends every slot. Should aiortc still leave a
sender unstarted, the subscriber starts it once connected; a slot the subscriber
refuses is reported, not left silently dead.
"""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCBundlePolicy, RTCSessionDescription

from streamer import Sfu
from streamer.output import Output
from streamer.sender_reports import SenderReports
from streamer.subscriber import open_subscriber
from tests.streamer.conftest import Peers
from tests.streamer.peers import ReceivedRtp, SubscriberPeer, eventually, peer_connection
from tests.support.aiortc_probes import observe_received_rtp
from tests.support.tones import PatternVideoTrack, ToneTrack

OUTPUTS = {"video": "program-video", "channel": "channel-a", "original": "floor-b"}

BALANCED = RTCBundlePolicy.BALANCED
MAX_BUNDLE = RTCBundlePolicy.MAX_BUNDLE


async def on_air(sfu: Sfu, peers: Peers) -> None:
    """Three outputs with live sources: program video, and two different audio outputs."""
    await peers.publisher("camera", [ToneTrack(1000), PatternVideoTrack()])
    await peers.publisher("booth", [ToneTrack(440)])
    sfu.declare_output("program-video", "video")
    sfu.declare_output("channel-a", "audio")
    sfu.declare_output("floor-b", "audio")
    sfu.point("program-video", "camera/video")
    sfu.point("channel-a", "booth/audio")
    sfu.point("floor-b", "camera/audio")


def slot_stats(sfu: Sfu, subscriber_id: str) -> dict[str, dict]:
    return sfu.stats()["subscribers"][subscriber_id]["slots"]


async def every_slot_receives(sfu: Sfu, peer: SubscriberPeer, subscriber_id: str) -> None:
    try:
        for name in peer.slot_names:
            await eventually(
                lambda name=name: peer.rtp[name].count() > 10, within=15, what=f"slot {name!r}"
            )
    except AssertionError as failure:
        raise AssertionError(
            f"{failure}; the SFU's view: {slot_stats(sfu, subscriber_id)}"
        ) from None
    # Each slot is its own stream, not another slot's packets landing on it.
    ssrcs = [{packet[4] for packet in peer.rtp[name].packets} for name in peer.slot_names]
    assert all(len(s) == 1 for s in ssrcs), ssrcs
    assert len(set.union(*ssrcs)) == len(peer.slot_names)
    slots = slot_stats(sfu, subscriber_id)
    assert all(slot["ready"] and slot["problem"] is None for slot in slots.values()), slots


@pytest.mark.parametrize(
    ("order", "bundle_policy"),
    [
        (("video", "channel", "original"), MAX_BUNDLE),
        (("channel", "video", "original"), MAX_BUNDLE),
        (("channel", "original", "video"), MAX_BUNDLE),
        # A balanced aiortc answerer copes when the kind with two sections comes first.
        (("channel", "video", "original"), BALANCED),
        (("channel", "original", "video"), BALANCED),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, tuple) else value.value,
)
async def test_every_slot_receives_whatever_the_order(
    sfu: Sfu,
    peers: Peers,
    order: tuple[str, ...],
    bundle_policy: RTCBundlePolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await on_air(sfu, peers)
    slots = {name: OUTPUTS[name] for name in order}
    attendee = await peers.subscriber("attendee", slots, decode=False, bundle_policy=bundle_policy)
    await every_slot_receives(sfu, attendee, "attendee")
    # aiortc started every sender itself: none needed starting after the fact.
    assert not [r for r in caplog.records if "had not started" in r.getMessage()]


async def test_server_sends_every_slot_to_a_balanced_aiortc_answerer(
    sfu: Sfu, peers: Peers
) -> None:
    # That answerer never routes the last section to its own receiver (aiortc's flaw,
    # on its side), but nothing on the server's side is left unstarted.
    await on_air(sfu, peers)
    await peers.subscriber("attendee", OUTPUTS, decode=False, bundle_policy=BALANCED)
    for name in OUTPUTS:
        await eventually(
            lambda name=name: slot_stats(sfu, "attendee")[name]["packets"] > 10, what=name
        )


async def test_two_slots_of_each_kind_start_on_the_server(sfu: Sfu, peers: Peers) -> None:
    # Two sections of each kind: no bundle tag can suit a balanced aiortc answerer,
    # but one answering with max-bundle (as browsers do) gets every slot.
    await on_air(sfu, peers)
    slots = {
        "video": "program-video",
        "channel": "channel-a",
        "preview": "program-video",
        "original": "floor-b",
    }
    moderator = await peers.subscriber("moderator", slots, decode=False, bundle_policy=MAX_BUNDLE)
    await every_slot_receives(sfu, moderator, "moderator")


async def test_a_refused_slot_is_reported_and_the_others_play(sfu: Sfu, peers: Peers) -> None:
    await on_air(sfu, peers)
    attendee = await peers.subscriber(
        "attendee",
        {"video": "program-video", "channel": "channel-a", "original": "floor-b"},
        decode=False,
        bundle_policy=MAX_BUNDLE,
        refuse=frozenset({"channel"}),
    )
    for name in ("video", "original"):
        await eventually(lambda name=name: attendee.rtp[name].count() > 10, what=name)

    def channel() -> dict:
        return sfu.stats()["subscribers"]["attendee"]["slots"]["channel"]

    await eventually(lambda: channel()["problem"] is not None, what="the refusal reported")
    assert channel()["ready"] is False
    assert "inactive" in channel()["problem"]
    await asyncio.sleep(0.3)
    assert attendee.rtp["channel"].count() == 0
    # Re-pointing or pausing the refused slot is harmless.
    sfu.point_slot("attendee", "channel", "floor-b")
    sfu.pause_slot("attendee", "channel", True)
    sfu.pause_slot("attendee", "channel", False)
    count = attendee.rtp["original"].count()
    await eventually(lambda: attendee.rtp["original"].count() > count + 10, what="media to go on")


async def test_a_sender_aiortc_left_unstarted_is_started(caplog: pytest.LogCaptureFixture) -> None:
    # A balanced peer connection reproduces what max-bundle prevents: aiortc leaves
    # the last audio slot unstarted, and the subscriber starts it once connected.
    outputs = {
        "video": Output("program-video", "video"),
        "channel": Output("channel-a", "audio"),
        "original": Output("floor-b", "audio"),
    }
    pc = peer_connection(RTCBundlePolicy.BALANCED)
    reports = SenderReports()
    subscriber, offer = await open_subscriber("attendee", outputs, pc, reports=reports)
    answerer = peer_connection(MAX_BUNDLE)
    try:
        await answerer.setRemoteDescription(offer)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await pc.setRemoteDescription(
            RTCSessionDescription(sdp=answerer.localDescription.sdp, type="answer")
        )
        slots = subscriber.slots.values()
        await eventually(lambda: all(slot.ready for slot in slots), what="every slot started")
        assert [slot.problem for slot in slots] == [None, None, None]
        assert "aiortc had not started slot original; started it" in caplog.text
    finally:
        await subscriber.close()
        await answerer.close()
        reports.close()


async def test_candidates_listed_on_the_first_section_only_are_used(sfu: Sfu, peers: Peers) -> None:
    # Chromium lists its candidates on the BUNDLE tag only; aiortc would read them
    # from the last section and have to wait for the subscriber's checks instead.
    await on_air(sfu, peers)
    offer = await sfu.subscribe("attendee", OUTPUTS)
    pc = peer_connection(MAX_BUNDLE)
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        received = [ReceivedRtp() for _ in OUTPUTS]
        for transceiver, rtp in zip(pc.getTransceivers(), received, strict=True):
            observe_received_rtp(transceiver.receiver, rtp.observe, decode=False)
        await pc.setLocalDescription(await pc.createAnswer())
        session, tag, *others = pc.localDescription.sdp.split("\r\nm=")
        listed = {
            (fields[4], int(fields[5]))
            for fields in (line.split() for line in tag.split("\r\n"))
            if fields and fields[0].startswith("a=candidate:")
        }
        assert listed
        others = [
            "\r\n".join(
                line
                for line in section.split("\r\n")
                if not line.startswith(("a=candidate:", "a=end-of-candidates"))
            )
            for section in others
        ]
        await sfu.accept_answer("attendee", "\r\nm=".join([session, tag, *others]))
        server_pc = sfu._subscribers["attendee"].pc
        ice = server_pc.getTransceivers()[0].sender.transport.transport
        assert listed <= {(c.ip, c.port) for c in ice.getRemoteCandidates()}
        await eventually(lambda: all(r.count() > 10 for r in received), what="every slot")
    finally:
        await pc.close()
