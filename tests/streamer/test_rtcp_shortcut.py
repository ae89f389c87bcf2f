"""Subscribers' RTCP handled in the datagram callback (`RtcpShortcut`), not by aiortc's
receive task: what it carries still reaches the slot, and what does not belong is refused
without harm."""

from __future__ import annotations

import os

import pytest
from aiortc.rtp import (
    RTCP_RTPFB_NACK,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
)

from streamer import Sfu
from streamer.aiortc_internals import RtcpShortcut
from tests.streamer.conftest import Peers
from tests.streamer.peers import eventually
from tests.streamer.test_send_path import add_fed_source, connected_listener, feed, slot_of
from tests.support.aiortc_probes import send_rtcp


def receiver_report(media_ssrc: int, lost: int) -> RtcpRrPacket:
    return RtcpRrPacket(
        ssrc=4321,
        reports=[
            RtcpReceiverInfo(
                ssrc=media_ssrc,
                fraction_lost=12,
                packets_lost=lost,
                highest_sequence=100,
                jitter=33,
                lsr=0,
                dlsr=0,
            )
        ],
    )


async def test_reports_and_nacks_reach_the_slot_without_the_receive_task(
    sfu: Sfu, peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    sfu.declare_output("floor", "audio")
    forwarder = add_fed_source(sfu, "floor")
    listener = await connected_listener(sfu, peers)
    await feed(forwarder, 1, [b"tone"] * 5)
    slot = slot_of(sfu, "listener")
    server_dtls = slot.link._dtls
    detoured: list[bytes] = []
    # aiortc's own path, from its receive task: must not be taken for our slots' RTCP.
    monkeypatch.setattr(server_dtls, "_handle_rtcp_data", lambda data: detoured.append(data))

    transport = listener.pc.getTransceivers()[0].receiver.transport
    await send_rtcp(transport, receiver_report(slot.link.ssrc, lost=7))
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=4321, media_ssrc=slot.link.ssrc)
    nack.lost = [3]
    await send_rtcp(transport, nack)

    await eventually(lambda: slot.counters.packets_lost == 7, what="the report to arrive")
    await eventually(lambda: slot.counters.nacked == 1, what="the NACK to arrive")
    assert (slot.counters.fraction_lost, slot.counters.jitter) == (12, 33)
    assert detoured == []
    shortcut = RtcpShortcut.of(server_dtls)
    assert (shortcut.refused, shortcut.malformed) == (0, 0)


async def test_forged_and_garbled_rtcp_is_refused_and_nobody_is_disturbed(
    sfu: Sfu, peers: Peers
) -> None:
    sfu.declare_output("floor", "audio")
    forwarder = add_fed_source(sfu, "floor")
    victim = await connected_listener(sfu, peers, "victim")
    bystander = await connected_listener(sfu, peers, "bystander")
    slot = slot_of(sfu, "victim")
    shortcut = RtcpShortcut.of(slot.link._dtls)

    # Datagrams shaped like SRTCP (version 2, a receiver report's type) that no key made,
    # sent from the subscriber's own ICE pair, as an on-path attacker could.
    connection = victim.pc.getTransceivers()[0].receiver.transport.transport._connection
    for size in (8, 40, 200):
        await connection.send(bytes((0x81, 201)) + os.urandom(size))
    await eventually(lambda: shortcut.refused == 3, what="the forgeries to be refused")

    # The connection still works both ways: a real report lands, packets still flow.
    transport = victim.pc.getTransceivers()[0].receiver.transport
    await send_rtcp(transport, receiver_report(slot.link.ssrc, lost=2))
    await eventually(lambda: slot.counters.packets_lost == 2, what="a genuine report")
    before = slot_of(sfu, "bystander").counters.packets
    await feed(forwarder, 10, [b"still on"] * 5)
    await eventually(
        lambda: slot_of(sfu, "bystander").counters.packets == before + 5, what="forwarding"
    )
    assert victim.pc.connectionState == bystander.pc.connectionState == "connected"
