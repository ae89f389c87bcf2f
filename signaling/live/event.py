"""`LiveEvent`: the live side of one event on one node.

It owns the node's part of the event and wires the rooms of this package together:

- the `LiveReplica` (shared state), kept in step with the event's other nodes by the
  live bus (`bus.LocalBus` alone, `redis_bus.RedisBus` with others);
- the connected clients and what each attendee chose (`clients`);
- the commands (`commands`), which publish their changes on the bus;
- the media plan (`media_plan`): after every change, the routing rule's result pointed
  at this node's sources;
- the media watch (`media_watch`): failover and alarms from what this node receives;
- the views (`views`): the state pushed to each client, per role, coalesced;
- the staff links (`staff_links`): revoked ones refused and their connections closed;
- the seats (`seats`): one page per speaker and interpreter on all the nodes, no
  silent swap.

The durable part of the state is written to the store by the node that made the change,
so a restart restores who was on air.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from signaling import protocol as p
from signaling.alarms import Alarm, Thresholds
from signaling.booth import BoothError, LiveBooth
from signaling.booth_chat import BoothChat, ChatEntry, wire_messages
from signaling.failover import STALLED_AFTER_S
from signaling.live.bus import BusUnavailable, LiveBus, LocalBus
from signaling.live.clients import AttendeeChoice, Audience, Client, refuse
from signaling.live.commands import COMMANDS
from signaling.live.media_plan import MediaPlan
from signaling.live.media_watch import MONITOR_INTERVAL_S, MediaWatch
from signaling.live.presence import HEARTBEAT_S, NodePresence
from signaling.live.replica import SEAT_OPS, Change, LiveReplica
from signaling.live.seats import Seats
from signaling.live.staff_links import StaffLinks
from signaling.live.views import Views
from signaling.program import Event
from signaling.store import Store, StoreError
from signaling.tokens import Claims, Role
from signaling.turn_credentials import PageIceServers
from streamer import Reception, SourceActivity
from streamer.errors import PortRangeExhausted
from streamer.node_link import REMOTE_SUFFIX

log = logging.getLogger(__name__)

#: How long an unanswered handover request waits before the partner may take over.
TAKE_OVER_AFTER = 10.0
#: How long a publisher's media is kept after its WebSocket closed, waiting for it to return.
PUBLISHER_GRACE_S = 10.0
#: Changes closer together than this are pushed to clients as one state.
PUSH_COALESCE_S = 0.02
#: Listener counts change with every attendee: everyone else hears of them at most this often.
LISTENERS_EVERY_S = 1.0
#: How long a subscription offer waits for its answer before it is withdrawn: a page
#: answers within milliseconds; an offer nobody answers holds sockets and tasks.
SUBSCRIBE_ANSWER_TIMEOUT_S = 15.0


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
    async def open_links(
        self,
        host: str,
        *,
        port: int | None = None,
        public_address: tuple[str, int | None] | None = None,
    ) -> tuple[str, int]: ...
    def pull(self, output: str, origin: tuple[str, int]) -> Any: ...


class LiveEvent:
    """The live side of one event on one node."""

    def __init__(
        self,
        event: Event,
        store: Store,
        sfu: MediaPlane,
        *,
        bus: LiveBus | None = None,
        address: str = "",
        link_host: str | None = None,
        link_port: int | None = None,
        link_public_address: tuple[str, int | None] | None = None,
        take_over_after: float = TAKE_OVER_AFTER,
        publisher_grace_s: float = PUBLISHER_GRACE_S,
        clock: Callable[[], float] = time.time,
        ice_servers: PageIceServers | None = None,
        monitor_interval: float = MONITOR_INTERVAL_S,
        stalled_after: float = STALLED_AFTER_S,
        thresholds: Thresholds | None = None,
        answer_timeout_s: float = SUBSCRIBE_ANSWER_TIMEOUT_S,
    ) -> None:
        self.event = event
        self.store = store
        self.sfu = sfu
        self.bus: LiveBus = bus or LocalBus()
        self.address = address
        #: Where this node's media link listens, for other nodes to pull its outputs
        #: (None: a node alone, no link).
        self.link_host = link_host
        #: Its port (None: one of the RTC range, else any).
        self.link_port = link_port
        #: Where the other nodes send to when a NAT stands between (port None: the
        #: bound one); None: `link_host` as bound.
        self.link_public_address = link_public_address
        self.link = ""
        self.clock = clock
        self.ice_servers = ice_servers or PageIceServers()
        self.publisher_grace_s = publisher_grace_s
        self.answer_timeout_s = answer_timeout_s
        self.replica = LiveReplica(event, take_over_after)
        self.clients: set[Client] = set()
        self.audience = Audience([p.ORIGINAL, *event.language_codes])
        #: The sources this node receives from its own publishers.
        self.sources: set[str] = set()
        self.choices: dict[str, AttendeeChoice] = {}
        self.chat = BoothChat(event.id, (b.id for b in event.booths), store)
        self.plan = MediaPlan(self)
        self.watch = MediaWatch(
            self,
            interval=monitor_interval,
            stalled_after=stalled_after,
            thresholds=thresholds or Thresholds(),
        )
        self.views = Views(self)
        self.links = StaffLinks(self)
        self.seats = Seats(self)
        self._releases: dict[str, asyncio.Task[None]] = {}
        #: Per client with a subscription offer not answered yet: the task withdrawing it.
        self._answer_waits: dict[Client, asyncio.Task[None]] = {}
        self._save_lock = asyncio.Lock()
        self._push_task: asyncio.Task[None] | None = None
        self._listeners_task: asyncio.Task[None] | None = None
        self._listeners_pushed_at = 0.0
        self._wake_task: asyncio.Task[None] | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._started = False
        self._event_sources_seen: frozenset[str] = frozenset()
        # Session media (recordings, HLS: signaling/session_media.py, hls_delivery.py).
        #: Told the session in progress (None: none) after every routing pass.
        self.session_hooks: list[Callable[[str | None], None]] = []
        #: More alarms (a recording that stopped), asked at every look at the media.
        self.alarm_sources: list[Callable[[float], list[Alarm]]] = []

    @property
    def node(self) -> str:
        return self.bus.node

    @property
    def running(self) -> bool:
        """Started and not stopping: changes made now reach the other nodes."""
        return self._started

    @property
    def booths(self) -> dict[str, LiveBooth]:
        return self.replica.booths

    @property
    def thresholds(self) -> Thresholds:
        return self.watch.thresholds

    @thresholds.setter
    def thresholds(self, value: Thresholds) -> None:
        self.watch.thresholds = value

    # --- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Restore the state (from the store, or the event's other nodes), declare the
        outputs and route."""
        self.replica.load(await self.store.get_live_state(self.event.id), self.clock())
        self.plan.declare_outputs()
        self.sources = {s for s in self.sfu.sources() if not _pulled(s)}
        if self.link_host is not None:
            host, port = await self.sfu.open_links(
                self.link_host, port=self.link_port, public_address=self.link_public_address
            )
            self.link = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        await self.bus.start(self.replica, self._on_change, self._on_presence)
        self._started = True
        self.links.start()
        self.plan.apply()
        # The first states already say whether the speaker restored on air is sending.
        self.watch.update_alarms(self.sfu.activity(), self.clock())
        loop = asyncio.get_running_loop()
        self._monitor_task = loop.create_task(self.watch.run())
        self._heartbeat_task = loop.create_task(self._heartbeat())
        state = self.replica.state
        log.info(
            "live event started",
            extra={"session": state.session_id, "on_air": state.on_air_speaker},
        )

    async def stop(self) -> None:
        """Cancel the service's tasks; the streamer is closed by its owner."""
        self._started = False  # what the streamer reports while closing changes nothing
        tasks = [
            self._push_task,
            self._listeners_task,
            self._wake_task,
            self._monitor_task,
            self._heartbeat_task,
            *self._releases.values(),
            *self._answer_waits.values(),
        ]
        for task in tasks:
            if task is not None:
                await _cancel_and_wait(task)
        self._push_task = self._listeners_task = self._wake_task = None
        self._monitor_task = self._heartbeat_task = None
        self._releases.clear()
        self._answer_waits.clear()
        await self.seats.stop()
        await self.links.stop()
        await self.bus.stop()

    # --- the shared state -------------------------------------------------------------

    async def publish(self, change: Change) -> None:
        """Make ``change`` on every node; raises `BoothError` when it is refused here."""
        change = Change(change.op, change.args, at=self.clock(), node=self.node)
        durable = await self.bus.publish(change)
        if durable:
            # Routed already (on_change): the audience does not wait for the disk. The
            # change is made: a store that fails now is told to the log, not to the
            # client (the next durable change writes the whole state again).
            try:
                async with self._save_lock:
                    await self.store.put_live_state(self.event.id, self.replica.state)
            except StoreError:
                log.exception("could not keep the live state; it is kept at the next change")

    def _on_change(self, change: Change, durable: bool) -> None:
        if change.op == "chat":
            self._deliver_chat(ChatEntry(**change.args["entry"]))
            return
        if change.op == "revoke":
            self.links.revoked(str(change.args["invitation"]))
            return
        if change.op in SEAT_OPS:
            self.seats.on_change(change)  # nothing anyone is shown or hears changed
            return
        if change.op == "node_gone":
            self.seats.node_gone(str(change.args["node"]))
        self.changed()

    def _on_presence(self) -> None:
        """Another node's facts changed: its publishers (everyone sees who publishes and
        the routing follows) or only its listener counts (the staff's, once a second)."""
        sources = frozenset(self.event_sources())
        if sources != self._event_sources_seen:
            self._event_sources_seen = sources
            self.changed()
        else:
            self.listeners_changed()

    def event_sources(self) -> set[str]:
        """Every source of the event: this node's and those other nodes announce."""
        others = (presence.sources for presence in self.bus.presences())
        return self.sources.union(*others)

    def source_holders(self) -> dict[str, NodePresence]:
        """The other live nodes, by the sources they receive."""
        return {
            source: presence
            for presence in self.bus.presences()
            if presence.node != self.node
            for source in presence.sources
        }

    def needed_outputs(self) -> set[str]:
        """The outputs someone on this node listens to (or watches). A paused slot (the
        floor under the interpretation turned off, the picture of an audio-only attendee)
        needs nothing: an edge would pull and receive it for nobody."""
        return {
            output
            for client in self.clients
            if client.subscriber_id is not None
            for slot, output in client.slots.items()
            if not client.paused.get(slot)
        }

    def event_activity(self) -> dict[str, SourceActivity]:
        """How every source of the event arrives: here as measured, elsewhere as its node
        last said."""
        activity = dict(self.sfu.activity())
        for presence in self.bus.presences():
            if presence.node == self.node:
                continue
            # As announced (every second): aging them by the time since would make a
            # voice that flows look stalled between two announcements.
            for source, (packet_age, sound_age) in presence.activity.items():
                kind = presence.sources.get(source)
                if kind is not None and source not in activity:
                    activity[source] = SourceActivity(kind, packet_age, sound_age)
        return activity

    def _presence(self) -> NodePresence:
        own = {s: kind for s, kind in self.sfu.sources().items() if not _pulled(s)}
        activity = self.sfu.activity()
        return NodePresence(
            node=self.node,
            at=self.clock(),
            sources=own,
            listeners=self.views.local_listeners(),
            clients=len(self.clients),
            address=self.address,
            link=self.link,
            activity={s: (a.packet_age, a.sound_age) for s, a in activity.items() if s in own},
        )

    async def _heartbeat(self) -> None:
        while self._started:
            try:
                await self.bus.announce(self._presence())
            except Exception:
                log.exception("could not announce this node to the others")
            await asyncio.sleep(HEARTBEAT_S)

    def _announce_soon(self) -> None:
        if self._started:
            task = asyncio.get_running_loop().create_task(self.bus.announce(self._presence()))
            task.add_done_callback(_log_failure)

    # --- streamer events --------------------------------------------------------------

    def source_added(self, source_id: str, kind: str) -> None:
        if _pulled(source_id):
            return  # an output pulled from another node: its source is that node's
        self.sources.add(source_id)
        self._announce_soon()
        self.changed()

    def source_removed(self, source_id: str, kind: str) -> None:
        if _pulled(source_id):
            return
        self.sources.discard(source_id)
        self._announce_soon()
        self.changed()

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
        self.clients.add(client)
        self.seats.joined(client)
        self.audience.joined(client)
        if claims.role is Role.INTERPRETER and claims.booth is not None:
            await self.publish(Change("connect", {"booth": claims.booth, "who": claims.subject}))
        client.send(
            p.Welcome(
                role=claims.role,
                scope=p.Scope(
                    subject=claims.subject,
                    booth=claims.booth,
                    speaker=claims.speaker,
                    invitation=claims.invitation,
                ),
                event=self.views.summary(),
                # Tagged by role only: the TURN server's logs need not know who.
                ice_servers=self.ice_servers.for_page(claims.role.value),
                node=self.node,
            )
        )
        client.send(self.views.state_for(client, self.views.common_state()))
        if claims.role is Role.MODERATOR and self.seats.waiting():
            client.send(self.seats.view())
        await self._send_chat_history(client)
        # Nothing else changed for anyone: an interpreter's arrival was a change of its own
        # (above), a publisher's media is when it arrives (`source_added`).

    async def leave(self, client: Client) -> None:
        """Forget a connection and free its media."""
        if client not in self.clients:
            return
        self.clients.discard(client)
        self.audience.left(client)
        self.seats.left(client)
        claims = client.claims
        if client.subscriber_id is not None:
            await self.close_subscriber(client)
        if client.publisher_id is not None:
            publisher_id, client.publisher_id = client.publisher_id, None
            if (client.revoked or client.moved) and not self.publisher_in_use(publisher_id):
                # A revoked link's media goes now: no grace for a page that may come back;
                # nor for a page whose seat went to another node, which publishes there.
                self.cancel_release(publisher_id)
                await self.quietly(self.sfu.close_publisher(publisher_id))
                self.changed()
            else:
                self.release_later(publisher_id)
        if claims.role is Role.INTERPRETER and claims.booth is not None:
            try:
                await self.publish(
                    Change("disconnect", {"booth": claims.booth, "who": claims.subject})
                )
            except Exception:  # the bus being down must not keep a dead connection
                log.exception("could not tell the other nodes that an interpreter left")

    def choice(self, client: Client) -> AttendeeChoice:
        return self.choices[client.claims.subject]

    def choice_changed(self, subject: str) -> None:
        """An attendee chose: he hears of it at once, everyone else with the counts."""
        common = self.views.common_state()
        for client in self.audience.pages_of(subject):
            if client.subscribed:
                self.audience.listening(client, self.choices[subject].channel)
            client.send(self.views.state_for(client, common))
        self.listeners_changed()

    def listeners_changed(self) -> None:
        """Push the listener counts, at most once per `LISTENERS_EVERY_S`."""
        if not self._started or (
            self._listeners_task is not None and not self._listeners_task.done()
        ):
            return
        wait = self._listeners_pushed_at + LISTENERS_EVERY_S - time.monotonic()
        self._listeners_task = asyncio.get_running_loop().create_task(
            self._push_listeners(max(wait, 0.0))
        )

    async def _push_listeners(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self._listeners_pushed_at = time.monotonic()
        try:
            await self.bus.announce(self._presence())
        except Exception:  # the others hear of it at the next heartbeat
            log.warning("could not announce the listener counts", exc_info=True)
        self.push(roles={Role.INTERPRETER, Role.MODERATOR, Role.SPEAKER})

    def release_later(self, publisher_id: str) -> None:
        """Close a publisher nobody holds any more, after `PUBLISHER_GRACE_S`.

        Its media may be fine while its WebSocket blinked: a speaker on air stays on air
        if his page is back within the grace period (it publishes again on reconnect).
        """
        if not self._started:
            return  # stopping: the streamer closes every publisher itself
        if self.publisher_in_use(publisher_id) or publisher_id in self._releases:
            return
        self._releases[publisher_id] = asyncio.get_running_loop().create_task(
            self._release(publisher_id)
        )

    async def _release(self, publisher_id: str) -> None:
        await asyncio.sleep(self.publisher_grace_s)
        del self._releases[publisher_id]
        if not self.publisher_in_use(publisher_id):
            await self.quietly(self.sfu.close_publisher(publisher_id))

    def cancel_release(self, publisher_id: str) -> None:
        task = self._releases.pop(publisher_id, None)
        if task is not None:
            task.cancel()

    def publisher_in_use(self, publisher_id: str) -> bool:
        return any(c.publisher_id == publisher_id for c in self.clients)

    def expect_answer(self, client: Client, ref: str | int | None) -> None:
        """The client was sent a subscription offer: withdraw it unless answered in time."""
        self.answered(client)
        subscriber_id = client.subscriber_id
        self._answer_waits[client] = asyncio.get_running_loop().create_task(
            self._withdraw_unanswered(client, subscriber_id, ref)
        )

    def answered(self, client: Client) -> None:
        """The client's offer needs no withdrawing any more (answered, or closed)."""
        task = self._answer_waits.pop(client, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _withdraw_unanswered(
        self, client: Client, subscriber_id: str | None, ref: str | int | None
    ) -> None:
        await asyncio.sleep(self.answer_timeout_s)
        self._answer_waits.pop(client, None)
        if client.subscriber_id != subscriber_id or client.subscribed:
            return
        await self.close_subscriber(client)
        client.send(
            p.Error(
                code="offer_expired",
                message=f"the subscription offer was not answered within "
                f"{self.answer_timeout_s:g} s and is withdrawn: send subscribe again",
                ref=ref,
            )
        )

    async def close_subscriber(self, client: Client) -> None:
        self.answered(client)
        subscriber_id, client.subscriber_id = client.subscriber_id, None
        was_listening, client.subscribed = client.subscribed, False
        client.slots, client.paused = {}, {}
        if subscriber_id is not None:
            await self.quietly(self.sfu.close_subscriber(subscriber_id))
        if was_listening and client.role is Role.ATTENDEE:
            self.audience.stopped(client)
            self.listeners_changed()
        if self._started:
            self.plan.refresh_feeds()  # pulls nobody here needs any more end

    @staticmethod
    async def quietly(closing: Awaitable[Any]) -> None:
        try:
            await closing
        except Exception:  # closing what is already gone is fine
            log.debug("closing media failed", exc_info=True)

    @staticmethod
    def server_full(exc: PortRangeExhausted) -> p.ProtocolError:
        """What a page is told when the node's media ports are all taken (the operator is
        told to widen the range, in the log)."""
        log.warning("%s", exc)
        return refuse(
            "server_full",
            "the server cannot take another media connection right now: every media port it "
            "may use is taken; try again in a moment",
        )

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
        return self.views.summary()

    def listener_counts(self) -> dict[str, int]:
        return self.views.listener_counts()

    # --- commands ---------------------------------------------------------------------

    async def handle(self, client: Client, message: Any) -> None:
        """Carry out one role-checked command; raises `ProtocolError` when refused."""
        try:
            await COMMANDS[message.type](self, client, message)
        except BoothError as exc:
            raise refuse(exc.code, exc.message) from None
        except BusUnavailable as exc:
            raise refuse("unavailable", f"{exc}; try again in a moment") from None

    def _deliver_chat(self, entry: ChatEntry) -> None:
        sent = p.Chat(messages=wire_messages([entry]))
        for client in list(self.clients):
            if entry.thread in self.chat.threads_for(client.claims):
                client.send(sent)

    async def _send_chat_history(self, client: Client) -> None:
        if not self.chat.threads_for(client.claims):
            return
        try:
            entries = await self.chat.history(client.claims)
        except Exception:  # the store being down must not keep anyone out of the booth
            log.exception("could not read the booth chat")
            return
        client.send(p.Chat(history=True, messages=wire_messages(entries)))

    async def check_media(self) -> None:
        """One look at the media (failover and alarms); the watch does it on its own."""
        await self.watch.check()

    # --- routing and pushes -------------------------------------------------------------

    def changed(self) -> None:
        """Something changed: re-route now, push the state soon."""
        if not self._started:
            return
        self.plan.apply()
        if self._push_task is None or self._push_task.done():
            self._push_task = asyncio.get_running_loop().create_task(self._push_soon())
        self._schedule_wake()

    async def _push_soon(self) -> None:
        await asyncio.sleep(PUSH_COALESCE_S)
        self.push()

    def push(
        self, *, roles: Iterable[Role] | None = None, clients: Iterable[Client] | None = None
    ) -> None:
        """Send the current state now: to ``clients``, or to every client (of ``roles``)."""
        common = self.views.common_state()
        wanted = set(roles) if roles is not None else None
        for client in list(clients if clients is not None else self.clients):
            if wanted is None or client.role in wanted:
                client.send(self.views.state_for(client, common))

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


def _pulled(source_id: str) -> bool:
    return source_id.endswith(REMOTE_SUFFIX)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not announce this node", exc_info=task.exception())


async def _cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended, however it ends.

    A cancellation can be lost: one that reaches a Redis call just as it completes is
    swallowed by the client or by Python 3.11's `asyncio.wait_for`, and the task goes
    on as if nothing was asked (a heartbeat loop would go on for ever, and the node's
    stop with it). So it is asked again until the task is done.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.cancelled() and task.exception() is not None:
        # It had failed already; stopping goes on.
        log.debug("a live task had failed before the stop", exc_info=task.exception())
