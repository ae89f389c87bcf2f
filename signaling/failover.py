"""Nobody left in silence: which interpreter takes a channel whose voice went quiet.

The node sees every publisher's packets arrive (`streamer.SourceActivity`). When the
interpreter on air stops sending for `STALLED_AFTER_S` (his browser died, his network
dropped), waiting for ICE to give up would leave the channel silent for many seconds.
Instead the channel goes at once to a partner of the booth whose microphone is live
(his page keeps it published while off air, so he is ready), else to the event's
fallback through the routing rule. This module decides; the live service acts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
    lost: str  # the interpreter on air whose media stopped
    to: str | None  # the partner to put on air; None: nobody (the fallback takes over)


def decide_failovers(
    booths: Iterable[BoothStatus],
    microphone: Mapping[str, Mapping[str, SourceActivity | None]],
    was_live: Mapping[str, bool],
    stalled_after: float = STALLED_AFTER_S,
) -> list[FailoverDecision]:
    """The failovers due now.

    `microphone[booth][interpreter]`: the activity of each interpreter's microphone
    (None: not publishing). `was_live[booth]`: whether the booth's interpreter on air was
    sending at the previous look. Only a voice that *stops* triggers a failover: an
    interpreter restored on air after a restart who has not come back yet is left to
    the routing rule's fallback and to his partner's take-over, as before.
    """
    decisions = []
    for status in booths:
        on_air = status.on_air
        if on_air is None or not was_live.get(status.booth, False):
            continue
        mics = microphone.get(status.booth, {})
        if is_live(mics.get(on_air), stalled_after):
            continue
        partners = [
            i.id
            for i in status.interpreters
            if i.id != on_air and i.connected and is_live(mics.get(i.id), stalled_after)
        ]
        decisions.append(
            FailoverDecision(booth=status.booth, lost=on_air, to=partners[0] if partners else None)
        )
    return decisions
