"""What real networks do to packets, at the packet level: the forwarding rules under
loss, reordering, duplication, late retransmissions and switches (no peers: the real
forwarder, outputs and slots, with a link that records what would leave)."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from streamer.aiortc_internals import NegotiatedSend
from streamer.forwarder import Forwarder
from streamer.output import Output
from streamer.sequence_window import WINDOW, SequenceWindow
from streamer.subscriber import Slot
from streamer.vp8_munger import Vp8Munger, parse_descriptor

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


# -- the source's window ----------------------------------------------------------------


def test_window_hands_out_each_packet_once_in_any_order() -> None:
    window = SequenceWindow()
    arrivals = [10, 12, 11, 12, 13, 10, 11, 14]
    assert [window.accept(seq) for seq in arrivals] == [10, 12, 11, None, 13, None, None, 14]
    assert window.duplicates == 3


def test_window_unwraps_past_65535_and_never_mistakes_a_long_stream_for_an_old_one() -> None:
    window = SequenceWindow()
    extended = [window.accept(seq & 0xFFFF) for seq in range(65_000, 65_000 + 200_000)]
    assert extended == list(range(65_000, 65_000 + 200_000))
    # A late packet across the wrap still finds its place.
    window = SequenceWindow()
    assert window.accept(65_534) == 65_534
    assert window.accept(1) == 65_537
    assert window.accept(65_535) == 65_535
    assert window.accept(0) == 65_536


def test_window_drops_what_is_too_late_to_use() -> None:
    window = SequenceWindow()
    window.accept(1000)
    window.accept(1000 + WINDOW + 5)
    assert window.accept(1001) is None
    assert window.too_late == 1
    # A gap larger than the window forgets what came before it without harm.
    assert window.accept(1000 + WINDOW + 4) == 1000 + WINDOW + 4


# -- slots behind the real forwarder ------------------------------------------------------


@dataclass
class RecordingLink:
    """Stands in for `SenderLink`: records the RTP that would be protected and sent."""

    ssrc: int = 0x1234
    rtx_ssrc: int = 0x5678
    sent: list[bytes] = field(default_factory=list)

    def send(self, data: bytes, rtp_timestamp: int, ntp: int, octets: int) -> bool:
        self.sent.append(data)
        return True

    def send_unaccounted(self, data: bytes) -> bool:
        self.sent.append(data)
        return True

    def close(self) -> None:
        pass


def open_slot(output: Output, kind: str) -> tuple[Slot, RecordingLink]:
    slot = Slot("voice" if kind == "audio" else "video", kind, output)
    link = RecordingLink()
    slot.link = link  # type: ignore[assignment]
    output.attach(slot)
    payload_types = {"audio/opus": 111} if kind == "audio" else {"video/vp8": 96}
    slot.start(
        NegotiatedSend(
            mid="0", payload_types=payload_types, rtx_payload_types={}, nack=True, extension_ids={}
        )
    )
    return slot, link


async def no_upstream(urgent: bool) -> bool:
    return True


def packet(seq: int, ts: int, payload: bytes, ssrc: int, pt: int = 111) -> RtpPacket:
    return RtpPacket(
        payload_type=pt, sequence_number=seq & 0xFFFF, timestamp=ts, ssrc=ssrc, payload=payload
    )


def sent_seq(data: bytes) -> int:
    return struct.unpack("!H", data[2:4])[0]


def lossy_arrivals(rng: random.Random, seqs: list[int]) -> list[int]:
    """`seqs` as a bad network delivers them: reordered, duplicated, some lost, some
    retransmitted late (an RTX answer to a NACK arrives after newer packets)."""
    arrivals = []
    for seq in seqs:
        roll = rng.random()
        if roll < 0.05:
            continue  # lost, never repaired
        arrivals.append(seq)
        if roll < 0.10:
            arrivals.append(seq)  # duplicated by the network
        if roll < 0.15:
            arrivals.append(seq)  # retransmitted although it arrived
    # Jitter: each packet moves up to 4 places.
    keyed = sorted(enumerate(arrivals), key=lambda item: item[0] + rng.uniform(0, 4))
    return [seq for _, seq in keyed]


@pytest.mark.parametrize("seed", range(8))
async def test_around_switches_no_outgoing_number_is_used_twice(seed: int) -> None:
    """Three sources take turns on one output under reordering, duplication and late
    retransmissions: every packet a slot sends has a number of its own, each source's
    stretch keeps its order, and the NACK history holds exactly what was sent."""
    rng = random.Random(seed)
    forwarders = [Forwarder("audio", no_upstream) for _ in range(3)]
    output = Output(name="channel-fr", kind="audio")
    slot, link = open_slot(output, "audio")
    next_seq = [rng.randrange(0, 0x10000) for _ in forwarders]
    sent_from: dict[int, tuple[int, int]] = {}  # outgoing seq -> (source, its seq)
    for _turn in range(12):
        source = rng.randrange(3)
        output.source = None  # bind() re-anchors every slot, as the SFU does
        for forwarder in forwarders:
            forwarder.remove_output(output)
        forwarders[source].add_output(output)
        output.source = object()  # type: ignore[assignment]
        slot.restart()
        first = next_seq[source]
        seqs = list(range(first, first + rng.randrange(20, 80)))
        next_seq[source] = seqs[-1] + 1
        # The previous stretch's stragglers of this source arrive too.
        arrivals = [first - 3, first - 1, *lossy_arrivals(rng, seqs), first - 2]
        before = len(link.sent)
        for seq in arrivals:
            payload = f"{source}:{seq}".encode()
            await forwarders[source].handle(packet(seq, seq * 960, payload, 100 + source), OPUS)
        for data in link.sent[before:]:
            out = sent_seq(data)
            source_seq = tuple(int(x) for x in data[12:].decode().split(":"))
            assert out not in sent_from, f"outgoing {out} reused for {source_seq}"
            sent_from[out] = source_seq  # type: ignore[assignment]
            assert slot.history is not None
            _header, payload = slot.history.get(out)  # type: ignore[misc]
            assert payload == data[12:]
        stretch = [tuple(map(int, d[12:].decode().split(":"))) for d in link.sent[before:]]
        # Nothing older than the anchor (the stretch's first packet) was sent.
        assert all(seq >= stretch[0][1] for _, seq in stretch)
        # Within the stretch, the offset between incoming and outgoing numbers is constant.
        offsets = {
            (sent_seq(d) - s[1]) & 0xFFFF for d, s in zip(link.sent[before:], stretch, strict=True)
        }
        assert len(offsets) == 1
    assert slot.counters.before_anchor > 0
    assert sum(f.counters.duplicates for f in forwarders) > 0


async def test_an_output_nobody_listened_to_for_long_starts_cleanly() -> None:
    """The window follows a source even while no output points at it."""
    forwarder = Forwarder("audio", no_upstream)
    for seq in range(0, 40_000):
        await forwarder.handle(packet(seq, seq * 960, b"x", 7), OPUS)
    output = Output(name="floor", kind="audio")
    _slot, link = open_slot(output, "audio")
    forwarder.add_output(output)
    await forwarder.handle(packet(40_000, 40_000 * 960, b"y", 7), OPUS)
    assert len(link.sent) == 1


# -- VP8 picture ids ----------------------------------------------------------------------


def vp8_payload(picture_id: int, *, keyframe: bool, tl0: int | None = None, wide=True) -> bytes:
    ext = 0x80 | (0x40 if tl0 is not None else 0)
    descriptor = bytearray((0x90, ext))
    if wide:
        descriptor += bytes((0x80 | (picture_id >> 8), picture_id & 0xFF))
    else:
        descriptor.append(picture_id & 0x7F)
    if tl0 is not None:
        descriptor.append(tl0)
    vp8_header = bytes((0x00 if keyframe else 0x01, 0x02, 0x03))
    return bytes(descriptor) + vp8_header + b"frame"


def test_descriptor_parsing() -> None:
    wide = parse_descriptor(vp8_payload(0x1234, keyframe=True, tl0=9))
    assert wide is not None
    assert (wide.picture_id, wide.picture_id_width, wide.tl0, wide.keyframe_start) == (
        0x1234,
        2,
        9,
        True,
    )
    narrow = parse_descriptor(vp8_payload(100, keyframe=False, wide=False))
    assert narrow is not None
    assert (narrow.picture_id, narrow.picture_id_width, narrow.tl0) == (100, 1, None)
    assert not narrow.keyframe_start
    plain = parse_descriptor(bytes((0x10, 0x00)))
    assert plain is not None and plain.picture_id is None and plain.keyframe_start
    for truncated in (b"", bytes((0x90,)), bytes((0x90, 0x80)), bytes((0x90, 0x80, 0x81))):
        assert parse_descriptor(truncated) is None


def munged_fields(munger: Vp8Munger, payload: bytes) -> tuple[int | None, int | None, bytes]:
    descriptor = parse_descriptor(payload)
    assert descriptor is not None
    out = munger.munge(descriptor, payload)
    parsed = parse_descriptor(out)
    assert parsed is not None
    end = parsed.picture_id_at + parsed.picture_id_width + (1 if parsed.tl0 is not None else 0)
    return parsed.picture_id, parsed.tl0, out[end:]


def test_picture_ids_and_tl0picidx_continue_across_a_switch() -> None:
    munger = Vp8Munger()
    untouched = vp8_payload(500, keyframe=True, tl0=7)
    descriptor = parse_descriptor(untouched)
    assert descriptor is not None
    assert munger.munge(descriptor, untouched) is untouched  # never switched: no copy
    for picture_id in range(501, 505):
        munged_fields(munger, vp8_payload(picture_id, keyframe=False, tl0=7))
    munger.reanchor()  # the program switches to another speaker
    assert munged_fields(munger, vp8_payload(0x7FF0, keyframe=True, tl0=200)) == (
        505,
        8,
        b"\x00\x02\x03frame",
    )
    assert munged_fields(munger, vp8_payload(0x7FFF, keyframe=False, tl0=200))[:2] == (520, 8)
    # The new source's ids wrap at 15 bits; ours keep counting.
    assert munged_fields(munger, vp8_payload(0, keyframe=False, tl0=201))[:2] == (521, 9)


def test_a_seven_bit_picture_id_leaves_in_fifteen_bits_once_shifted() -> None:
    munger = Vp8Munger()
    for picture_id in range(0x7F00, 0x7F05):
        munged_fields(munger, vp8_payload(picture_id, keyframe=False))
    munger.reanchor()
    picture_id, tl0, rest = munged_fields(munger, vp8_payload(3, keyframe=True, wide=False))
    assert (picture_id, tl0, rest) == (0x7F05, None, b"\x00\x02\x03frame")
    # 7-bit ids wrap at 128: the shifted ids keep counting past it.
    for incoming in range(4, 128):
        munged_fields(munger, vp8_payload(incoming, keyframe=False, wide=False))
    assert munged_fields(munger, vp8_payload(0, keyframe=False, wide=False))[0] == 0x7F05 + 125


async def test_vp8_switch_through_the_forwarder_keeps_picture_ids_continuous() -> None:
    speakers = [Forwarder("video", no_upstream), Forwarder("video", no_upstream)]
    output = Output(name="program-video", kind="video")
    _slot, link = open_slot(output, "video")
    seen: list[int] = []

    async def frames(forwarder: Forwarder, ssrc: int, first_id: int, count: int) -> None:
        for n in range(count):
            payload = vp8_payload((first_id + n) & 0x7FFF, keyframe=n == 0)
            await forwarder.handle(packet(first_id + n, n * 3000, payload, ssrc, 96), VP8)

    speakers[0].add_output(output)
    await frames(speakers[0], 1, 1000, 10)
    speakers[0].remove_output(output)
    speakers[1].add_output(output)
    for slot in output.slots:
        slot.restart()
    await frames(speakers[1], 2, 20000, 10)
    for data in link.sent:
        descriptor = parse_descriptor(data[12:])
        assert descriptor is not None and descriptor.picture_id is not None
        seen.append(descriptor.picture_id)
    assert seen == list(range(1000, 1020))


async def test_a_keyframe_whose_first_packet_is_overtaken_still_leaves_whole() -> None:
    # Jitter reorders the packets of one frame, which leave the publisher back to back: a
    # switched (or newly joined) slot must still get every packet of the keyframe it
    # starts on, or the subscriber cannot decode it and waits for the next keyframe.
    forwarder = Forwarder("video", no_upstream)
    output = Output(name="program-video", kind="video")
    _slot, link = open_slot(output, "video")
    forwarder.add_output(output)
    start = vp8_payload(100, keyframe=True)
    rest = bytes((start[0] & ~0x10,)) + start[1:]  # same frame, not its first packet
    arrivals = [(5001, rest), (5000, start), (5002, rest)]
    for seq, payload in arrivals:
        await forwarder.handle(packet(seq, 9000, payload, 7, 96), VP8)
    sent = sorted(sent_seq(data) for data in link.sent)
    assert len(sent) == 3 and sent == list(range(sent[0], sent[0] + 3)), sent


def test_a_sender_that_writes_small_ids_in_seven_bits_keeps_counting_through_its_wrap() -> None:
    """aiortc writes ids below 128 in the 7-bit form: its 15-bit counter wrapping from
    32767 to 0 comes out as 7-bit ids, then 15-bit ones again from 128."""
    munger = Vp8Munger()
    munged_fields(munger, vp8_payload(1000, keyframe=True))
    munger.reanchor()
    ids = [32766, 32767, *range(0, 128), 128, 129]
    out = [
        munged_fields(munger, vp8_payload(i, keyframe=n == 0, wide=i >= 128))[0]
        for n, i in enumerate(ids)
    ]
    assert out == [(1001 + n) & 0x7FFF for n in range(len(ids))]


async def test_a_video_source_back_from_a_silence_asks_for_a_keyframe_until_one_comes() -> None:
    # The request may be lost on the lossy path that caused the silence (an uplink, a
    # node link): asked once, a lost request left subscribers on a broken picture.
    forwarder = Forwarder("video", no_upstream)
    output = Output(name="program-video", kind="video")
    open_slot(output, "video")
    forwarder.add_output(output)
    keyframe, inter = vp8_payload(1, keyframe=True), vp8_payload(2, keyframe=False)
    forwarder.forward(packet(100, 0, keyframe, 7, 96), VP8)
    assert not forwarder.forward(packet(101, 3000, inter, 7, 96), VP8)
    forwarder.last_packet_at -= 1.0  # a second of silence
    wants = [forwarder.forward(packet(seq, seq * 3000, inter, 7, 96), VP8) for seq in (102, 103)]
    assert wants == [True, True], "asked once only after the silence"
    assert not forwarder.forward(packet(104, 104 * 3000, vp8_payload(3, keyframe=True), 7, 96), VP8)
    assert not forwarder.forward(packet(105, 105 * 3000, inter, 7, 96), VP8)
