"""Sender reports come from one node timer, and still say what aiortc's own said.

`SenderReports` (streamer/sender_reports.py) replaces aiortc's task per sender. These
tests check the scheduler on its own (each sender's interval, how few wake-ups the
whole node costs, removal, failures), then with real aiortc peers: every slot's
subscriber gets a report about once a second, on the slot's SSRC, whose NTP/RTP
mapping and counts are those of the packets it received; no per-sender RTCP task is
left; the round trip is still estimated from the subscriber's receiver reports; a
BYE goes out when the subscriber is closed.
"""

from __future__ import annotations

import asyncio
import itertools
import time

from aiortc.rtp import RtcpByePacket, RtcpPacket, RtcpSdesPacket, RtcpSrPacket, RtpPacket

from streamer import Sfu
from streamer.sender_reports import COALESCE_S, SenderReports
from tests.streamer.conftest import Peers
from tests.streamer.peers import eventually
from tests.support.aiortc_probes import observe_received_rtcp, observe_received_rtp
from tests.support.tones import PatternVideoTrack, ToneTrack

NTP_SECOND = 1 << 32


class FakeSender:
    """Records when the scheduler asked it for a report."""

    def __init__(self, fails: bool = False, refuses: bool = False) -> None:
        self.times: list[float] = []
        self.fails = fails
        self.refuses = refuses

    def send_report(self) -> bool:
        self.times.append(time.monotonic())
        if self.fails:
            raise RuntimeError("this sender is broken")
        return not self.refuses


async def test_each_sender_reports_about_once_a_second_from_few_wakeups() -> None:
    reports = SenderReports()
    senders = [FakeSender() for _ in range(200)]
    try:
        for sender in senders:
            reports.add(sender)
            reports.add(sender)  # added twice: still one schedule
        await asyncio.sleep(4.2)
    finally:
        reports.close()
    for sender in senders:
        # First report within 0.5-1.5 s, then one every 0.5-1.5 s (RFC 3550 6.2's
        # randomisation), give or take the coalescing window and a loaded machine.
        assert 2 <= len(sender.times) <= 9, len(sender.times)
        gaps = [b - a for a, b in itertools.pairwise(sender.times)]
        assert all(0.5 - COALESCE_S - 0.01 <= gap <= 1.5 + 0.5 for gap in gaps), gaps
    assert reports.sent == sum(len(s.times) for s in senders)
    # 200 senders, about 800 reports: the timer woke up at most ~10 times a second.
    assert reports.wakeups <= 4.2 / COALESCE_S + 5, reports.wakeups
    assert reports.wakeups < reports.sent / 10


async def test_removed_and_closed_senders_get_no_more_reports_and_failures_stay_local() -> None:
    reports = SenderReports()
    kept, removed, broken, refusing = (
        FakeSender(),
        FakeSender(),
        FakeSender(fails=True),
        FakeSender(refuses=True),
    )
    try:
        for sender in (kept, removed, broken, refusing):
            reports.add(sender)
        reports.remove(removed)
        reports.add(removed)
        reports.remove(removed)  # re-added then removed: its old entry must not come back
        await asyncio.sleep(2.2)
        assert removed.times == []
        assert len(kept.times) >= 1 and len(broken.times) >= 1 and len(refusing.times) >= 1
        assert reports.errors == len(broken.times) and reports.refused == len(refusing.times)
        assert removed not in reports and kept in reports and len(reports) == 3
    finally:
        reports.close()
    count = len(kept.times)
    reports.add(kept)  # closed: ignored
    await asyncio.sleep(1.6)
    assert len(kept.times) == count and len(reports) == 0


def _parsed_reports(packet: object, into: list[tuple[float, RtcpSrPacket]]) -> None:
    if isinstance(packet, RtcpSrPacket):
        into.append((time.time(), packet))


async def test_every_slot_gets_true_sender_reports_from_the_shared_timer(
    sfu: Sfu, peers: Peers
) -> None:
    await peers.publisher("speaker", [ToneTrack(1000), PatternVideoTrack()])
    sfu.declare_output("program-video", "video")
    sfu.declare_output("floor", "audio")
    sfu.point("program-video", "speaker/video")
    sfu.point("floor", "speaker/audio")
    viewers = [
        await peers.subscriber(f"viewer-{i}", {"video": "program-video", "voice": "floor"})
        for i in range(2)
    ]
    srs: dict[tuple[int, str], list[tuple[float, RtcpSrPacket]]] = {}
    arrivals: dict[tuple[int, str], list[tuple[float, RtpPacket]]] = {}
    for i, viewer in enumerate(viewers):
        for name, transceiver in zip(["video", "voice"], viewer.pc.getTransceivers(), strict=True):
            srs[i, name] = received = []
            arrivals[i, name] = packets = []
            observe_received_rtcp(
                transceiver.receiver, lambda p, into=received: _parsed_reports(p, into)
            )
            # Chained before the peer helper's own observer (decode=True passes it on);
            # the viewers decode, so that their receivers count packets and send receiver
            # reports (the round trip below).
            observe_received_rtp(
                transceiver.receiver,
                lambda packet, keep=packets: keep.append((time.time(), packet)),
                decode=True,
            )
    # No slot runs aiortc's report loop: its "task" is a bare future, never a Task.
    server_slots = [slot for sub in sfu._subscribers.values() for slot in sub.slots.values()]
    await eventually(lambda: all(slot.ready for slot in server_slots), what="slots started")
    for slot in server_slots:
        rtcp_task = slot.link._sender._RTCRtpSender__rtcp_task
        assert rtcp_task is not None and not isinstance(rtcp_task, asyncio.Task)
    assert sfu.stats()["sender_reports"]["senders"] == len(server_slots) == 4

    started = time.monotonic()
    await eventually(
        lambda: all(len(r) >= 4 for r in srs.values()), within=20, what="4 reports per slot"
    )
    elapsed = time.monotonic() - started
    for (i, name), received in srs.items():
        slot = sfu._subscribers[f"viewer-{i}"].slots[name]
        # About one a second: never two within 0.4 s (the scheduler's randomised
        # interval is at least 0.5 s, less the coalescing window).
        times = [t for t, _ in received]
        assert all(b - a >= 0.35 for a, b in itertools.pairwise(times)), times
        assert len(received) <= elapsed / 0.4 + 2
        for arrived_at, report in received[1:]:
            assert report.ssrc == slot.link.ssrc
            info = report.sender_info
            # The mapping: the reported RTP timestamp went out at the reported NTP time.
            # The packet carrying that timestamp arrived at about that NTP time (loopback).
            matching = [t for t, p in arrivals[i, name] if p.timestamp == info.rtp_timestamp]
            assert matching, "a report names a timestamp the subscriber never received"
            sent_at = info.ntp_timestamp / NTP_SECOND - 2208988800
            assert abs(matching[0] - sent_at) < 0.5, (matching[0], sent_at)
            # Counts: what had been received when the report was sent, give or take
            # the packets in flight.
            received_before = sum(1 for t, _ in arrivals[i, name] if t <= arrived_at)
            assert abs(info.packet_count - received_before) <= 0.2 * received_before + 20
            assert 0 < info.octet_count

    # The round trip is estimated from the subscriber's receiver reports, which echo
    # the last sender report (they reach the link without aiortc's receive task).
    deadline = time.monotonic() + 15
    while True:
        rtts = [slot.link.round_trip_s for slot in server_slots]
        if all(r is not None and 0 <= r < 1 for r in rtts):
            break
        assert time.monotonic() < deadline, f"round trips not estimated: {rtts}"
        await asyncio.sleep(0.2)

    # Closing a subscriber stops its reports and sends a BYE for each of its slots.
    byes: list[int] = []
    viewer = viewers[0]
    for transceiver in viewer.pc.getTransceivers():
        observe_received_rtcp(
            transceiver.receiver,
            lambda p: byes.extend(p.sources) if isinstance(p, RtcpByePacket) else None,
        )
    closed_ssrcs = {slot.link.ssrc for slot in sfu._subscribers["viewer-0"].slots.values()}
    await sfu.close_subscriber("viewer-0")
    await eventually(lambda: set(byes) == closed_ssrcs, what="a BYE per closed slot")
    assert sfu.stats()["sender_reports"]["senders"] == 2


async def test_a_sender_report_parses_as_aiortc_builds_it(sfu: Sfu, peers: Peers) -> None:
    # The compound packet, byte for byte the layout of aiortc's own: SR without report
    # blocks, then SDES with the CNAME aiortc negotiated for the sender.
    await peers.publisher("speaker", [ToneTrack(1000)])
    sfu.declare_output("floor", "audio")
    sfu.point("floor", "speaker/audio")
    listener = await peers.subscriber("listener", {"voice": "floor"}, decode=False)
    await eventually(lambda: listener.rtp["voice"].count() > 10, what="media")
    slot = sfu._subscribers["listener"].slots["voice"]
    sent: list[bytes] = []
    link = slot.link
    original = link._transmit_rtcp
    link._transmit_rtcp = lambda data: sent.append(data) or original(data)  # type: ignore[method-assign]
    assert link.send_report()
    sr, sdes = RtcpPacket.parse(sent[0])
    assert isinstance(sr, RtcpSrPacket) and isinstance(sdes, RtcpSdesPacket)
    assert sr.reports == [] and sr.ssrc == link.ssrc
    assert sr.sender_info.packet_count == link.packet_count
    assert sr.sender_info.octet_count == link.octet_count
    assert sr.sender_info.rtp_timestamp == link.rtp_timestamp
    assert sr.sender_info.ntp_timestamp == link.ntp_timestamp
    cname = slot.transceiver.sender._RTCRtpSender__cname
    assert sdes.chunks[0].ssrc == link.ssrc and sdes.chunks[0].items == [(1, cname.encode())]


async def test_a_paused_slot_sends_no_reports_until_it_resumes(sfu: Sfu, peers: Peers) -> None:
    """An attendee's paused slots (the floor under the interpretation off, the picture
    while audio only) send nothing, so they report nothing; resumed, they report again."""
    await peers.publisher("speaker", [ToneTrack(1000)])
    sfu.declare_output("channel", "audio")
    sfu.declare_output("floor", "audio")
    sfu.point("channel", "speaker/audio")
    sfu.point("floor", "speaker/audio")
    viewer = await peers.subscriber("viewer", {"channel": "channel", "original": "floor"})
    srs: dict[str, list[tuple[float, RtcpSrPacket]]] = {}
    for name, transceiver in zip(["channel", "original"], viewer.pc.getTransceivers(), strict=True):
        srs[name] = received = []
        observe_received_rtcp(
            transceiver.receiver, lambda p, into=received: _parsed_reports(p, into)
        )
    slots = sfu._subscribers["viewer"].slots
    await eventually(lambda: all(slot.ready for slot in slots.values()), what="slots started")
    await eventually(lambda: len(srs["original"]) >= 1, within=10, what="a first report")

    sfu.pause_slot("viewer", "original", True)
    paused_at = time.time()
    assert sfu.stats()["sender_reports"]["senders"] == 1
    await eventually(
        lambda: sum(t > paused_at for t, _ in srs["channel"]) >= 3,
        within=15,
        what="the slot still playing reports on",
    )
    # A report already on its way when the slot paused may still arrive.
    assert [t for t, _ in srs["original"] if t > paused_at + 0.2] == []

    sfu.pause_slot("viewer", "original", False)
    resumed_at = time.time()
    assert sfu.stats()["sender_reports"]["senders"] == 2
    await eventually(
        lambda: any(t > resumed_at for t, _ in srs["original"]),
        within=5,
        what="reports again once resumed",
    )
