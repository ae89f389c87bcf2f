"""Every slot of a subscriber starts, whatever the order of its slots and their kinds.

Under aiortc's default ("balanced") bundle policy the second section of a kind
is created on that kind's own transport and then left there when bundling moves
everything onto the first section's transport: with slots ordered video, audio,
audio the server never started the last audio slot. The SFU now offers with
max-bundle. An aiortc answerer has the same flaw on its side (it never listens
to such a section), so answerers here use max-bundle as browsers do; with a
balanced one the server still sends every slot.
"""

from __future__ import annotations

import pytest
from aiortc import RTCBundlePolicy

from streamer import Sfu
from tests.streamer.conftest import Peers
from tests.streamer.peers import SubscriberPeer, eventually
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
) -> None:
    await on_air(sfu, peers)
    slots = {name: OUTPUTS[name] for name in order}
    attendee = await peers.subscriber("attendee", slots, decode=False, bundle_policy=bundle_policy)
    await every_slot_receives(sfu, attendee, "attendee")


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
