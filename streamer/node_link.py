"""Node links: an output of one node carried to another node, packet by packet.

A node whose listeners want an output it does not feed itself (the publisher
is connected elsewhere) *pulls* it from the node that does, the *origin*. Each
node has one UDP endpoint for all its links; between two nodes, every output
one pulls from the other travels on one link (one pair of addresses),
multiplexed by SSRC, never decoded.

- The origin forwards to the edge exactly what the output sends its own
  subscribers: a `LinkSlot` is attached to the output like a subscriber's
  slot, so switches at the origin (speaker, interpreter, cough) are already
  rewritten into one continuous stream (sequence numbers, timestamps, VP8
  picture ids) and the edge sees no switch at all: nothing to renegotiate.
- On the edge, the pulled output is bound to a *remote source* named
  `<output>@link` (see `remote_source_id`), which feeds its local slots as a
  publisher's source would, keyframe logic included.
- Keyframe requests (a subscriber's PLI, a slot joining) go upstream as control
  messages; the origin asks its own source through the same throttle as for its
  own subscribers.
- Packets lost on the link, audio and video, are asked for again (`nack`) once
  and sent again from the link slot's history; the edge forwards every packet as
  it comes, and a repair when it comes, unless an audio one comes too late to be
  played (streamer/link_losses.py).

Wire format (every datagram): `sender || number || AES-256-GCM(body) || tag`: the
body is encrypted and authenticated (with the sender id and number) under a key
derived from the cluster's shared secret and the sender's id (see `LinkKey`). A body is
either an RTP packet (first byte 0x80-0xBF; payload types and the audio-level
and abs-send-time extension ids are fixed, `LINK_PAYLOAD_TYPES`, `AUDIO_LEVEL_ID`,
`ABS_SEND_TIME_ID`) or a JSON object (first byte `{`), a control message:

- edge -> origin `pull` {outputs: {name: kind}}: the whole set wanted, sent every
  `KEEPALIVE_S` (it is the edge's keepalive), every `DOWN_RETRY_S` while the
  origin is silent, and at once on a change; an empty set ends the link;
- origin -> edge `carry` {outputs: {name: {ssrc, kind}}, refused: {name: why}}:
  the answer to every pull (the origin's keepalive);
- edge -> origin `keyframe` {output, urgent} and `nack` {output, lost: [seq]}.

Every control message also carries `boot` (a random id per endpoint start),
`n` (a counter, increasing per boot) and `time` (Unix milliseconds): a message
whose counter was seen before from that boot, or is `REPLAY_WINDOW` behind the
newest, is taken for a replay, one
whose time is further than `MAX_CLOCK_SKEW_S` from ours is stale; both are
dropped (cluster clocks are assumed NTP-synced). Media replays are caught by the
edge's sequence window like network duplicates. Anything that fails the tag,
does not parse, or comes from nobody we link with is dropped and counted,
never answered.

Failures: an edge that hears nothing for `ORIGIN_SILENT_S` counts the link down
(and pulls more often); an origin that hears nothing from an edge for
`EDGE_TIMEOUT_S` stops sending to it. A pull after that (the path came back,
the edge restarted: a new boot) starts the outputs again under new SSRCs,
which the edge takes as a new stream; an origin restarted on the same address
answers the next pull with its new boot and SSRCs. So a link rebuilds itself
within `DOWN_RETRY_S` and a round trip of the path returning.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import itertools
import json
import logging
import os
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .aiortc_internals import NegotiatedSend, RtpPacket, link_extensions_map
from .errors import LinkError, LinkLimitReached
from .forwarder import Forwarder
from .history import PacketHistory
from .link_losses import AUDIO_REPAIR, MAX_ASKED, VIDEO_REPAIR, Arrival, LinkLosses
from .negotiation import ABS_SEND_TIME_URI, AUDIO_LEVEL_URI
from .output import Output
from .port_range import PortAllocator, bind_udp, check_address
from .source import Source
from .subscriber import Slot

logger = logging.getLogger(__name__)

Address = tuple[str, int]

#: Bytes of AES-GCM tag at the end of each datagram.
TAG_LENGTH = 16
#: A sealing endpoint's random id, then its datagram number (8 bytes), open each datagram.
SENDER_ID_LENGTH = 8
SEAL_HEADER_LENGTH = SENDER_ID_LENGTH + 8
#: Sender keys kept (an endpoint start each: a cluster's nodes and their restarts).
MAX_KNOWN_SENDERS = 256
_KEY_CONTEXT = b"dragoman node link v2"
_SENDER_CONTEXT = b"sender "
_NONCE_PAD = bytes(4)
#: Edge -> origin pull (keepalive) period; the origin answers each one.
KEEPALIVE_S = 0.25
#: An edge that hears nothing from its origin this long counts the link down...
ORIGIN_SILENT_S = 1.0
#: ... and pulls this often until it hears again, so a path that returns carries media
#: again within this long (plus the path's round trip).
DOWN_RETRY_S = 0.1
#: An origin that hears nothing from an edge this long stops sending to it.
EDGE_TIMEOUT_S = 3.0
#: Control messages whose time is further than this from ours are dropped.
MAX_CLOCK_SKEW_S = 30.0
#: Largest control message read; a pull of 64 outputs with long names fits.
MAX_CONTROL_SIZE = 32 * 1024
#: Sequence numbers one NACK message may name.
MAX_NACK = MAX_ASKED
#: Audio packets an origin's link slot keeps to send again (at 20 ms a packet, 1.3 s).
AUDIO_LINK_HISTORY = 64
#: Boots whose counters are remembered (replay protection).
_REMEMBERED_BOOTS = 4096
#: A control message this many counts behind the newest from its boot is too old to
#: tell from a replay; closer ones (reordered by the network) are taken once each.
REPLAY_WINDOW = 64

#: Payload type of each codec on a link (lower-case mime type -> payload type).
LINK_PAYLOAD_TYPES = {"audio/opus": 111, "video/vp8": 96, "video/h264": 102}
AUDIO_LEVEL_ID = 1
ABS_SEND_TIME_ID = 2
_CODECS = {
    111: RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111),
    96: RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
    102: RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102),
}
_EXTENSIONS = link_extensions_map(
    {AUDIO_LEVEL_URI: AUDIO_LEVEL_ID, ABS_SEND_TIME_URI: ABS_SEND_TIME_ID}
)

REMOTE_SUFFIX = "@link"
_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1


def remote_source_id(output_name: str) -> str:
    """The id of the source a pulled output is bound to on the edge.

    No publisher's source can have it: those end in `/audio` or `/video`.
    """
    return f"{output_name}{REMOTE_SUFFIX}"


def check_origin(origin: object) -> Address:
    """`origin` as a (host, port) pair, or LinkError saying what is wrong with it."""
    if (
        not isinstance(origin, (tuple, list))
        or len(origin) != 2
        or not isinstance(origin[1], int)
        or isinstance(origin[1], bool)
        or not 1 <= origin[1] <= 65535
    ):
        raise LinkError(f"an origin is a (host, port) pair, not {origin!r:.80}")
    try:
        host = check_address(origin[0])
    except Exception:
        raise LinkError(f"an origin's host is an IP address, not {origin[0]!r:.60}") from None
    return (host, origin[1])


def check_public_address(public: object) -> tuple[str, int | None]:
    """`public` as an (ip, port or None) pair other nodes can send to, or LinkError."""
    if (
        not isinstance(public, (tuple, list))
        or len(public) != 2
        or not (
            public[1] is None or (isinstance(public[1], int) and not isinstance(public[1], bool))
        )
    ):
        raise LinkError(f"a public address is an (ip, port or None) pair, not {public!r:.80}")
    try:
        host = check_address(public[0])
    except Exception:
        raise LinkError(
            f"a public address's host is an IP address, not {public[0]!r:.60}"
        ) from None
    if ipaddress.ip_address(host).is_unspecified:
        raise LinkError(f"{host} names no machine: give the address other nodes send to")
    port = public[1]
    if port is not None and not 1 <= port <= 65535:
        raise LinkError(f"a public address's port is from 1 to 65535, not {port}")
    return (host, port)


@dataclass(frozen=True)
class LinkLimits:
    """Bounds on what a node's links hold: edges it sends to, outputs per edge, outputs
    it pulls itself."""

    max_edges: int = 64
    max_outputs_per_edge: int = 64
    max_pulled: int = 64

    def __post_init__(self) -> None:
        for name in ("max_edges", "max_outputs_per_edge", "max_pulled"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LinkError(f"{name} is a whole number of at least 1, not {value!r:.40}")


@dataclass(slots=True)
class LinkCounters:
    """Traffic of one link, one side of it."""

    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    keyframe_requests: int = 0  # edge: sent upstream; origin: received
    nacked: int = 0  # sequence numbers asked for again (edge: sent; origin: received)
    repaired: int = 0  # edge: missing numbers that came in time (sent again, or overtaken)
    too_late: int = 0  # edge: missing numbers that came past their deadline (audio): dropped
    rebuilds: int = 0  # edge: the link came back after being down or the origin restarted

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class EndpointCounters:
    """Datagrams the endpoint refused, by reason (none is answered)."""

    forged: int = 0  # too short for a tag, or a tag that does not match
    malformed: int = 0  # authentic but not a message we understand
    replayed: int = 0  # a control message's counter already seen
    stale: int = 0  # a control message's time too far from ours
    unknown_peer: int = 0  # media or an answer from an address we do not pull from
    unknown_ssrc: int = 0  # media on an SSRC the origin has not announced
    refused_outputs: int = 0  # pulls of an output unknown here, of the wrong kind, over the bound
    refused_edges: int = 0  # pulls from one more edge than `max_edges`

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class LinkKey:
    """Seals and opens datagrams with the cluster secret: encrypted and authenticated.

    AES-256-GCM (`cryptography`, in C). Each `LinkKey` (one per endpoint start) picks
    a random sender id and numbers what it seals; its key is derived from the cluster
    key and that id, and the nonce is the number, so no nonce is ever used twice under
    one key without coordination between nodes. The id and the number travel in the
    clear (`SEAL_HEADER_LENGTH` bytes) and are authenticated with the body.
    """

    __slots__ = ("_cluster_key", "_counter", "_opened", "_sealer", "_sender")

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes) or len(secret) < 16:
            raise LinkError("the node link secret must be at least 16 bytes")
        # Derived, so the secret itself is never used as a key elsewhere by mistake.
        self._cluster_key = hmac.digest(secret, _KEY_CONTEXT, "sha256")
        self._sender = os.urandom(SENDER_ID_LENGTH)
        self._sealer = AESGCM(self._sender_key(self._sender))
        self._counter = itertools.count(1)
        # Keys of the senders heard from, once one of their datagrams opened.
        self._opened: OrderedDict[bytes, AESGCM] = OrderedDict()

    def _sender_key(self, sender: bytes) -> bytes:
        return hmac.digest(self._cluster_key, _SENDER_CONTEXT + sender, "sha256")

    def seal(self, body: bytes) -> bytes:
        number = next(self._counter).to_bytes(8, "big")
        header = self._sender + number
        return header + self._sealer.encrypt(_NONCE_PAD + number, body, header)

    def open(self, datagram: bytes) -> bytes | None:
        """The body of an authentic datagram; None for anything else."""
        if len(datagram) <= SEAL_HEADER_LENGTH + TAG_LENGTH:
            return None
        header = datagram[:SEAL_HEADER_LENGTH]
        sender = header[:SENDER_ID_LENGTH]
        known = self._opened.get(sender)
        aead = known if known is not None else AESGCM(self._sender_key(sender))
        try:
            body = aead.decrypt(
                _NONCE_PAD + header[SENDER_ID_LENGTH:], datagram[SEAL_HEADER_LENGTH:], header
            )
        except InvalidTag:
            return None
        if known is None:
            # Remembered only once authentic: forged ids cannot fill the table.
            self._opened[sender] = aead
            if len(self._opened) > MAX_KNOWN_SENDERS:
                self._opened.popitem(last=False)
        return body


class LinkSender:
    """What a `LinkSlot` sends with: seals each packet and sends it to one edge."""

    __slots__ = ("_counters", "_seal", "_sendto", "address", "dropped", "ssrc")

    def __init__(self, links: NodeLinks, session: EdgeSession, ssrc: int) -> None:
        # Bound once: this runs for every packet of every pulled output.
        self._seal = links.key.seal
        self._sendto = links.transport_sendto()
        self._counters = session.counters
        self.address = session.address
        self.ssrc = ssrc
        self.dropped = 0

    def send(self, data: bytes, rtp_timestamp: int, ntp: int, octets: int) -> bool:
        return self.send_unaccounted(data)

    def send_unaccounted(self, data: bytes) -> bool:
        datagram = self._seal(data)
        try:
            self._sendto(datagram, self.address)
        except Exception:
            self.dropped += 1
            return False
        counters = self._counters
        counters.packets_out += 1
        counters.bytes_out += len(datagram)
        return True

    def close(self) -> None:
        pass


class LinkSlot(Slot):
    """An origin's output forwarded to one edge: a slot like a subscriber's, sent over
    the link (so the origin's switching and rewriting apply to it unchanged)."""

    def __init__(self, output: Output, links: NodeLinks, session: EdgeSession) -> None:
        host, port = session.address
        super().__init__(f"link {host}:{port}", output.kind, output)
        self.link = LinkSender(links, session, random.randrange(1, 0x1_0000_0000))  # type: ignore[assignment]
        output.attach(self)
        mimes = [m for m in LINK_PAYLOAD_TYPES if m.startswith(output.kind)]
        self.start(
            NegotiatedSend(
                mid=None,
                payload_types={m: LINK_PAYLOAD_TYPES[m] for m in mimes},
                rtx_payload_types={},
                nack=True,
                extension_ids={
                    AUDIO_LEVEL_URI: AUDIO_LEVEL_ID,
                    ABS_SEND_TIME_URI: ABS_SEND_TIME_ID,
                },
            )
        )

    def start(self, negotiated: NegotiatedSend) -> None:
        super().start(negotiated)
        if self.kind == "audio":
            # An edge asks for a lost audio packet at once, and drops it if it comes
            # later than a listener could play it: a second is more than enough.
            self.history = PacketHistory(AUDIO_LINK_HISTORY)

    def retransmit(self, lost: list[int]) -> None:
        self._retransmit(lost)


@dataclass(eq=False)
class EdgeSession:
    """Origin side: one edge we forward outputs to."""

    address: Address
    boot: str
    heard_at: float
    slots: dict[str, LinkSlot] = field(default_factory=dict)
    counters: LinkCounters = field(default_factory=LinkCounters)

    def close(self) -> None:
        for slot in self.slots.values():
            slot.close()
        self.slots.clear()


@dataclass(eq=False)
class PulledOutput:
    """Edge side: one output pulled from an origin, and the remote source it feeds."""

    name: str
    kind: str
    source: Source
    ssrc: int | None = None
    problem: str | None = None
    losses: LinkLosses | None = None


@dataclass(eq=False)
class OriginSession:
    """Edge side: one origin we pull outputs from."""

    address: Address
    pulled: dict[str, PulledOutput] = field(default_factory=dict)
    by_ssrc: dict[int, PulledOutput] = field(default_factory=dict)
    boot: str | None = None
    heard_at: float = 0.0
    pulled_at: float = 0.0
    up: bool = False
    counters: LinkCounters = field(default_factory=LinkCounters)


class NodeLinks(asyncio.DatagramProtocol):
    """One node's link endpoint: origin for the outputs others pull, edge for those it pulls."""

    def __init__(
        self,
        secret: bytes,
        find_output: Callable[[str], Output | None],
        limits: LinkLimits | None = None,
    ) -> None:
        self.key = LinkKey(secret)
        self._find_output = find_output
        self.limits = limits or LinkLimits()
        self.boot = os.urandom(8).hex()
        self._n = 0
        self._transport: asyncio.DatagramTransport | None = None
        #: Where the other nodes send to (what the node announces), and the socket's own
        #: address: the same unless a NAT stands between (`open`'s `public`).
        self.address: Address | None = None
        self.bound: Address | None = None
        self.edges: dict[Address, EdgeSession] = {}
        self.origins: dict[Address, OriginSession] = {}
        self._pulled: dict[str, OriginSession] = {}  # output name -> the origin it comes from
        self.counters = EndpointCounters()
        # Per peer boot: the highest control counter seen, and which of the
        # `REPLAY_WINDOW` before it were seen too (bit i: highest - i).
        self._seen: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------

    async def open(
        self,
        host: str,
        ports: PortAllocator | None,
        public: tuple[str, int | None] | None = None,
        port: int | None = None,
    ) -> Address:
        """Bind the endpoint on `host`, on `port` if given, else in the port range if one
        is given. Returns the address the other nodes send to: `public` (with the port
        bound if its own is None), else the address bound.

        Nothing else changes behind a NAT: an edge sends to the announced address and
        takes the answers coming from it for its origin's (the NAT sends them from
        there); an origin answers each edge at the address its datagrams came from,
        whatever NAT the edge stands behind."""
        sock = bind_udp(host, ports, port or 0)
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(lambda: self, sock=sock)
        except BaseException:
            sock.close()
            raise
        bound = sock.getsockname()
        self.bound = (bound[0], bound[1])
        self.address = self.bound if public is None else (public[0], public[1] or bound[1])
        self._timer = asyncio.ensure_future(self._keep_alive())
        if self.address == self.bound:
            logger.info("node link endpoint on %s:%d", *self.address)
        else:
            logger.info("node link endpoint on %s:%d, reached at %s:%d", *self.bound, *self.address)
        return self.address

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    async def close(self) -> None:
        """Tell every origin we pull nothing more, stop forwarding, close the socket."""
        if self._closed:
            return
        self._closed = True
        for session in self.origins.values():
            self._send_control(session.address, {"type": "pull", "outputs": {}})
        for edge in self.edges.values():
            edge.close()
        self.edges.clear()
        tasks = [t for t in (self._timer, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()

    # -- edge: pulling ------------------------------------------------------------

    def pull(self, output: Output, origin: Address) -> Source:
        """Start pulling `output` (declared here) from `origin`; returns its remote source."""
        if output.name in self._pulled:
            raise LinkError(f"output {output.name!r} is already pulled")
        if len(self._pulled) >= self.limits.max_pulled:
            raise LinkLimitReached(
                f"this node already pulls {len(self._pulled)} outputs, the most it may "
                f"(max_pulled); stop pulling one first"
            )
        if origin in (self.address, self.bound):
            raise LinkError(f"{origin[0]}:{origin[1]} is this node's own link endpoint")
        session = self.origins.get(origin)
        if session is None:
            session = self.origins[origin] = OriginSession(address=origin)
        name = output.name

        async def request_upstream(urgent: bool) -> bool:
            return self._request_keyframe(session, name, urgent)

        source = Source(
            id=remote_source_id(name),
            kind=output.kind,
            publisher_id=f"{origin[0]}:{origin[1]}",
            forwarder=Forwarder(output.kind, request_upstream),
        )
        pulled = PulledOutput(name=name, kind=output.kind, source=source)
        session.pulled[name] = pulled
        self._pulled[output.name] = session
        self._send_pull(session)
        return pulled.source

    def stop_pulling(self, output_name: str) -> Source | None:
        """Stop pulling an output; its remote source (to be removed), None if not pulled."""
        session = self._pulled.pop(output_name, None)
        if session is None:
            return None
        pulled = session.pulled.pop(output_name)
        if pulled.ssrc is not None:
            session.by_ssrc.pop(pulled.ssrc, None)
        self._send_pull(session)
        if not session.pulled:
            del self.origins[session.address]
        return pulled.source

    def origin_of(self, output_name: str) -> Address | None:
        session = self._pulled.get(output_name)
        return session.address if session is not None else None

    def pulls(self) -> dict[str, Address]:
        return {name: session.address for name, session in self._pulled.items()}

    def _send_pull(self, session: OriginSession) -> None:
        session.pulled_at = time.monotonic()
        outputs = {name: p.kind for name, p in session.pulled.items()}
        self._send_control(session.address, {"type": "pull", "outputs": outputs})

    def _request_keyframe(self, session: OriginSession, name: str, urgent: bool) -> bool:
        if not session.up or self._pulled.get(name) is not session:
            return False
        session.counters.keyframe_requests += 1
        self._send_control(session.address, {"type": "keyframe", "output": name, "urgent": urgent})
        return True

    # -- datagrams ----------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            self._received(data, (addr[0], addr[1]))
        except Exception:
            # Whatever a datagram holds, the endpoint keeps serving the others.
            self.counters.malformed += 1
            logger.exception("node link: a datagram from %s could not be handled", addr[:2])

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that went away: its timeout will tell.
        logger.debug("node link: %s", exc)

    def _received(self, data: bytes, address: Address) -> None:
        if self._closed:
            return
        body = self.key.open(data)
        if body is None:
            self.counters.forged += 1
            return
        first = body[0]
        if 0x80 <= first <= 0xBF:
            self._received_media(body, address, len(data))
        elif first == 0x7B and len(body) <= MAX_CONTROL_SIZE:
            message = self._parse_control(body)
            if message is not None:
                self._received_control(message, address, len(data))
        else:
            self.counters.malformed += 1

    def _received_media(self, body: bytes, address: Address, size: int) -> None:
        session = self.origins.get(address)
        if session is None:
            self.counters.unknown_peer += 1
            return
        if len(body) < 12:
            self.counters.malformed += 1
            return
        pulled = session.by_ssrc.get(int.from_bytes(body[8:12], "big"))
        if pulled is None:
            self.counters.unknown_ssrc += 1
            return
        try:
            packet = RtpPacket.parse(body, _EXTENSIONS)
        except ValueError:
            self.counters.malformed += 1
            return
        codec = _CODECS.get(packet.payload_type)
        if (
            codec is None
            or not codec.mimeType.lower().startswith(pulled.kind)
            or not packet.payload
        ):
            self.counters.malformed += 1
            return
        counters = session.counters
        counters.packets_in += 1
        counters.bytes_in += size
        arrival, lost = Arrival.NEWEST, ()
        losses = pulled.losses
        if losses is not None:
            arrival, lost = losses.arrived(packet.sequence_number, time.monotonic())
            if arrival is Arrival.TOO_LATE:
                counters.too_late += 1
                return
            if arrival is Arrival.REPAIRED:
                counters.repaired += 1
        # Forwarded at once, after a gap too: a retransmission takes its place later.
        forwarder = pulled.source.forwarder
        if forwarder.forward(packet, codec):
            self._spawn(forwarder.request_keyframe(urgent=True))
        if lost:
            counters.nacked += len(lost)
            self._send_control(address, {"type": "nack", "output": pulled.name, "lost": list(lost)})

    def _parse_control(self, body: bytes) -> dict[str, Any] | None:
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            message = None
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("type"), str)
            or not isinstance(message.get("boot"), str)
            or len(message["boot"]) > 64
            or not isinstance(message.get("n"), int)
            or not isinstance(message.get("time"), int)
        ):
            self.counters.malformed += 1
            return None
        if abs(message["time"] / 1000 - time.time()) > MAX_CLOCK_SKEW_S:
            self.counters.stale += 1
            return None
        if not self._first_time(message["boot"], message["n"]):
            self.counters.replayed += 1
            return None
        return message

    def _first_time(self, boot: str, n: int) -> bool:
        """Whether control message `n` of `boot` is new (and remember it)."""
        entry = self._seen.get(boot)
        if entry is None:
            highest, seen = n, 1
        else:
            highest, seen = entry
            if n > highest:
                shift = n - highest
                seen = ((seen << shift) | 1) & _WINDOW_MASK if shift < REPLAY_WINDOW else 1
                highest = n
            else:
                behind = highest - n
                if behind >= REPLAY_WINDOW or (seen >> behind) & 1:
                    return False
                seen |= 1 << behind
        self._seen[boot] = (highest, seen)
        self._seen.move_to_end(boot)
        if len(self._seen) > _REMEMBERED_BOOTS:
            self._seen.popitem(last=False)
        return True

    def _received_control(self, message: dict[str, Any], address: Address, size: int) -> None:
        kind = message["type"]
        if kind == "pull":
            outputs = message.get("outputs")
            if not isinstance(outputs, dict) or not all(
                isinstance(name, str) and isinstance(k, str) for name, k in outputs.items()
            ):
                self.counters.malformed += 1
                return
            edge = self._received_pull(outputs, message["boot"], address)
            if edge is not None:
                edge.counters.packets_in += 1
                edge.counters.bytes_in += size
        elif kind == "carry":
            session = self._received_carry(message, address)
            if session is not None:
                session.counters.packets_in += 1
                session.counters.bytes_in += size
        elif kind in ("keyframe", "nack"):
            edge = self.edges.get(address)
            name = message.get("output")
            slot = edge.slots.get(name) if edge is not None and isinstance(name, str) else None
            if slot is None:
                self.counters.unknown_peer += 1
                return
            assert edge is not None
            edge.heard_at = time.monotonic()
            counters = edge.counters
            counters.packets_in += 1
            counters.bytes_in += size
            if kind == "keyframe":
                counters.keyframe_requests += 1
                self._spawn(slot.output.request_keyframe(urgent=message.get("urgent") is True))
            else:
                lost = message.get("lost")
                if not isinstance(lost, list) or not all(
                    isinstance(s, int) and 0 <= s <= 0xFFFF for s in lost[:MAX_NACK]
                ):
                    self.counters.malformed += 1
                    return
                counters.nacked += len(lost[:MAX_NACK])
                slot.retransmit(lost[:MAX_NACK])
        else:
            self.counters.malformed += 1

    # -- origin: answering pulls ----------------------------------------------------

    def _received_pull(
        self, wanted: dict[str, str], boot: str, address: Address
    ) -> EdgeSession | None:
        """Serve what an edge asks for; the edge's session, None if it has none now."""
        edge = self.edges.get(address)
        if edge is not None and edge.boot != boot:
            # The edge restarted on the same address: what it had is gone with it.
            edge.close()
            del self.edges[address]
            edge = None
        if not wanted:
            if edge is not None:
                edge.close()
                del self.edges[address]
            return None
        if edge is None:
            if len(self.edges) >= self.limits.max_edges:
                self.counters.refused_edges += 1
                refused = {name: "this node serves as many edges as it may" for name in wanted}
                self._send_control(address, {"type": "carry", "outputs": {}, "refused": refused})
                return None
            edge = self.edges[address] = EdgeSession(address, boot, time.monotonic())
        edge.heard_at = time.monotonic()
        refused: dict[str, str] = {}
        for name, slot in list(edge.slots.items()):
            if wanted.get(name) != slot.kind:
                edge.slots.pop(name).close()
        for name, kind in wanted.items():
            if name in edge.slots:
                continue
            output = self._find_output(name)
            if output is None:
                refused[name] = "no such output on the origin"
            elif output.kind != kind:
                refused[name] = f"the origin's output is {output.kind}, not {kind}"
            elif len(edge.slots) >= self.limits.max_outputs_per_edge:
                refused[name] = "more outputs than one edge may pull"
            else:
                edge.slots[name] = LinkSlot(output, self, edge)
                continue
            self.counters.refused_outputs += 1
        carried = {
            name: {"ssrc": slot.link.ssrc, "kind": slot.kind} for name, slot in edge.slots.items()
        }
        self._send_control(address, {"type": "carry", "outputs": carried, "refused": refused})
        return edge

    # -- edge: answers ---------------------------------------------------------------

    def _received_carry(self, message: dict[str, Any], address: Address) -> OriginSession | None:
        """Take an origin's answer: which SSRC carries what; the origin's session."""
        session = self.origins.get(address)
        if session is None:
            self.counters.unknown_peer += 1
            return None
        carried, refused = message.get("outputs"), message.get("refused")
        if not isinstance(carried, dict) or not isinstance(refused, dict):
            self.counters.malformed += 1
            return None
        announced: dict[int, PulledOutput] = {}
        for name, pulled in session.pulled.items():
            entry = carried.get(name)
            if isinstance(entry, dict) and isinstance(entry.get("ssrc"), int):
                if entry.get("kind") != pulled.kind:
                    pulled.problem = f"the origin's output is {entry.get('kind')!r:.20}"
                    continue
                if pulled.ssrc != entry["ssrc"]:
                    # A new stream (a rebuilt link): numbered afresh, its losses tracked afresh.
                    pulled.ssrc = entry["ssrc"]
                    pulled.losses = LinkLosses(
                        AUDIO_REPAIR if pulled.kind == "audio" else VIDEO_REPAIR
                    )
                pulled.problem = None
                announced[pulled.ssrc] = pulled
            elif isinstance(refused.get(name), str):
                pulled.problem = refused[name][:200]
        session.by_ssrc = announced
        if session.boot is not None and session.boot != message["boot"]:
            session.counters.rebuilds += 1  # the origin restarted
            logger.info("node link to %s:%d: origin restarted", *address)
        elif not session.up and session.heard_at:
            session.counters.rebuilds += 1
            logger.info("node link to %s:%d is back", *address)
        session.boot = message["boot"]
        session.heard_at = time.monotonic()
        session.up = True
        return session

    # -- both sides ------------------------------------------------------------------

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(DOWN_RETRY_S)
            now = time.monotonic()
            for session in self.origins.values():
                if session.up and now - session.heard_at > ORIGIN_SILENT_S:
                    session.up = False
                    logger.warning("node link to %s:%d: the origin is silent", *session.address)
                if not session.up or now - session.pulled_at >= KEEPALIVE_S:
                    self._send_pull(session)
            for address, edge in list(self.edges.items()):
                if now - edge.heard_at > EDGE_TIMEOUT_S:
                    logger.warning("node link to edge %s:%d timed out", *address)
                    edge.close()
                    del self.edges[address]

    def _send_control(self, address: Address, message: dict[str, Any]) -> None:
        self._n += 1
        message.update(boot=self.boot, n=self._n, time=int(time.time() * 1000))
        body = json.dumps(message, separators=(",", ":")).encode()
        counters = None
        if message["type"] == "carry":
            edge = self.edges.get(address)
            counters = edge.counters if edge is not None else None
        else:
            origin = self.origins.get(address)
            counters = origin.counters if origin is not None else None
        self.send_sealed(body, address, counters)

    def transport_sendto(self) -> Callable[[bytes, Address], None]:
        """The endpoint's `sendto` (the endpoint is open while slots send with it)."""
        assert self._transport is not None
        return self._transport.sendto

    def send_sealed(self, body: bytes, address: Address, counters: LinkCounters | None) -> bool:
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        datagram = self.key.seal(body)
        transport.sendto(datagram, address)
        if counters is not None:
            counters.packets_out += 1
            counters.bytes_out += len(datagram)
        return True

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if self._closed:
            coroutine.close()
            return
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- stats ---------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Per link (by the peer's "host:port"): traffic, outputs carried, rebuilds."""
        return {
            "address": _host_port(self.address),
            "bound": _host_port(self.bound),
            "refused": self.counters.as_dict(),
            "edges": {
                f"{a[0]}:{a[1]}": {
                    "outputs": sorted(e.slots),
                    "retransmitted": sum(s.counters.retransmitted for s in e.slots.values()),
                    **e.counters.as_dict(),
                }
                for a, e in self.edges.items()
            },
            "origins": {
                f"{a[0]}:{a[1]}": {
                    "up": s.up,
                    "outputs": {
                        name: {"problem": p.problem, "ssrc": p.ssrc} for name, p in s.pulled.items()
                    },
                    **s.counters.as_dict(),
                }
                for a, s in self.origins.items()
            },
        }


def _host_port(address: Address | None) -> str | None:
    return f"{address[0]}:{address[1]}" if address else None
