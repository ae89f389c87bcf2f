"""Losses on a node link, repaired: what an edge asks its origin for again, and what it
does with what comes back.

The edge forwards each packet of a pulled output the moment it arrives
(streamer/node_link.py): a gap holds nothing up. A packet newer than any before it
shows which numbers are missing; the edge asks the origin for each of them once (a
`nack` message), and the origin sends them again from the history of its link slot
(`Slot._retransmit`). Whatever fills a gap later, the retransmission or the original
overtaken on the way, is forwarded when it comes, and each subscriber's jitter buffer
puts it back in its place.

Audio has a deadline. A listener's buffer plays a packet a few tens of milliseconds
after it was due and conceals it if it is not there; a repair later than `within_s`
after its packet was due would come after the concealment, and would teach the
buffer that the path is slower than it is (it grows to wait for such packets), adding
delay for nothing: it is dropped, and a number is not asked for once its repair could
only come too late (after an outage, only the end of the gap is asked for). When a
lost packet was due is estimated from the arrivals around the gap: the packets sent in
between would have arrived evenly spread between them. Video has no deadline: a frame
waits for all its packets, as the browser's own NACKs do, and a late one completes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

#: Numbers one gap may ask for (what one `nack` message carries).
MAX_ASKED = 64
#: Missing numbers remembered (the oldest are forgotten first).
MAX_MISSING = 256
#: Audio: a repair arriving later than this after its packet was due is dropped. A
#: listener's buffer holds some tens of ms; a repair on a path of a few ms arrives
#: about one packet (20 ms) after its packet was due.
AUDIO_REPAIR_WITHIN_S = 0.1
#: With a deadline, a missing number is remembered this long after its packet was due,
#: so that a packet later still is known for too late rather than taken for a copy.
FORGET_AFTER_S = 2.0

_NOTHING: tuple[int, ...] = ()


class Arrival(IntEnum):
    """What a packet is, seen from the gaps of its stream."""

    NEWEST = 0  # newer than anything before it (perhaps after a gap)
    REPAIRED = 1  # a missing number, in time: forwarded
    TOO_LATE = 2  # a missing number past the deadline: dropped
    OLDER = 3  # older and not missing (a copy, or forgotten): the source's window decides


@dataclass(frozen=True, slots=True)
class RepairPolicy:
    """How one kind of media is repaired on a link."""

    #: A repair arriving later than this after its packet was due is dropped (and a
    #: number not asked for once its repair could only come later); None: no deadline.
    within_s: float | None

    def __post_init__(self) -> None:
        if self.within_s is not None and not self.within_s > 0:
            raise ValueError(f"within_s is a positive number of seconds, not {self.within_s}")


AUDIO_REPAIR = RepairPolicy(within_s=AUDIO_REPAIR_WITHIN_S)
VIDEO_REPAIR = RepairPolicy(within_s=None)


class LinkLosses:
    """Edge side, one pulled output's stream: its missing numbers and when each was due."""

    __slots__ = ("_arrived_at", "_highest", "_missing", "policy")

    def __init__(self, policy: RepairPolicy) -> None:
        self.policy = policy
        self._highest: int | None = None  # sequence number of the newest packet
        self._arrived_at = 0.0  # when it arrived
        # Missing number -> when its packet was due (monotonic), oldest first.
        self._missing: dict[int, float] = {}

    def arrived(self, seq: int, now: float) -> tuple[Arrival, tuple[int, ...]]:
        """Take one packet's sequence number, arrived at `now`: what it is, and the
        numbers to ask for now (those it shows missing; each is asked for once)."""
        highest = self._highest
        if highest is None:
            self._highest, self._arrived_at = seq, now
            return Arrival.NEWEST, _NOTHING
        delta = (seq - highest) & 0xFFFF
        if 0 < delta < 0x8000:
            previous_at = self._arrived_at
            self._highest, self._arrived_at = seq, now
            if delta == 1:
                return Arrival.NEWEST, _NOTHING
            return Arrival.NEWEST, self._gap(highest, delta, previous_at, now)
        due = self._missing.pop(seq, None)
        if due is None:
            return Arrival.OLDER, _NOTHING
        within = self.policy.within_s
        if within is not None and now - due > within:
            return Arrival.TOO_LATE, _NOTHING
        return Arrival.REPAIRED, _NOTHING

    def _gap(self, before: int, delta: int, before_at: float, now: float) -> tuple[int, ...]:
        """Note the numbers between `before` and the packet `delta` after it as missing;
        those to ask for."""
        missing = self._missing
        within = self.policy.within_s
        spacing = (now - before_at) / delta
        asked: list[int] = []
        for k in range(max(1, delta - MAX_MISSING), delta):
            due = before_at + k * spacing
            number = (before + k) & 0xFFFF
            missing.pop(number, None)  # a number from 65536 packets ago: forgotten
            missing[number] = due
            if within is None or now - due < within:
                asked.append(number)
        self._forget(now)
        return tuple(asked[-MAX_ASKED:])

    def _forget(self, now: float) -> None:
        missing = self._missing
        while len(missing) > MAX_MISSING:
            del missing[next(iter(missing))]
        if self.policy.within_s is not None:
            for number, due in list(missing.items()):
                if now - due <= FORGET_AFTER_S:
                    break
                del missing[number]
