"""The send path of a subscriber slot: SRTP into a reused buffer, straight to the ICE pair's socket.

Packets are fed to a source's forwarder directly (no publisher), so the test
knows exactly what was sent and can check that the subscriber got and
decrypted every packet, payloads intact; and that when aioice selects another
ICE pair, the next packet goes to the new pair's address.
"""

from __future__ import annotations

import asyncio
import os

import pylibsrtp
import pytest
from aioice import Candidate
from aioice.ice import CandidatePair, StunProtocol
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from streamer import Sfu
from streamer.aiortc_internals import (
    MAX_RTP_SIZE,
    PYLIBSRTP_VERSION,
    AiortcIncompatible,
    SenderLink,
    SrtpProtector,
    check_srtp_protector,
)
from streamer.forwarder import Forwarder
from streamer.source import Source
from streamer.subscriber import Slot
from tests.streamer.conftest import Peers
from tests.streamer.peers import SubscriberPeer, eventually
from tests.support.aiortc_probes import observe_received_rtp

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


async def no_keyframe(urgent: bool) -> bool:
    return False


def add_fed_source(sfu: Sfu, output: str) -> Forwarder:
    """A source without a publisher: the test calls its forwarder itself."""
    forwarder = Forwarder("audio", no_keyframe)
    source = Source(id="feed/audio", kind="audio", publisher_id="feed", forwarder=forwarder)
    sfu._add_source(source)
    sfu.point(output, source.id)
    return forwarder


async def feed(forwarder: Forwarder, first_seq: int, payloads: list[bytes]) -> None:
    for i, payload in enumerate(payloads):
        seq = first_seq + i
        packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960, ssrc=77)
        packet.payload = payload
        await forwarder.handle(packet, OPUS)
        if i % 20 == 19:
            # Let the subscriber's side of the event loop read what was sent.
            await asyncio.sleep(0.01)


async def connected_listener(sfu: Sfu, peers: Peers, name: str = "listener") -> SubscriberPeer:
    listener = await peers.subscriber(name, {"voice": "floor"}, decode=False)
    await eventually(lambda: listener.pc.connectionState == "connected", what="connection")
    await eventually(lambda: slot_of(sfu, name).ready, what="slot started")
    return listener


def slot_of(sfu: Sfu, subscriber: str) -> Slot:
    return sfu._subscribers[subscriber].slots["voice"]


def record_payloads(listener: SubscriberPeer) -> list[bytes]:
    """Every payload the listener's voice slot decrypts, in arrival order."""
    received: list[bytes] = []
    receiver = listener.pc.getTransceivers()[0].receiver
    observe_received_rtp(receiver, lambda packet: received.append(packet.payload), decode=False)
    return received


def test_pylibsrtp_is_the_release_srtp_protector_is_written_for() -> None:
    # Fails loudly if a pylibsrtp upgrade changes the session internals or the output.
    assert pylibsrtp.__version__ == PYLIBSRTP_VERSION
    check_srtp_protector()


def test_srtp_protector_refuses_what_session_protect_refuses() -> None:
    policy = pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    protector = SrtpProtector(pylibsrtp.Session(policy))
    with pytest.raises(ValueError, match="too long"):
        protector.protect(bytes(MAX_RTP_SIZE + 1))
    # Not an RTP packet: libsrtp's own error, as Session.protect raises it.
    with pytest.raises(pylibsrtp.Error):
        protector.protect(b"\x80")
    # The buffer is reused: an earlier result is its own copy, not a view of it.
    first = protector.protect(bytes((0x80, 111, 0, 1)) + bytes(8) + b"first")
    kept = bytes(first)
    protector.protect(bytes((0x80, 111, 0, 2)) + bytes(8) + b"second, longer")
    assert isinstance(first, bytes) and first == kept
    assert len(first) == 12 + 5 + 10  # header, payload, 80-bit authentication tag


async def test_another_pylibsrtp_release_is_refused_loudly_and_served_by_session_protect(
    sfu: Sfu, peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pylibsrtp, "__version__", "9.9.9")
    with pytest.raises(AiortcIncompatible, match=r"pylibsrtp 9\.9\.9 is installed"):
        check_srtp_protector()
    sfu.declare_output("floor", "audio")
    forwarder = add_fed_source(sfu, "floor")
    listener = await connected_listener(sfu, peers)
    received = record_payloads(listener)
    link = slot_of(sfu, "listener").link
    assert link._protect == link._dtls._tx_srtp.protect  # type: ignore[union-attr]
    await feed(forwarder, 1, [b"still heard"] * 5)
    await eventually(lambda: len(received) == 5, what="packets protected by Session")
    assert received == [b"still heard"] * 5


async def test_subscriber_decrypts_every_packet_intact(sfu: Sfu, peers: Peers) -> None:
    sfu.declare_output("floor", "audio")
    forwarder = add_fed_source(sfu, "floor")
    listener = await connected_listener(sfu, peers)
    received = record_payloads(listener)
    # Sizes from one byte to the largest packet SRTP takes, random content.
    sizes = [1, 2, 80, 160, 500, 1000, MAX_RTP_SIZE - 40] * 30
    payloads = [os.urandom(size) for size in sizes]
    await feed(forwarder, 1000, payloads)
    await eventually(lambda: len(received) >= len(payloads), what="every packet")
    assert received == payloads
    counters = slot_of(sfu, "listener").counters
    assert counters.packets == len(payloads) and counters.errors == 0


async def test_a_newly_selected_ice_pair_gets_the_next_packets(sfu: Sfu, peers: Peers) -> None:
    sfu.declare_output("floor", "audio")
    forwarder = add_fed_source(sfu, "floor")
    listener = await connected_listener(sfu, peers)
    received = record_payloads(listener)
    await feed(forwarder, 1, [b"before"] * 5)
    await eventually(lambda: len(received) == 5, what="packets on the first pair")

    link = slot_of(sfu, "listener").link
    nominated = link._dtls.transport._connection._nominated  # type: ignore[union-attr]
    first = nominated[1]
    assert isinstance(first.protocol, StunProtocol)
    # The fast path is the socket's own send, not asyncio's wrapper around sendto: the
    # socket is connected to the selected pair's remote address.
    sock = first.protocol.transport._sock
    assert getattr(link._send, "__self__", None) is sock
    assert sock.getpeername()[:2] == first.remote_addr

    # Another address, as if aioice had nominated a second pair (it replaces the entry).
    elsewhere: list[bytes] = []
    loop = asyncio.get_running_loop()
    host = first.remote_addr[0]
    transport, _ = await loop.create_datagram_endpoint(
        lambda: Collector(elsewhere), local_addr=(host, 0)
    )
    try:
        port = transport.get_extra_info("sockname")[1]
        remote = Candidate("x", 1, "udp", 1, host, port, "host")
        nominated[1] = CandidatePair(first.protocol, remote)
        await feed(forwarder, 6, [b"moved"] * 5)
        await eventually(lambda: len(elsewhere) == 5, what="packets at the new address")
        assert len(received) == 5
        # SRTP: the payload is encrypted on the wire.
        assert all(b"moved" not in datagram for datagram in elsewhere)

        assert sock.getpeername()[:2] == (host, port)

        nominated[1] = first
        await feed(forwarder, 11, [b"back"] * 5)
        await eventually(lambda: len(received) == 10, what="packets on the first pair again")
        assert received[5:] == [b"back"] * 5
        assert len(elsewhere) == 5
        # Connected back to the subscriber (whose datagrams the kernel passes again).
        assert sock.getpeername()[:2] == first.remote_addr
    finally:
        transport.close()


async def test_a_socket_refusing_a_packet_is_a_counted_drop(sfu: Sfu, peers: Peers) -> None:
    sfu.declare_output("floor", "audio")
    forwarder = add_fed_source(sfu, "floor")
    await connected_listener(sfu, peers)
    slot = slot_of(sfu, "listener")
    link = slot.link
    nominated = link._dtls.transport._connection._nominated  # type: ignore[union-attr]
    first = nominated[1]
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: StunProtocol(None),  # type: ignore[arg-type]
        local_addr=(first.remote_addr[0], 0),
    )
    # A pair whose socket is closed under us: sendto raises OSError.
    transport._sock.close()  # type: ignore[attr-defined]
    nominated[1] = CandidatePair(protocol, first.remote_candidate)
    try:
        await feed(forwarder, 1, [b"lost"] * 3)
        assert link.dropped == 3
        assert slot.counters.packets == 0 and slot.counters.errors == 0
        assert sfu.stats()["subscribers"]["listener"]["slots"]["voice"]["dropped"] == 3
        assert sfu.stats()["subscribers"]["listener"]["dropped"] == 3
    finally:
        nominated[1] = first
        transport.abort()


async def test_a_relayed_pair_stays_on_aioices_path(sfu: Sfu, peers: Peers) -> None:
    sfu.declare_output("floor", "audio")
    forwarder = add_fed_source(sfu, "floor")
    listener = await connected_listener(sfu, peers)
    received = record_payloads(listener)
    link: SenderLink = slot_of(sfu, "listener").link
    nominated = link._dtls.transport._connection._nominated  # type: ignore[union-attr]
    first = nominated[1]
    sent: list[bytes] = []

    class RelayedProtocol(StunProtocol):
        """Stands for aioice's TURN protocols: not a plain StunProtocol."""

        async def send_data(self, data: bytes, addr: tuple[str, int]) -> None:
            sent.append(data)
            await super().send_data(data, addr)

    relayed = RelayedProtocol(first.protocol.receiver)
    relayed.transport = first.protocol.transport
    relayed.local_candidate = first.protocol.local_candidate
    nominated[1] = CandidatePair(relayed, first.remote_candidate)
    try:
        await feed(forwarder, 1, [b"relayed"] * 5)
        await eventually(lambda: len(received) == 5, what="packets through aioice")
        assert link._send is None
        assert len(sent) == 5
        assert received == [b"relayed"] * 5
    finally:
        nominated[1] = first


class Collector(asyncio.DatagramProtocol):
    def __init__(self, into: list[bytes]) -> None:
        self.into = into

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.into.append(data)
