"""Subscribers: one peer connection, several slots, each fed by an output.

The server offers: one sendonly transceiver per slot, negotiated once. A slot
can then be re-pointed at another output of its kind (a language switch) or
paused (nothing is sent on it) without touching SDP. Each slot rewrites the
packets it is fed into its own continuous stream, keeps a history to answer
NACKs, and relays picture-loss reports to whatever publisher it is watching.

Once the subscriber is connected, a slot whose sender aiortc did not start is
started here, or, when it cannot be (the subscriber refused the section), its
problem is logged and shown in the stats instead of the slot staying silently dead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription

from .aiortc_internals import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    HeaderExtensionsMap,
    NegotiatedSend,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    SenderLink,
    add_sendonly_transceiver,
    rtx_packet,
    set_stream_id,
    start_skipped_sender,
)
from .errors import UnknownSlot
from .history import PacketHistory
from .negotiation import (
    ABS_SEND_TIME_URI,
    AUDIO_LEVEL_URI,
    MID_URI,
    VideoCodec,
    codec_preferences,
)
from .rtp_rewriter import RtpRewriter
from .sender_reports import SenderReports
from .stats import SlotCounters
from .vp8_munger import Vp8Munger

if TYPE_CHECKING:
    from aiortc.rtp import AnyRtcpPacket

    from .output import Output

logger = logging.getLogger(__name__)

#: Keyframe requests on their way to a publisher, held until sent.
_keyframe_requests: set[asyncio.Future[None]] = set()

# aiortc starts every sender on a bundled transport in the same step as DTLS
# connects; a slot still unstarted after this long was skipped.
START_GRACE_S = 0.5


class Slot:
    """One outgoing stream of a subscriber, fed by one output at a time."""

    def __init__(self, name: str, kind: str, output: Output) -> None:
        self.name = name
        self.kind = kind
        self.output = output
        self.paused = False
        self.ready = False
        self.closed = False
        self.counters = SlotCounters()
        # Attached by open_subscriber (the link calls back into this slot).
        self.link: SenderLink = None  # type: ignore[assignment]
        self.transceiver: RTCRtpTransceiver = None  # type: ignore[assignment]
        # Why this slot carries nothing although the subscriber is connected.
        self.problem: str | None = None
        # The rest is known once aiortc starts the sender with what was negotiated.
        self.payload_types: dict[str, int] = {}
        self.rtx_payload_types: dict[int, int] = {}
        self.extension_head = b""
        self.tail_header = b""
        self.tail_length = 0
        self.rewriter: RtpRewriter = None  # type: ignore[assignment]
        self.history: PacketHistory | None = None
        self.vp8 = Vp8Munger()
        self.awaiting_keyframe = kind == "video"
        self._rtx_seq = random.randrange(0, 0x8000)
        self._header_extensions = HeaderExtensionsMap()  # the negotiated ones, from `start`

    @property
    def receiving(self) -> bool:
        return self.ready and not self.paused and not self.closed

    def start(self, negotiated: NegotiatedSend) -> None:
        """aiortc started the sender: learn what may be sent, then start feeding."""
        ids = negotiated.extension_ids
        self._header_extensions = negotiated.header_extensions
        mid = (negotiated.mid or "").encode()
        mid_id = ids.get(MID_URI)
        head = b""
        if mid_id and 0 < len(mid) <= 16:
            head = bytes(((mid_id << 4) | (len(mid) - 1),)) + mid
        if self.kind == "audio":
            tail_id, value_length = ids.get(AUDIO_LEVEL_URI), 1
        else:
            tail_id, value_length = ids.get(ABS_SEND_TIME_URI), 3
        if tail_id:
            self.tail_header = bytes(((tail_id << 4) | (value_length - 1),))
            self.tail_length = 1 + value_length
        length = len(head) + self.tail_length
        # Zero bytes between one-byte extension elements are padding (RFC 8285).
        padding = -length % 4
        self.extension_head = head + bytes(padding)
        self.payload_types = negotiated.payload_types
        self.rtx_payload_types = negotiated.rtx_payload_types
        self.rewriter = RtpRewriter(
            self.link.ssrc, (length + padding) // 4, self.extension_head, self.tail_length
        )
        self.history = PacketHistory() if negotiated.nack else None
        self.ready = True
        self.output.refresh(self)

    def point(self, output: Output) -> None:
        if output is self.output:
            return
        self.output.detach(self)
        self.output = output
        output.attach(self)
        self.restart()

    def pause(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        if not paused:
            self.restart()
        if self.link is not None:
            self.link.pause_reports(paused)
        self.output.refresh(self)

    def restart(self) -> None:
        """A new stretch begins: re-anchor numbering; video waits for a keyframe."""
        if self.rewriter is not None:
            self.rewriter.reanchor()
        self.vp8.reanchor()
        self.awaiting_keyframe = self.kind == "video"

    def handle_rtcp(self, packet: AnyRtcpPacket) -> bool:
        """RTCP from the subscriber about this slot (called from the datagram callback:
        it must not wait); True if nothing is left for the link to do."""
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self._retransmit(packet.lost)
            return True
        if isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                self.counters.keyframe_requests += 1
                if self.kind == "video":
                    request = asyncio.ensure_future(self.output.request_keyframe())
                    _keyframe_requests.add(request)
                    request.add_done_callback(_keyframe_requests.discard)
            # REMB (and anything else) would only tune an encoder that does not run here.
            return True
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == self.link.ssrc:
                    self.counters.packets_lost = report.packets_lost
                    self.counters.fraction_lost = report.fraction_lost
                    self.counters.jitter = report.jitter
        # Receiver reports also feed the link's round-trip estimate.
        return False

    def _retransmit(self, lost: list[int]) -> None:
        counters = self.counters
        counters.nacked += len(lost)
        history = self.history
        if history is None or not self.ready:
            return
        for seq in lost:
            sent = history.get(seq)
            if sent is None:
                continue
            header, payload = sent
            rtx_pt = self.rtx_payload_types.get(header[1] & 0x7F)
            if rtx_pt is None:
                packet = header + payload
            else:
                packet = rtx_packet(
                    header + payload,
                    self._header_extensions,
                    rtx_pt,
                    self._rtx_seq,
                    self.link.rtx_ssrc,
                )
                self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            if self.link.send_unaccounted(packet):
                counters.retransmitted += 1

    def counter_values(self) -> dict[str, int]:
        """This slot's counters, and the packets its socket refused (`dropped`)."""
        values = self.counters.as_dict()
        values["dropped"] = self.link.dropped if self.link is not None else 0
        return values

    def close(self) -> None:
        self.closed = True
        self.output.detach(self)
        if self.link is not None:
            self.link.close()
        if self.history is not None:
            self.history.clear()


@dataclass(eq=False)
class Subscriber:
    """One receiving peer and its slots."""

    id: str
    pc: RTCPeerConnection
    slots: dict[str, Slot] = field(default_factory=dict)
    answered: bool = False
    closing: bool = False
    # The delayed look for senders aiortc skipped; close() cancels it.
    _start_check: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def slot(self, name: str) -> Slot:
        try:
            return self.slots[name]
        except KeyError:
            raise UnknownSlot(f"{self.id}/{name}") from None

    async def close(self) -> None:
        if self._start_check is not None:
            self._start_check.cancel()
        for slot in self.slots.values():
            slot.close()
        await self.pc.close()

    def check_started_once_connected(self) -> None:
        """When the connection is up, start (or report) every slot aiortc left unstarted."""

        @self.pc.on("connectionstatechange")
        def changed() -> None:
            if self.pc.connectionState == "connected" and self._start_check is None:
                self._start_check = asyncio.ensure_future(self._start_skipped())

    async def _start_skipped(self) -> None:
        await asyncio.sleep(START_GRACE_S)
        for slot in self.slots.values():
            if slot.ready or slot.closed or self.closing:
                continue
            if slot.link.started:
                problem = slot.link.failure or "its sender started, yet the slot did not"
            else:
                try:
                    problem = await start_skipped_sender(self.pc, slot.transceiver)
                except Exception as exc:
                    problem = f"starting its sender failed: {exc!r}"
                if problem is None:
                    logger.warning(
                        "subscriber %s: aiortc had not started slot %s; started it",
                        self.id,
                        slot.name,
                    )
                    problem = slot.link.failure
            if problem is not None:
                slot.problem = problem
                logger.warning(
                    "subscriber %s: slot %s carries nothing: %s", self.id, slot.name, problem
                )

    def counters(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for slot in self.slots.values():
            for key, value in slot.counter_values().items():
                if key not in ("fraction_lost", "jitter"):
                    total[key] = total.get(key, 0) + value
        return total


async def open_subscriber(
    subscriber_id: str,
    outputs: dict[str, Output],
    pc: RTCPeerConnection,
    streams: Mapping[str, str] | None = None,
    *,
    reports: SenderReports,
    on_rtcp_error: Callable[[], None] = lambda: None,
    video_codec: VideoCodec = "vp8",
) -> tuple[Subscriber, RTCSessionDescription]:
    """Create the slots and the server's offer (one sendonly section per slot).

    `streams` (slot name -> stream name) puts slots in one media stream (msid),
    which the subscriber keeps in sync: a speaker's video and voice, for lip sync.
    Every other slot is a stream of its own. `reports` sends every slot's RTCP
    sender reports (one scheduler for the node).
    """
    subscriber = Subscriber(id=subscriber_id, pc=pc)
    try:
        for name, output in outputs.items():
            slot = Slot(name, output.kind, output)
            transceiver = add_sendonly_transceiver(pc, output.kind)
            transceiver.setCodecPreferences(codec_preferences(output.kind, video_codec))
            # aiortc puts every track added to a connection in one stream: the browser
            # would sync the video with whichever audio it finds first.
            set_stream_id(transceiver.sender, (streams or {}).get(name) or str(uuid.uuid4()))
            slot.link = SenderLink(
                transceiver.sender, slot.start, slot.handle_rtcp, reports, on_rtcp_error
            )
            slot.transceiver = transceiver
            subscriber.slots[name] = slot
            output.attach(slot)
        subscriber.check_started_once_connected()
        await pc.setLocalDescription(await pc.createOffer())
    except BaseException:
        # Slots already attached would stay on their outputs, fed and never sent.
        await subscriber.close()
        raise
    return subscriber, pc.localDescription
