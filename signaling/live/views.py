"""What each client is shown: the state of the event, as its role sees it.

One common `State` is built per push and narrowed per client: an attendee sees his
choices and no alarms, an interpreter his booth's relay options and the alarms of his
channels, the moderator everything including reception health. Listener counts and
who is publishing are those of the whole event, every node's together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from signaling import protocol as p
from signaling.booth import LiveBooth
from signaling.live.clients import Client
from signaling.live.outputs import choice_heard, source_of, speaker_publisher
from signaling.live.presence import total_listeners
from signaling.routing_rule import FLOOR
from signaling.tokens import Role

if TYPE_CHECKING:
    from signaling.live.event import LiveEvent


class Views:
    """Builds the `state` messages of one node."""

    def __init__(self, live: LiveEvent) -> None:
        self.live = live

    def summary(self) -> p.EventSummary:
        event = self.live.event
        return p.EventSummary(
            id=event.id,
            title=dict(event.title.items()),
            languages=[p.LanguageInfo(code=lang.code, name=lang.name) for lang in event.languages],
            booths=[
                p.BoothInfo(id=b.id, name=b.name, kind=b.kind, works_into=list(b.works_into))
                for b in event.booths
            ],
            fallback=event.fallback,
            shift_minutes=event.shift_minutes,
        )

    def local_listeners(self) -> dict[str, int]:
        """This node's attendees with media, per channel."""
        return dict(self.live.audience.listeners)

    def listener_counts(self) -> dict[str, int]:
        """The event's attendees with media, per channel, on every node."""
        live = self.live
        counts = {p.ORIGINAL: 0, **dict.fromkeys(live.event.language_codes, 0)}
        others = [presence for presence in live.bus.presences() if presence.node != live.node]
        for channel, count in total_listeners(others).items():
            if channel in counts:
                counts[channel] += count
        for channel, count in self.local_listeners().items():
            counts[channel] += count
        return counts

    def common_state(self) -> p.State:
        live = self.live
        plan, watch = live.plan, live.watch
        assert plan.routing is not None
        sources = live.event_sources()
        speaker_id, language = plan.on_air_speaker()
        on_air = None
        if speaker_id is not None and language is not None:
            on_air = p.SpeakerOnAir(
                speaker=speaker_id,
                language=language,
                connected=source_of(speaker_publisher(speaker_id), "audio") in sources,
                media_live=watch.speaker_media_live,
            )
        channels = {
            language: p.ChannelState(
                kind=feed.kind.value,
                reason=feed.reason.value,
                booth=feed.booth,
                interpreter=feed.interpreter,
            )
            for language, feed in plan.routing.channels.items()
        }
        booths = [self.booth_state(booth, sources) for booth in live.booths.values()]
        speakers = [
            s.id
            for s in live.event.speakers
            if source_of(speaker_publisher(s.id), "audio") in sources
        ]
        interpreters = {
            booth.booth_id: [
                i.id
                for i in booth.status().interpreters
                if plan.feed_of(booth.booth_id, i.id) in sources
            ]
            for booth in live.booths.values()
        }
        now = live.clock()
        slow_down = [
            p.SlowDownView(booth=booth_id, by=request.by, since=request.at, until=request.until)
            for booth_id, booth in live.booths.items()
            if (request := booth.slow_down_request(now)) is not None
        ]
        state = live.replica.state
        return p.State(
            server_time=now,
            session=state.session_id,
            on_air=on_air,
            channels=channels,
            booths=booths,
            listeners=self.listener_counts(),
            publishers=p.Publishers(speakers=speakers, interpreters=interpreters),
            floor_language=state.floor_language,
            slow_down=slow_down,
            alarms=[p.Alarm(**vars(alarm)) for alarm in watch.alarms],
        )

    def booth_state(self, booth: LiveBooth, sources: set[str]) -> p.BoothState:
        plan = self.live.plan
        assert plan.routing is not None
        status = booth.status()
        route = plan.routing.booths.get(booth.booth_id)  # None: a sign booth
        handover = None
        if status.handover is not None:
            handover = p.Handover(
                by=status.handover.by,
                at=status.handover.at,
                take_over_at=status.handover.at + status.take_over_after,
            )
        failover = booth.last_failover
        return p.BoothState(
            last_failover=(
                p.FailoverInfo(lost=failover.lost, to=failover.to, at=failover.at)
                if failover is not None
                else None
            ),
            id=booth.booth_id,
            works_into=list(booth.works_into),
            direction=(
                p.Direction(source=route.source, into=route.into)
                if route is not None and route.into
                else None
            ),
            direction_override=status.direction_override,
            listen_default=route.listen if route is not None else FLOOR,
            on_air=status.on_air,
            on_air_connected=status.on_air_connected,
            on_air_since=status.on_air_since,
            coughing=status.coughing,
            handover=handover,
            interpreters=[
                p.InterpreterState(
                    id=i.id,
                    connected=i.connected,
                    on_air=i.on_air,
                    listen=i.listen,
                    publishing=plan.feed_of(booth.booth_id, i.id) in sources,
                )
                for i in status.interpreters
            ],
        )

    def state_for(self, client: Client, common: p.State) -> p.State:
        live = self.live
        plan = live.plan
        claims = client.claims
        on_air_speaker = live.replica.state.on_air_speaker
        you: p.AttendeeView | p.InterpreterView | p.SpeakerView | None = None
        if claims.role is Role.ATTENDEE:
            choice = live.choice(client)
            you = p.AttendeeView(
                channel=choice.channel,
                original_under=choice.original_under,
                audio_only=choice.audio_only,
                sign=choice.sign,
            )
        elif claims.role is Role.INTERPRETER and claims.booth is not None:
            booth = live.booths[claims.booth]
            listen_output = plan.listen_output(client)
            listen = choice_heard(listen_output)
            you = p.InterpreterView(
                booth=claims.booth,
                listen=listen,
                on_air=booth.on_air == claims.subject,
                may_take_over=booth.can_take_over(claims.subject, live.clock()),
                listen_loops=[
                    code
                    for code in live.event.language_codes
                    if not plan.relay_check(claims.booth, code).allowed
                ],
                listen_relayed_from=list(plan.relay_check(claims.booth, listen).relayed_from),
            )
        elif claims.role is Role.SPEAKER and claims.speaker is not None:
            you = p.SpeakerView(
                speaker=claims.speaker,
                on_air=on_air_speaker == claims.speaker,
                publishing=source_of(speaker_publisher(claims.speaker), "audio")
                in live.event_sources(),
            )
        update: dict[str, Any] = {"you": you}
        if claims.role is Role.MODERATOR:
            update["health"] = live.watch.health
            update["monitor"] = client.monitor
        elif claims.role is Role.INTERPRETER and claims.booth is not None:
            works_into = set(live.booths[claims.booth].works_into)
            update["alarms"] = [
                alarm
                for alarm in common.alarms
                if alarm.booth == claims.booth or alarm.channel in works_into
            ]
        else:
            update["alarms"] = []
        # Requests to slow down are for the speaker on air and the staff; the audience and
        # the speakers waiting their turn are not to be distracted by them.
        if claims.role is Role.ATTENDEE or (
            claims.role is Role.SPEAKER and on_air_speaker != claims.speaker
        ):
            update["slow_down"] = []
        return common.model_copy(update=update)
