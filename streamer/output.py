"""Named outputs: the streams subscribers receive, each pointing at a source or none.

An output (`program-video`, `floor`, a language channel...) is what the
control plane re-points when a speaker or interpreter changes. It remembers
the source it was pointed at even while that source's publisher is gone, and
carries it again as soon as the publisher comes back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .stats import OutputCounters

if TYPE_CHECKING:
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from .source import Source
    from .subscriber import Slot


class OutputTap(Protocol):
    """Something that sees every packet an output carries, as its subscribers get it
    (a recording, an HLS packager). Called in the forwarding loop: it must be quick."""

    def on_packet(
        self,
        stream: object,
        codec: RTCRtpCodecParameters,
        seq: int,
        timestamp: int,
        marker: bool,
        payload: bytes,
        wall: float,
    ) -> bool:
        """One packet (`stream`: identity of the incoming RTP stream, new on every
        switch; `seq`: extended sequence number; `wall`: monotonic arrival time).
        Returns True when the tap needs a keyframe to go on (video)."""
        ...


@dataclass(eq=False)
class Output:
    """One named stream and the subscriber slots attached to it."""

    name: str
    kind: str
    source_id: str | None = None
    source: Source | None = None
    slots: set[Slot] = field(default_factory=set)
    # Slots that get packets right now (negotiated and not paused): the hot loop's list,
    # rebuilt from `_receiving` (ordered like a set, kept one slot at a time).
    sinks: tuple[Slot, ...] = ()
    _receiving: dict[Slot, None] = field(default_factory=dict)
    counters: OutputCounters = field(default_factory=OutputCounters)
    # Recordings and packagers listening to this output, whatever its source.
    taps: tuple[OutputTap, ...] = ()

    def bind(self, source: Source | None) -> None:
        """Carry `source` (a live source, or None for nothing) from the next packet on."""
        if source is self.source:
            return
        if self.source is not None:
            self.source.forwarder.remove_output(self)
        self.source = source
        if source is not None:
            source.forwarder.add_output(self)
        self.counters.switches += 1
        for slot in self.slots:
            slot.restart()

    def attach(self, slot: Slot) -> None:
        self.slots.add(slot)
        self.refresh(slot)

    def detach(self, slot: Slot) -> None:
        self.slots.discard(slot)
        self.refresh(slot)

    def add_tap(self, tap: OutputTap) -> None:
        if tap not in self.taps:
            self.taps = (*self.taps, tap)

    def remove_tap(self, tap: OutputTap) -> None:
        self.taps = tuple(t for t in self.taps if t is not tap)

    def refresh(self, slot: Slot) -> None:
        """`slot` was attached, detached, started, paused or resumed: update the hot
        loop's list. One slot's state is read, not every slot's: a join wave of N
        subscribers on one output costs N small updates, not N walks over N slots."""
        receiving = slot.receiving and slot in self.slots
        if receiving == (slot in self._receiving):
            return
        if receiving:
            self._receiving[slot] = None
        else:
            del self._receiving[slot]
        self.sinks = tuple(self._receiving)

    async def request_keyframe(self, *, urgent: bool = False) -> None:
        """A subscriber of this output lost a picture: ask the current publisher
        (loss-driven, so at most once a second per source; see streamer/keyframes.py).
        `urgent`: a subscriber behind a node link joined and shows nothing until one."""
        self.counters.keyframe_requests += 1
        if self.source is not None:
            await self.source.forwarder.request_keyframe(urgent=urgent)
