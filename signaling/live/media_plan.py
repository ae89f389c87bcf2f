"""From the live state to the streamer: the routing rule's result, pointed at sources.

After every change the node runs the routing rule (`signaling.routing_rule`, one pure
function) on the shared state and points each output at its source, and each client's
slots at the outputs its role and choices call for. Every node of an event computes the
same plan from the same replica; a node points only at sources it receives itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from signaling import protocol as p
from signaling.live.clients import Client, refuse
from signaling.live.outputs import (
    PROGRAM_VIDEO,
    channel_output,
    interpreter_publisher,
    output_heard,
    preview_output,
    sign_output,
    source_of,
    speaker_publisher,
)
from signaling.relay_rule import RelayCheck, check_relay
from signaling.routing_rule import FLOOR, BoothSpec, FeedKind, Routing, route_channels
from signaling.tokens import Role
from streamer.errors import StreamerError

if TYPE_CHECKING:
    from signaling.live.event import LiveEvent

log = logging.getLogger(__name__)


def link_address(text: str) -> tuple[str, int]:
    """The "host:port" a node announces for its link, as the streamer takes it."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class MediaPlan:
    """Where this node's outputs and its clients' slots point."""

    def __init__(self, live: LiveEvent) -> None:
        self.live = live
        event = live.event
        # Sign booths feed a video each, not the language channels: the routing rule
        # knows the spoken ones only.
        self.booth_specs = [BoothSpec(b.id, tuple(b.works_into)) for b in event.spoken_booths]
        self.sign_booths = {b.id for b in event.sign_booths}
        self.routing: Routing | None = None
        #: Per output: ("point", source or None) or ("pull", the origin's link).
        self._fed: dict[str, tuple[str, str | None]] = {}
        self._wanted: dict[str, str | None] = {}

    def declare_outputs(self) -> None:
        sfu, event = self.live.sfu, self.live.event
        sfu.declare_output(PROGRAM_VIDEO, "video")
        sfu.declare_output(FLOOR, "audio")
        for code in event.language_codes:
            sfu.declare_output(channel_output(code), "audio")
        for speaker in event.speakers:
            sfu.declare_output(preview_output(speaker.id), "video")
        for booth_id in self.sign_booths:
            sfu.declare_output(sign_output(booth_id), "video")

    def on_air_speaker(self) -> tuple[str | None, str | None]:
        """The speaker on the floor and the language the floor is in (both None: nobody)."""
        state = self.live.replica.state
        speaker_id = state.on_air_speaker
        if speaker_id is None:
            return None, None
        return speaker_id, state.floor_language or self.live.event.speaker(speaker_id).language

    def feed_of(self, booth_id: str, interpreter: str) -> str:
        """The source an interpreter feeds his booth's output with: his microphone, or
        his camera in a sign booth."""
        kind = "video" if booth_id in self.sign_booths else "audio"
        return source_of(interpreter_publisher(booth_id, interpreter), kind)

    # --- outputs ----------------------------------------------------------------------

    def apply(self) -> None:
        """Run the routing rule and point every output (and interpreters' listening)."""
        live = self.live
        sources = live.event_sources()
        speaker_id, floor_language = self.on_air_speaker()
        # Who feeds each booth's output: the one on air, while his media arrives (a
        # missing one gives the fallback until it returns or a partner takes over).
        on_air = {
            booth_id: booth.on_air
            for booth_id, booth in live.booths.items()
            if booth.on_air is not None
            and self.feed_of(booth_id, booth.on_air) in sources
            and booth_id not in live.watch.stalled_booths
        }
        signing = {b: who for b, who in on_air.items() if b in self.sign_booths}
        on_air = {b: who for b, who in on_air.items() if b not in self.sign_booths}
        coughing = {
            booth_id
            for booth_id, booth in live.booths.items()
            if booth.coughing and booth_id not in self.sign_booths
        }
        overrides = {
            booth_id: booth.direction_override
            for booth_id, booth in live.booths.items()
            if booth.direction_override is not None and booth_id not in self.sign_booths
        }
        self.routing = route_channels(
            live.event.language_codes,
            self.booth_specs,
            floor_language,
            on_air,
            coughing,
            overrides,
            live.event.fallback,
        )
        speaker_pub = speaker_publisher(speaker_id) if speaker_id else None
        floor_audio = source_of(speaker_pub, "audio") if speaker_pub else None
        wanted: dict[str, str | None] = {
            PROGRAM_VIDEO: source_of(speaker_pub, "video") if speaker_pub else None,
            FLOOR: floor_audio,
        }
        for language, feed in self.routing.channels.items():
            if feed.kind is FeedKind.FLOOR:
                wanted[channel_output(language)] = floor_audio
            elif feed.kind is FeedKind.INTERPRETER:
                assert feed.booth is not None and feed.interpreter is not None
                wanted[channel_output(language)] = source_of(
                    interpreter_publisher(feed.booth, feed.interpreter), "audio"
                )
            else:
                wanted[channel_output(language)] = None
        for speaker in live.event.speakers:
            wanted[preview_output(speaker.id)] = source_of(speaker_publisher(speaker.id), "video")
        for booth_id in self.sign_booths:
            who = signing.get(booth_id)
            wanted[sign_output(booth_id)] = self.feed_of(booth_id, who) if who else None
        self._wanted = wanted
        self._feed_outputs(wanted)
        for client in live.clients:
            if client.role is Role.INTERPRETER and client.subscriber_id is not None:
                try:
                    self.reslot(client)
                except StreamerError:
                    # Its peer connection failed and the streamer dropped it; the page
                    # subscribes again. Nobody else's routing may suffer for it.
                    log.warning("could not re-point an interpreter's listening", exc_info=True)
        for hook in live.session_hooks:  # recordings, HLS
            hook(live.replica.state.session_id)

    def refresh_feeds(self) -> None:
        """Who listens here changed: pull what is now needed, stop what is not."""
        self._feed_outputs(self._wanted)

    def _feed_outputs(self, wanted: dict[str, str | None]) -> None:
        """Point each output at its source here, or pull it from the node that has it.

        A source another node receives is pulled (over the node link, from the node's
        output of the same name, which points at it there) only while someone here
        listens to that output: an edge carries nothing it does not need.
        """
        live = self.live
        holders = live.source_holders()
        # Who listens here is a walk over every client: only asked when a source is
        # elsewhere (never on a lone node), once per call.
        needed: set[str] | None = None
        for output, source in wanted.items():
            feed: tuple[str, str | None] = ("point", None)
            if source in live.sources:
                feed = ("point", source)
            elif source is not None and (holder := holders.get(source)) and holder.link:
                if needed is None:
                    needed = live.needed_outputs()
                if output in needed:
                    feed = ("pull", holder.link)
            if self._fed.get(output) == feed:
                continue
            if feed[0] == "pull":
                assert feed[1] is not None
                try:
                    live.sfu.pull(output, link_address(feed[1]))
                except (StreamerError, ValueError) as exc:
                    # Links closed, or a limit reached: the output carries nothing here
                    # rather than the wrong thing; the log says why.
                    log.warning("cannot pull %s from %s: %s", output, feed[1], exc)
                    feed = ("point", None)
                    live.sfu.point(output, None)
            else:
                # Pointing also ends a pull of this output, if there was one.
                live.sfu.point(output, feed[1])
            self._fed[output] = feed

    # --- what an interpreter hears ----------------------------------------------------

    def listen_output(self, client: Client) -> str:
        booth_id = client.claims.booth
        assert booth_id is not None
        booth = self.live.booths[booth_id]
        chosen = booth.listening_to(client.claims.subject)
        if (
            chosen is not None
            and booth.on_air == client.claims.subject
            and not self.relay_check(booth_id, chosen).allowed
        ):
            # Chosen off air, or before the booths turned: the one on air never hears a
            # relay that brings his own voice back; he hears the booth's default instead.
            chosen = None
        if chosen is None:
            assert self.routing is not None
            route = self.routing.booths.get(booth_id)
            chosen = route.listen if route is not None else FLOOR
        return output_heard(chosen)

    def relay_check(self, booth_id: str, source: str) -> RelayCheck:
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
            for b in self.live.booths.values()
            if b.booth_id in routes
        }
        works_into = {b: route.into for b, route in routes.items()}
        return check_relay(booth_id, source, self.on_air_speaker()[1], works_into, hears)

    # --- clients' slots ---------------------------------------------------------------

    def slots_for(self, client: Client) -> dict[str, str]:
        role = client.role
        event = self.live.event
        if role is Role.ATTENDEE:
            choice = self.live.choice(client)
            slots = {
                "channel": output_heard(choice.channel),
                "original": FLOOR,
                "video": PROGRAM_VIDEO,
            }
            if self.sign_booths:
                # One video slot for sign language, paused until the attendee picks a booth.
                shown = choice.sign or min(self.sign_booths)
                slots["sign"] = sign_output(shown)
            return slots
        if role is Role.INTERPRETER:
            return {"video": PROGRAM_VIDEO, "listen": self.listen_output(client)}
        if role is Role.MODERATOR:
            slots = {"video": PROGRAM_VIDEO, "listen": output_heard(client.monitor)}
            for speaker in event.speakers:
                slots[preview_output(speaker.id)] = preview_output(speaker.id)
            for booth_id in sorted(self.sign_booths):
                slots[sign_output(booth_id)] = sign_output(booth_id)
            return slots
        raise refuse("forbidden", f"{role.described} does not receive media")

    def apply_pauses(self, client: Client) -> None:
        if client.role is not Role.ATTENDEE or client.subscriber_id is None:
            return
        choice = self.live.choice(client)
        pauses = {
            "video": choice.audio_only,
            "original": not choice.original_under or choice.channel == p.ORIGINAL,
        }
        if "sign" in client.slots:
            pauses["sign"] = choice.audio_only or choice.sign is None
        for slot, paused in pauses.items():
            if client.paused.get(slot) != paused:
                self.live.sfu.pause_slot(client.subscriber_id, slot, paused)
                client.paused[slot] = paused

    def reslot(self, client: Client) -> None:
        if client.subscriber_id is None:
            return
        for slot, output in self.slots_for(client).items():
            if client.slots.get(slot) != output:
                self.live.sfu.point_slot(client.subscriber_id, slot, output)
                client.slots[slot] = output
        self.apply_pauses(client)

    def reslot_attendees(self, subject: str) -> None:
        # Every tab of the same link follows the choice: the choice belongs to the person.
        for client in self.live.audience.pages_of(subject):
            self.reslot(client)
        self.refresh_feeds()
