"""The streamer's facade: publishers in, named outputs, subscribers out.

Everything the control plane needs from the media plane goes through `Sfu`.
Names are the caller's: publisher and subscriber ids, output names, slot
names. Sources are named by the SFU: `<publisher_id>/audio` and
`<publisher_id>/video`.

Example::

    sfu = Sfu(SfuConfig(ice_servers=[], public_address=None))
    sfu.on_source_added = lambda source_id, kind: print("new", source_id)

    answer = await sfu.publish("speaker-1", offer_from_speaker)  # SDP answer text
    sfu.declare_output("program-video", "video")
    sfu.declare_output("floor", "audio")
    sfu.declare_output("channel-fr", "audio")
    sfu.point("program-video", "speaker-1/video")
    sfu.point("floor", "speaker-1/audio")

    offer = await sfu.subscribe(
        "attendee-7", {"video": "program-video", "voice": "channel-fr", "floor": "floor"}
    )
    await sfu.accept_answer("attendee-7", answer_from_attendee)
    sfu.pause_slot("attendee-7", "floor", True)        # no original under the interpretation
    sfu.point_slot("attendee-7", "voice", "floor")     # language switch: no renegotiation
    sfu.point("channel-fr", "interpreter-2/audio")     # interpreter handover
    await sfu.close_subscriber("attendee-7")
    await sfu.close()

Between nodes (streamer/node_link.py): every node opens its link endpoint and
publishes its address; a node whose listeners want an output fed elsewhere pulls
it, and its local subscribers are fed as from a local source::

    sfu = Sfu(SfuConfig(link_secret=cluster_secret))
    address = await sfu.open_links("10.0.0.7")         # (host, port) for the node registry
    sfu.declare_output("floor", "audio")
    sfu.pull("floor", origin_address)                   # fed by the origin's "floor"
    sfu.stop_pulling("floor")

A pulled output is bound to the remote source `floor@link` (listed by
`sources()`, announced through `on_source_added`); the last of `pull` and
`point` on an output wins: `point` stops a pull, `pull` replaces a pointing.
Other outputs may point at a remote source like at any other.

Publishing or subscribing again with an id in use replaces the old peer (a
page reload). When a publisher goes away, outputs pointing at its sources
carry nothing, remember the source, and carry it again if the publisher comes
back; subscribers keep their connections throughout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiortc import RTCBundlePolicy, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from .activity import LossInterval, Reception, SourceActivity, age
from .aiortc_internals import (
    SUBSCRIBER_BUNDLE_POLICY,
    NodeCertificate,
    cache_host_addresses,
    node_peer_connection,
    parsed_sdp,
    restrict_ice,
    reuse_parsed_sdp,
)
from .departed_peers import DepartedPeers
from .errors import (
    InvalidNetworkSetting,
    InvalidSdp,
    KindMismatch,
    LinkError,
    SfuClosed,
    StreamerError,
    UnknownOutput,
    UnknownPublisher,
    UnknownSource,
    UnknownSubscriber,
)
from .hls import HlsPackager, Rendition
from .negotiation import (
    IceServer,
    VideoCodec,
    bundle_tag_candidates,
    check_publisher_offer,
    check_subscriber_answer,
    check_video_codec,
    rtc_configuration,
    with_public_address,
)
from .node_link import (
    Address,
    LinkLimits,
    LinkSlot,
    NodeLinks,
    check_origin,
    check_public_address,
    remote_source_id,
)
from .output import Output
from .port_range import PortAllocator, PortRange, check_address
from .publisher import Publisher, open_publisher
from .recorder import FailureCallback, Recording
from .sender_reports import SenderReports
from .source import Source
from .stats import NodeErrors, OutputCounters
from .subscriber import Subscriber, open_subscriber

logger = logging.getLogger(__name__)

KINDS = ("audio", "video")
MAX_NAME_LENGTH = 200
# An msid is an SDP token: keep stream names to a safe subset of it.
_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

SourceCallback = Callable[[str, str], None]
Peer = TypeVar("Peer", Publisher, Subscriber)


@dataclass(frozen=True)
class SfuConfig:
    """How the SFU's peers find each other.

    `ice_servers`: STUN/TURN URLs (or `IceServer`s with credentials); none by
    default, and then no server is ever contacted. `public_address`: an IP
    address advertised instead of the local one on host candidates, for a
    server behind a 1:1 NAT.

    `port_range`: (first, last) UDP ports, both included, that every host
    candidate socket lies in, for a firewall that opens only those; when all
    are taken, one more publisher or subscriber gets `PortRangeExhausted`.
    None: any port. `host_addresses`: the IP addresses host candidates are
    gathered on (loopback allowed); empty: every non-loopback interface, as
    aioice finds them.

    `video_codec`: the video codec publishers are asked for when their browser
    offers both VP8 and H.264 ("vp8" or "h264"; the other one is still accepted from
    a browser that cannot send it). H.264 is packaged into HLS and recorded without
    being decoded; VP8 is encoded once for HLS.

    `link_secret`: the key every node of the cluster shares (at least 16 bytes);
    without it this node opens no node link. `link_limits`: bounds on edges
    served and outputs pulled (streamer/node_link.py).
    """

    ice_servers: Sequence[str | IceServer | RTCIceServer] = field(default_factory=tuple)
    public_address: str | None = None
    port_range: tuple[int, int] | None = None
    host_addresses: tuple[str, ...] = ()
    link_secret: bytes | None = field(default=None, repr=False)
    link_limits: LinkLimits = field(default_factory=LinkLimits)
    video_codec: VideoCodec = "vp8"


# A node's DTLS certificate is replaced this long before it expires (connections made
# with the old one keep it).
CERTIFICATE_RENEWAL_S = 7 * 24 * 3600


def _port_allocator(port_range: tuple[int, int] | None) -> PortAllocator | None:
    if port_range is None:
        return None
    if not isinstance(port_range, tuple) or len(port_range) != 2:
        raise InvalidNetworkSetting(
            f"a port range is a (first, last) pair of ports, not {port_range!r:.60}"
        )
    return PortAllocator(PortRange(*port_range))


def _host_addresses(addresses: object) -> tuple[str, ...]:
    if isinstance(addresses, str) or not isinstance(addresses, (tuple, list)):
        raise InvalidNetworkSetting(
            f"host addresses are a tuple of IP addresses, not {addresses!r:.60}"
        )
    return tuple(check_address(address) for address in addresses)


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise StreamerError(
            f"a {what} must be a non-empty string of at most {MAX_NAME_LENGTH} characters, "
            f"not {name!r:.60}"
        )
    return name


def _unregister(peers: dict[str, Peer], peer: Peer) -> bool:
    """Mark `peer` closing and drop it from `peers`; False if it was already closing.

    A peer replaced by a newer one with the same id is no longer in `peers`,
    and the newer one stays.
    """
    if peer.closing:
        return False
    peer.closing = True
    if peers.get(peer.id) is peer:
        del peers[peer.id]
    return True


def _check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise KindMismatch(f"kind must be 'audio' or 'video', not {kind!r:.40}")
    return kind  # type: ignore[return-value]


class Sfu:
    """An RTP-forwarding selective forwarding unit."""

    def __init__(self, config: SfuConfig | None = None) -> None:
        self.config = config or SfuConfig()
        # Shared by every peer so that ports are handed out in turn across all of them.
        self._ports = _port_allocator(self.config.port_range)
        self._host_addresses = _host_addresses(self.config.host_addresses)
        self._video_codec = check_video_codec(self.config.video_codec)
        # One DTLS certificate for every peer connection (see NodeCertificate).
        self._certificate = NodeCertificate.generateCertificate()
        cache_host_addresses()
        reuse_parsed_sdp()
        self.on_source_added: SourceCallback | None = None
        self.on_source_removed: SourceCallback | None = None
        self._outputs: dict[str, Output] = {}
        self._sources: dict[str, Source] = {}
        self._publishers: dict[str, Publisher] = {}
        self._subscribers: dict[str, Subscriber] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loss_meters: dict[str, LossInterval] = {}
        self._links: NodeLinks | None = None
        # The RTCP sender reports of every subscriber slot, from one timer.
        self._reports = SenderReports()
        # Frees the memory of closed peer connections soon after they go.
        self.departed = DepartedPeers()
        self._closed = False
        #: Failures on the media path of the whole node (for the metrics endpoint).
        self.errors = NodeErrors()

    # -- publishers -------------------------------------------------------------

    async def publish(self, publisher_id: str, offer_sdp: str) -> str:
        """Accept a publisher's offer; returns the SDP answer."""
        self._check_open()
        _check_name(publisher_id, "publisher id")
        kinds = check_publisher_offer(offer_sdp)
        if publisher_id in self._publishers:
            await self.close_publisher(publisher_id)
        pc = self._peer_connection()
        publisher, answer = await open_publisher(
            publisher_id,
            offer_sdp,
            kinds,
            pc,
            self.errors.forwarding_failed,
            video_codec=self._video_codec,
        )
        if self._closed:
            await publisher.close()
            raise SfuClosed("the SFU was closed while the publisher connected")
        previous = self._publishers.get(publisher_id)
        if previous is not None:  # a concurrent publish with the same id won the race
            await self._remove_publisher(previous)
        self._publishers[publisher_id] = publisher
        self._watch(pc, lambda: self._publisher_failed(publisher))
        for source in publisher.sources.values():
            self._add_source(source)
        logger.info("publisher %s connected with %s", publisher_id, ", ".join(kinds))
        return with_public_address(answer.sdp, self.config.public_address)

    async def close_publisher(self, publisher_id: str) -> None:
        publisher = self._publishers.get(publisher_id)
        if publisher is None:
            raise UnknownPublisher(publisher_id)
        await self._remove_publisher(publisher)

    def sources(self) -> dict[str, str]:
        """Live sources: source id -> kind."""
        return {sid: source.kind for sid, source in self._sources.items()}

    # -- outputs ----------------------------------------------------------------

    def declare_output(self, name: str, kind: str) -> None:
        """Create an output (idempotent for the same kind)."""
        self._check_open()
        _check_name(name, "output name")
        _check_kind(kind)
        existing = self._outputs.get(name)
        if existing is not None:
            if existing.kind != kind:
                raise KindMismatch(f"output {name!r} is already declared as {existing.kind}")
            return
        self._outputs[name] = Output(name=name, kind=kind)

    def point(self, output_name: str, source_id: str | None) -> None:
        """Make an output carry a source (or nothing). Never renegotiates.

        On a pulled output, pointing anywhere but at its own remote source stops the pull.
        """
        self._check_open()
        output = self._output(output_name)
        if self._links is not None and self._links.origin_of(output_name) is not None:
            if source_id == remote_source_id(output_name):
                return
            self.stop_pulling(output_name)
        if source_id is None:
            output.source_id = None
            output.bind(None)
            return
        source = self._sources.get(source_id)
        if source is None:
            raise UnknownSource(source_id)
        if source.kind != output.kind:
            raise KindMismatch(
                f"output {output_name!r} carries {output.kind}; source {source_id!r} is "
                f"{source.kind}"
            )
        output.source_id = source_id
        output.bind(source)

    def outputs(self) -> dict[str, str | None]:
        """Declared outputs: name -> the source id they point at (or None)."""
        return {name: output.source_id for name, output in self._outputs.items()}

    # -- node links ---------------------------------------------------------------

    async def open_links(
        self,
        host: str,
        *,
        port: int | None = None,
        public_address: tuple[str, int | None] | None = None,
    ) -> Address:
        """Open this node's link endpoint on `host` (its media address); returns the
        (host, port) other nodes pull from. The port is `port` if given (a port a NAT
        or a container's published port forwards to), else one of the port range if
        one is configured, else any free port.

        `public_address`: where the other nodes send to, when it is not the address
        bound: behind a 1:1 NAT or a container's port mapping, `(public ip, port)`, or
        `(public ip, None)` when the NAT keeps the port. The NAT must send the node's
        answers from that address (a 1:1 NAT and a port mapping do): an edge knows its
        origin by the address answers come from. `host` may then be a wildcard
        (0.0.0.0, ::); without a public address it must be the address the other
        nodes reach."""
        self._check_open()
        if self.config.link_secret is None:
            raise LinkError("node links need the cluster's shared secret (link_secret)")
        if self._links is not None:
            raise LinkError("this node's link endpoint is already open")
        try:
            check_address(host)
        except InvalidNetworkSetting:
            raise LinkError(
                f"a link endpoint is bound on an IP address, not {host!r:.60}"
            ) from None
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
        ):
            raise LinkError(f"a link endpoint's port is from 1 to 65535, not {port!r:.20}")
        public = check_public_address(public_address) if public_address is not None else None
        if public is None and ipaddress.ip_address(host).is_unspecified:
            raise LinkError(
                f"a link endpoint bound on every interface ({host}) needs the address the "
                "other nodes reach it at (public_address): they pull from what it announces"
            )
        links = NodeLinks(self.config.link_secret, self._outputs.get, self.config.link_limits)
        try:
            address = await links.open(host, self._ports, public, port)
        except OSError as exc:
            where = host if port is None else f"{host}:{port}"
            raise LinkError(f"cannot open the link endpoint on {where}: {exc.strerror}") from None
        if self._closed:
            await links.close()
            raise SfuClosed("the SFU was closed while its link endpoint opened")
        self._links = links
        return address

    @property
    def link_address(self) -> Address | None:
        """Where other nodes reach this node's link endpoint (the public address when one
        was given); None until `open_links`."""
        return self._links.address if self._links is not None else None

    @property
    def link_bound_address(self) -> Address | None:
        """The address the link endpoint's socket is bound to; None until `open_links`."""
        return self._links.bound if self._links is not None else None

    def pull(self, output_name: str, origin: Address) -> None:
        """Feed a declared output from the output of the same name on the node whose link
        endpoint is `origin` (idempotent; another origin replaces the first)."""
        self._check_open()
        output = self._output(output_name)
        origin = check_origin(origin)
        links = self._links
        if links is None:
            raise LinkError("open this node's link endpoint (open_links) before pulling")
        current = links.origin_of(output_name)
        if current == origin:
            return
        if current is not None:
            self.stop_pulling(output_name)
        source = links.pull(output, origin)
        output.source_id = source.id
        self._add_source(source)

    def stop_pulling(self, output_name: str) -> bool:
        """Stop pulling an output, which then carries nothing; False if it was not pulled."""
        output = self._output(output_name)
        source = self._links.stop_pulling(output_name) if self._links is not None else None
        if source is None:
            return False
        self._remove_source(source)
        output.source_id = None
        return True

    def pulls(self) -> dict[str, Address]:
        """Pulled outputs: name -> the origin's link address."""
        return self._links.pulls() if self._links is not None else {}

    # -- recordings -------------------------------------------------------------

    def record(
        self,
        path: str | Path,
        audio: str,
        video: str | None = None,
        *,
        metadata: dict[str, str] | None = None,
        on_failure: FailureCallback | None = None,
    ) -> Recording:
        """Write what an audio output (and a video output, in the same file) carries
        into a WebM file at `path`, from now until `close()` on the returned recording
        (a Matroska file, its suffix turned to ``.mkv``, when the video is H.264: the
        recording's `path` says which).

        The outputs' packets are muxed as forwarded (no decoding); `on_failure` is
        called if a write fails (a full disk), and the recording stops by itself.
        """
        self._check_open()
        audio_output = self._output(audio)
        if audio_output.kind != "audio":
            raise KindMismatch(f"output {audio!r} carries video; a recording's sound is audio")
        video_output = None
        if video is not None:
            video_output = self._output(video)
            if video_output.kind != "video":
                raise KindMismatch(
                    f"output {video!r} carries audio; a recording's picture is video"
                )
        return Recording(
            Path(path),
            audio_output,
            video_output,
            metadata=metadata,
            on_failure=on_failure,
            video_codec=self._video_codec,
        )

    def package_hls(
        self,
        directory: str | Path,
        video: tuple[str, str] | None,
        audio: Sequence[tuple[str, str]],
        *,
        segment_s: float = 2.0,
    ) -> HlsPackager:
        """Package outputs as HLS media playlists in `directory`, encoded once each:
        `video` is (playlist name, video output), `audio` (playlist name, audio output)
        pairs. Runs until `close()` on the returned packager."""
        self._check_open()
        renditions = []
        for name, output_name in audio:
            output = self._output(output_name)
            if output.kind != "audio":
                raise KindMismatch(f"output {output_name!r} carries video, not audio")
            renditions.append(Rendition(_check_name(name, "playlist name"), output))
        picture = None
        if video is not None:
            output = self._output(video[1])
            if output.kind != "video":
                raise KindMismatch(f"output {video[1]!r} carries audio, not video")
            picture = Rendition(_check_name(video[0], "playlist name"), output)
        return HlsPackager(Path(directory), picture, renditions, segment_s=segment_s)

    # -- subscribers ------------------------------------------------------------

    async def subscribe(
        self,
        subscriber_id: str,
        slots: Mapping[str, str],
        streams: Mapping[str, str] | None = None,
    ) -> str:
        """Create a subscriber receiving `slots` (slot name -> output name); returns the offer.

        `streams` (slot name -> stream name) groups slots into media streams: the
        subscriber keeps the tracks of one stream in sync (a speaker's video with
        the audio heard with it). Slots not named get a stream each.
        """
        self._check_open()
        _check_name(subscriber_id, "subscriber id")
        if not isinstance(slots, Mapping) or not slots:
            raise StreamerError("a subscriber needs at least one slot (slot name -> output name)")
        outputs = {
            _check_name(slot, "slot name"): self._output(name) for slot, name in slots.items()
        }
        for slot, stream in (streams or {}).items():
            if slot not in outputs:
                raise StreamerError(f"stream {stream!r:.60} names slot {slot!r:.60}, not a slot")
            if not isinstance(stream, str) or not _STREAM_NAME.fullmatch(stream):
                raise StreamerError(
                    f"a stream name is 1 to 64 letters, digits, '-' or '_', not {stream!r:.60}"
                )
        if subscriber_id in self._subscribers:
            await self.close_subscriber(subscriber_id)
        pc = self._peer_connection(SUBSCRIBER_BUNDLE_POLICY)
        try:
            subscriber, offer = await open_subscriber(
                subscriber_id,
                outputs,
                pc,
                streams,
                reports=self._reports,
                on_rtcp_error=self.errors.rtcp_failed,
                video_codec=self._video_codec,
            )
        except BaseException:
            await pc.close()
            raise
        previous = self._subscribers.get(subscriber_id)
        if previous is not None:
            await self._remove_subscriber(previous)
        if self._closed:
            await subscriber.close()
            raise SfuClosed("the SFU was closed while the subscriber was being set up")
        self._subscribers[subscriber_id] = subscriber
        self._watch(pc, lambda: self._subscriber_failed(subscriber))
        return with_public_address(offer.sdp, self.config.public_address)

    async def accept_answer(self, subscriber_id: str, answer_sdp: str) -> None:
        """Complete a subscriber's negotiation with its answer."""
        subscriber = self._subscriber(subscriber_id)
        if subscriber.answered:
            raise InvalidSdp(f"subscriber {subscriber_id!r} has already answered")
        description = check_subscriber_answer(
            answer_sdp, [slot.kind for slot in subscriber.slots.values()]
        )
        try:
            # Parsed once: aiortc takes the description checked above.
            await subscriber.pc.setRemoteDescription(
                RTCSessionDescription(sdp=parsed_sdp(answer_sdp, description), type="answer")
            )
        except Exception as exc:
            raise InvalidSdp(f"the answer was refused: {exc or type(exc).__name__}") from None
        subscriber.answered = True
        for candidate in bundle_tag_candidates(description):
            try:
                await subscriber.pc.addIceCandidate(candidate)
            except Exception:
                # The subscriber's own connectivity checks can still reveal its address.
                logger.warning(
                    "subscriber %s: a candidate was refused", subscriber_id, exc_info=True
                )

    def point_slot(self, subscriber_id: str, slot_name: str, output_name: str) -> None:
        """Feed a subscriber's slot from another output of the same kind (no renegotiation)."""
        slot = self._subscriber(subscriber_id).slot(slot_name)
        output = self._output(output_name)
        if output.kind != slot.kind:
            raise KindMismatch(
                f"slot {slot_name!r} carries {slot.kind}; output {output_name!r} is {output.kind}"
            )
        slot.point(output)

    def pause_slot(self, subscriber_id: str, slot_name: str, paused: bool) -> None:
        """Stop (or resume) sending anything on one slot."""
        self._subscriber(subscriber_id).slot(slot_name).pause(bool(paused))

    async def close_subscriber(self, subscriber_id: str) -> None:
        await self._remove_subscriber(self._subscriber(subscriber_id))

    # -- whole SFU --------------------------------------------------------------

    async def close(self) -> None:
        """Close every peer connection and background task."""
        self._closed = True
        if self._links is not None:
            await self._links.close()
        for subscriber in list(self._subscribers.values()):
            await self._remove_subscriber(subscriber)
        for publisher in list(self._publishers.values()):
            await self._remove_publisher(publisher)
        self._reports.close()
        self.departed.close()
        # Tasks cleaning up after vanished peers are short; cancelling one would
        # cancel aiortc's shared "closed" future under its own close() call.
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        await asyncio.gather(*tasks, return_exceptions=True)

    def activity(self) -> dict[str, SourceActivity]:
        """Per live source: how long since its last packet and, for audio, its last sound."""
        now = time.monotonic()
        return {
            sid: SourceActivity(
                kind=source.kind,
                packet_age=age(now, source.forwarder.last_packet_at),
                sound_age=(
                    age(now, source.forwarder.last_sound_at)
                    if source.forwarder.has_levels
                    else None
                ),
            )
            for sid, source in self._sources.items()
        }

    def health(self) -> dict[str, dict[str, Reception]]:
        """How well media arrives: per source, what the node receives from the publisher
        (loss since the previous call, jitter); per output with subscribers, the median
        and the worst of what their receiver reports say (``<output>`` and
        ``<output>:worst``)."""
        sources: dict[str, Reception] = {}
        for sid, source in self._sources.items():
            reception = source.tap.reception() if source.tap is not None else None
            if reception is None:
                continue
            expected, received, jitter, clock_rate = reception
            meter = self._loss_meters.setdefault(sid, LossInterval())
            sources[sid] = Reception(
                loss=meter.read(expected, received), jitter_ms=1000 * jitter / clock_rate
            )
        for sid in list(self._loss_meters):
            if sid not in self._sources:
                del self._loss_meters[sid]
        outputs: dict[str, Reception] = {}
        for name, output in self._outputs.items():
            reports = [
                (slot.counters.fraction_lost / 256, slot.counters.jitter)
                for slot in output.slots
                if slot.receiving and slot.counters.packets and not isinstance(slot, LinkSlot)
            ]
            if not reports:
                continue
            clock_rate = 90000 if output.kind == "video" else 48000
            losses = sorted(loss for loss, _ in reports)
            jitters = sorted(jitter for _, jitter in reports)
            middle = len(reports) // 2
            outputs[name] = Reception(losses[middle], 1000 * jitters[middle] / clock_rate)
            outputs[f"{name}:worst"] = Reception(losses[-1], 1000 * jitters[-1] / clock_rate)
        return {"sources": sources, "outputs": outputs}

    @property
    def publisher_count(self) -> int:
        return len(self._publishers)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def output_counters(self) -> list[tuple[str, str, bool, OutputCounters]]:
        """Per output: name, kind, whether a source feeds it, its counters. Costs one
        step per output, whatever the number of subscribers (for the metrics endpoint)."""
        return [
            (name, output.kind, output.source is not None, output.counters)
            for name, output in self._outputs.items()
        ]

    def stats(self) -> dict[str, Any]:
        """Counters per publisher, source, output and subscriber (JSON-serialisable)."""
        return {
            "publishers": {
                pid: {
                    "connection": p.pc.connectionState,
                    "sources": [s.id for s in p.sources.values()],
                }
                for pid, p in self._publishers.items()
            },
            "sources": {
                sid: {"kind": s.kind, "publisher": s.publisher_id, **s.forwarder.counters.as_dict()}
                for sid, s in self._sources.items()
            },
            "outputs": {
                name: {
                    "kind": o.kind,
                    "source": o.source_id,
                    "live": o.source is not None,
                    "slots": sum(not isinstance(slot, LinkSlot) for slot in o.slots),
                    "links": sum(isinstance(slot, LinkSlot) for slot in o.slots),
                    **o.counters.as_dict(),
                }
                for name, o in self._outputs.items()
            },
            "subscribers": {
                sid: {
                    "connection": sub.pc.connectionState,
                    **sub.counters(),
                    "slots": {
                        name: {
                            "kind": slot.kind,
                            "output": slot.output.name,
                            "paused": slot.paused,
                            "ready": slot.ready,
                            "problem": slot.problem,
                            **slot.counter_values(),
                        }
                        for name, slot in sub.slots.items()
                    },
                }
                for sid, sub in self._subscribers.items()
            },
            "links": self._links.stats() if self._links is not None else None,
            "sender_reports": {
                "senders": len(self._reports),
                "sent": self._reports.sent,
                "refused": self._reports.refused,
                "errors": self._reports.errors,
                "wakeups": self._reports.wakeups,
            },
        }

    # -- internals --------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SfuClosed("the SFU is closed")

    def _peer_connection(
        self, bundle_policy: RTCBundlePolicy = RTCBundlePolicy.BALANCED
    ) -> RTCPeerConnection:
        if self._certificate.expires_within(CERTIFICATE_RENEWAL_S):
            # aiortc's certificates are valid 30 days; a node may run longer.
            self._certificate = NodeCertificate.generateCertificate()
        pc = node_peer_connection(
            self._certificate, rtc_configuration(self.config.ice_servers, bundle_policy)
        )
        # Before any transceiver: the hook also covers transports created later.
        restrict_ice(pc, self._host_addresses, self._ports)
        return pc

    def _output(self, name: str) -> Output:
        try:
            return self._outputs[name]
        except (KeyError, TypeError):
            raise UnknownOutput(str(name)) from None

    def _subscriber(self, subscriber_id: str) -> Subscriber:
        try:
            return self._subscribers[subscriber_id]
        except (KeyError, TypeError):
            raise UnknownSubscriber(str(subscriber_id)) from None

    def _add_source(self, source: Source) -> None:
        self._sources[source.id] = source
        for output in self._outputs.values():
            if output.source_id == source.id and output.kind == source.kind:
                output.bind(source)
        self._notify(self.on_source_added, source)

    def _remove_source(self, source: Source) -> None:
        if self._sources.get(source.id) is source:
            del self._sources[source.id]
        for output in self._outputs.values():
            if output.source is source:
                output.bind(None)  # keeps source_id: carried again if it comes back
        source.close()
        self._notify(self.on_source_removed, source)

    def _notify(self, callback: SourceCallback | None, source: Source) -> None:
        if callback is None:
            return
        try:
            callback(source.id, source.kind)
        except Exception:
            logger.exception("source callback failed for %s", source.id)

    async def _remove_publisher(self, publisher: Publisher) -> None:
        if not _unregister(self._publishers, publisher):
            return
        for source in publisher.sources.values():
            self._remove_source(source)
        await publisher.close()
        self.departed.left()
        logger.info("publisher %s closed", publisher.id)

    async def _remove_subscriber(self, subscriber: Subscriber) -> None:
        if _unregister(self._subscribers, subscriber):
            await subscriber.close()
            self.departed.left()

    def _watch(self, pc: RTCPeerConnection, on_failed: Callable[[], Any]) -> None:
        @pc.on("connectionstatechange")
        def changed() -> None:
            # "closed" without our asking: the peer shut DTLS down (tab closed).
            if pc.connectionState in ("failed", "closed") and not self._closed:
                task = asyncio.ensure_future(on_failed())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _publisher_failed(self, publisher: Publisher) -> None:
        logger.info("publisher %s lost its connection", publisher.id)
        await self._remove_publisher(publisher)

    async def _subscriber_failed(self, subscriber: Subscriber) -> None:
        logger.info("subscriber %s lost its connection", subscriber.id)
        await self._remove_subscriber(subscriber)
