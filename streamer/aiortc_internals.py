"""Every use of aiortc's private names, in one place.

aiortc has no public way to take encoded RTP out of a receiver or to put
already-encoded RTP into a sender, so the streamer reaches inside. All of it is
here, pinned to aiortc 1.16.0, and `check()` fails loudly, naming what moved, if an
upgrade changes any of it; a node runs it once as it starts (`check_once`), so a wrong
release is refused before the first attendee connects:

- `InboundTap` shadows `RTCRtpReceiver._handle_rtp_packet` on one receiver
  instance: decrypted packets reach the forwarder before any jitter buffer or
  decoder. It keeps what the publisher relies on from the receiver: receiver
  reports (via the receiver's own statistics), NACKs upstream for video, REMB
  bandwidth feedback, and it can send a PLI upstream.
- `SenderLink` wraps one `RTCRtpSender`: it learns the negotiated parameters
  when aiortc starts the sender, SRTP-protects ready-made RTP with the sender's
  DTLS transport's keys and hands it to the selected ICE pair's UDP socket
  itself (aiortc's path is two coroutines and a copy per packet), sends the
  sender's RTCP sender reports when the node's shared scheduler asks
  (streamer/sender_reports.py; aiortc's per-sender report task is replaced by a
  bare future, so no task per sender wakes up), and routes the subscriber's RTCP
  (NACK, PLI, FIR, receiver reports) to the streamer.
- `SrtpProtector` protects through pylibsrtp's C binding with a buffer and a
  length cell allocated once (pylibsrtp 1.0.0's `Session.protect` allocates
  per packet). aiortc accepts other pylibsrtp releases: with one, `check()`
  fails, and links fall back to `Session.protect`.
- `IdleTrack` is the placeholder track of a subscriber's sender: aiortc's own
  sender loop awaits it forever, so it never encodes, sends or wakes up.
- `start_skipped_sender` starts a negotiated sender that aiortc's connection
  task left unstarted (see `SUBSCRIBER_BUNDLE_POLICY` for how that happened).
- `add_sendonly_transceiver` adds a subscriber's sendonly section without the REMB
  estimator aiortc builds for every video receiver (a thousand small objects, about
  3 ms of CPU per section, for a receiver that never receives).
- `NodeCertificate` is one DTLS certificate for every peer connection of a node, as
  Janus and mediasoup keep one per process: aiortc generates a key and a certificate
  for each connection, computes its three fingerprints each time it writes an offer
  or answer, and builds an SSL context for each DTLS transport; together about 3 ms of
  CPU per attendee joining. `node_peer_connection` builds a connection that uses it.
- `cache_host_addresses` makes aioice enumerate the machine's network interfaces at
  most once every few seconds instead of once per gathering (a join wave's
  `get_adapters`).
- `reuse_parsed_sdp` lets aiortc's `setRemoteDescription` take the description
  streamer/negotiation.py already parsed to check it (`ParsedSdp`), instead of
  parsing the same text a second time (about 1 ms of each join).
- `set_stream_id` names the media stream (the msid) a sender's track belongs to:
  aiortc gives every sender its own, and only tracks of one stream are kept in
  sync (lip sync) by the receiving browser.
- `restrict_ice` makes a peer connection gather its host candidates only on
  chosen addresses and on ports of a chosen range: it replaces
  `get_component_candidates` on the aioice `Connection` inside each of the
  connection's `RTCIceGatherer`s (aioice binds host sockets on port 0 of every
  non-loopback interface, and aiortc offers no setting for either).
- Node links (streamer/node_link.py) parse the RTP they receive with aiortc's
  `RtpPacket.parse` and a `HeaderExtensionsMap` (`link_extensions_map`).
- `RtcpShortcut` and `ConsentResponder` take a subscriber's RTCP and consent checks
  where aioice hands them over (`Connection.data_received`, and the selected pair's
  `StunProtocol.datagram_received`, replaced on the instance), instead of through
  aiortc's receive task and aioice's generic STUN handling.
"""

from __future__ import annotations

import asyncio
import datetime
import hmac
import inspect
import ipaddress
import logging
import socket
import struct
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType

import aioice
import aioice.candidate
import aioice.ice
import aioice.turn
import aiortc
import pylibsrtp
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice import CandidatePair, Connection, StunProtocol, server_reflexive_candidate
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc import rtcpeerconnection as _rtcpeerconnection
from aiortc import rtcrtpreceiver as _rtcrtpreceiver
from aiortc import sdp as aiortc_sdp
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcdtlstransport import (
    RTCCertificate,
    RTCDtlsFingerprint,
    RTCDtlsTransport,
    SRTPProtectionProfile,
    State,
)
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
    RTCRtpSendParameters,
)
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_BYE,
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RTCP_SR,
    AnyRtcpPacket,
    HeaderExtensionsMap,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
    is_rtcp,
    pack_remb_fci,
    unwrap_rtx,
    wrap_rtx,
)
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL
from pylibsrtp import Error as SrtpError
from pylibsrtp import Session

from .errors import StreamerError
from .port_range import PortAllocator, bind_udp
from .sender_reports import SenderReports

AIORTC_VERSION = "1.16.0"
# aiortc accepts any pylibsrtp >= 0.10; `SrtpProtector` reads 1.0.0's session internals.
PYLIBSRTP_VERSION = "1.0.0"
# aiortc 1.16.0 accepts other aioice releases; `restrict_ice` is written for this one.
AIOICE_VERSION = "0.13.0"
_PINNED_VERSIONS = {
    "aiortc": AIORTC_VERSION,
    "pylibsrtp": PYLIBSRTP_VERSION,
    "aioice": AIOICE_VERSION,
}

# pylibsrtp's own limits (Session's 1500-byte buffer, SRTP_MAX_TRAILER_LEN): a packet
# is refused as too long exactly when aiortc's path would refuse it.
SRTP_BUFFER_SIZE = 1500
MAX_RTP_SIZE = SRTP_BUFFER_SIZE - (16 + 128)
SRTP_ERRORS: list[str] = getattr(pylibsrtp, "ERRORS", [])

_CONNECTED = State.CONNECTED
# Why links protect through pylibsrtp's Session (each reason logged once).
_fallbacks: set[str] = set()

logger = logging.getLogger(__name__)

# An RTCP sender report without report blocks (RFC 3550 6.4.1), and a BYE for one SSRC.
_SR = struct.Struct("!BBHIIIIII")
_BYE = struct.Struct("!BBHI")

# Seconds between 1900-01-01 (NTP epoch) and 1970-01-01 (Unix epoch).
_NTP_EPOCH_OFFSET = 2208988800

# The bundle policy of a subscriber's peer connection, where the server offers.
# Under aiortc's default ("balanced") policy a transceiver is created on the
# transport of the first transceiver of its kind and marked `_bundled`; when the
# answer's BUNDLE group then moves every section onto the transport of its first
# section, `setRemoteDescription` skips those marked ones and stops the transport
# they are left on. If the first section is of the other kind, the second section
# of a kind stays on that dead transport: `__connect` fails on it ("RTCIceTransport
# is closed", in a task nobody awaits) and no sender from there on is ever started.
# With max-bundle every transceiver is created on the first one's transport.
SUBSCRIBER_BUNDLE_POLICY = RTCBundlePolicy.MAX_BUNDLE

__all__ = [
    "RTCP_PSFB_FIR",
    "RTCP_PSFB_PLI",
    "RTCP_RTPFB_NACK",
    "SUBSCRIBER_BUNDLE_POLICY",
    "AiortcIncompatible",
    "HeaderExtensionsMap",
    "IdleTrack",
    "InboundTap",
    "NodeCertificate",
    "RtcpPsfbPacket",
    "RtcpRrPacket",
    "RtcpRtpfbPacket",
    "RtcpSrPacket",
    "RtpPacket",
    "SenderLink",
    "add_sendonly_transceiver",
    "cache_host_addresses",
    "check",
    "check_once",
    "link_extensions_map",
    "local_ice_addresses",
    "node_peer_connection",
    "ntp_time",
    "parsed_sdp",
    "peer_certificates",
    "restrict_ice",
    "reuse_parsed_sdp",
    "rtx_packet",
    "set_stream_id",
    "start_skipped_sender",
]


class AiortcIncompatible(StreamerError, RuntimeError):
    """aiortc (or pylibsrtp, under it) no longer has a private name the streamer relies on."""


def ntp_time(now: float) -> int:
    """64-bit NTP timestamp of a `time.time()` value (cheaper than aiortc's clock)."""
    return (int((now + _NTP_EPOCH_OFFSET) * 65536.0) << 16) & 0xFFFFFFFFFFFFFFFF


def _require(obj: object, name: str, library: ModuleType = aiortc) -> object:
    """`getattr`, or an error naming what `library` (aiortc or pylibsrtp) no longer has."""
    try:
        return getattr(obj, name)
    except AttributeError:
        library_name = library.__name__
        raise AiortcIncompatible(
            f"{library_name} {getattr(library, '__version__', '?')}: {type(obj).__name__} has "
            f"no attribute {name!r}; streamer/aiortc_internals.py is written for "
            f"{library_name} {_PINNED_VERSIONS[library_name]}"
        ) from None


class IdleTrack(MediaStreamTrack):
    """A track whose `recv()` never returns.

    aiortc's sender loop (`RTCRtpSender._run_rtp`) awaits `track.recv()`; with
    this track it waits forever without waking up, so the encoder never runs.
    With no track at all the loop would poll every 20 ms.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> object:
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable: the future above is never resolved")


PacketHandler = Callable[[RtpPacket, RTCRtpCodecParameters], Awaitable[None]]


class InboundTap:
    """Takes decrypted RTP packets out of one `RTCRtpReceiver`, before any buffering."""

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        on_packet: PacketHandler,
        on_error: Callable[[], None] = lambda: None,
    ) -> None:
        self._receiver = receiver
        self._on_packet = on_packet
        # These dicts are filled in place by `RTCRtpReceiver.receive()`, later.
        self._codecs: dict[int, RTCRtpCodecParameters] = _require(
            receiver, "_RTCRtpReceiver__codecs"
        )  # type: ignore[assignment]
        self._rtx_ssrc: dict[int, int] = _require(receiver, "_RTCRtpReceiver__rtx_ssrc")  # type: ignore[assignment]
        self._streams: dict[int, StreamStatistics] = _require(
            receiver, "_RTCRtpReceiver__remote_streams"
        )  # type: ignore[assignment]
        self._nack = _require(receiver, "_RTCRtpReceiver__nack_generator")
        self._estimator = _require(receiver, "_RTCRtpReceiver__remote_bitrate_estimator")
        for name in (
            "_RTCRtpReceiver__rtcp_ssrc",
            "_send_rtcp",
            "_send_rtcp_nack",
            "_send_rtcp_pli",
            "_handle_rtp_packet",
        ):
            _require(receiver, name)
        self.media_ssrc: int | None = None
        self.closed = False
        self._on_error = on_error
        self._failed = False
        # An instance attribute shadows the method the DTLS transport calls.
        receiver._handle_rtp_packet = self._handle  # type: ignore[method-assign]

    async def _handle(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        if self.closed:
            return
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        stream = self._streams.get(packet.ssrc)
        if stream is None:
            stream = self._streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stream.add(packet)
        receiver = self._receiver
        if codec.mimeType[-4:].lower() == "/rtx":
            # Retransmissions answer our own upstream NACKs (or are bandwidth
            # probes when empty): unwrap them into the original stream.
            original_ssrc = self._rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original_ssrc is None or len(packet.payload) < 2 or apt not in self._codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            codec = self._codecs[apt]
        if not packet.payload:
            return
        self.media_ssrc = packet.ssrc
        # Forward first: the feedback below is for the publisher and can wait.
        try:
            await self._on_packet(packet, codec)
        except Exception:
            # An exception here would end the publisher's DTLS receive loop.
            self._on_error()
            if not self._failed:
                self._failed = True
                logger.exception("forwarding a received packet failed")
        estimator = self._estimator
        if estimator is not None and packet.extensions.abs_send_time is not None:
            remb = estimator.add(
                abs_send_time=packet.extensions.abs_send_time,
                arrival_time_ms=arrival_time_ms,
                payload_size=len(packet.payload) + packet.padding_size,
                ssrc=packet.ssrc,
            )
            rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
            if remb is not None and rtcp_ssrc is not None:
                await receiver._send_rtcp(  # type: ignore[attr-defined]
                    RtcpPsfbPacket(
                        fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(*remb)
                    )
                )
        nack = self._nack
        if nack is not None and nack.add(packet):
            await receiver._send_rtcp_nack(packet.ssrc, sorted(nack.missing))  # type: ignore[attr-defined]

    def reception(self) -> tuple[int, int, int, int] | None:
        """(packets expected, packets received, jitter in timestamp units, clock rate) of
        the media stream, as the receiver's own statistics count them; None before any."""
        ssrc = self.media_ssrc
        stream = self._streams.get(ssrc) if ssrc is not None else None
        if stream is None:
            return None
        return (
            stream.packets_expected,
            stream.packets_received,
            stream.jitter,
            stream._clockrate,  # type: ignore[attr-defined]
        )

    async def request_keyframe(self) -> bool:
        """Send a PLI to the publisher; False if nothing has been received yet."""
        if self.closed or self.media_ssrc is None:
            return False
        await self._receiver._send_rtcp_pli(self.media_ssrc)  # type: ignore[attr-defined]
        return True

    def close(self) -> None:
        self.closed = True


#: A slot's handling of one RTCP packet from its subscriber; True if nothing is left to do.
RtcpHandler = Callable[[AnyRtcpPacket], bool]

#: Smoothing of the round-trip estimate, as aiortc's own (`RTT_ALPHA`).
ROUND_TRIP_ALPHA = 0.85


class RtcpShortcut:
    """RTCP from one subscriber's connection, handled in the datagram callback.

    aiortc queues every datagram for the DTLS transport's receive task, which then
    unprotects it, parses it and awaits each recipient's handler; for a receiver
    report, aiortc's sender also builds a stats object with a datetime. A subscriber
    sends a report or two a second per connection, so on a node of listeners that
    detour cost about as much as their consent checks and sender reports together.
    Here the SRTCP datagram is unprotected and parsed where aioice hands it over,
    and each packet goes straight to its `SenderLink`, synchronously: no queue, no
    task. What is not for one of our links (aiortc's own receivers) goes on to aiortc
    as before, already unprotected. Anything else (DTLS, RTP) takes aiortc's path.
    """

    __slots__ = ("_connection", "_dtls", "_links", "_original", "malformed", "refused")

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        self._links: dict[RTCRtpSender, SenderLink] = {}
        connection: Connection = dtls.transport._connection  # type: ignore[attr-defined]
        self._connection = connection
        self._original = connection.data_received
        #: Datagrams SRTCP refused (replayed, forged) and compounds that did not parse.
        self.refused = 0
        self.malformed = 0
        # aioice's protocols call `self.receiver.data_received`: the instance attribute
        # takes precedence over the method.
        connection.data_received = self._data_received  # type: ignore[method-assign]

    @classmethod
    def of(cls, dtls: RTCDtlsTransport) -> RtcpShortcut:
        """The shortcut of `dtls`'s connection, installed by the first link to ask."""
        shortcut = dtls.__dict__.get(_SHORTCUT_ATTRIBUTE)
        if shortcut is None:
            shortcut = cls(dtls)
            setattr(dtls, _SHORTCUT_ATTRIBUTE, shortcut)
        return shortcut  # type: ignore[no-any-return]

    def add(self, sender: RTCRtpSender, link: SenderLink) -> None:
        self._links[sender] = link

    def remove(self, sender: RTCRtpSender) -> None:
        self._links.pop(sender, None)

    def _data_received(self, data: bytes, component: int) -> None:
        dtls = self._dtls
        srtp = dtls._rx_srtp  # type: ignore[attr-defined]
        if srtp is None or not is_rtcp(data) or dtls._state is not _CONNECTED:  # type: ignore[attr-defined]
            self._original(data, component)
            return
        try:
            plain = srtp.unprotect_rtcp(data)
        except SrtpError:
            self.refused += 1
            return
        try:
            packets = RtcpPacket.parse(plain)
        except ValueError:
            self.malformed += 1
            return
        route = dtls._rtp_router.route_rtcp  # type: ignore[attr-defined]
        links = self._links
        for packet in packets:
            for recipient in route(packet):
                link = links.get(recipient)
                if link is not None:
                    link.rtcp_received(packet)
                else:
                    _spawn(recipient._handle_rtcp_packet(packet))


class ConsentResponder:
    """Answers a subscriber's consent checks (RFC 7675) where they arrive.

    Once connected, a browser sends a binding request on the selected pair every few
    seconds to keep its consent to send. aioice answers each through its generic
    path: the request parsed into a message, its integrity checked by serialising it
    again, the response built from attribute tables and serialised twice more, the
    pair looked up again among the candidates: about 150 us of CPU, for every
    listener, all event long. This answers a request on the selected pair, from its
    remote address, for our username, with a valid MESSAGE-INTEGRITY (and FINGERPRINT
    if it has one), that asks nothing else of ICE (no USE-CANDIDATE, no role
    conflict), with the very bytes aioice would send. Anything else (another address,
    a nomination, a bad signature, IPv6) goes on to aioice, which answers it or
    refuses it as before.
    """

    __slots__ = (
        "_expected",
        "_key",
        "_original",
        "_reject",
        "_remote",
        "_send",
        "_xor_address",
        "answered",
    )

    def __init__(self, connection: Connection, pair: CandidatePair) -> None:
        protocol = pair.protocol
        self._original = protocol.datagram_received
        self._remote = tuple(pair.remote_addr)
        self._key = connection.local_password.encode("utf8")
        self._expected = f"{connection.local_username}:{connection.remote_username}".encode()
        # The role attribute a peer would only send if both sides claimed one role.
        self._reject = _STUN_ICE_CONTROLLING if connection.ice_controlling else _STUN_ICE_CONTROLLED
        self._send = protocol.transport.sendto
        host, port = self._remote
        address = ipaddress.ip_address(host)
        # XOR-MAPPED-ADDRESS of an IPv4 address depends on the magic cookie only: the
        # same for every answer (IPv6 mixes in the transaction id: left to aioice).
        self._xor_address: bytes | None = None
        if address.version == 4:
            xored = bytes(a ^ b for a, b in zip(address.packed, _STUN_COOKIE, strict=True))
            self._xor_address = (
                _STUN_ATTRIBUTE.pack(0x0020, 8)
                + b"\x00\x01"
                + (port ^ 0x2112).to_bytes(2, "big")
                + xored
            )
        #: Consent checks answered here.
        self.answered = 0
        protocol.datagram_received = self._datagram_received  # type: ignore[method-assign]

    @classmethod
    def install(cls, dtls: RTCDtlsTransport) -> ConsentResponder | None:
        """The responder of `dtls`'s selected pair, installed by the first link to ask;
        None while no pair is selected or its remote username is unknown."""
        connection: Connection = dtls.transport._connection  # type: ignore[attr-defined]
        responder = connection.__dict__.get(_RESPONDER_ATTRIBUTE)
        if responder is None:
            pair = connection._nominated.get(1)  # type: ignore[attr-defined]
            if pair is None or connection.remote_username is None:
                return None
            responder = cls(connection, pair)
            setattr(connection, _RESPONDER_ATTRIBUTE, responder)
        return responder  # type: ignore[no-any-return]

    def _datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        if not (
            data[:2] == _STUN_BINDING_REQUEST
            and (addr[0], addr[1]) == self._remote
            and self._answer(data, addr)
        ):
            self._original(data, addr)

    def _answer(self, data: bytes, addr: tuple[object, ...]) -> bool:
        """Answer `data` if it is a plain consent check for us; False to leave it to aioice."""
        size = len(data)
        if size < 20 or data[4:8] != _STUN_COOKIE or self._xor_address is None:
            return False
        if int.from_bytes(data[2:4], "big") + 20 != size:
            return False
        username = signature = None
        signed_up_to = 0
        pos = 20
        while pos + 4 <= size:
            kind, length = _STUN_ATTRIBUTE.unpack_from(data, pos)
            value = data[pos + 4 : pos + 4 + length]
            if signature is None:
                if kind == _STUN_USERNAME:
                    username = value
                elif kind == _STUN_MESSAGE_INTEGRITY:
                    signature, signed_up_to = value, pos
                elif kind == _STUN_USE_CANDIDATE or kind == self._reject:
                    return False
            elif kind == _STUN_FINGERPRINT:
                check = data[:2] + (pos + 8 - 20).to_bytes(2, "big") + data[4:pos]
                if int.from_bytes(value, "big") != zlib.crc32(check) ^ _STUN_FINGERPRINT_XOR:
                    return False
            pos += 4 + length + (-length % 4)
        if username != self._expected or signature is None or len(signature) != 20:
            return False
        signed = data[:2] + (signed_up_to + 24 - 20).to_bytes(2, "big") + data[4:signed_up_to]
        if not hmac.compare_digest(signature, hmac.digest(self._key, signed, "sha1")):
            return False
        transaction = data[8:20]
        body = self._xor_address
        head = _STUN_BINDING_RESPONSE + (len(body) + 24).to_bytes(2, "big") + _STUN_COOKIE
        body += _STUN_ATTRIBUTE.pack(_STUN_MESSAGE_INTEGRITY, 20) + hmac.digest(
            self._key, head + transaction + body, "sha1"
        )
        head = _STUN_BINDING_RESPONSE + (len(body) + 8).to_bytes(2, "big") + _STUN_COOKIE
        fingerprint = zlib.crc32(head + transaction + body) ^ _STUN_FINGERPRINT_XOR
        body += _STUN_ATTRIBUTE.pack(_STUN_FINGERPRINT, 4) + fingerprint.to_bytes(4, "big")
        self._send(head + transaction + body, addr)
        self.answered += 1
        return True


_SHORTCUT_ATTRIBUTE = "_dragoman_rtcp_shortcut"
_RESPONDER_ATTRIBUTE = "_dragoman_consent_responder"

_STUN_COOKIE = b"\x21\x12\xa4\x42"
_STUN_BINDING_REQUEST = b"\x00\x01"
_STUN_BINDING_RESPONSE = b"\x01\x01"
_STUN_ATTRIBUTE = struct.Struct("!HH")
_STUN_USERNAME = 0x0006
_STUN_MESSAGE_INTEGRITY = 0x0008
_STUN_FINGERPRINT = 0x8028
_STUN_USE_CANDIDATE = 0x0025
_STUN_ICE_CONTROLLED = 0x8029
_STUN_ICE_CONTROLLING = 0x802A
_STUN_FINGERPRINT_XOR = 0x5354554E
#: Tasks started from a datagram callback, held until done.
_background: set[asyncio.Future[None]] = set()


def _spawn(coroutine: Awaitable[None]) -> None:
    task = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)


@dataclass(slots=True)
class NegotiatedSend:
    """What one sender may put on the wire, as negotiated with the subscriber."""

    mid: str | None
    payload_types: dict[str, int]  # lower-case mime type -> payload type
    rtx_payload_types: dict[int, int]  # media payload type -> its RTX payload type
    nack: bool  # the subscriber asked for NACK on the primary codec
    extension_ids: dict[str, int]  # uri -> one-byte extension id
    # The same, as aiortc parses and writes them (none unless told).
    header_extensions: HeaderExtensionsMap = field(default_factory=HeaderExtensionsMap)


def rtx_packet(
    sent: bytes, extensions: HeaderExtensionsMap, payload_type: int, sequence_number: int, ssrc: int
) -> bytes:
    """A packet sent earlier, wrapped for retransmission (RFC 4588) by aiortc's own
    `wrap_rtx`: the extensions as sent, the original sequence number before the payload."""
    original = RtpPacket.parse(sent, extensions)
    return wrap_rtx(original, payload_type, sequence_number, ssrc).serialize(extensions)


class SrtpProtector:
    """SRTP-protects RTP packets with one session's keys into a buffer it reuses.

    pylibsrtp's `Session.protect` checks its argument, allocates an `int *` for
    the length and copies into the session's shared buffer for every packet;
    this calls the same `srtp_protect` of the same libsrtp context with a
    length cell and buffer allocated once. Same context, so the packet index
    and the rollover counter are the ones aiortc's own sends (RTCP, and RTP
    through `_send_rtp`) advance too.
    """

    __slots__ = ("_buffer", "_length", "_protect_c", "_session", "_srtp", "_view")

    def __init__(self, session: Session) -> None:
        version = getattr(pylibsrtp, "__version__", None)
        if version != PYLIBSRTP_VERSION:
            # Same names need not mean the same layout: only the release checked is used.
            raise AiortcIncompatible(
                f"pylibsrtp {version} is installed; SrtpProtector is written for "
                f"{PYLIBSRTP_VERSION} (see streamer/aiortc_internals.py)"
            )
        ffi = _require(pylibsrtp, "ffi", pylibsrtp)
        lib = _require(pylibsrtp, "lib", pylibsrtp)
        self._protect_c = _require(lib, "srtp_protect", pylibsrtp)
        # Held so libsrtp's context (freed when the session is collected) outlives us.
        self._session = session
        self._srtp = _require(session, "_srtp", pylibsrtp)[0]  # type: ignore[index]
        self._buffer = ffi.new("char[]", SRTP_BUFFER_SIZE)  # type: ignore[attr-defined]
        self._view = ffi.buffer(self._buffer)  # type: ignore[attr-defined]
        self._length = ffi.new("int *")  # type: ignore[attr-defined]

    def protect(self, packet: bytes) -> bytes:
        """The SRTP packet; raises like `Session.protect` (ValueError, pylibsrtp.Error)."""
        size = len(packet)
        if size > MAX_RTP_SIZE:
            raise ValueError("packet is too long")
        length = self._length
        length[0] = size
        view = self._view
        view[0:size] = packet
        status = self._protect_c(self._srtp, self._buffer, length)
        if status:
            raise SrtpError(SRTP_ERRORS[status] if status < len(SRTP_ERRORS) else str(status))
        return view[0 : length[0]]


class SenderLink:
    """Puts ready-made RTP on the wire through one `RTCRtpSender`'s transport."""

    def __init__(
        self,
        sender: RTCRtpSender,
        on_started: Callable[[NegotiatedSend], None],
        on_rtcp: RtcpHandler,
        reports: SenderReports,
        on_rtcp_error: Callable[[], None] = lambda: None,
    ) -> None:
        self._sender = sender
        self.ssrc: int = _require(sender, "_ssrc")  # type: ignore[assignment]
        self.rtx_ssrc: int = _require(sender, "_rtx_ssrc")  # type: ignore[assignment]
        for name in (
            "_RTCRtpSender__packet_count",
            "_RTCRtpSender__octet_count",
            "_RTCRtpSender__rtcp_started",
            "_RTCRtpSender__rtcp_exited",
            "_run_rtcp",
            "_handle_rtcp_packet",
        ):
            _require(sender, name)
        self._dtls: RTCDtlsTransport | None = None
        self._protect: Callable[[bytes], bytes] | None = None
        self._protect_rtcp: Callable[[bytes], bytes] | None = None
        # What the next sender report says: the NTP time and RTP timestamp of the last
        # packet sent (one instant on both clocks, for the subscriber's lip sync), and
        # the counts (RFC 3550 6.4.1). aiortc's own report loop is replaced (see
        # streamer/sender_reports.py), so these live here, not in the sender.
        self.packet_count = 0
        self.octet_count = 0
        self.ntp_timestamp = 0
        self.rtp_timestamp = 0
        self.reports_sent = 0
        self._reports = reports
        self.reports_paused = False
        # The SDES CNAME chunk that follows every sender report (known once started).
        self._sdes = b""
        # aioice's selected pairs by component (filled and cleared in place by aioice).
        self._nominated: dict[int, CandidatePair] = {}
        # The pair `_send` was taken from. aioice replaces the selected pair when a
        # later check nominates another one: compared by identity on every packet,
        # which is cheaper than reading the pair's fields.
        self._pair: CandidatePair | None = None
        # Sends one datagram to the selected pair's remote address: the `send` of the
        # pair's UDP socket, connected to that address (None: let aioice send, as for
        # TURN). See `_select`.
        self._send: Callable[[bytes], object] | None = None
        self._on_started = on_started
        self._on_rtcp = on_rtcp
        # True once aiortc (or `start_skipped_sender`) has started the sender.
        self.started = False
        # Why what was negotiated could not be used, if it could not.
        self.failure: str | None = None
        # Packets the socket refused (its send buffer full, or closed under us).
        self.dropped = 0
        self._on_rtcp_error = on_rtcp_error
        self._rtcp_failed = False
        self._original_send = sender.send
        # The last sender report: its middle NTP bits and when it left (the subscriber's
        # receiver reports echo them, RFC 3550 6.4.1); the round trip estimated from them.
        self._lsr = 0
        self._lsr_time = 0.0
        self.round_trip_s: float | None = None
        self._shortcut: RtcpShortcut | None = None
        self.closed = False
        self._pending: set[asyncio.Future[None]] = set()
        # Instance attributes shadow the methods aiortc calls.
        sender.send = self._send_parameters  # type: ignore[method-assign]
        sender._handle_rtcp_packet = self._handle_rtcp  # type: ignore[method-assign]
        # aiortc's send() runs `ensure_future(self._run_rtcp())`, a task per sender that
        # wakes every second; stop() cancels it and waits for it to say it exited. This
        # returns a bare future instead (ensure_future passes a future through): no task,
        # no wake-up; the shared scheduler sends the reports, and cancelling the future
        # sends the BYE and says "exited" as aiortc's loop would.
        sender._run_rtcp = self._rtcp_placeholder  # type: ignore[method-assign]

    async def _send_parameters(self, parameters: RTCRtpSendParameters) -> None:
        await self._original_send(parameters)
        if self.started:
            return
        self.started = True
        try:
            self._start(parameters)
        except Exception as exc:
            # Raising here would end aiortc's connection task before it started the
            # senders after this one: keep this slot's failure to this slot.
            self.failure = f"what was negotiated could not be used: {exc!r}"
            logger.exception("starting a subscriber's sender failed")

    def _start(self, parameters: RTCRtpSendParameters) -> None:
        # aiortc only starts a sender once DTLS is connected, so SRTP keys exist now.
        dtls = self._sender.transport
        session: Session = dtls._tx_srtp  # type: ignore[attr-defined]
        try:
            self._protect = SrtpProtector(session).protect
        except AiortcIncompatible as exc:
            # Another pylibsrtp release: its own (slower) protect still does the job.
            if str(exc) not in _fallbacks:
                _fallbacks.add(str(exc))
                logger.warning("%s; protecting through pylibsrtp's Session instead", exc)
            self._protect = session.protect
        self._protect_rtcp = session.protect_rtcp
        self._nominated = dtls.transport._connection._nominated  # type: ignore[attr-defined]
        self._dtls = dtls
        cname = parameters.rtcp.cname
        if cname:
            self._sdes = bytes(
                RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=self.ssrc, items=[(1, cname.encode())])])
            )
        codecs = parameters.codecs
        payload_types: dict[str, int] = {}
        rtx: dict[int, int] = {}
        for codec in codecs:
            mime = codec.mimeType.lower()
            if mime.endswith("/rtx"):
                apt = codec.parameters.get("apt")
                if isinstance(apt, int):
                    rtx.setdefault(apt, codec.payloadType)
                continue
            if mime == "video/h264" and codec.parameters.get("packetization-mode") != "1":
                # Browsers send packetization-mode 1; prefer it when both are offered.
                payload_types.setdefault(mime, codec.payloadType)
            else:
                previous = payload_types.get(mime)
                if previous is None or mime == "video/h264":
                    payload_types[mime] = codec.payloadType
        header_extensions = HeaderExtensionsMap()
        header_extensions.configure(parameters)
        self._shortcut = RtcpShortcut.of(dtls)
        self._shortcut.add(self._sender, self)
        ConsentResponder.install(dtls)
        nack = bool(codecs) and any(
            fb.type == "nack" and not fb.parameter for fb in codecs[0].rtcpFeedback
        )
        self._on_started(
            NegotiatedSend(
                mid=parameters.muxId,
                payload_types=payload_types,
                rtx_payload_types=rtx,
                nack=nack,
                extension_ids={ext.uri: ext.id for ext in parameters.headerExtensions},
                header_extensions=header_extensions,
            )
        )
        if not self.closed and not self.reports_paused:
            self._reports.add(self)

    def pause_reports(self, paused: bool) -> None:
        """No sender reports while paused: a stream that sends nothing has nothing to
        report (RFC 3550 6.4: reports are for senders), and an attendee's paused slots (the
        floor under the interpretation off, the picture while audio only) would each cost a
        packet a second to the server and the page. They resume with the slot."""
        self.reports_paused = paused
        if self._dtls is None or self.closed:  # not started: it reports from its start
            return
        if paused:
            self._reports.remove(self)
        else:
            self._reports.add(self)

    def _rtcp_placeholder(self) -> asyncio.Future[None]:
        """What aiortc's send() takes for its RTCP task (see __init__)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sender._RTCRtpSender__rtcp_started.set()  # type: ignore[attr-defined]
        future.add_done_callback(self._rtcp_stopped)
        return future

    def _rtcp_stopped(self, future: asyncio.Future[None]) -> None:
        """aiortc stopped the sender: no more reports; a BYE, as aiortc's loop sends."""
        self._reports.remove(self)
        try:
            self._transmit_rtcp(_BYE.pack(0x81, RTCP_BYE, 1, self.ssrc))
        finally:
            self._sender._RTCRtpSender__rtcp_exited.set()  # type: ignore[attr-defined]

    def send_report(self) -> bool:
        """Send one RTCP sender report (SR + SDES CNAME, as aiortc's own); True if it left.

        Called by the shared scheduler (streamer/sender_reports.py).
        """
        if self.closed:
            return False
        ntp = self.ntp_timestamp
        report = (
            _SR.pack(
                0x80,
                RTCP_SR,
                6,
                self.ssrc,
                ntp >> 32,
                ntp & 0xFFFFFFFF,
                self.rtp_timestamp,
                self.packet_count & 0xFFFFFFFF,
                self.octet_count & 0xFFFFFFFF,
            )
            + self._sdes
        )
        if not self._transmit_rtcp(report):
            return False
        self.reports_sent += 1
        self._lsr = (ntp >> 16) & 0xFFFFFFFF
        self._lsr_time = time.time()
        # aiortc's getStats reads the counts from the sender.
        sender = self._sender
        sender._RTCRtpSender__packet_count = self.packet_count  # type: ignore[attr-defined]
        sender._RTCRtpSender__octet_count = self.octet_count  # type: ignore[attr-defined]
        return True

    def _transmit_rtcp(self, data: bytes) -> bool:
        dtls = self._dtls
        protect = self._protect_rtcp
        if dtls is None or protect is None or dtls._state is not _CONNECTED:  # type: ignore[attr-defined]
            return False
        pair = self._nominated.get(1)
        if pair is not self._pair:
            self._select(pair)
        send = self._send
        if send is not None:
            try:
                send(protect(data))
            except (OSError, ValueError, SrtpError):
                self.dropped += 1
                return False
            return True
        if pair is None:
            return False
        self._send_later(dtls, data)
        return True

    async def _handle_rtcp(self, packet: AnyRtcpPacket) -> None:
        """aiortc's path (before the shortcut is installed, or RTCP it did not take)."""
        self.rtcp_received(packet)

    def rtcp_received(self, packet: AnyRtcpPacket) -> None:
        """One RTCP packet from the subscriber about this sender."""
        try:
            handled = self._on_rtcp(packet)
        except Exception:
            # Logged once: a subscriber's RTCP arrives several times a second.
            self._on_rtcp_error()
            if not self._rtcp_failed:
                self._rtcp_failed = True
                logger.exception("handling RTCP from a subscriber failed")
            return
        if not handled and isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            self._estimate_round_trip(packet)

    def _estimate_round_trip(self, packet: RtcpRrPacket | RtcpSrPacket) -> None:
        """RFC 3550 6.4.1: the report echoes our last sender report and how long the
        subscriber held it; the rest of the time since it left is the round trip."""
        for report in packet.reports:
            if report.ssrc == self.ssrc and report.dlsr and report.lsr == self._lsr:
                sample = time.time() - self._lsr_time - report.dlsr / 65536
                if sample < 0:
                    continue
                previous = self.round_trip_s
                self.round_trip_s = (
                    sample
                    if previous is None
                    else ROUND_TRIP_ALPHA * previous + (1 - ROUND_TRIP_ALPHA) * sample
                )

    def send(self, data: bytes, rtp_timestamp: int, ntp: int, octets: int) -> bool:
        """Protect and send one RTP packet; True if it left.

        Counts it into the sender's RTCP sender report (`send_report`). The hot path
        of every copy of every packet: `_transmit` written out, one call less.
        """
        dtls = self._dtls
        if dtls is None or self.closed or dtls._state is not _CONNECTED:  # type: ignore[attr-defined]
            return False
        pair = self._nominated.get(1)
        if pair is not self._pair:
            self._select(pair)
        send = self._send
        if send is None:
            if not self._send_through_aioice(dtls, pair, data):
                return False
        else:
            try:
                # A non-blocking UDP socket: a full send buffer raises instead of
                # waiting. asyncio would queue the datagram; a late copy of live
                # media is worth nothing, so it is dropped (the subscriber may NACK).
                send(self._protect(data))  # type: ignore[misc]
            except OSError:
                self.dropped += 1
                return False
        self.packet_count += 1
        self.octet_count += octets
        self.ntp_timestamp = ntp
        self.rtp_timestamp = rtp_timestamp
        return True

    def send_unaccounted(self, data: bytes) -> bool:
        """Send a retransmission, which does not count into the sender report."""
        return self._transmit(data)

    def _transmit(self, data: bytes) -> bool:
        dtls = self._dtls
        if dtls is None or self.closed or dtls._state is not _CONNECTED:  # type: ignore[attr-defined]
            return False
        pair = self._nominated.get(1)
        if pair is not self._pair:
            self._select(pair)
        send = self._send
        if send is None:
            return self._send_through_aioice(dtls, pair, data)
        try:
            send(self._protect(data))  # type: ignore[misc]
        except OSError:
            self.dropped += 1
            return False
        return True

    def _send_through_aioice(
        self, dtls: RTCDtlsTransport, pair: CandidatePair | None, data: bytes
    ) -> bool:
        if pair is None:
            return False
        # TURN and TCP candidates wrap the data: let aioice do it.
        self._send_later(dtls, data)
        return True

    def _select(self, pair: CandidatePair | None) -> None:
        """Take the socket and remote address of a newly selected ICE pair.

        The socket is connected to the pair's remote address: its `send` then skips
        parsing the address in Python and the kernel's route lookup on every packet
        (with a few hundred copies of each packet, about a tenth of the send's cost).
        It also makes the kernel drop datagrams from any other address on that
        socket: once aioice has selected a pair, nothing else is used on it (aioice
        never nominates again; checks of other pairs then fail, which changes nothing).
        """
        self._pair = pair
        self._send = None
        if pair is None or type(pair.protocol) is not StunProtocol:
            return
        transport = pair.protocol.transport
        remote = pair.remote_addr
        sock = getattr(transport, "_sock", None)
        if isinstance(sock, socket.socket):
            try:
                sock.connect(remote)
            except OSError as exc:
                logger.info("sending unconnected to %s: %s", remote, exc)
            else:
                self._send = sock.send
                return
            send_to = sock.sendto
        else:
            # asyncio's selector transport keeps its socket in `_sock`; another event
            # loop's transport may not: then its sendto (one Python call more) is used.
            send_to = transport.sendto
        self._send = lambda data: send_to(data, remote)

    def _send_later(self, dtls: RTCDtlsTransport, data: bytes) -> None:
        task = asyncio.ensure_future(_send_via_aioice(dtls, data))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def close(self) -> None:
        self.closed = True
        self._reports.remove(self)
        if self._shortcut is not None:
            self._shortcut.remove(self._sender)
        for task in self._pending:
            task.cancel()


async def start_skipped_sender(pc: RTCPeerConnection, transceiver: RTCRtpTransceiver) -> str | None:
    """Start a sender aiortc left unstarted once connected; None if started, else why not.

    aiortc starts a sender from its connection task, and only if its transport
    is connected at that moment; anything that task missed stays silent forever.
    Starting it here does what that task would have done.
    """
    if transceiver.stopped:
        return "its transceiver is stopped"
    direction = transceiver.currentDirection
    if direction not in ("sendonly", "sendrecv"):
        return f"the subscriber did not accept it (negotiated direction: {direction})"
    sender = transceiver.sender
    if sender.transport.state != "connected":
        bundled = next(
            (
                t.sender.transport
                for t in pc.getTransceivers()
                if t.sender.transport.state == "connected"
            ),
            None,
        )
        if bundled is None:
            return f"its transport is {sender.transport.state} and no other one is connected"
        # Left on a transport that bundling discarded: join the one that carries the rest.
        sender.setTransport(bundled)
        transceiver.receiver.setTransport(bundled)
        transceiver._bundled = True  # type: ignore[attr-defined]
    local_rtp = _require(pc, "_RTCPeerConnection__localRtp")
    await sender.send(local_rtp(transceiver))  # type: ignore[operator]
    return None


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """Put the sender's track in media stream `stream_id` (its SDP msid); before the offer."""
    _require(sender, "_stream_id")
    sender._stream_id = stream_id  # type: ignore[attr-defined]


def add_sendonly_transceiver(pc: RTCPeerConnection, kind: str) -> RTCRtpTransceiver:
    """A sendonly section on `pc` whose track is an `IdleTrack` and whose receiver has
    no REMB estimator.

    aiortc gives every video receiver a `RemoteBitrateEstimator` whose rate counter
    holds a thousand one-millisecond bucket objects: building it cost about 3 ms of CPU
    per subscriber (most of a join wave's `addTransceiver`), and since a subscriber's
    section only sends, it was never fed, yet lived until a full cycle collection after
    the subscriber left. The receiver skips the estimator when it is None, as it does
    for audio; it is None from the start here (aiortc's module name is swapped while
    the receiver is built: one thread, nothing awaits in between).
    """
    with _name_swapped(_rtcrtpreceiver, "RemoteBitrateEstimator", _no_estimator):
        return pc.addTransceiver(IdleTrack(kind), direction="sendonly")


@contextmanager
def _name_swapped(module: ModuleType, name: str, value: object) -> Iterator[None]:
    """`module.name` is `value` until the block ends: for a synchronous aiortc call that
    builds an object from that name (one thread, nothing awaits in between)."""
    original = _require(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def _no_estimator() -> None:
    return None


def has_bandwidth_estimator(receiver: RTCRtpReceiver) -> bool:
    return _require(receiver, "_RTCRtpReceiver__remote_bitrate_estimator") is not None


class NodeCertificate(RTCCertificate):
    """One DTLS certificate shared by every peer connection of a node.

    The fingerprint a connection announces is in its SDP, which the signalling carries
    over an authenticated channel: sharing the certificate between connections, as
    Janus and mediasoup do, changes nothing in what a peer checks. What it saves:
    generating a key and a certificate, hashing it three ways for each offer or answer,
    and building an SSL context for each DTLS transport. The contexts are built once per
    set of SRTP profiles and shared (OpenSSL makes a connection per transport from one
    context; nothing here changes a context after its first connection).
    """

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        super().__init__(key, cert)
        self._fingerprints: list[RTCDtlsFingerprint] | None = None
        self._contexts: dict[tuple[bytes, ...], SSL.Context] = {}

    def getFingerprints(self) -> list[RTCDtlsFingerprint]:
        if self._fingerprints is None:
            self._fingerprints = super().getFingerprints()
        return list(self._fingerprints)

    def _create_ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
        key = tuple(profile.openssl_profile for profile in srtp_profiles)
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = super()._create_ssl_context(srtp_profiles)
        return context

    def expires_within(self, seconds: float) -> bool:
        remaining = self.expires - datetime.datetime.now(datetime.UTC)
        return remaining.total_seconds() < seconds


class _IssuesOne:
    """Stands in for `RTCCertificate` in aiortc's peer connection module while one
    connection is built: its `generateCertificate` hands out the node's certificate."""

    def __init__(self, certificate: RTCCertificate) -> None:
        self._certificate = certificate

    def generateCertificate(self) -> RTCCertificate:
        return self._certificate


def node_peer_connection(
    certificate: NodeCertificate, configuration: RTCConfiguration
) -> RTCPeerConnection:
    """A peer connection whose DTLS transports use `certificate` (aiortc generates one
    in the constructor; the module's name is swapped meanwhile: one thread, nothing
    awaits in between)."""
    with _name_swapped(_rtcpeerconnection, "RTCCertificate", _IssuesOne(certificate)):
        return RTCPeerConnection(configuration)


def peer_certificates(pc: RTCPeerConnection) -> list[RTCCertificate]:
    return _require(pc, "_RTCPeerConnection__certificates")  # type: ignore[return-value]


# How long aioice's enumeration of the machine's interfaces is reused.
HOST_ADDRESSES_TTL_S = 5.0
_host_addresses_cache: tuple[float, tuple[bool, bool], list[str]] | None = None


def cache_host_addresses() -> None:
    """Make aioice's `get_host_addresses` reuse its answer for `HOST_ADDRESSES_TTL_S`.

    aioice enumerates every interface (`ifaddr`) for each ICE gathering, that is for
    each attendee joining; interfaces change far less often. Idempotent; covers every
    aioice connection of the process.
    """
    current = _require(aioice.ice, "get_host_addresses", aioice)
    if getattr(current, "_dragoman_cached", False):
        return
    enumerate_addresses: Callable[..., list[str]] = current  # type: ignore[assignment]

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        global _host_addresses_cache
        now = time.monotonic()
        families = (use_ipv4, use_ipv6)
        cached = _host_addresses_cache
        if cached is None or cached[1] != families or now - cached[0] > HOST_ADDRESSES_TTL_S:
            cached = (now, families, enumerate_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
            _host_addresses_cache = cached
        return list(cached[2])

    get_host_addresses._dragoman_cached = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = get_host_addresses  # type: ignore[assignment]


class ParsedSdp(str):
    """SDP text with the description parsed from it (`reuse_parsed_sdp`)."""

    parsed: aiortc_sdp.SessionDescription


def parsed_sdp(text: str, description: aiortc_sdp.SessionDescription) -> ParsedSdp:
    sdp = ParsedSdp(text)
    sdp.parsed = description
    return sdp


def reuse_parsed_sdp() -> None:
    """Make aiortc's SDP parser return a `ParsedSdp`'s description instead of parsing it
    again. Plain text is parsed as before. Idempotent; for the whole process.

    Safe because what aiortc does with the description it parsed (set its `type`, read
    its sections) leaves it as the streamer reads it afterwards (`bundle_tag_candidates`).
    """
    description_class = aiortc_sdp.SessionDescription
    current = _require(description_class, "parse")
    if getattr(current, "_dragoman_reuses", False):
        return
    parse_text = current.__func__  # type: ignore[attr-defined]

    def parse(cls: type[aiortc_sdp.SessionDescription], sdp: str) -> aiortc_sdp.SessionDescription:
        if type(sdp) is ParsedSdp:
            return sdp.parsed
        return parse_text(cls, sdp)

    parse._dragoman_reuses = True  # type: ignore[attr-defined]
    description_class.parse = classmethod(parse)  # type: ignore[method-assign,assignment]


ComponentCandidates = Callable[..., Awaitable[list[Candidate]]]


def restrict_ice(
    pc: RTCPeerConnection, addresses: Sequence[str] = (), ports: PortAllocator | None = None
) -> None:
    """Gather `pc`'s host candidates only on `addresses`, on ports `ports` hands out.

    No addresses: those aioice finds itself (every non-loopback interface); no
    allocator: any port. Covers the ICE transports `pc` has now and every one
    it creates later (transceivers and data channels added afterwards). When
    the range has no free port left, `setLocalDescription` raises
    `PortRangeExhausted` and the sockets this gathering opened are closed.
    STUN (server-reflexive) and TURN (relayed) candidates are gathered as aioice
    does; the TURN client socket itself is not taken from the range.
    """
    if not addresses and ports is None:
        return
    addresses = tuple(addresses)
    transports = _require(pc, "_RTCPeerConnection__iceTransports")
    for ice_transport in transports:  # type: ignore[attr-defined]
        _restrict_connection(_require(ice_transport, "_connection"), addresses, ports)  # type: ignore[arg-type]
    create_dtls_transport = _require(pc, "_RTCPeerConnection__createDtlsTransport")

    def create_restricted() -> RTCDtlsTransport:
        dtls: RTCDtlsTransport = create_dtls_transport()  # type: ignore[operator]
        _restrict_connection(dtls.transport.iceGatherer._connection, addresses, ports)
        return dtls

    # An instance attribute shadows the (name-mangled) method aiortc calls on itself.
    pc._RTCPeerConnection__createDtlsTransport = create_restricted  # type: ignore[attr-defined]


def _restrict_connection(
    connection: Connection, host_addresses: tuple[str, ...], ports: PortAllocator | None
) -> None:
    original: ComponentCandidates = _require(connection, "get_component_candidates", aioice)  # type: ignore[assignment]

    async def get_component_candidates(
        component: int,
        addresses: list[str],
        timeout: int = 5,  # noqa: ASYNC109 (aioice's signature)
    ) -> list[Candidate]:
        if not addresses:
            # The relay-only policy asks for no host candidate at all.
            return await original(component=component, addresses=addresses, timeout=timeout)
        hosts = await _bind_host_candidates(
            connection, component, list(host_addresses) or addresses, ports
        )
        candidates = [protocol.local_candidate for protocol in hosts]
        relayed: asyncio.Future[list[Candidate]] | None = None
        if connection.turn_server is not None:
            # Given no address, aioice's own gathering only asks the TURN server.
            relayed = asyncio.ensure_future(
                original(component=component, addresses=[], timeout=timeout)
            )
        try:
            if connection.stun_server is not None:
                candidates += await _server_reflexive_candidates(
                    hosts, connection.stun_server, timeout
                )
            if relayed is not None:
                candidates += await relayed
        finally:
            if relayed is not None and not relayed.done():
                relayed.cancel()
        return candidates

    connection.get_component_candidates = get_component_candidates  # type: ignore[method-assign]


async def _server_reflexive_candidates(
    hosts: list[StunProtocol], stun_server: tuple[str, int], within: float
) -> list[Candidate]:
    queries = [
        asyncio.ensure_future(server_reflexive_candidate(protocol, stun_server))
        for protocol in hosts
        # As aioice: STUN servers are asked about IPv4 sockets only.
        if ipaddress.ip_address(protocol.local_candidate.host).version == 4
    ]
    if not queries:
        return []
    done, pending = await asyncio.wait(queries, timeout=within)
    for task in pending:
        task.cancel()
    return [task.result()[0] for task in done if task.exception() is None]


async def _bind_host_candidates(
    connection: Connection, component: int, addresses: list[str], ports: PortAllocator | None
) -> list[StunProtocol]:
    """One host candidate per address, its socket bound by `bind_udp`, as aioice would."""
    loop = asyncio.get_running_loop()
    opened: list[StunProtocol] = []
    protocols: list[StunProtocol] = _require(connection, "_protocols", aioice)  # type: ignore[assignment]
    try:
        for address in addresses:
            try:
                sock = bind_udp(address, ports)
            except StreamerError:
                raise
            except OSError as exc:
                # As aioice does: an address that cannot be bound is left out.
                logger.info("no host candidate on %s: %s", address, exc)
                continue
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, aioice.turn.UDP_SOCKET_BUFFER_SIZE)
            _, protocol = await loop.create_datagram_endpoint(
                lambda: StunProtocol(connection), sock=sock
            )
            # Known to the connection at once, so closing it closes this socket too.
            protocols.append(protocol)
            opened.append(protocol)
            host, port = sock.getsockname()[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
    except BaseException:
        await _close_protocols(protocols, opened)
        raise
    if connection._closing:  # type: ignore[attr-defined]
        # Closed while we bound: nobody would close these any more.
        await _close_protocols(protocols, opened)
        return []
    return opened


async def _close_protocols(protocols: list[StunProtocol], opened: list[StunProtocol]) -> None:
    for protocol in opened:
        if protocol in protocols:
            protocols.remove(protocol)
        await protocol.close()


def local_ice_addresses(pc: RTCPeerConnection) -> list[tuple[str, int]]:
    """The local address of every UDP socket `pc`'s ICE transports hold (`check_restrict_ice`
    reads where `restrict_ice` bound them)."""
    found: list[tuple[str, int]] = []
    for ice_transport in _require(pc, "_RTCPeerConnection__iceTransports"):  # type: ignore[attr-defined]
        for protocol in ice_transport._connection._protocols:
            sockname = protocol.transport.get_extra_info("sockname")
            if sockname is not None:
                found.append((sockname[0], sockname[1]))
    return found


async def _send_via_aioice(dtls: RTCDtlsTransport, data: bytes) -> None:
    try:
        await dtls._send_rtp(data)  # type: ignore[attr-defined]
    except ConnectionError:
        pass


def link_extensions_map(ids: dict[str, int]) -> HeaderExtensionsMap:
    """A map for `RtpPacket.parse` reading the header extensions `ids` (uri -> id) name."""
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=i, uri=uri) for uri, i in ids.items()
            ]
        )
    )
    return extensions


def check_srtp_protector() -> None:
    """Fail loudly unless `SrtpProtector` is pylibsrtp's `Session.protect`, byte for byte."""
    version = getattr(pylibsrtp, "__version__", None)
    key = bytes(range(30))

    def session() -> Session:
        # As aiortc's RTCDtlsTransport sets up its sending side.
        policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        policy.allow_repeat_tx = True
        policy.window_size = 1024
        return Session(policy)

    theirs, ours = session(), SrtpProtector(session())
    for seq, size in ((1, 100), (2, 1), (3, MAX_RTP_SIZE - 12), (2, 100)):
        packet = bytes((0x80, 111)) + seq.to_bytes(2, "big") + bytes(8) + bytes(size)
        if ours.protect(packet) != theirs.protect(packet):
            raise AiortcIncompatible(
                f"pylibsrtp {version}: SrtpProtector's output differs from Session.protect"
            )
    for protect in (ours.protect, theirs.protect):
        try:
            protect(bytes(MAX_RTP_SIZE + 1))
        except ValueError:
            continue
        raise AiortcIncompatible(
            f"pylibsrtp {version}: Session.protect and SrtpProtector no longer agree "
            f"on the largest packet ({MAX_RTP_SIZE} bytes)"
        )


_checked = False


async def check_once() -> None:
    """`check()`, the first time a process asks (every node of the process shares the
    libraries it found)."""
    global _checked
    if not _checked:
        await check()
        _checked = True


async def check() -> None:
    """Fail loudly, naming the missing piece, if aiortc changed what we rely on."""
    if aiortc.__version__ != AIORTC_VERSION:
        raise AiortcIncompatible(
            f"aiortc {aiortc.__version__} is installed; the streamer is pinned to "
            f"{AIORTC_VERSION} (see streamer/aiortc_internals.py)"
        )
    check_srtp_protector()
    check_node_certificate()
    _require(aioice.ice, "get_host_addresses", aioice)
    parses_remote = "sdp.SessionDescription.parse(" in _source_of(
        RTCPeerConnection.setRemoteDescription
    )
    if _require(_rtcpeerconnection, "sdp") is not aiortc_sdp or not parses_remote:
        raise AiortcIncompatible(
            "aiortc: setRemoteDescription no longer parses with aiortc.sdp's "
            "SessionDescription.parse; reuse_parsed_sdp would not be used"
        )
    pc = RTCPeerConnection()
    try:
        sender_transceiver = pc.addTransceiver(IdleTrack("audio"), direction="sendonly")
        receiver_transceiver = pc.addTransceiver("video", direction="recvonly")

        async def ignore_packet(packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
            return None

        def ignore_rtcp(packet: AnyRtcpPacket) -> bool:
            return False

        tap = InboundTap(receiver_transceiver.receiver, ignore_packet)
        tap.close()
        reports = SenderReports()
        SenderLink(sender_transceiver.sender, lambda negotiated: None, ignore_rtcp, reports).close()
        reports.close()
        if "ensure_future(self._run_rtcp())" not in _source_of(RTCRtpSender.send):
            raise AiortcIncompatible(
                "aiortc: RTCRtpSender.send no longer starts its RTCP loop with "
                "ensure_future(self._run_rtcp()); SenderLink could not replace it"
            )
        if "__rtcp_exited.wait()" not in _source_of(RTCRtpSender.stop):
            raise AiortcIncompatible(
                "aiortc: RTCRtpSender.stop no longer waits for its RTCP loop's exit event"
            )
        set_stream_id(sender_transceiver.sender, "check")
        _require(_rtcrtpreceiver, "RemoteBitrateEstimator")
        if not has_bandwidth_estimator(receiver_transceiver.receiver):
            raise AiortcIncompatible(
                "aiortc: a video RTCRtpReceiver no longer builds its estimator from "
                "aiortc.rtcrtpreceiver.RemoteBitrateEstimator"
            )
        if has_bandwidth_estimator(add_sendonly_transceiver(pc, "video").receiver):
            raise AiortcIncompatible(
                "aiortc: RTCRtpReceiver no longer builds its estimator from the module's "
                "RemoteBitrateEstimator name; add_sendonly_transceiver cannot skip it"
            )
        if "self.__remote_bitrate_estimator is not None" not in _source_of(
            RTCRtpReceiver._handle_rtp_packet
        ):
            raise AiortcIncompatible(
                "aiortc: RTCRtpReceiver._handle_rtp_packet no longer skips a None "
                "remote bitrate estimator; add_sendonly_transceiver would break it"
            )
        offer = await pc.createOffer()
        if "a=msid:check " not in offer.sdp:
            raise AiortcIncompatible(
                "aiortc: RTCRtpSender._stream_id no longer becomes the section's msid"
            )
        _require(pc, "_RTCPeerConnection__localRtp")
        _require(sender_transceiver, "_bundled")
        dtls = sender_transceiver.sender.transport
        for name in ("_state", "_send_rtp", "_rtp_router", "_rx_srtp"):
            _require(dtls, name)
        _require(dtls._rtp_router, "route_rtcp")
        _require(dtls.transport, "_connection")
        _require(dtls.transport._connection, "_nominated")
        if "self.receiver.data_received(" not in _source_of(StunProtocol.datagram_received):
            raise AiortcIncompatible(
                "aioice: StunProtocol.datagram_received no longer hands data to "
                "self.receiver.data_received; RtcpShortcut would not see subscribers' RTCP"
            )
        _require(CandidatePair, "remote_addr")
        for name in (
            "_RTCPeerConnection__iceTransports",
            "_RTCPeerConnection__createDtlsTransport",
        ):
            _require(pc, name)
        if "recv()" not in _source_of(RTCRtpSender._next_encoded_frame):
            raise AiortcIncompatible(
                "aiortc: RTCRtpSender no longer pulls frames with track.recv() in its loop; "
                "IdleTrack would not keep the encoder idle"
            )
    finally:
        await pc.close()
    await check_restrict_ice()


def check_node_certificate() -> None:
    """A connection built by `node_peer_connection` uses the node's certificate, and
    aiortc still asks the certificate for its fingerprints and SSL contexts."""
    certificate = NodeCertificate.generateCertificate()
    _require(_rtcpeerconnection, "RTCCertificate")
    pc = node_peer_connection(certificate, RTCConfiguration())
    if peer_certificates(pc) != [certificate]:
        raise AiortcIncompatible(
            "aiortc: RTCPeerConnection no longer gets its certificate from "
            "aiortc.rtcpeerconnection.RTCCertificate.generateCertificate"
        )
    for method, name in [
        (RTCDtlsTransport.getLocalParameters, "getFingerprints()"),
        (RTCDtlsTransport.start, "_create_ssl_context("),
    ]:
        if name not in _source_of(method):
            raise AiortcIncompatible(
                f"aiortc: RTCDtlsTransport.{method.__name__} no longer calls the "
                f"certificate's {name}; NodeCertificate would not be used"
            )


async def check_restrict_ice() -> None:
    """Fail loudly unless `restrict_ice` decides where a peer connection's host candidates are."""
    signature = list(inspect.signature(Connection.get_component_candidates).parameters)
    if signature != ["self", "component", "addresses", "timeout"]:
        raise AiortcIncompatible(
            f"aioice {aioice.__version__}: Connection.get_component_candidates takes "
            f"({', '.join(signature)}); restrict_ice replaces it expecting "
            "(self, component, addresses, timeout)"
        )
    if "self.get_component_candidates(" not in _source_of(Connection.gather_candidates):
        raise AiortcIncompatible(
            f"aioice {aioice.__version__}: Connection.gather_candidates no longer calls "
            "self.get_component_candidates; restrict_ice would change nothing"
        )
    for module, names in (
        (aioice.ice, ("server_reflexive_candidate", "StunProtocol")),
        (aioice.candidate, ("Candidate", "candidate_foundation", "candidate_priority")),
        (aioice.turn, ("UDP_SOCKET_BUFFER_SIZE",)),
    ):
        for name in names:
            _require(module, name, aioice)
    # Loopback, which aioice itself never gathers on: only restrict_ice can put it there.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio", direction="recvonly")
        restrict_ice(pc, ["127.0.0.1"])
        pc.createDataChannel("created after restrict_ice")
        await pc.setLocalDescription(await pc.createOffer())
        found = sorted({host for host, _ in local_ice_addresses(pc)})
        _require(pc.sctp.transport.transport.iceGatherer._connection, "_closing", aioice)
    finally:
        await pc.close()
    if found != ["127.0.0.1"]:
        raise AiortcIncompatible(
            f"aiortc {aiortc.__version__} / aioice {aioice.__version__}: restrict_ice asked "
            f"for host candidates on 127.0.0.1 only, and sockets were bound on {found}"
        )


def _source_of(function: object) -> str:
    try:
        return inspect.getsource(function)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""
