"""Arrival order of one incoming RTP stream: unwrapped numbers, duplicates dropped.

Real networks duplicate, reorder and delay packets, and the publisher answers
our NACKs with retransmissions of packets that may have arrived after all. A
packet that has already been forwarded must never be forwarded again: every
subscriber slot would number it a second time, its NACK history would hold
two contents under one number, and SRTP would protect two packets under one
index. This window decides once per packet, for every subscriber at once.

It also unwraps the 16-bit sequence number into a number that only grows with
the stream (an *extended* sequence number), so that subscriber slots can tell
"older than where I started" by a plain comparison, however long the stream runs.
"""

from __future__ import annotations

#: How far behind the newest packet a late packet is still forwarded. About two
#: seconds of video, and as deep as a slot's NACK history (streamer/history.py):
#: a packet later than this could no longer be repaired anyway.
WINDOW = 512


class SequenceWindow:
    """Extended sequence numbers of one stream, each handed out once."""

    __slots__ = ("_highest", "_seen", "duplicates", "too_late")

    def __init__(self) -> None:
        self._highest: int | None = None  # extended number of the newest packet
        # Bit i set: packet `_highest - i` has been accepted.
        self._seen = 0
        self.duplicates = 0
        self.too_late = 0

    def accept(self, seq: int) -> int | None:
        """The packet's extended sequence number, or None to drop it (already seen, too late)."""
        highest = self._highest
        if highest is None:
            self._highest = seq
            self._seen = 1
            return seq
        delta = (seq - highest) & 0xFFFF
        if delta and delta < 0x8000:
            # Newer than anything so far (a gap means packets lost or still on their way).
            extended = highest + delta
            self._highest = extended
            self._seen = ((self._seen << delta) | 1) & _MASK if delta < WINDOW else 1
            return extended
        behind = (0x10000 - delta) & 0xFFFF
        if behind >= WINDOW or behind > highest:
            self.too_late += 1
            return None
        bit = 1 << behind
        if self._seen & bit:
            self.duplicates += 1
            return None
        self._seen |= bit
        return highest - behind


_MASK = (1 << WINDOW) - 1
