"""The live event service: who is on air, where the streamer points, what clients see.

One `LiveEvent` per node and event. It keeps the durable `LiveState` (loaded from the
store at start, written back after every change, so a restart restores who was on air),
one `LiveBooth` per booth of the program, the connected clients and which publishers'
tracks are arriving. After every change it runs the routing rule and re-points the
streamer's outputs:

- ``program-video`` and ``floor``: the on-air speaker's video and audio;
- ``channel:<code>``, one per event language: what the routing rule says;
- ``preview:<speaker_id>``: each speaker's video, for the moderator's previews.

Then it pushes a ``state`` message to every client (coalesced: a burst of changes sends
one state). Commands arrive already parsed and role-checked from `signaling.websocket`;
what a role may not do *now* (an unknown speaker, a booth transition that is not allowed)
raises `ProtocolError`, which the connection turns into an ``error`` message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from signaling import protocol as p
from signaling.alarms import Alarm, Thresholds, compute_alarms
from signaling.booth import BoothError, BoothStatus, LiveBooth
from signaling.booth_chat import BoothChat, ChatRefused, wire_messages
from signaling.failover import STALLED_AFTER_S, decide_failovers, is_live
from signaling.live_state import LiveState
from signaling.program import Event
from signaling.relay_rule import RelayCheck, check_relay
from signaling.routing_rule import (
    FLOOR,
    BoothSpec,
    FeedKind,
    Routing,
    route_channels,
)
from signaling.store import Store
from signaling.tokens import Claims, Role
from signaling.turn_credentials import PageIceServers
from streamer import Reception, SourceActivity
from streamer.errors import PortRangeExhausted, StreamerError

log = logging.getLogger(__name__)

PROGRAM_VIDEO = "program-video"
FLOOR_OUTPUT = "floor"
#: How long an unanswered handover request waits before the partner may take over.
TAKE_OVER_AFTER = 10.0
#: How long a publisher's media is kept after its WebSocket closed, waiting for it to return.
PUBLISHER_GRACE_S = 10.0
#: Changes closer together than this are pushed to clients as one state.
PUSH_COALESCE_S = 0.02
#: How often the node looks at its media for stopped voices, dead air and poor health.
MONITOR_INTERVAL_S = 0.1
#: How often reception health (loss over the interval, jitter) is read.
HEALTH_INTERVAL_S = 1.0


def channel_output(language: str) -> str:
    return f"channel:{language}"


def preview_output(speaker_id: str) -> str:
    return f"preview:{speaker_id}"


def sign_output(booth_id: str) -> str:
    """The video of a sign-language booth's interpreter on air."""
    return f"sign:{booth_id}"


def speaker_publisher(speaker_id: str) -> str:
    return f"speaker:{speaker_id}"


def interpreter_publisher(booth_id: str, interpreter: str) -> str:
    """A stable publisher id for an interpreter, whatever his link's subject looks like.

    Source ids are "<publisher>/<kind>" and the streamer caps names at 200 characters:
    a subject that is long or holds the separator is replaced by its digest.
    """
    if len(interpreter) > 64 or "/" in interpreter:
        interpreter = "sha256-" + hashlib.sha256(interpreter.encode()).hexdigest()[:32]
    return f"interpreter:{booth_id}:{interpreter}"


def _source(publisher_id: str, kind: str) -> str:
    return f"{publisher_id}/{kind}"


#: The media stream (msid) that the program video and the audio heard with it share,
#: so the browser keeps them in lip sync.
PROGRAM_STREAM = "program"
#: Per role, the audio slot played with the program video: the attendee's channel
#: (the speaker himself when the channel is the floor's language), the
#: interpreter's listening, the moderator's floor.
_HEARD_WITH_VIDEO = ("channel", "listen", "floor")


def _lip_sync_streams(slots: Mapping[str, str]) -> dict[str, str]:
    if "video" not in slots:
        return {}
    heard = next((name for name in _HEARD_WITH_VIDEO if name in slots), None)
    return {name: PROGRAM_STREAM for name in ("video", heard) if name is not None}


class MediaPlane(Protocol):
    """The part of `streamer.Sfu` the live service drives."""

    def sources(self) -> Mapping[str, str]: ...
    def declare_output(self, name: str, kind: str) -> Any: ...
    def point(self, output: str, source_id: str | None) -> Any: ...
    async def publish(self, publisher_id: str, offer_sdp: str) -> str: ...
    async def subscribe(
        self,
        subscriber_id: str,
        slots: Mapping[str, str],
        streams: Mapping[str, str] | None = None,
    ) -> str: ...
    async def accept_answer(self, subscriber_id: str, answer_sdp: str) -> Any: ...
    def point_slot(self, subscriber_id: str, slot: str, output: str) -> Any: ...
    def pause_slot(self, subscriber_id: str, slot: str, paused: bool) -> Any: ...
    async def close_subscriber(self, subscriber_id: str) -> Any: ...
    async def close_publisher(self, publisher_id: str) -> Any: ...
    def activity(self) -> Mapping[str, SourceActivity]: ...
    def health(self) -> Mapping[str, Mapping[str, Reception]]: ...


@dataclass
class AttendeeChoice:
    """An attendee's listening choices, remembered per link across reconnects."""

    channel: str
    original_under: bool = False
    audio_only: bool = False
    #: The sign booth shown over the program video (picture in picture), if any.
    sign: str | None = None


_client_numbers = itertools.count(1)


@dataclass(eq=False)
class Client:
    """One authenticated connection, as the live service sees it.

    ``send`` queues a server message for the connection (never blocks); the WebSocket
    layer owns the actual writing.
    """

    claims: Claims
    send: Callable[[p.WireMessage], None]
    number: int = field(default_factory=lambda: next(_client_numbers))
    subscriber_id: str | None = None
    subscribed: bool = False
    publisher_id: str | None = None
    slots: dict[str, str] = field(default_factory=dict)
    paused: dict[str, bool] = field(default_factory=dict)
    #: What a moderator listens to in the studio: "floor" or a language.
    monitor: str = FLOOR

    @property
    def role(self) -> Role:
        return self.claims.role


def _refuse(code: str, message: str) -> p.ProtocolError:
    return p.ProtocolError(code, message)


def _server_full(exc: PortRangeExhausted) -> p.ProtocolError:
    """What a page is told when the node's media ports are all taken (the operator is told
    to widen the range, in the log)."""
    log.warning("%s", exc)
    return _refuse(
        "server_full",
        "the server cannot take another media connection right now: every media port it "
        "may use is taken; try again in a moment",
    )


class LiveEvent:
    """The live side of one event on one node."""

    def __init__(
        self,
        event: Event,
        store: Store,
        sfu: MediaPlane,
        *,
        take_over_after: float = TAKE_OVER_AFTER,
        publisher_grace_s: float = PUBLISHER_GRACE_S,
        clock: Callable[[], float] = time.time,
        ice_servers: PageIceServers | None = None,
        monitor_interval: float = MONITOR_INTERVAL_S,
        stalled_after: float = STALLED_AFTER_S,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.event = event
        self.ice_servers = ice_servers or PageIceServers()
        self.store = store
        self.sfu = sfu
        self.clock = clock
        self.take_over_after = take_over_after
        self.publisher_grace_s = publisher_grace_s
        self._releases: dict[str, asyncio.Task[None]] = {}
        self.state = LiveState()
        self.booths: dict[str, LiveBooth] = {}
        self.clients: set[Client] = set()
        self.sources: set[str] = set()
        self.choices: dict[str, AttendeeChoice] = {}
        self.routing: Routing | None = None
        self._pointed: dict[str, str | None] = {}
        # Sign booths feed a video each, not the language channels: the routing rule
        # knows the spoken ones only.
        self._booth_specs = [BoothSpec(b.id, tuple(b.works_into)) for b in event.spoken_booths]
        self._sign_booths = {b.id for b in event.sign_booths}
        self._save_lock = asyncio.Lock()
        self._push_task: asyncio.Task[None] | None = None
        self._wake_task: asyncio.Task[None] | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self.monitor_interval = monitor_interval
        self.stalled_after = stalled_after
        self.thresholds = thresholds or Thresholds()
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
        self._speaker_media_live = True
        self._health: p.Health | None = None
        self._health_read_at = 0.0
        self._started = False
        self.chat = BoothChat(event.id, (b.id for b in event.booths), store)
        # --- session media hooks (recordings, HLS: signaling/session_media.py) ---
        #: Told the session in progress (None: none) after every routing pass.
        self.session_hooks: list[Callable[[str | None], None]] = []
        #: Extra alarms (a recording that stopped), asked at every look at the media.
        self.alarm_sources: list[Callable[[float], list[Alarm]]] = []
        # --- end of session media hooks ---

    # --- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Restore the state from the store, declare the outputs and route."""
        self.state = await self.store.get_live_state(self.event.id)
        self._drop_stale_state()
        for booth in self.event.booths:
            self.booths[booth.id] = LiveBooth(
                booth.id,
                tuple(booth.works_into),
                take_over_after=self.take_over_after,
                on_air=self.state.on_air_interpreter.get(booth.id),
                on_air_since=self.clock() if booth.id in self.state.on_air_interpreter else None,
                direction_override=self.state.direction_override.get(booth.id),
            )
        self.sfu.declare_output(PROGRAM_VIDEO, "video")
        self.sfu.declare_output(FLOOR_OUTPUT, "audio")
        for code in self.event.language_codes:
            self.sfu.declare_output(channel_output(code), "audio")
        for speaker in self.event.speakers:
            self.sfu.declare_output(preview_output(speaker.id), "video")
        for booth_id in self._sign_booths:
            self.sfu.declare_output(sign_output(booth_id), "video")
        self.sources = set(self.sfu.sources())
        self._started = True
        self._apply()
        # The first states already say whether the speaker restored on air is sending.
        self._update_alarms(self.sfu.activity(), self.clock())
        self._monitor_task = asyncio.get_running_loop().create_task(self._watch_media())
        log.info(
            "live event started",
            extra={"session": self.state.session_id, "on_air": self.state.on_air_speaker},
        )

    async def stop(self) -> None:
        """Cancel the service's tasks; the streamer is closed by its owner."""
        self._started = False  # what the streamer reports while closing changes nothing
        tasks = [self._push_task, self._wake_task, self._monitor_task, *self._releases.values()]
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._push_task = self._wake_task = self._monitor_task = None
        self._releases.clear()

    def _drop_stale_state(self) -> None:
        """Forget what the program no longer has (the program may change between runs)."""
        state = self.state
        speaker_ids = {s.id for s in self.event.speakers}
        session_ids = {s.id for s in self.event.sessions}
        booth_ids = {b.id for b in self.event.booths}
        if state.session_id not in session_ids:
            state.session_id = None
        if state.on_air_speaker not in speaker_ids:
            state.on_air_speaker = None
        if state.on_air_speaker is None or state.floor_language not in self.event.language_codes:
            state.floor_language = None
        state.on_air_interpreter = {
            b: who for b, who in state.on_air_interpreter.items() if b in booth_ids
        }
        state.direction_override = {
            b: lang
            for b, lang in state.direction_override.items()
            if b in booth_ids and lang in self.event.booth(b).works_into
        }

    # --- streamer events --------------------------------------------------------------

    def source_added(self, source_id: str, kind: str) -> None:
        self.sources.add(source_id)
        self._changed()

    def source_removed(self, source_id: str, kind: str) -> None:
        self.sources.discard(source_id)
        self._changed()

    # --- clients ----------------------------------------------------------------------

    def scope_problem(self, claims: Claims) -> str | None:
        """Why a verified link cannot join this event (its scope is not in the program)."""
        if claims.role is Role.INTERPRETER:
            if claims.booth is None or claims.booth not in self.booths:
                return f"this link is for booth {claims.booth}, which this event does not have"
        if claims.role is Role.SPEAKER:
            if claims.speaker is None or claims.speaker not in {s.id for s in self.event.speakers}:
                return f"this link is for speaker {claims.speaker}, who is not in the program"
        return None

    async def join(self, client: Client) -> None:
        """Admit an authenticated client: welcome it and send it the current state."""
        claims = client.claims
        if claims.role is Role.ATTENDEE and claims.subject not in self.choices:
            self.choices[claims.subject] = AttendeeChoice(
                channel=await self._default_channel(claims)
            )
        if claims.role is Role.INTERPRETER and claims.booth is not None:
            self.booths[claims.booth].connect(claims.subject)
        self.clients.add(client)
        client.send(
            p.Welcome(
                role=claims.role,
                scope=p.Scope(subject=claims.subject, booth=claims.booth, speaker=claims.speaker),
                event=self.summary(),
                # Tagged by role only: the TURN server's logs need not know who.
                ice_servers=self.ice_servers.for_page(claims.role.value),
            )
        )
        client.send(self._state_for(client, self._common_state()))
        await self._send_chat_history(client)
        self._changed()

    async def leave(self, client: Client) -> None:
        """Forget a connection and free its media."""
        if client not in self.clients:
            return
        self.clients.discard(client)
        claims = client.claims
        if claims.role is Role.INTERPRETER and claims.booth is not None:
            self.booths[claims.booth].disconnect(claims.subject)
        if client.subscriber_id is not None:
            await self._close_subscriber(client)
        if client.publisher_id is not None:
            publisher_id, client.publisher_id = client.publisher_id, None
            self._release_later(publisher_id)
        self._changed()

    def _release_later(self, publisher_id: str) -> None:
        """Close a publisher nobody holds any more, after `PUBLISHER_GRACE_S`.

        Its media may be fine while its WebSocket blinked: a speaker on air stays on air
        if his page is back within the grace period (it publishes again on reconnect).
        """
        if not self._started:
            return  # stopping: the streamer closes every publisher itself
        if self._publisher_in_use(publisher_id) or publisher_id in self._releases:
            return
        self._releases[publisher_id] = asyncio.get_running_loop().create_task(
            self._release(publisher_id)
        )

    async def _release(self, publisher_id: str) -> None:
        await asyncio.sleep(self.publisher_grace_s)
        del self._releases[publisher_id]
        if not self._publisher_in_use(publisher_id):
            await self._quietly(self.sfu.close_publisher(publisher_id))

    def _cancel_release(self, publisher_id: str) -> None:
        task = self._releases.pop(publisher_id, None)
        if task is not None:
            task.cancel()

    async def _default_channel(self, claims: Claims) -> str:
        if claims.registration:
            try:
                registration = await self.store.registration(claims.registration)
            except Exception:  # the store being down must not keep anyone out
                log.exception("could not read a registration for its preferred language")
                registration = None
            if registration is not None and registration.language in self.event.language_codes:
                return registration.language
        return p.ORIGINAL

    def summary(self) -> p.EventSummary:
        return p.EventSummary(
            id=self.event.id,
            title=dict(self.event.title.items()),
            languages=[
                p.LanguageInfo(code=lang.code, name=lang.name) for lang in self.event.languages
            ],
            booths=[
                p.BoothInfo(id=b.id, name=b.name, kind=b.kind, works_into=list(b.works_into))
                for b in self.event.booths
            ],
            fallback=self.event.fallback,
            shift_minutes=self.event.shift_minutes,
        )

    # --- commands ---------------------------------------------------------------------

    async def handle(self, client: Client, message: Any) -> None:
        """Carry out one role-checked command; raises `ProtocolError` when refused."""
        handler = self._handlers[message.type]
        try:
            await handler(self, client, message)
        except BoothError as exc:
            raise _refuse(exc.code, exc.message) from None

    async def _ping(self, client: Client, message: p.Ping) -> None:
        client.send(p.Pong(ref=message.id))

    async def _publish(self, client: Client, message: p.Offer) -> None:
        claims = client.claims
        if claims.role is Role.SPEAKER:
            assert claims.speaker is not None
            publisher_id = speaker_publisher(claims.speaker)
        else:
            self._interpreter_booth(client, message)
            assert claims.booth is not None
            publisher_id = interpreter_publisher(claims.booth, claims.subject)
        # A reconnecting publisher replaces its previous connection: the newest one wins
        # (the streamer replaces a peer published again under the same id).
        self._cancel_release(publisher_id)
        for other in self.clients:
            if other is not client and other.publisher_id == publisher_id:
                other.publisher_id = None
        client.publisher_id = publisher_id
        try:
            answer = await self.sfu.publish(publisher_id, message.sdp)
        except PortRangeExhausted as exc:
            client.publisher_id = None
            self._release_later(publisher_id)
            raise _server_full(exc) from None
        except StreamerError as exc:
            client.publisher_id = None
            self._release_later(publisher_id)
            raise _refuse("bad_sdp", f"the offer could not be used: {exc}") from None
        if client not in self.clients:  # left while the answer was being made
            client.publisher_id = None
            self._release_later(publisher_id)
            return
        client.send(p.ServerAnswer(sdp=answer))
        self._changed()

    async def _subscribe(self, client: Client, message: p.Subscribe) -> None:
        if client.subscriber_id is not None:
            await self._close_subscriber(client)
        slots = self._slots_for(client)
        # Unique per connection; the subject stays out (it may be long).
        subscriber_id = f"{client.role.value}:{client.number}"
        try:
            offer = await self.sfu.subscribe(subscriber_id, slots, _lip_sync_streams(slots))
        except PortRangeExhausted as exc:
            raise _server_full(exc) from None
        if client not in self.clients:  # left while the offer was being made
            await self._quietly(self.sfu.close_subscriber(subscriber_id))
            return
        client.subscriber_id = subscriber_id
        client.slots = dict(slots)
        client.paused = {}
        # The routing may have changed while the offer was being made.
        self._reslot(client)
        mids = re.findall(r"^a=mid:(\S+)", offer, flags=re.MULTILINE)
        kinds = {name: self._output_kind(output) for name, output in slots.items()}
        client.send(
            p.ServerOffer(
                sdp=offer,
                slots=[
                    p.Slot(
                        name=name,
                        kind=kinds[name],
                        output=output,
                        mid=mids[i] if i < len(mids) else None,
                    )
                    for i, (name, output) in enumerate(slots.items())
                ],
            )
        )

    async def _answer(self, client: Client, message: p.Answer) -> None:
        if client.subscriber_id is None:
            raise _refuse("no_offer", "there is no offer to answer: send subscribe first")
        try:
            await self.sfu.accept_answer(client.subscriber_id, message.sdp)
        except StreamerError as exc:
            raise _refuse("bad_sdp", f"the answer could not be used: {exc}") from None
        client.subscribed = True
        self._changed()

    async def _select_channel(self, client: Client, message: p.SelectChannel) -> None:
        language = message.language
        if language != p.ORIGINAL and language not in self.event.language_codes:
            raise self._unknown_language(language)
        self._choice(client).channel = language
        self._reslot_attendees(client.claims.subject)
        self._changed()

    async def _set_original_under(self, client: Client, message: p.SetOriginalUnder) -> None:
        self._choice(client).original_under = message.on
        self._reslot_attendees(client.claims.subject)
        self._changed()

    async def _set_audio_only(self, client: Client, message: p.SetAudioOnly) -> None:
        self._choice(client).audio_only = message.on
        self._reslot_attendees(client.claims.subject)
        self._changed()

    async def _select_sign(self, client: Client, message: p.SelectSign) -> None:
        booth = message.booth
        if booth is not None and booth not in self._sign_booths:
            known = ", ".join(sorted(self._sign_booths)) or "none in this event"
            raise _refuse(
                "unknown_booth", f"{booth!r} is not a sign-language booth here (known: {known})"
            )
        self._choice(client).sign = booth
        self._reslot_attendees(client.claims.subject)
        self._changed()

    async def _mic(self, client: Client, message: p.Mic) -> None:
        booth = self._interpreter_booth(client, message)
        booth.mic(client.claims.subject, message.on, self.clock())
        await self._booth_changed(booth)

    async def _cough(self, client: Client, message: p.Cough) -> None:
        booth = self._interpreter_booth(client, message)
        booth.cough(client.claims.subject, message.on)
        self._changed()

    async def _request_handover(self, client: Client, message: p.RequestHandover) -> None:
        booth = self._interpreter_booth(client, message)
        booth.request_handover(client.claims.subject, self.clock())
        self._changed()

    async def _withdraw_handover(self, client: Client, message: p.WithdrawHandover) -> None:
        booth = self._interpreter_booth(client, message)
        booth.withdraw_handover(client.claims.subject)
        self._changed()

    async def _accept_handover(self, client: Client, message: p.AcceptHandover) -> None:
        booth = self._interpreter_booth(client, message)
        booth.accept_handover(client.claims.subject, self.clock())
        await self._booth_changed(booth)

    async def _take_over(self, client: Client, message: p.TakeOver) -> None:
        booth = self._interpreter_booth(client, message)
        booth.take_over(client.claims.subject, self.clock())
        await self._booth_changed(booth)

    async def _listen(self, client: Client, message: p.Listen) -> None:
        booth = self._interpreter_booth(client, message)
        source = message.source
        if source not in (None, FLOOR) and source not in self.event.language_codes:
            raise self._unknown_language(source, also="floor")
        if source is not None and booth.on_air == client.claims.subject:
            # Off air, the booth's channel is the partner: listening to it is monitoring
            # him, and the choice stops being heard once one goes on air (below).
            check = self._relay_check(booth.booth_id, source)
            if not check.allowed:
                raise _refuse("relay_loop", check.refusal())
        booth.listen(client.claims.subject, source)
        self._changed()

    async def _set_direction(self, client: Client, message: p.SetDirection) -> None:
        booth = self._interpreter_booth(client, message)
        if booth.booth_id in self._sign_booths:
            raise _refuse(
                "direction_refused", "a sign booth works one way: from the floor into signs"
            )
        booth.set_direction(client.claims.subject, message.into)
        await self._booth_changed(booth)

    async def _slow_down(self, client: Client, message: p.SlowDown) -> None:
        booth = self._interpreter_booth(client, message)
        if message.on and self.state.on_air_speaker is None:
            raise _refuse("no_speaker", "nobody is on the floor: there is nobody to slow down")
        if booth.slow_down(client.claims.subject, message.on, self.clock()):
            self._changed()

    async def _monitor(self, client: Client, message: p.Monitor) -> None:
        source = message.source
        if source != FLOOR and source not in self.event.language_codes:
            raise self._unknown_language(source, also=FLOOR)
        client.monitor = source
        self._reslot(client)
        self._changed()

    async def _start_session(self, client: Client, message: p.StartSession) -> None:
        if message.session_id not in {s.id for s in self.event.sessions}:
            known = ", ".join(s.id for s in self.event.sessions)
            raise _refuse(
                "unknown_session", f"there is no session {message.session_id!r} (known: {known})"
            )
        self.state.session_id = message.session_id
        await self._save_and_route()

    async def _end_session(self, client: Client, message: p.EndSession) -> None:
        self.state.session_id = None
        self._set_speaker(None)
        await self._save_and_route()

    async def _put_on_air(self, client: Client, message: p.PutOnAir) -> None:
        speaker_id = message.speaker_id
        if speaker_id not in {s.id for s in self.event.speakers}:
            raise _refuse("unknown_speaker", f"there is no speaker {speaker_id!r} in the program")
        if _source(speaker_publisher(speaker_id), "audio") not in self.sources:
            name = self.event.speaker(speaker_id).name
            raise _refuse(
                "speaker_not_connected",
                f"{name} is not connected: he or she must join from the speaker page first",
            )
        self._set_speaker(speaker_id)
        await self._save_and_route()

    async def _take_off_air(self, client: Client, message: p.TakeOffAir) -> None:
        self._set_speaker(None)
        await self._save_and_route()

    async def _set_floor_language(self, client: Client, message: p.SetFloorLanguage) -> None:
        language = message.language
        if language is not None and language not in self.event.language_codes:
            allowed = ", ".join(self.event.language_codes)
            raise _refuse(
                "invalid",
                f"set_floor_language is not valid: language: {language!r} is not a language "
                f"of this event (allowed: {allowed}, or null for the program's)",
            )
        if language is not None and self.state.on_air_speaker is None:
            raise _refuse(
                "no_speaker",
                "nobody is on the floor: put a speaker on air, then say which language he speaks",
            )
        self.state.floor_language = language
        await self._save_and_route()

    async def _chat_send(self, client: Client, message: p.ChatSend) -> None:
        try:
            entry = await self.chat.send(client.claims, message.thread, message.text)
        except ChatRefused as exc:
            raise _refuse(exc.code, exc.message) from None
        sent = p.Chat(messages=wire_messages([entry]))
        for other in list(self.clients):
            if entry.thread in self.chat.threads_for(other.claims):
                other.send(sent)

    async def _leave_stage(self, client: Client, message: p.LeaveStage) -> None:
        publisher_id, client.publisher_id = client.publisher_id, None
        if publisher_id is None or self._publisher_in_use(publisher_id):
            return
        self._cancel_release(publisher_id)
        await self._quietly(self.sfu.close_publisher(publisher_id))
        self._changed()

    async def _send_chat_history(self, client: Client) -> None:
        if not self.chat.threads_for(client.claims):
            return
        try:
            entries = await self.chat.history(client.claims)
        except Exception:  # the store being down must not keep anyone out of the booth
            log.exception("could not read the booth chat")
            return
        client.send(p.Chat(history=True, messages=wire_messages(entries)))

    _handlers: ClassVar[dict[str, Callable[[LiveEvent, Client, Any], Awaitable[None]]]] = {
        "ping": _ping,
        "offer": _publish,
        "subscribe": _subscribe,
        "answer": _answer,
        "select_channel": _select_channel,
        "set_original_under": _set_original_under,
        "set_audio_only": _set_audio_only,
        "select_sign": _select_sign,
        "mic": _mic,
        "cough": _cough,
        "request_handover": _request_handover,
        "withdraw_handover": _withdraw_handover,
        "accept_handover": _accept_handover,
        "take_over": _take_over,
        "listen": _listen,
        "set_direction": _set_direction,
        "slow_down": _slow_down,
        "monitor": _monitor,
        "chat_send": _chat_send,
        "leave_stage": _leave_stage,
        "start_session": _start_session,
        "end_session": _end_session,
        "put_on_air": _put_on_air,
        "take_off_air": _take_off_air,
        "set_floor_language": _set_floor_language,
    }

    # --- helpers for commands ---------------------------------------------------------

    def _interpreter_booth(self, client: Client, message: Any) -> LiveBooth:
        own = client.claims.booth
        asked = getattr(message, "booth", None)
        if asked is not None and asked != own:
            raise _refuse("out_of_scope", f"your link is for booth {own}, not {asked}")
        assert own is not None
        return self.booths[own]

    def _set_speaker(self, speaker_id: str | None) -> None:
        """Put ``speaker_id`` on the floor (None: nobody).

        What was said about the previous speaker does not carry over to another one: the
        language the moderator said he speaks and the booths' requests to slow down.
        """
        if speaker_id == self.state.on_air_speaker:
            return
        self.state.on_air_speaker = speaker_id
        self.state.floor_language = None
        for booth in self.booths.values():
            booth.clear_slow_down()

    def _choice(self, client: Client) -> AttendeeChoice:
        return self.choices[client.claims.subject]

    def _unknown_language(self, language: str, also: str = p.ORIGINAL) -> p.ProtocolError:
        known = ", ".join([also, *self.event.language_codes])
        return _refuse("unknown_language", f"{language!r} is not a channel here (known: {known})")

    async def _booth_changed(self, booth: LiveBooth) -> None:
        if booth.on_air is None:
            self.state.on_air_interpreter.pop(booth.booth_id, None)
        else:
            self.state.on_air_interpreter[booth.booth_id] = booth.on_air
        if booth.direction_override is None:
            self.state.direction_override.pop(booth.booth_id, None)
        else:
            self.state.direction_override[booth.booth_id] = booth.direction_override
        await self._save_and_route()

    async def _save_and_route(self) -> None:
        # Route first: the audience must not wait for the disk.
        self._changed()
        async with self._save_lock:
            await self.store.put_live_state(self.event.id, self.state)

    # --- routing and media ------------------------------------------------------------

    def _publisher_in_use(self, publisher_id: str) -> bool:
        return any(c.publisher_id == publisher_id for c in self.clients)

    def _changed(self) -> None:
        """Something changed: re-route now, push the state soon."""
        if not self._started:
            return
        self._apply()
        if self._push_task is None or self._push_task.done():
            self._push_task = asyncio.get_running_loop().create_task(self._push_soon())
        self._schedule_wake()

    def _on_air_speaker(self) -> tuple[str | None, str | None]:
        """The speaker on the floor and the language the floor is in (both None: nobody)."""
        speaker_id = self.state.on_air_speaker
        if speaker_id is None:
            return None, None
        return speaker_id, self.state.floor_language or self.event.speaker(speaker_id).language

    def _apply(self) -> None:
        speaker_id, floor_language = self._on_air_speaker()
        # Who feeds each booth's output: the one on air, while his media arrives (a
        # missing one gives the fallback until it returns or a partner takes over).
        on_air = {
            booth_id: booth.on_air
            for booth_id, booth in self.booths.items()
            if booth.on_air is not None
            and self._feed_of(booth_id, booth.on_air) in self.sources
            and booth_id not in self.stalled_booths
        }
        signing = {b: who for b, who in on_air.items() if b in self._sign_booths}
        on_air = {b: who for b, who in on_air.items() if b not in self._sign_booths}
        coughing = {
            booth_id
            for booth_id, booth in self.booths.items()
            if booth.coughing and booth_id not in self._sign_booths
        }
        overrides = {
            booth_id: booth.direction_override
            for booth_id, booth in self.booths.items()
            if booth.direction_override is not None and booth_id not in self._sign_booths
        }
        self.routing = route_channels(
            self.event.language_codes,
            self._booth_specs,
            floor_language,
            on_air,
            coughing,
            overrides,
            self.event.fallback,
        )
        speaker_pub = speaker_publisher(speaker_id) if speaker_id else None
        floor_audio = _source(speaker_pub, "audio") if speaker_pub else None
        wanted: dict[str, str | None] = {
            PROGRAM_VIDEO: _source(speaker_pub, "video") if speaker_pub else None,
            FLOOR_OUTPUT: floor_audio,
        }
        for language, feed in self.routing.channels.items():
            if feed.kind is FeedKind.FLOOR:
                wanted[channel_output(language)] = floor_audio
            elif feed.kind is FeedKind.INTERPRETER:
                assert feed.booth is not None and feed.interpreter is not None
                wanted[channel_output(language)] = _source(
                    interpreter_publisher(feed.booth, feed.interpreter), "audio"
                )
            else:
                wanted[channel_output(language)] = None
        for speaker in self.event.speakers:
            wanted[preview_output(speaker.id)] = _source(speaker_publisher(speaker.id), "video")
        for booth_id in self._sign_booths:
            who = signing.get(booth_id)
            wanted[sign_output(booth_id)] = self._feed_of(booth_id, who) if who else None
        for output, wanted_source in wanted.items():
            # The streamer points only at live sources; a source that arrives later
            # triggers another pass.
            source = wanted_source if wanted_source in self.sources else None
            if self._pointed.get(output, "unset") != source:
                self.sfu.point(output, source)
                self._pointed[output] = source
        for client in self.clients:
            if client.role is Role.INTERPRETER and client.subscriber_id is not None:
                try:
                    self._reslot(client)
                except StreamerError:
                    # Its peer connection failed and the streamer dropped it; the page
                    # subscribes again. Nobody else's routing may suffer for it.
                    log.warning("could not re-point an interpreter's listening", exc_info=True)
        for hook in self.session_hooks:  # session media hook: recordings, HLS
            hook(self.state.session_id)

    def _feed_of(self, booth_id: str, interpreter: str) -> str:
        """The source an interpreter feeds his booth's output with: his microphone, or
        his camera in a sign booth."""
        kind = "video" if booth_id in self._sign_booths else "audio"
        return _source(interpreter_publisher(booth_id, interpreter), kind)

    def _listen_output(self, client: Client) -> str:
        booth_id = client.claims.booth
        assert booth_id is not None
        booth = self.booths[booth_id]
        chosen = booth.listening_to(client.claims.subject)
        if (
            chosen is not None
            and booth.on_air == client.claims.subject
            and not self._relay_check(booth_id, chosen).allowed
        ):
            # Chosen off air, or before the booths turned: the one on air never hears a
            # relay that brings his own voice back; he hears the booth's default instead.
            chosen = None
        if chosen is None:
            assert self.routing is not None
            route = self.routing.booths.get(booth_id)
            chosen = route.listen if route is not None else FLOOR
        return FLOOR_OUTPUT if chosen == FLOOR else channel_output(chosen)

    def _relay_check(self, booth_id: str, source: str) -> RelayCheck:
        """The relay rule for one booth's choice, from the current routing."""
        assert self.routing is not None
        routes = self.routing.booths
        if booth_id not in routes:
            # A sign booth feeds no language channel: nothing it hears can loop back.
            return RelayCheck(source)
        # What reaches a channel is what its interpreter on air hears.
        hears = {
            b.booth_id: {
                (b.listening_to(b.on_air) if b.on_air is not None else None)
                or routes[b.booth_id].listen
            }
            for b in self.booths.values()
            if b.booth_id in routes
        }
        works_into = {b: route.into for b, route in routes.items()}
        return check_relay(booth_id, source, self._on_air_speaker()[1], works_into, hears)

    def _slots_for(self, client: Client) -> dict[str, str]:
        role = client.role
        if role is Role.ATTENDEE:
            choice = self._choice(client)
            channel = (
                FLOOR_OUTPUT if choice.channel == p.ORIGINAL else channel_output(choice.channel)
            )
            slots = {"channel": channel, "original": FLOOR_OUTPUT, "video": PROGRAM_VIDEO}
            if self._sign_booths:
                # One video slot for sign language, paused until the attendee picks a booth.
                shown = choice.sign or min(self._sign_booths)
                slots["sign"] = sign_output(shown)
            return slots
        if role is Role.INTERPRETER:
            return {"video": PROGRAM_VIDEO, "listen": self._listen_output(client)}
        if role is Role.MODERATOR:
            listen = FLOOR_OUTPUT if client.monitor == FLOOR else channel_output(client.monitor)
            slots = {"video": PROGRAM_VIDEO, "listen": listen}
            for speaker in self.event.speakers:
                slots[preview_output(speaker.id)] = preview_output(speaker.id)
            for booth_id in sorted(self._sign_booths):
                slots[sign_output(booth_id)] = sign_output(booth_id)
            return slots
        raise _refuse("forbidden", f"{role.described} does not receive media")

    def _apply_pauses(self, client: Client) -> None:
        if client.role is not Role.ATTENDEE or client.subscriber_id is None:
            return
        choice = self._choice(client)
        pauses = {
            "video": choice.audio_only,
            "original": not choice.original_under or choice.channel == p.ORIGINAL,
        }
        if "sign" in client.slots:
            pauses["sign"] = choice.audio_only or choice.sign is None
        for slot, paused in pauses.items():
            if client.paused.get(slot) != paused:
                self.sfu.pause_slot(client.subscriber_id, slot, paused)
                client.paused[slot] = paused

    def _reslot(self, client: Client) -> None:
        if client.subscriber_id is None:
            return
        for slot, output in self._slots_for(client).items():
            if client.slots.get(slot) != output:
                self.sfu.point_slot(client.subscriber_id, slot, output)
                client.slots[slot] = output
        self._apply_pauses(client)

    def _reslot_attendees(self, subject: str) -> None:
        # Every tab of the same link follows the choice: the choice belongs to the person.
        for client in self.clients:
            if client.role is Role.ATTENDEE and client.claims.subject == subject:
                self._reslot(client)

    def _output_kind(self, output: str) -> str:
        video = output == PROGRAM_VIDEO or output.startswith(("preview:", "sign:"))
        return "video" if video else "audio"

    async def _close_subscriber(self, client: Client) -> None:
        subscriber_id, client.subscriber_id = client.subscriber_id, None
        client.subscribed = False
        client.slots, client.paused = {}, {}
        if subscriber_id is not None:
            await self._quietly(self.sfu.close_subscriber(subscriber_id))

    @staticmethod
    async def _quietly(closing: Awaitable[Any]) -> None:
        try:
            await closing
        except Exception:  # closing what is already gone is fine
            log.debug("closing media failed", exc_info=True)

    # --- media watch ------------------------------------------------------------------

    async def _watch_media(self) -> None:
        """Look at the media every `monitor_interval`: stopped voices, dead air, health."""
        while True:
            await asyncio.sleep(self.monitor_interval)
            try:
                await self.check_media()
            except Exception:
                # A fault here must not end the watch: the next look may succeed.
                log.exception("watching the media failed")

    async def check_media(self) -> None:
        """Fail over from stopped interpreters and recompute the alarms (one look)."""
        activity = self.sfu.activity()
        statuses = [booth.status() for booth in self.booths.values()]
        microphones = {
            status.booth: {
                i.id: activity.get(self._feed_of(status.booth, i.id)) for i in status.interpreters
            }
            for status in statuses
        }
        now = self.clock()
        silent_for = self._silences(statuses, microphones)
        stalled = {booth for booth, silent in silent_for.items() if silent >= self.stalled_after}
        for decision in decide_failovers(
            statuses, microphones, silent_for, self.stalled_booths, self.stalled_after
        ):
            booth = self.booths[decision.booth]
            booth.fail_over(decision.to, now)
            log.warning(
                "booth %s: %s's media stopped; %s",
                decision.booth,
                decision.lost,
                f"{decision.to} takes the channel" if decision.to else "nobody was ready",
            )
            if decision.to is not None:
                stalled.discard(decision.booth)
                self._silent_since.pop(decision.booth, None)
            await self._booth_changed(booth)
        if stalled != self.stalled_booths:
            self.stalled_booths = stalled
            self._changed()
        self._update_alarms(activity, now)

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

    def _update_alarms(self, activity: Mapping[str, SourceActivity], now: float) -> None:
        if self.routing is None:
            return
        monotonic = time.monotonic()
        health_changed = False
        if monotonic - self._health_read_at >= HEALTH_INTERVAL_S:
            self._health_read_at = monotonic
            self._health = self._read_health()
            health_changed = True
        health = self._health or p.Health()
        speaker_id = self.state.on_air_speaker
        speaker_audio = _source(speaker_publisher(speaker_id), "audio") if speaker_id else None
        alarms = compute_alarms(
            now=now,
            routing=self.routing,
            speaker=speaker_id,
            speaker_audio=speaker_audio,
            interpreter_audio=self._feed_of,
            activity=activity,
            sources_health=health.publishers,
            channels_health=health.channels,
            publisher_of=lambda source: source.rsplit("/", 1)[0],
            thresholds=self.thresholds,
        )
        for source in self.alarm_sources:  # session media hook: a recording that stopped
            alarms.extend(source(now))
        alarms = self._with_start_times(alarms, now)
        media_live = speaker_audio is None or is_live(
            activity.get(speaker_audio), self.stalled_after
        )
        # `since` moves with the clock: compare what the alarms are about, not when.
        about = [alarm.subject for alarm in alarms]
        if about != [alarm.subject for alarm in self.alarms] or (
            media_live != self._speaker_media_live
        ):
            self.alarms = alarms
            self._speaker_media_live = media_live
            self._changed()
        elif health_changed:
            # Reception figures change every second and concern the moderator only.
            self.alarms = alarms
            common = self._common_state()
            for client in list(self.clients):
                if client.role is Role.MODERATOR:
                    client.send(self._state_for(client, common))

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
        health = self.sfu.health()
        publishers = {
            source_id: p.Reception(loss=round(r.loss, 4), jitter_ms=round(r.jitter_ms, 1))
            for source_id, r in health["sources"].items()
        }
        channels: dict[str, p.Reception] = {}
        worst: dict[str, float] = {}
        outputs = health["outputs"]
        for code in self.event.language_codes:
            median = outputs.get(channel_output(code))
            if median is not None:
                channels[code] = p.Reception(
                    loss=round(median.loss, 4), jitter_ms=round(median.jitter_ms, 1)
                )
                worst[code] = round(outputs[f"{channel_output(code)}:worst"].loss, 4)
        return p.Health(publishers=publishers, channels=channels, worst_loss=worst)

    # --- state pushes -----------------------------------------------------------------

    async def _push_soon(self) -> None:
        await asyncio.sleep(PUSH_COALESCE_S)
        self.push()

    def push(self) -> None:
        """Send the current state to every client now."""
        common = self._common_state()
        for client in list(self.clients):
            client.send(self._state_for(client, common))

    def _schedule_wake(self) -> None:
        """Push again when something changes by the clock alone.

        A pending handover turns into a right to take over; a request to slow down ends.
        """
        now = self.clock()
        moments = [b.take_over_allowed_at() for b in self.booths.values()]
        for booth in self.booths.values():
            request = booth.slow_down_request(now)
            moments.append(request.until if request is not None else None)
        future = [m for m in moments if m is not None and m > now]
        if self._wake_task is not None and not self._wake_task.done():
            self._wake_task.cancel()
        self._wake_task = None
        if future:
            delay = min(future) - self.clock()
            self._wake_task = asyncio.get_running_loop().create_task(self._wake(delay))

    async def _wake(self, delay: float) -> None:
        await asyncio.sleep(delay + 0.05)
        self.push()
        # Then wait for the next moment, if any; forgotten first, this running task is not
        # the one scheduling cancels.
        self._wake_task = None
        self._schedule_wake()

    def listener_counts(self) -> dict[str, int]:
        counts = {p.ORIGINAL: 0, **dict.fromkeys(self.event.language_codes, 0)}
        for client in self.clients:
            if client.role is Role.ATTENDEE and client.subscribed:
                counts[self._choice(client).channel] += 1
        return counts

    def _common_state(self) -> p.State:
        assert self.routing is not None
        speaker_id, language = self._on_air_speaker()
        on_air = None
        if speaker_id is not None and language is not None:
            on_air = p.SpeakerOnAir(
                speaker=speaker_id,
                language=language,
                connected=_source(speaker_publisher(speaker_id), "audio") in self.sources,
                media_live=self._speaker_media_live,
            )
        channels = {
            language: p.ChannelState(
                kind=feed.kind.value,
                reason=feed.reason.value,
                booth=feed.booth,
                interpreter=feed.interpreter,
            )
            for language, feed in self.routing.channels.items()
        }
        booths = [self._booth_state(booth) for booth in self.booths.values()]
        speakers = [
            s.id
            for s in self.event.speakers
            if _source(speaker_publisher(s.id), "audio") in self.sources
        ]
        interpreters = {
            booth.booth_id: [
                i.id
                for i in booth.status().interpreters
                if self._feed_of(booth.booth_id, i.id) in self.sources
            ]
            for booth in self.booths.values()
        }
        now = self.clock()
        slow_down = [
            p.SlowDownRequest(booth=booth_id, by=request.by, since=request.at, until=request.until)
            for booth_id, booth in self.booths.items()
            if (request := booth.slow_down_request(now)) is not None
        ]
        return p.State(
            server_time=now,
            session=self.state.session_id,
            on_air=on_air,
            channels=channels,
            booths=booths,
            listeners=self.listener_counts(),
            publishers=p.Publishers(speakers=speakers, interpreters=interpreters),
            floor_language=self.state.floor_language,
            slow_down=slow_down,
            alarms=[p.Alarm(**vars(alarm)) for alarm in self.alarms],
        )

    def _booth_state(self, booth: LiveBooth) -> p.BoothState:
        assert self.routing is not None
        status = booth.status()
        route = self.routing.booths.get(booth.booth_id)  # None: a sign booth
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
                    publishing=self._feed_of(booth.booth_id, i.id) in self.sources,
                )
                for i in status.interpreters
            ],
        )

    def _state_for(self, client: Client, common: p.State) -> p.State:
        claims = client.claims
        you: p.AttendeeView | p.InterpreterView | p.SpeakerView | None = None
        if claims.role is Role.ATTENDEE:
            choice = self._choice(client)
            you = p.AttendeeView(
                channel=choice.channel,
                original_under=choice.original_under,
                audio_only=choice.audio_only,
                sign=choice.sign,
            )
        elif claims.role is Role.INTERPRETER and claims.booth is not None:
            booth = self.booths[claims.booth]
            listen_output = self._listen_output(client)
            listen = FLOOR if listen_output == FLOOR_OUTPUT else listen_output.split(":", 1)[1]
            you = p.InterpreterView(
                booth=claims.booth,
                listen=listen,
                on_air=booth.on_air == claims.subject,
                may_take_over=booth.can_take_over(claims.subject, self.clock()),
                listen_loops=[
                    code
                    for code in self.event.language_codes
                    if not self._relay_check(claims.booth, code).allowed
                ],
                listen_relayed_from=list(self._relay_check(claims.booth, listen).relayed_from),
            )
        elif claims.role is Role.SPEAKER and claims.speaker is not None:
            you = p.SpeakerView(
                speaker=claims.speaker,
                on_air=self.state.on_air_speaker == claims.speaker,
                publishing=_source(speaker_publisher(claims.speaker), "audio") in self.sources,
            )
        update: dict[str, Any] = {"you": you}
        if claims.role is Role.MODERATOR:
            update["health"] = self._health
            update["monitor"] = client.monitor
        elif claims.role is Role.INTERPRETER and claims.booth is not None:
            works_into = set(self.booths[claims.booth].works_into)
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
            claims.role is Role.SPEAKER and self.state.on_air_speaker != claims.speaker
        ):
            update["slow_down"] = []
        return common.model_copy(update=update)
