"""The forwarding loop: one incoming RTP packet out to every subscriber slot.

Runs inside the publisher's DTLS receive loop (called by the receiver tap),
or, for an output pulled from another node, inside the node link's datagram
callback (streamer/node_link.py), so a packet leaves for every subscriber
before the next one is read: no queue, no task, no decoding. Per packet, the
work that is the same for every subscriber (clock readings, keyframe test,
header-extension values) is done once; per subscriber slot, only what must
differ: a 16-byte header (its SSRC, payload type, rebased sequence number and
timestamp), a byte splice, SRTP and the socket's send.

Before any of that, the source's `SequenceWindow` drops a packet already
forwarded (a network duplicate, or a retransmission of a packet that arrived
after all) or too late to matter, once for every subscriber. Each slot then
drops what is older than its anchor (streamer/rtp_rewriter.py) and, for VP8,
shifts picture ids so they continue across switches (streamer/vp8_munger.py).

A video slot that joins or switches starts on a keyframe. Jitter reorders the packets
of one frame, which leave the publisher back to back: packets of the keyframe that
overtook its first one are kept (the last `RECENT_VIDEO_PACKETS` of the source) and
sent right after it, or the subscriber would get a keyframe with a hole and wait
for the next one. A source that resumes after a silence (its publisher's network
came back) is asked for a keyframe at once, for subscribers stuck on its last frame,
and again until one comes (the request itself may be lost).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .activity import SOUND_LEVEL_DBOV
from .aiortc_internals import RtpPacket, ntp_time
from .keyframes import KeyframeThrottle, is_keyframe_start
from .sequence_window import SequenceWindow
from .stats import SourceCounters
from .vp8_munger import Vp8Descriptor, parse_descriptor

if TYPE_CHECKING:
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from .output import Output
    from .subscriber import Slot

logger = logging.getLogger(__name__)

#: Video packets a source keeps to complete a keyframe whose first packet was overtaken:
#: a keyframe of 1 Mbit/s video is a few dozen packets.
RECENT_VIDEO_PACKETS = 64
#: A video source silent this long then sending again is asked for a keyframe.
RESUMED_AFTER_S = 0.5

#: Asks upstream for a keyframe (the argument: `urgent`, see `request_keyframe`); False if
#: it could not be asked.
UpstreamRequest = Callable[[bool], Awaitable[bool]]


class Forwarder:
    """Fans one source's packets out to the outputs pointing at it."""

    def __init__(self, kind: str, request_upstream: UpstreamRequest) -> None:
        self.kind = kind
        self.outputs: tuple[Output, ...] = ()
        self.counters = SourceCounters()
        self._request_upstream = request_upstream
        self._throttle = KeyframeThrottle()
        self._ssrc: int | None = None
        # Identity of the incoming stream; replaced when the publisher's SSRC
        # changes, so every slot re-anchors its sequence numbers.
        self._stream = object()
        self._window = SequenceWindow()
        self._mimes: dict[int, str] = {}
        self._closed = False
        # Monotonic times of the last packet and of the last one carrying sound
        # (0.0: never); `has_levels` once a packet carried an audio level.
        self.last_packet_at = 0.0
        self.last_sound_at = 0.0
        self.has_levels = False
        # A video source resumed after a silence and no keyframe has come since.
        self._resumed_without_keyframe = False
        # Video: (extended seq, timestamp, marker, payload) of the latest packets.
        self._recent: deque[tuple[int, int, int, bytes]] = deque(maxlen=RECENT_VIDEO_PACKETS)

    def add_output(self, output: Output) -> None:
        if output not in self.outputs:
            self.outputs = (*self.outputs, output)

    def remove_output(self, output: Output) -> None:
        self.outputs = tuple(o for o in self.outputs if o is not output)

    async def request_keyframe(self, *, urgent: bool = False) -> None:
        """Ask the publisher for a keyframe, within the limits of `KeyframeThrottle`.

        `urgent`: a slot joined or switched and shows nothing until one comes;
        otherwise a subscriber lost a picture.
        """
        if self.kind != "video" or self._closed:
            return
        if self._throttle.due(time.monotonic(), urgent=urgent):
            if await self._request_upstream(urgent):
                self.counters.keyframe_requests += 1

    def close(self) -> None:
        self._closed = True
        self.outputs = ()

    async def handle(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        """Forward one packet, then ask the publisher for a keyframe if a slot needs one."""
        if self.forward(packet, codec):
            await self.request_keyframe(urgent=True)

    def forward(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> bool:
        """Forward one packet to every slot; True if a keyframe should be asked for now.

        Synchronous, so that a caller on a datagram callback (a node link) forwards
        without a task per packet and asks for the keyframe its own way.
        """
        payload = packet.payload
        size = len(payload)
        counters = self.counters
        counters.packets += 1
        counters.bytes += size
        wall = time.monotonic()
        if bool(self.last_packet_at) and wall - self.last_packet_at > RESUMED_AFTER_S:
            # Kept until a keyframe comes: the request may be lost on the way (a lossy
            # uplink, a node link), and subscribers on a frozen picture may never ask.
            self._resumed_without_keyframe = self.kind == "video"
        self.last_packet_at = wall
        level = None
        if self.kind == "audio":
            level = packet.extensions.audio_level
            if level is not None:
                self.has_levels = True
                if level[1] < SOUND_LEVEL_DBOV:
                    self.last_sound_at = wall
        if packet.ssrc != self._ssrc:
            self._ssrc = packet.ssrc
            self._stream = object()
            self._window = SequenceWindow()
        # Every packet goes through the window, listened to or not, so that it is
        # never stale when an output starts pointing here.
        window = self._window
        seq = window.accept(packet.sequence_number)
        if seq is None:
            counters.duplicates = window.duplicates
            counters.too_late = window.too_late
            return False
        marker = 0x80 if packet.marker else 0
        ts = packet.timestamp
        outputs = self.outputs
        if self.kind == "video":
            # Kept whether listened to or not: a slot may start on this frame's keyframe.
            self._recent.append((seq, ts, marker, payload))
        if not outputs:
            return False

        pt_in = packet.payload_type
        mime = self._mimes.get(pt_in)
        if mime is None:
            mime = self._mimes[pt_in] = codec.mimeType.lower()
        stream = self._stream
        ntp = ntp_time(time.time())
        clock_rate = codec.clockRate
        vp8 = None
        if self.kind == "video":
            if mime == "video/vp8":
                vp8 = parse_descriptor(payload)
                keyframe = vp8 is not None and vp8.keyframe_start
            else:
                keyframe = is_keyframe_start(mime, payload)
            if keyframe:
                self._throttle.keyframe_arrived()
                self._resumed_without_keyframe = False
            # abs-send-time: 6.18 fixed-point seconds, from the NTP clock.
            value = ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big")
        else:
            keyframe = True
            value = bytes(((0x80 if level[0] else 0) | (level[1] & 0x7F),)) if level else b""
        tail_header: bytes | None = None
        tail = b""
        want_keyframe = False

        for output in outputs:
            output_counters = output.counters
            output_counters.packets += 1
            output_counters.bytes += size
            if output.taps and self._tap(output, stream, codec, seq, ts, marker, payload, wall):
                want_keyframe = True
            for slot in output.sinks:
                try:
                    pt = slot.payload_types.get(mime)
                    if pt is None:
                        slot.counters.unsupported_codec += 1
                        continue
                    starting = slot.awaiting_keyframe
                    if starting:
                        if not keyframe:
                            want_keyframe = True
                            continue
                        slot.awaiting_keyframe = False
                    if slot.tail_header is not tail_header:
                        tail_header = slot.tail_header
                        # Without a value, the rewriter zero-pads: padding keeps the layout.
                        tail = tail_header + value if tail_header and value else b""
                    # `_send` written out: this runs for every copy of every packet.
                    rewriter = slot.rewriter
                    header = rewriter.rewrite(stream, marker | pt, seq, ts, wall, clock_rate, tail)
                    if header is None:
                        slot.counters.before_anchor += 1
                    else:
                        sent = payload if vp8 is None else slot.vp8.munge(vp8, payload)
                        data = header + sent
                        if slot.link.send(data, rewriter.ts, ntp, size):
                            slot_counters = slot.counters
                            slot_counters.packets += 1
                            slot_counters.bytes += len(data)
                            history = slot.history
                            if history is not None:
                                history.store(header[2] << 8 | header[3], header, sent)
                    if starting:
                        self._send_overtaken(
                            slot, stream, pt, seq, ts, wall, clock_rate, tail, ntp, vp8 is not None
                        )
                except Exception:
                    # One subscriber's failure must not stop the others, nor the
                    # publisher's receive loop this runs in.
                    slot.counters.errors += 1
                    if slot.counters.errors == 1:
                        logger.exception("forwarding to slot %r failed", slot.name)

        # Asked for again (throttled: `KEYFRAME_PENDING_S`) until it comes.
        return want_keyframe or self._resumed_without_keyframe

    def _tap(
        self,
        output: Output,
        stream: object,
        codec: RTCRtpCodecParameters,
        seq: int,
        ts: int,
        marker: int,
        payload: bytes,
        wall: float,
    ) -> bool:
        """Hand the packet to the output's taps; True if one of them waits for a keyframe."""
        wants = False
        for tap in output.taps:
            try:
                wants = tap.on_packet(stream, codec, seq, ts, bool(marker), payload, wall) or wants
            except Exception:
                # A recording's trouble must never reach the live event.
                logger.exception("a tap of output %r failed", output.name)
        return wants

    def _send(
        self,
        slot: Slot,
        stream: object,
        marker_pt: int,
        seq: int,
        ts: int,
        wall: float,
        clock_rate: int,
        tail: bytes,
        payload: bytes,
        vp8: Vp8Descriptor | None,
        ntp: int,
    ) -> None:
        """One packet to one slot: its header, its picture ids, SRTP, the socket, history.

        (`forward` has this written out for its own loop: keep both alike.)
        """
        rewriter = slot.rewriter
        header = rewriter.rewrite(stream, marker_pt, seq, ts, wall, clock_rate, tail)
        if header is None:
            slot.counters.before_anchor += 1
            return
        sent = payload if vp8 is None else slot.vp8.munge(vp8, payload)
        data = header + sent
        if slot.link.send(data, rewriter.ts, ntp, len(payload)):
            slot_counters = slot.counters
            slot_counters.packets += 1
            slot_counters.bytes += len(data)
            history = slot.history
            if history is not None:
                history.store(header[2] << 8 | header[3], header, sent)

    def _send_overtaken(
        self,
        slot: Slot,
        stream: object,
        pt: int,
        seq: int,
        ts: int,
        wall: float,
        clock_rate: int,
        tail: bytes,
        ntp: int,
        is_vp8: bool,
    ) -> None:
        """After a keyframe's first packet, the packets of that frame that arrived before it."""
        overtaken = sorted(entry for entry in self._recent if entry[1] == ts and entry[0] > seq)
        for later_seq, _, marker, payload in overtaken:
            vp8 = parse_descriptor(payload) if is_vp8 else None
            self._send(
                slot, stream, marker | pt, later_seq, ts, wall, clock_rate, tail, payload, vp8, ntp
            )
