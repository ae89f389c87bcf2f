"""Nobody left in silence: which interpreter takes a channel whose voice went quiet.

The node sees every publisher's packets arrive (`streamer.SourceActivity`). When the
interpreter on air has sent nothing for `STALLED_AFTER_S` (his browser died, his
network dropped, his page is reloading), waiting for ICE to give up would leave the
channel silent for many seconds. Instead:

- a partner of the booth whose microphone is live (his page keeps it published while
  off air, so he is ready) takes the channel at once, for good: the one who dropped
  asks for a handover when he is back, like anyone off air;
- if nobody is ready, the one who dropped stays on air, the channel carries the event's
  fallback while his voice is missing (the routing rule leaves out a *stalled* booth),
  and his voice is back on the channel as soon as it returns; a partner who becomes
  ready meanwhile takes over.

This module decides; the live service measures the silences and acts.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from signaling.booth import BoothStatus
from streamer import SourceActivity

#: No packet from a publisher for this long: his media has stopped.
STALLED_AFTER_S = 1.0


def is_live(activity: SourceActivity | None, stalled_after: float = STALLED_AFTER_S) -> bool:
    """Whether a source is sending now (a source that never arrived is not)."""
    return activity is not None and activity.packet_age < stalled_after


@dataclass(frozen=True)
class FailoverDecision:
    booth: str
    lost: str  # the interpreter on air whose voice is missing
    to: str | None  # the partner to put on air; None: nobody is ready (the fallback)


def decide_failovers(
    booths: Iterable[BoothStatus],
    microphone: Mapping[str, Mapping[str, SourceActivity | None]],
    silent_for: Mapping[str, float],
    waiting: Collection[str] = (),
    stalled_after: float = STALLED_AFTER_S,
) -> list[FailoverDecision]:
    """The failovers due now.

    `microphone[booth][interpreter]`: each interpreter's microphone activity (None: not
    publishing); `silent_for[booth]`: for how long the booth's interpreter on air has
    sent nothing; `waiting`: booths already falling back because nobody was ready
    (only a partner becoming ready changes anything there).
    """
    decisions = []
    for status in booths:
        on_air = status.on_air
        if on_air is None or silent_for.get(status.booth, 0.0) < stalled_after:
            continue
        mics = microphone.get(status.booth, {})
        partners = [
            i.id
            for i in status.interpreters
            if i.id != on_air and i.connected and is_live(mics.get(i.id), stalled_after)
        ]
        if status.booth in waiting and not partners:
            continue
        decisions.append(
            FailoverDecision(booth=status.booth, lost=on_air, to=partners[0] if partners else None)
        )
    return decisions
