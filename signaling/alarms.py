"""Dead-air and health alarms, from what the node already sees (no decoding).

A pure function of the routing, the sources' activity and their reception health:

- ``speaker_media_lost``: the speaker on air sends nothing (his browser or network died);
  attendees are told, the moderator can put someone else on air in one click.
- ``dead_air``: a channel fed by an interpreter has carried only near-silence for
  `DEAD_AIR_AFTER_S` while the floor carries speech. It clears itself when sound
  returns or the floor falls silent (a pause in the speech is no interpreter's fault).
- ``poor_reception``: a publisher's stream arrives with more loss or jitter than a
  listener can bear; ``poor_delivery``: a channel's listeners report such loss.
- ``recording_stopped``: a channel's recording failed (a full disk); raised by
  `signaling.recordings`, not here.

Alarms are recomputed on every look and are shown while their condition holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from signaling.failover import is_live
from signaling.routing_rule import FeedKind, Routing
from streamer import SourceActivity

#: Seconds of near-silence on an interpreted channel, while the floor speaks, before the
#: moderator and the booth are warned (`DRAGOMAN_DEAD_AIR_S`).
DEAD_AIR_AFTER_S = 5.0
#: The floor "carries speech" if it had sound this recently.
FLOOR_SPEAKING_S = 1.0
#: Above these, listeners hear gaps or warbling: the moderator is warned.
LOSS_WARNING = 0.05
#: Browsers' jitter buffers absorb tens of milliseconds by themselves; past this they
#: stretch audibly (and a loaded node's own arrival stamps add a few ms of their own).
JITTER_WARNING_MS = 50.0

AlarmKind = Literal[
    "speaker_media_lost", "dead_air", "poor_reception", "poor_delivery", "recording_stopped"
]


@dataclass(frozen=True)
class Alarm:
    kind: AlarmKind
    #: When the condition began, on the node's clock (None: not known).
    since: float | None = None
    speaker: str | None = None
    channel: str | None = None
    booth: str | None = None
    interpreter: str | None = None
    publisher: str | None = None
    loss: float | None = None
    jitter_ms: float | None = None

    @property
    def subject(self) -> tuple[str | None, ...]:
        """What the alarm is about, whatever its start time and figures: the same
        condition still holding has the same subject from one look to the next."""
        return (self.kind, self.speaker, self.channel, self.booth, self.interpreter, self.publisher)


class Reception(Protocol):
    """How well a stream arrives (the streamer's figures, or the wire's)."""

    @property
    def loss(self) -> float: ...
    @property
    def jitter_ms(self) -> float: ...


@dataclass(frozen=True)
class Thresholds:
    dead_air_after_s: float = DEAD_AIR_AFTER_S
    loss_warning: float = LOSS_WARNING
    jitter_warning_ms: float = JITTER_WARNING_MS


def _poor(reception: Reception, thresholds: Thresholds) -> bool:
    return (
        reception.loss > thresholds.loss_warning
        or reception.jitter_ms > thresholds.jitter_warning_ms
    )


def compute_alarms(
    *,
    now: float,
    routing: Routing,
    speaker: str | None,
    speaker_audio: str | None,
    interpreter_audio: Callable[[str, str], str],
    activity: Mapping[str, SourceActivity],
    sources_health: Mapping[str, Reception],
    channels_health: Mapping[str, Reception],
    publisher_of: Callable[[str], str | None],
    thresholds: Thresholds = Thresholds(),
) -> list[Alarm]:
    """Every alarm that holds now.

    `speaker_audio`: the on-air speaker's audio source id; `interpreter_audio(booth, who)`
    an interpreter's; `sources_health` by source id and `channels_health` by language
    (the median of its listeners' reports); `publisher_of(source_id)`: the publisher a
    source belongs to, for naming it.
    """
    alarms: list[Alarm] = []
    if speaker is not None and speaker_audio is not None:
        floor = activity.get(speaker_audio)
        if not is_live(floor):
            since = None if floor is None else now - floor.packet_age
            alarms.append(Alarm("speaker_media_lost", since=since, speaker=speaker))
    floor = activity.get(speaker_audio) if speaker_audio is not None else None
    floor_speaking = (
        floor is not None and floor.sound_age is not None and floor.sound_age < FLOOR_SPEAKING_S
    )
    if floor_speaking:
        for language, feed in routing.channels.items():
            if feed.kind is not FeedKind.INTERPRETER:
                continue
            assert feed.booth is not None and feed.interpreter is not None
            voice = activity.get(interpreter_audio(feed.booth, feed.interpreter))
            if voice is None or voice.sound_age is None or not is_live(voice):
                continue  # not sending at all: failover's business, not dead air
            if voice.sound_age >= thresholds.dead_air_after_s:
                alarms.append(
                    Alarm(
                        "dead_air",
                        # Never any sound: not known since when (the live service says).
                        since=now - voice.sound_age if math.isfinite(voice.sound_age) else None,
                        channel=language,
                        booth=feed.booth,
                        interpreter=feed.interpreter,
                    )
                )
    for source_id, reception in sorted(sources_health.items()):
        if _poor(reception, thresholds):
            alarms.append(
                Alarm(
                    "poor_reception",
                    publisher=publisher_of(source_id),
                    loss=reception.loss,
                    jitter_ms=reception.jitter_ms,
                )
            )
    for language, reception in sorted(channels_health.items()):
        if _poor(reception, thresholds):
            alarms.append(
                Alarm(
                    "poor_delivery",
                    channel=language,
                    loss=reception.loss,
                    jitter_ms=reception.jitter_ms,
                )
            )
    return alarms
