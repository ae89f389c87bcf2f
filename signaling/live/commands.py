"""The commands a client may send, one function each.

Commands arrive parsed and role-checked from `signaling.websocket`. Each checks what
this node can tell (an unknown speaker, a language the event lacks, a relay that would
loop) and raises `ProtocolError` when refused; what changes the event's shared state
becomes a `Change` published on the live bus, so every node applies it in the same
order. An attendee's own choices (channel, original underneath, audio only, sign
language) are his node's business alone.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from signaling import protocol as p
from signaling.booth import LiveBooth
from signaling.booth_chat import ChatRefused
from signaling.invitations import InvitationError
from signaling.live.clients import Client, refuse
from signaling.live.outputs import (
    interpreter_publisher,
    lip_sync_streams,
    output_kind,
    source_of,
    speaker_publisher,
)
from signaling.live.replica import Change
from signaling.routing_rule import FLOOR
from signaling.store import StoreError
from signaling.tokens import Role
from streamer.errors import PortRangeExhausted, StreamerError
from streamer.negotiation import check_publisher_offer

if TYPE_CHECKING:
    from signaling.live.event import LiveEvent

Command = Callable[["LiveEvent", Client, Any], Awaitable[None]]


def _unknown_language(live: LiveEvent, language: str, also: str = p.ORIGINAL) -> p.ProtocolError:
    known = ", ".join([also, *live.event.language_codes])
    return refuse("unknown_language", f"{language!r} is not a channel here (known: {known})")


def _own_booth(live: LiveEvent, client: Client, message: Any) -> LiveBooth:
    own = client.claims.booth
    asked = getattr(message, "booth", None)
    if asked is not None and asked != own:
        raise refuse("out_of_scope", f"your link is for booth {own}, not {asked}")
    assert own is not None
    return live.booths[own]


async def _booth_change(
    live: LiveEvent, client: Client, message: Any, op: str, **args: Any
) -> None:
    booth = _own_booth(live, client, message)
    await live.publish(Change(op, {"booth": booth.booth_id, "who": client.claims.subject, **args}))


# --- everyone ------------------------------------------------------------------------


async def ping(live: LiveEvent, client: Client, message: p.Ping) -> None:
    client.send(p.Pong(ref=message.id))


async def subscribe(live: LiveEvent, client: Client, message: p.Subscribe) -> None:
    if client.subscriber_id is not None:
        await live.close_subscriber(client)
    slots = live.plan.slots_for(client)
    # Unique per connection; the subject stays out (it may be long).
    subscriber_id = f"{client.role.value}:{client.number}"
    try:
        offer = await live.sfu.subscribe(subscriber_id, slots, lip_sync_streams(slots))
    except PortRangeExhausted as exc:
        raise live.server_full(exc) from None
    if client not in live.clients:  # left while the offer was being made
        await live.quietly(live.sfu.close_subscriber(subscriber_id))
        return
    client.subscriber_id = subscriber_id
    client.slots = dict(slots)
    client.paused = {}
    # The routing may have changed while the offer was being made; what this client
    # listens to may have to be pulled from another node.
    live.plan.reslot(client)
    live.plan.refresh_feeds()
    mids = re.findall(r"^a=mid:(\S+)", offer, flags=re.MULTILINE)
    client.send(
        p.ServerOffer(
            sdp=offer,
            slots=[
                p.SlotView(
                    name=name,
                    kind=output_kind(output),
                    output=output,
                    mid=mids[i] if i < len(mids) else None,
                )
                for i, (name, output) in enumerate(slots.items())
            ],
        )
    )
    live.expect_answer(client, message.id)


async def answer(live: LiveEvent, client: Client, message: p.Answer) -> None:
    subscriber_id = client.subscriber_id
    if subscriber_id is None:
        raise refuse("no_offer", "there is no offer to answer: send subscribe first")
    try:
        await live.sfu.accept_answer(subscriber_id, message.sdp)
    except StreamerError as exc:
        raise refuse("bad_sdp", f"the answer could not be used: {exc}") from None
    if client.subscriber_id != subscriber_id:
        # Withdrawn (it expired) or replaced while the answer was being applied.
        raise refuse("offer_expired", "this offer was withdrawn: send subscribe again")
    live.answered(client)
    client.subscribed = True
    if client.role is Role.ATTENDEE:
        live.audience.listening(client, live.choice(client).channel)
    live.listeners_changed()


# --- publishers ----------------------------------------------------------------------


def _media_allowed(live: LiveEvent, client: Client) -> tuple[set[str], str]:
    """The kinds of media this publisher may send, and who he is, for the refusal."""
    booth = client.claims.booth
    if client.role is Role.SPEAKER:
        return {"audio", "video"}, "a speaker"
    if booth in live.plan.sign_booths:
        # His camera feeds the booth's video; a microphone is kept for his partner.
        return {"audio", "video"}, "the interpreter of a sign-language booth"
    return {"audio"}, "an interpreter of a spoken-language booth"


def _check_media_kinds(live: LiveEvent, client: Client, sdp: str) -> None:
    """Refuse an offer carrying media the sender's role does not publish (an interpreter
    with a camera would otherwise hold a video source nothing may carry)."""
    try:
        kinds = check_publisher_offer(sdp)
    except StreamerError as exc:
        raise refuse("bad_sdp", f"the offer could not be used: {exc}") from None
    allowed, who = _media_allowed(live, client)
    extra = [kind for kind in kinds if kind not in allowed]
    if extra:
        raise refuse(
            "media_not_allowed",
            f"the offer sends {' and '.join(extra)}, which {who} does not publish: "
            f"send {' and '.join(sorted(allowed))} only",
        )


async def publish(live: LiveEvent, client: Client, message: p.Offer) -> None:
    claims = client.claims
    if claims.role is Role.SPEAKER:
        assert claims.speaker is not None
        publisher_id = speaker_publisher(claims.speaker)
    else:
        _own_booth(live, client, message)
        assert claims.booth is not None
        publisher_id = interpreter_publisher(claims.booth, claims.subject)
    _check_media_kinds(live, client, message.sdp)
    # A reconnecting publisher replaces its previous connection: the newest one wins
    # (the streamer replaces a peer published again under the same id).
    live.cancel_release(publisher_id)
    for other in live.clients:
        if other is not client and other.publisher_id == publisher_id:
            other.publisher_id = None
    client.publisher_id = publisher_id
    try:
        sdp = await live.sfu.publish(publisher_id, message.sdp)
    except PortRangeExhausted as exc:
        client.publisher_id = None
        live.release_later(publisher_id)
        raise live.server_full(exc) from None
    except StreamerError as exc:
        client.publisher_id = None
        live.release_later(publisher_id)
        raise refuse("bad_sdp", f"the offer could not be used: {exc}") from None
    if client not in live.clients:  # left while the answer was being made
        client.publisher_id = None
        live.release_later(publisher_id)
        return
    client.send(p.ServerAnswer(sdp=sdp))
    live.changed()


async def leave_stage(live: LiveEvent, client: Client, message: p.LeaveStage) -> None:
    publisher_id, client.publisher_id = client.publisher_id, None
    if publisher_id is None or live.publisher_in_use(publisher_id):
        return
    live.cancel_release(publisher_id)
    await live.quietly(live.sfu.close_publisher(publisher_id))
    live.changed()


# --- an attendee's own choices ---------------------------------------------------------


async def _choose(live: LiveEvent, client: Client, **choice: Any) -> None:
    subject = client.claims.subject
    live.choices[subject] = dataclasses.replace(live.choice(client), **choice)
    live.plan.reslot_attendees(subject)
    live.choice_changed(subject)


async def select_channel(live: LiveEvent, client: Client, message: p.SelectChannel) -> None:
    language = message.language
    if language != p.ORIGINAL and language not in live.event.language_codes:
        raise _unknown_language(live, language)
    await _choose(live, client, channel=language)


async def set_original_under(live: LiveEvent, client: Client, message: p.SetOriginalUnder) -> None:
    await _choose(live, client, original_under=message.on)


async def set_audio_only(live: LiveEvent, client: Client, message: p.SetAudioOnly) -> None:
    await _choose(live, client, audio_only=message.on)


async def select_sign(live: LiveEvent, client: Client, message: p.SelectSign) -> None:
    booth = message.booth
    sign_booths = live.plan.sign_booths
    if booth is not None and booth not in sign_booths:
        known = ", ".join(sorted(sign_booths)) or "none in this event"
        raise refuse(
            "unknown_booth", f"{booth!r} is not a sign-language booth here (known: {known})"
        )
    await _choose(live, client, sign=booth)


# --- interpreters ----------------------------------------------------------------------


async def mic(live: LiveEvent, client: Client, message: p.Mic) -> None:
    await _booth_change(live, client, message, "mic", on=message.on)


async def cough(live: LiveEvent, client: Client, message: p.Cough) -> None:
    await _booth_change(live, client, message, "cough", on=message.on)


async def request_handover(live: LiveEvent, client: Client, message: p.RequestHandover) -> None:
    await _booth_change(live, client, message, "request_handover")


async def withdraw_handover(live: LiveEvent, client: Client, message: p.WithdrawHandover) -> None:
    await _booth_change(live, client, message, "withdraw_handover")


async def accept_handover(live: LiveEvent, client: Client, message: p.AcceptHandover) -> None:
    await _booth_change(live, client, message, "accept_handover")


async def take_over(live: LiveEvent, client: Client, message: p.TakeOver) -> None:
    await _booth_change(live, client, message, "take_over")


async def listen(live: LiveEvent, client: Client, message: p.Listen) -> None:
    booth = _own_booth(live, client, message)
    source = message.source
    if source not in (None, FLOOR) and source not in live.event.language_codes:
        raise _unknown_language(live, source, also="floor")
    if source is not None and booth.on_air == client.claims.subject:
        # Off air, the booth's channel is the partner: listening to it is monitoring
        # him, and the choice stops being heard once one goes on air (below).
        check = live.plan.relay_check(booth.booth_id, source)
        if not check.allowed:
            raise refuse("relay_loop", check.refusal())
    await _booth_change(live, client, message, "listen", source=source)


async def set_direction(live: LiveEvent, client: Client, message: p.SetDirection) -> None:
    booth = _own_booth(live, client, message)
    if booth.booth_id in live.plan.sign_booths:
        raise refuse("direction_refused", "a sign booth works one way: from the floor into signs")
    await _booth_change(live, client, message, "set_direction", into=message.into)


async def slow_down(live: LiveEvent, client: Client, message: p.SlowDown) -> None:
    _own_booth(live, client, message)
    if message.on and live.replica.state.on_air_speaker is None:
        raise refuse("no_speaker", "nobody is on the floor: there is nobody to slow down")
    await _booth_change(live, client, message, "slow_down", on=message.on)


async def chat_send(live: LiveEvent, client: Client, message: p.ChatSend) -> None:
    try:
        entry = await live.chat.send(client.claims, message.thread, message.text)
    except ChatRefused as exc:
        raise refuse(exc.code, exc.message) from None
    await live.publish(Change("chat", {"entry": dataclasses.asdict(entry)}))


# --- the moderator ---------------------------------------------------------------------


async def monitor(live: LiveEvent, client: Client, message: p.Monitor) -> None:
    source = message.source
    if source != FLOOR and source not in live.event.language_codes:
        raise _unknown_language(live, source, also=FLOOR)
    client.monitor = source
    live.plan.reslot(client)
    live.plan.refresh_feeds()
    live.push(clients=[client])


async def start_session(live: LiveEvent, client: Client, message: p.StartSession) -> None:
    if message.session_id not in {s.id for s in live.event.sessions}:
        known = ", ".join(s.id for s in live.event.sessions)
        raise refuse(
            "unknown_session", f"there is no session {message.session_id!r} (known: {known})"
        )
    await live.publish(Change("start_session", {"session": message.session_id}))


async def end_session(live: LiveEvent, client: Client, message: p.EndSession) -> None:
    await live.publish(Change("end_session"))


async def put_on_air(live: LiveEvent, client: Client, message: p.PutOnAir) -> None:
    speaker_id = message.speaker_id
    if speaker_id not in {s.id for s in live.event.speakers}:
        raise refuse("unknown_speaker", f"there is no speaker {speaker_id!r} in the program")
    if source_of(speaker_publisher(speaker_id), "audio") not in live.event_sources():
        name = live.event.speaker(speaker_id).name
        raise refuse(
            "speaker_not_connected",
            f"{name} is not connected: he or she must join from the speaker page first",
        )
    await live.publish(Change("put_on_air", {"speaker": speaker_id}))


async def take_off_air(live: LiveEvent, client: Client, message: p.TakeOffAir) -> None:
    await live.publish(Change("take_off_air"))


async def set_floor_language(live: LiveEvent, client: Client, message: p.SetFloorLanguage) -> None:
    language = message.language
    if language is not None and language not in live.event.language_codes:
        allowed = ", ".join(live.event.language_codes)
        raise refuse(
            "invalid",
            f"set_floor_language is not valid: language: {language!r} is not a language "
            f"of this event (allowed: {allowed}, or null for the program's)",
        )
    if language is not None and live.replica.state.on_air_speaker is None:
        raise refuse(
            "no_speaker",
            "nobody is on the floor: put a speaker on air, then say which language he speaks",
        )
    await live.publish(Change("set_floor_language", {"language": language}))


# --- seats and staff links -------------------------------------------------------------


async def seat_here(live: LiveEvent, client: Client, message: p.SeatHere) -> None:
    await live.seats.here(client, message.check)


async def answer_claim(live: LiveEvent, client: Client, message: p.AnswerClaim) -> None:
    await live.seats.answer(client, message.claim, message.allow)


async def list_links(live: LiveEvent, client: Client, message: p.ListLinks) -> None:
    try:
        client.send(await live.links.listing())
    except StoreError as exc:
        raise refuse("unavailable", f"the links cannot be read now ({exc}); try again") from None


async def revoke_link(live: LiveEvent, client: Client, message: p.RevokeLink) -> None:
    try:
        await live.links.revoke(message.link)
    except InvitationError as exc:
        raise refuse(exc.code, str(exc)) from None
    except StoreError as exc:
        raise refuse("unavailable", f"the links cannot be read now ({exc}); try again") from None


#: Every command by its message type.
COMMANDS: dict[str, Command] = {
    "ping": ping,
    "offer": publish,
    "subscribe": subscribe,
    "answer": answer,
    "select_channel": select_channel,
    "set_original_under": set_original_under,
    "set_audio_only": set_audio_only,
    "select_sign": select_sign,
    "mic": mic,
    "cough": cough,
    "request_handover": request_handover,
    "withdraw_handover": withdraw_handover,
    "accept_handover": accept_handover,
    "take_over": take_over,
    "listen": listen,
    "set_direction": set_direction,
    "slow_down": slow_down,
    "monitor": monitor,
    "chat_send": chat_send,
    "leave_stage": leave_stage,
    "start_session": start_session,
    "end_session": end_session,
    "put_on_air": put_on_air,
    "take_off_air": take_off_air,
    "set_floor_language": set_floor_language,
    "seat_here": seat_here,
    "answer_claim": answer_claim,
    "list_links": list_links,
    "revoke_link": revoke_link,
}
