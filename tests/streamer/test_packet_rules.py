"""The packet-level rules, without peers: rewriting, RTX, keyframe recognition, SDP shaping."""

from __future__ import annotations

import itertools
import struct

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket, unwrap_rtx

from streamer.aiortc_internals import rtx_packet
from streamer.history import PacketHistory
from streamer.keyframes import (
    KeyframeThrottle,
    is_h264_keyframe_start,
    is_keyframe_start,
    is_vp8_keyframe_start,
)
from streamer.negotiation import MID_URI, with_public_address
from streamer.rtp_rewriter import RtpRewriter

CLOCK = 48000


def fields(header: bytes) -> tuple[int, int, int, int]:
    _, marker_pt, seq, ts, ssrc = struct.unpack("!BBHII", header[:12])
    return marker_pt, seq, ts, ssrc


def test_one_stream_keeps_its_spacing_reordering_and_gaps() -> None:
    rewriter = RtpRewriter(ssrc=0xABCD, extension_words=0)
    stream = object()
    out = [
        fields(rewriter.rewrite(stream, 111, seq, ts, 0.0, CLOCK))
        for seq, ts in [(100, 5000), (101, 5960), (103, 7880), (102, 6920)]
    ]
    seqs = [o[1] for o in out]
    stamps = [o[2] for o in out]
    assert [s - seqs[0] for s in seqs] == [0, 1, 3, 2]
    assert [t - stamps[0] for t in stamps] == [0, 960, 2880, 1920]
    assert {o[3] for o in out} == {0xABCD}
    assert {o[0] for o in out} == {111}
    assert rewriter.seq == seqs[2]  # the newest, not the last received


def test_switching_source_continues_by_one_with_a_wall_clock_gap() -> None:
    rewriter = RtpRewriter(ssrc=1, extension_words=0)
    first, second = object(), object()
    _, seq_a, ts_a, _ = fields(rewriter.rewrite(first, 111, 65535, 0xFFFFFF00, 10.0, CLOCK))
    # The other source numbers its packets from somewhere else entirely.
    _, seq_b, ts_b, _ = fields(rewriter.rewrite(second, 111, 7, 42, 10.5, CLOCK))
    assert seq_b == (seq_a + 1) & 0xFFFF
    assert (ts_b - ts_a) & 0xFFFFFFFF == CLOCK // 2
    _, seq_c, ts_c, _ = fields(rewriter.rewrite(second, 111, 8, 42 + 960, 10.52, CLOCK))
    assert seq_c == (seq_b + 1) & 0xFFFF
    assert (ts_c - ts_b) & 0xFFFFFFFF == 960


def test_switch_back_never_goes_backwards() -> None:
    rewriter = RtpRewriter(ssrc=1, extension_words=0)
    a, b = object(), object()
    rewriter.rewrite(a, 111, 1000, 1_000_000, 1.0, CLOCK)
    rewriter.rewrite(b, 111, 5, 5, 1.02, CLOCK)
    last_seq, last_ts = rewriter.seq, rewriter.ts
    rewriter.reanchor()  # back to the first source, whose numbers are far ahead
    _, seq, ts, _ = fields(rewriter.rewrite(a, 111, 1001, 1_000_960, 1.02, CLOCK))
    assert seq == (last_seq + 1) & 0xFFFF
    assert 0 < (ts - last_ts) & 0xFFFFFFFF <= CLOCK // 10


def test_header_with_extension_block() -> None:
    header = RtpRewriter(ssrc=9, extension_words=2).rewrite(object(), 0x80 | 96, 1, 2, 0.0, CLOCK)
    assert len(header) == 16
    assert header[0] == 0x90
    assert header[1] == 0x80 | 96
    assert struct.unpack("!HH", header[12:16]) == (0xBEDE, 2)


def test_history_and_rtx_round_trip() -> None:
    history = PacketHistory()
    packet = RtpPacket(payload_type=96, sequence_number=4242, timestamp=777, ssrc=5)
    packet.marker = 1
    packet.extensions.mid = "3"
    packet.payload = b"frame data"
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=1, uri=MID_URI)])
    )
    data = packet.serialize(extensions)
    header, payload = data[: -len(packet.payload)], data[-len(packet.payload) :]
    history.store(4242, header, payload)
    assert history.get(4242) == (header, payload)
    assert history.get(4242 + 512) is None  # same slot, another packet: not confused
    wrapped = RtpPacket.parse(
        rtx_packet(header + payload, extensions, payload_type=97, sequence_number=10, ssrc=6),
        extensions,
    )
    assert (wrapped.payload_type, wrapped.sequence_number, wrapped.ssrc) == (97, 10, 6)
    assert wrapped.extensions.mid == "3"
    original = unwrap_rtx(wrapped, payload_type=96, ssrc=5)
    assert original.sequence_number == 4242
    assert original.timestamp == 777
    assert original.payload == b"frame data"
    assert original.marker == 1


def test_vp8_keyframe_recognition() -> None:
    # S=1, PID=0, no extension; VP8 header P bit 0 = keyframe.
    assert is_vp8_keyframe_start(bytes([0x10, 0x00, 0x9D, 0x01, 0x2A]))
    assert not is_vp8_keyframe_start(bytes([0x10, 0x01]))  # interframe
    assert not is_vp8_keyframe_start(bytes([0x00, 0x00]))  # not the first packet
    # X=1 with a 15-bit picture id (I=1, M=1), then the payload header.
    assert is_vp8_keyframe_start(bytes([0x90, 0x80, 0x81, 0x23, 0x00]))
    assert not is_vp8_keyframe_start(bytes([0x90, 0x80, 0x81]))  # truncated
    assert not is_vp8_keyframe_start(b"")


def test_h264_keyframe_recognition() -> None:
    assert is_h264_keyframe_start(bytes([0x65, 0x88]))  # IDR slice
    assert is_h264_keyframe_start(bytes([0x67, 0x42]))  # SPS
    assert not is_h264_keyframe_start(bytes([0x41, 0x9A]))  # non-IDR slice
    assert is_h264_keyframe_start(bytes([0x7C, 0x85]))  # FU-A start of an IDR
    assert not is_h264_keyframe_start(bytes([0x7C, 0x05]))  # FU-A continuation
    stap = bytes([0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xCE])
    assert is_h264_keyframe_start(stap)
    assert not is_h264_keyframe_start(bytes([0x78, 0x00, 0x00]))
    assert is_keyframe_start("audio/opus", b"\x01")


def test_loss_driven_keyframe_requests_reach_the_publisher_once_a_second() -> None:
    throttle = KeyframeThrottle()
    # A hundred subscribers' PLIs over three seconds, a keyframe after each request.
    sent = []
    for step in range(300):
        now = 10.0 + step * 0.01
        if throttle.due(now):
            sent.append(now)
            throttle.keyframe_arrived()
    assert len(sent) == 3
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(sent))


def test_a_join_or_switch_gets_its_keyframe_at_once_unless_one_is_on_its_way() -> None:
    throttle = KeyframeThrottle()
    assert throttle.due(10.0)  # a subscriber's PLI
    throttle.keyframe_arrived()
    assert throttle.due(10.1, urgent=True)  # a join right after: not held for a second
    assert not throttle.due(10.2, urgent=True)  # another join: the keyframe is coming
    assert not throttle.due(10.2)
    assert throttle.due(10.7, urgent=True)  # the keyframe never came: ask again
    throttle.keyframe_arrived()
    assert throttle.due(10.75, urgent=True)


def test_public_address_replaces_host_candidates_only() -> None:
    sdp = (
        "v=0\r\n"
        "a=candidate:1 1 UDP 2130706431 10.0.0.5 40000 typ host\r\n"
        "a=candidate:2 1 UDP 1694498815 198.51.100.1 40000 typ srflx raddr 10.0.0.5 rport 40000\r\n"
    )
    rewritten = with_public_address(sdp, "203.0.113.7")
    assert "203.0.113.7 40000 typ host" in rewritten
    assert "198.51.100.1 40000 typ srflx raddr 10.0.0.5" in rewritten
    assert with_public_address(sdp, None) == sdp
