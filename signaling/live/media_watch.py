"""Watching the media this node receives: stopped voices, dead air, poor reception.

Every `MONITOR_INTERVAL_S` the node looks at its sources' activity. An interpreter on
air whose voice stopped (`signaling.failover`) hands the channel to a partner who is
ready, as a `fail_over` change every node applies; until then the booth's channel
carries the fallback. The alarms (`signaling.alarms`) say what the moderator and the
booths should look at. A node judges only the voices it receives: one it never heard is
not missing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from signaling import protocol as p
from signaling.alarms import Alarm, Thresholds, compute_alarms
from signaling.booth import BoothError, BoothStatus
from signaling.failover import decide_failovers, is_live
from signaling.live.outputs import channel_output, publisher_of, source_of, speaker_publisher
from signaling.live.replica import Change
from signaling.tokens import Role
from streamer import SourceActivity

if TYPE_CHECKING:
    from signaling.live.event import LiveEvent

log = logging.getLogger(__name__)

#: How often the node looks at its media for stopped voices, dead air and poor health.
MONITOR_INTERVAL_S = 0.1
#: How often reception health (loss over the interval, jitter) is read.
HEALTH_INTERVAL_S = 1.0


class MediaWatch:
    """Failover from stopped voices, and the alarms, for one node."""

    def __init__(
        self,
        live: LiveEvent,
        *,
        interval: float,
        stalled_after: float,
        thresholds: Thresholds,
    ) -> None:
        self.live = live
        self.interval = interval
        self.stalled_after = stalled_after
        self.thresholds = thresholds
        # Per booth: since when (monotonic) its interpreter on air has been seen sending
        # nothing, and who that was; booths whose voice has been missing long enough
        # (`stalled_after`) carry the fallback until it returns.
        self._silent_since: dict[str, tuple[str, float]] = {}
        # Per booth: who was seen sending while on air. Only a voice that was there can
        # go missing: one just put on air (or restored after a restart) whose media has
        # not arrived yet is left to the routing rule's fallback, as before.
        self._seen_live: dict[str, str] = {}
        self.stalled_booths: set[str] = set()
        self.alarms: list[Alarm] = []
        self._alarm_first_seen: dict[tuple[str | None, ...], float] = {}
        self.speaker_media_live = True
        self.health: p.Health | None = None
        self._health_read_at = 0.0

    async def run(self) -> None:
        """Look at the media every `interval`: stopped voices, dead air, health."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:
                # A fault here must not end the watch: the next look may succeed.
                log.exception("watching the media failed")

    async def check(self) -> None:
        """Fail over from stopped interpreters and recompute the alarms (one look)."""
        live = self.live
        activity = live.sfu.activity()
        statuses = [booth.status() for booth in live.booths.values()]
        microphones = {
            status.booth: {
                i.id: activity.get(live.plan.feed_of(status.booth, i.id))
                for i in status.interpreters
            }
            for status in statuses
        }
        now = live.clock()
        silent_for = self._silences(statuses, microphones)
        stalled = {booth for booth, silent in silent_for.items() if silent >= self.stalled_after}
        for decision in decide_failovers(
            statuses, microphones, silent_for, self.stalled_booths, self.stalled_after
        ):
            log.warning(
                "booth %s: %s's media stopped; %s",
                decision.booth,
                decision.lost,
                f"{decision.to} takes the channel" if decision.to else "nobody was ready",
            )
            try:
                await live.publish(
                    Change(
                        "fail_over",
                        {"booth": decision.booth, "lost": decision.lost, "to": decision.to},
                    )
                )
            except BoothError as exc:  # the partner left meanwhile: the next look decides
                log.warning("booth %s: no failover (%s)", decision.booth, exc.message)
                continue
            if decision.to is not None:
                stalled.discard(decision.booth)
                self._silent_since.pop(decision.booth, None)
        if stalled != self.stalled_booths:
            self.stalled_booths = stalled
            live.changed()
        self.update_alarms(activity, now)

    def _silences(
        self,
        statuses: list[BoothStatus],
        microphones: Mapping[str, Mapping[str, SourceActivity | None]],
    ) -> dict[str, float]:
        """Per booth with someone on air: for how long his voice has been missing (0: live).

        A source that exists says itself how long it has been quiet; one that is gone
        (his connection closed) counts from when it was first seen missing. A voice never
        seen while on air is not missing.
        """
        monotonic = time.monotonic()
        silent_for: dict[str, float] = {}
        for status in statuses:
            on_air = status.on_air
            if on_air is None:
                self._silent_since.pop(status.booth, None)
                continue
            mic = microphones.get(status.booth, {}).get(on_air)
            if is_live(mic, self.stalled_after):
                self._seen_live[status.booth] = on_air
                self._silent_since.pop(status.booth, None)
                silent_for[status.booth] = 0.0
                continue
            if self._seen_live.get(status.booth) != on_air:
                continue
            who, since = self._silent_since.get(status.booth, (None, monotonic))
            if who != on_air:
                since = monotonic
                self._silent_since[status.booth] = (on_air, since)
            quiet = mic.packet_age if mic is not None else 0.0
            silent_for[status.booth] = max(monotonic - since, quiet)
        return silent_for

    def update_alarms(self, local: Mapping[str, SourceActivity], now: float) -> None:
        live = self.live
        # Alarms are about the event, whichever node receives each voice.
        activity = {**live.event_activity(), **local}
        routing = live.plan.routing
        if routing is None:
            return
        monotonic = time.monotonic()
        health_changed = False
        if monotonic - self._health_read_at >= HEALTH_INTERVAL_S:
            self._health_read_at = monotonic
            self.health = self._read_health()
            health_changed = True
        health = self.health or p.Health()
        speaker_id = live.replica.state.on_air_speaker
        speaker_audio = source_of(speaker_publisher(speaker_id), "audio") if speaker_id else None
        alarms = compute_alarms(
            now=now,
            routing=routing,
            speaker=speaker_id,
            speaker_audio=speaker_audio,
            interpreter_audio=live.plan.feed_of,
            activity=activity,
            sources_health=health.publishers,
            channels_health=health.channels,
            publisher_of=publisher_of,
            thresholds=self.thresholds,
        )
        for source in live.alarm_sources:  # a recording that stopped
            alarms.extend(source(now))
        alarms = self._with_start_times(alarms, now)
        media_live = speaker_audio is None or is_live(
            activity.get(speaker_audio), self.stalled_after
        )
        # `since` moves with the clock: compare what the alarms are about, not when.
        about = [alarm.subject for alarm in alarms]
        if media_live != self.speaker_media_live:
            # Everyone is shown whether the speaker's media arrives.
            self.alarms = alarms
            self.speaker_media_live = media_live
            live.changed()
        elif about != [alarm.subject for alarm in self.alarms]:
            # Alarms are for the staff: the audience is not sent anything for them.
            self.alarms = alarms
            live.push(roles={Role.MODERATOR, Role.INTERPRETER})
        elif health_changed:
            # Reception figures change every second and concern the moderator only.
            self.alarms = alarms
            live.push(roles={Role.MODERATOR})

    def _with_start_times(self, alarms: list[Alarm], now: float) -> list[Alarm]:
        """Alarms whose start the media cannot tell (a voice that never had any sound, a
        speaker gone altogether) start when the node first raised them."""
        first_seen = {}
        dated = []
        for alarm in alarms:
            first_seen[alarm.subject] = self._alarm_first_seen.get(alarm.subject, now)
            if alarm.since is None:
                alarm = dataclasses.replace(alarm, since=first_seen[alarm.subject])
            dated.append(alarm)
        self._alarm_first_seen = first_seen
        return dated

    def _read_health(self) -> p.Health:
        health = self.live.sfu.health()
        publishers = {
            source_id: p.Reception(loss=round(r.loss, 4), jitter_ms=round(r.jitter_ms, 1))
            for source_id, r in health["sources"].items()
        }
        channels: dict[str, p.Reception] = {}
        worst: dict[str, float] = {}
        outputs = health["outputs"]
        for code in self.live.event.language_codes:
            median = outputs.get(channel_output(code))
            if median is not None:
                channels[code] = p.Reception(
                    loss=round(median.loss, 4), jitter_ms=round(median.jitter_ms, 1)
                )
                worst[code] = round(outputs[f"{channel_output(code)}:worst"].loss, 4)
        return p.Health(publishers=publishers, channels=channels, worst_loss=worst)
