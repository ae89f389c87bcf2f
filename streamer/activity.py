"""What the node can tell about a stream without decoding it: is it arriving, does it
carry sound, and how well does it arrive.

- A source's packets stopping for a second means its publisher's browser or network
  died, long before ICE gives up on the connection.
- Audio packets carry the sender's own level measurement (RFC 6464's audio-level
  header extension): a channel that carries only near-silence while the floor
  carries speech is dead air, seen without decoding a sample.
- Loss and jitter come from RTCP: what the node measures on the streams it receives
  from publishers, and what subscribers report in their receiver reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: A packet whose audio level is louder than this (in -dBov, RFC 6464: 0 is the
#: loudest, 127 silence) carries sound. Speech is usually -20 to -40 dBov; a quiet
#: booth's background stays below -55.
SOUND_LEVEL_DBOV = 50


@dataclass(frozen=True, slots=True)
class SourceActivity:
    """How recently one source's packets, and its sound, arrived."""

    kind: str
    packet_age: float  # seconds since its last packet (inf: none yet)
    #: Seconds since its last packet louder than `SOUND_LEVEL_DBOV` (inf: none yet);
    #: None when its packets carry no audio level (video, or a sender that omits it).
    sound_age: float | None


@dataclass(frozen=True, slots=True)
class Reception:
    """How well a stream arrives: its loss over the last interval and its jitter."""

    loss: float  # fraction of the packets expected that did not arrive, 0..1
    jitter_ms: float


class LossInterval:
    """Fraction lost between two readings of cumulative expected/received counts (the
    way RTCP receiver reports compute it), without disturbing anyone else's counters."""

    __slots__ = ("_expected", "_received")

    def __init__(self) -> None:
        self._expected = 0
        self._received = 0

    def read(self, expected: int, received: int) -> float:
        expected_now = expected - self._expected
        received_now = received - self._received
        self._expected, self._received = expected, received
        if expected_now <= 0:
            return 0.0
        return max(0.0, min(1.0, (expected_now - received_now) / expected_now))


def age(now: float, then: float) -> float:
    """Seconds from `then` to `now`; infinite if `then` never happened (0.0)."""
    return now - then if then else math.inf
