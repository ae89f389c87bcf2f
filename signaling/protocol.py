"""The WebSocket protocol between the pages and a node: every message, both directions.

One JSON object per text frame, each with a ``type``. Client messages are one
discriminated union (`ClientMessage`), server messages another (`ServerMessage`);
`docs/protocol.md` describes each with an example. The first client message must be
``auth`` carrying the protocol version (`PROTOCOL_VERSION`) and the token.

`parse_client_message` turns a raw frame into a model or raises `ProtocolError` with the
code and sentence the client receives; `ALLOWED_ROLES` says who may send what. Any client
message may carry an ``id`` (a short string or an integer) that errors echo as ``ref``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    TypeAdapter,
    ValidationError,
    model_serializer,
)
from pydantic_core import PydanticSerializationError

from signaling import untrusted_json
from signaling.tokens import Role

PROTOCOL_VERSION = 1

#: Offers and answers carry SDP: a browser's offer with audio, video and its ICE candidates
#: is a few KiB; anything near this cap is not an honest SDP.
MAX_SDP_MESSAGE_BYTES = 64 * 1024
#: Every other message is a handful of fields.
MAX_MESSAGE_BYTES = 4 * 1024

#: Client messages are flat objects; nothing honest nests deeper than this. Deeper JSON is
#: refused before it is looked at (a few thousand brackets would exhaust the parser's
#: recursion otherwise).
MAX_NESTING = 8
#: Numbers on the wire are ids and the protocol version: anything longer is not honest,
#: and converting thousands of digits costs quadratic time.
MAX_NUMBER_CHARS = 20

#: The longest chat message, in characters: a note to a partner, not a document.
CHAT_MAX_CHARS = 500

#: The attendee's choice of the untranslated floor instead of a language channel.
ORIGINAL = "original"

Ref = Annotated[str, Field(max_length=64)] | int
Code = Annotated[str, Field(min_length=1, max_length=32)]
Id = Annotated[str, Field(min_length=1, max_length=200)]
Sdp = Annotated[str, Field(min_length=1, max_length=MAX_SDP_MESSAGE_BYTES)]


class WireMessage(BaseModel):
    """Any message of the protocol, either direction: frozen, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _ClientMessage(WireMessage):
    # Strict: ``true`` is not 1 and ``"1"`` is not a number; pages send JSON's own types.
    model_config = ConfigDict(strict=True)

    id: Ref | None = None


class _InterpreterMessage(_ClientMessage):
    #: Optional: when given it must be the booth of the interpreter's link.
    booth: Id | None = None


# --- client -> server ------------------------------------------------------------------


class Auth(_ClientMessage):
    type: Literal["auth"]
    #: Exactly the integer `PROTOCOL_VERSION` (``true``, ``1.0`` and ``"1"`` are refused).
    v: StrictInt
    token: Annotated[str, Field(min_length=1, max_length=2048)]
    #: Ask to take over a speaker's or interpreter's seat that another page holds with
    #: the same link: granted once that page or the moderator agrees (`seat_waiting`).
    claim: bool = False


class Ping(_ClientMessage):
    type: Literal["ping"]


class Offer(_ClientMessage):
    """A publisher's offer (speaker: audio + video; interpreter: audio)."""

    type: Literal["offer"]
    purpose: Literal["publish"]
    sdp: Sdp


class Answer(_ClientMessage):
    """The answer to the server's ``offer`` for a subscription."""

    type: Literal["answer"]
    purpose: Literal["subscribe"]
    sdp: Sdp


class Subscribe(_ClientMessage):
    """Ask for the media this role receives; the server replies with an ``offer``."""

    type: Literal["subscribe"]


class SelectChannel(_ClientMessage):
    type: Literal["select_channel"]
    #: An event language code, or "original" for the floor.
    language: Code


class SetOriginalUnder(_ClientMessage):
    type: Literal["set_original_under"]
    on: bool


class SetAudioOnly(_ClientMessage):
    type: Literal["set_audio_only"]
    on: bool


class SelectSign(_ClientMessage):
    """Show a sign-language booth over the program video (or none)."""

    type: Literal["select_sign"]
    booth: Id | None


class Mic(_InterpreterMessage):
    type: Literal["mic"]
    on: bool


class Cough(_InterpreterMessage):
    type: Literal["cough"]
    on: bool


class RequestHandover(_InterpreterMessage):
    type: Literal["request_handover"]


class WithdrawHandover(_InterpreterMessage):
    """Take back one's own pending handover request."""

    type: Literal["withdraw_handover"]


class AcceptHandover(_InterpreterMessage):
    type: Literal["accept_handover"]


class TakeOver(_InterpreterMessage):
    type: Literal["take_over"]


class Listen(_InterpreterMessage):
    type: Literal["listen"]
    #: "floor", an event language code (relay), or null for the booth's default.
    source: Code | None


class SetDirection(_InterpreterMessage):
    type: Literal["set_direction"]
    #: One of the booth's languages, or null to let the direction follow the speaker.
    into: Code | None


class SlowDown(_InterpreterMessage):
    """Ask the speaker on air to slow down (on), or withdraw the booth's request (off)."""

    type: Literal["slow_down"]
    on: bool


class Monitor(_ClientMessage):
    """The moderator chooses what he listens to in the studio."""

    type: Literal["monitor"]
    #: "floor" or an event language code (that channel, as attendees hear it).
    source: Code


class ChatSend(_ClientMessage):
    """A chat message: between the partners of a booth, or between a booth and the studio."""

    type: Literal["chat_send"]
    #: "booth:<booth_id>" (the partners of a booth) or "studio:<booth_id>" (a booth and
    #: the moderator).
    thread: Annotated[str, Field(min_length=1, max_length=250)]
    #: Up to `CHAT_MAX_CHARS` characters once trimmed; longer texts are refused with
    #: ``chat_too_long`` (the model only keeps a frame from being absurd).
    text: Annotated[str, Field(max_length=MAX_MESSAGE_BYTES)]


class LeaveStage(_ClientMessage):
    """A speaker stops publishing now (his page's Leave button), without closing the page."""

    type: Literal["leave_stage"]


class StartSession(_ClientMessage):
    type: Literal["start_session"]
    session_id: Id


class EndSession(_ClientMessage):
    type: Literal["end_session"]


class PutOnAir(_ClientMessage):
    type: Literal["put_on_air"]
    speaker_id: Id


class TakeOffAir(_ClientMessage):
    type: Literal["take_off_air"]


class SetFloorLanguage(_ClientMessage):
    """The language the speaker on air actually speaks, when it is not the program's."""

    type: Literal["set_floor_language"]
    #: An event language code, or null for the speaker's language as in the program.
    language: Code | None


# --- one page per seat, staff links ------------------------------------------------------


class SeatHere(_ClientMessage):
    """A page answers the server's ``seat_check``: it is still there."""

    type: Literal["seat_here"]
    check: Code


class AnswerClaim(_ClientMessage):
    """The page holding a seat (or the moderator) lets another page take it over, or not."""

    type: Literal["answer_claim"]
    claim: Code
    allow: bool


class ListLinks(_ClientMessage):
    """The moderator asks for the staff links of the event (answered by ``links``)."""

    type: Literal["list_links"]


class RevokeLink(_ClientMessage):
    """The moderator takes back a staff link: refused from now on, its pages closed."""

    type: Literal["revoke_link"]
    link: Id


ClientMessage = Annotated[
    Auth
    | Ping
    | Offer
    | Answer
    | Subscribe
    | SelectChannel
    | SetOriginalUnder
    | SetAudioOnly
    | SelectSign
    | Mic
    | Cough
    | RequestHandover
    | WithdrawHandover
    | AcceptHandover
    | TakeOver
    | Listen
    | SetDirection
    | SlowDown
    | Monitor
    | ChatSend
    | LeaveStage
    | StartSession
    | EndSession
    | PutOnAir
    | TakeOffAir
    | SetFloorLanguage
    | SeatHere
    | AnswerClaim
    | ListLinks
    | RevokeLink,
    Field(discriminator="type"),
]

_CLIENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(ClientMessage)
_SDP_TYPES = frozenset({"offer", "answer"})
_EVERYONE = frozenset(Role)

#: Which roles may send each message type (``auth`` is handled before roles exist).
ALLOWED_ROLES: dict[str, frozenset[Role]] = {
    "ping": _EVERYONE,
    "offer": frozenset({Role.SPEAKER, Role.INTERPRETER}),
    "answer": frozenset({Role.ATTENDEE, Role.INTERPRETER, Role.MODERATOR}),
    "subscribe": frozenset({Role.ATTENDEE, Role.INTERPRETER, Role.MODERATOR}),
    "select_channel": frozenset({Role.ATTENDEE}),
    "set_original_under": frozenset({Role.ATTENDEE}),
    "set_audio_only": frozenset({Role.ATTENDEE}),
    "select_sign": frozenset({Role.ATTENDEE}),
    "mic": frozenset({Role.INTERPRETER}),
    "cough": frozenset({Role.INTERPRETER}),
    "request_handover": frozenset({Role.INTERPRETER}),
    "withdraw_handover": frozenset({Role.INTERPRETER}),
    "accept_handover": frozenset({Role.INTERPRETER}),
    "take_over": frozenset({Role.INTERPRETER}),
    "listen": frozenset({Role.INTERPRETER}),
    "set_direction": frozenset({Role.INTERPRETER}),
    "slow_down": frozenset({Role.INTERPRETER}),
    "monitor": frozenset({Role.MODERATOR}),
    "chat_send": frozenset({Role.INTERPRETER, Role.MODERATOR}),
    "leave_stage": frozenset({Role.SPEAKER}),
    "start_session": frozenset({Role.MODERATOR}),
    "end_session": frozenset({Role.MODERATOR}),
    "put_on_air": frozenset({Role.MODERATOR}),
    "take_off_air": frozenset({Role.MODERATOR}),
    "set_floor_language": frozenset({Role.MODERATOR}),
    "seat_here": frozenset({Role.SPEAKER, Role.INTERPRETER}),
    "answer_claim": frozenset({Role.SPEAKER, Role.INTERPRETER, Role.MODERATOR}),
    "list_links": frozenset({Role.MODERATOR}),
    "revoke_link": frozenset({Role.MODERATOR}),
}
CLIENT_TYPES = frozenset(ALLOWED_ROLES) | {"auth"}


class ProtocolError(Exception):
    """A client message that is refused; becomes an ``error`` message on the wire."""

    def __init__(self, code: str, message: str, ref: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


def _ref_of(data: dict[str, Any]) -> str | int | None:
    ref = data.get("id")
    if isinstance(ref, bool):
        return None
    if isinstance(ref, int) and len(str(ref)) <= MAX_NUMBER_CHARS:
        return ref
    if isinstance(ref, str) and len(ref) <= 64 and _is_text(ref):
        return ref
    return None


def _is_text(value: str) -> bool:
    """False for a string holding a lone surrogate (``"\\ud800"`` in JSON): it is no
    Unicode text, cannot be written as UTF-8, and would break the reply that echoes it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _describe_validation(type_: str, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False)[:5]:
        # The first location item is the union tag; the rest is the field path.
        where = ".".join(str(p) for p in error["loc"][1:]) or "message"
        if error["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown field")
        else:
            problems.append(f"{where}: {error['msg']}")
    return f"{type_} is not valid: " + "; ".join(problems)


def parse_client_message(raw: str | bytes) -> Any:
    """One client frame as a `ClientMessage` model; raises `ProtocolError` when refused."""
    if isinstance(raw, bytes):
        raise ProtocolError("malformed", "messages are JSON text frames, not binary frames")
    size = len(raw.encode("utf-8", "surrogatepass"))
    try:
        data = untrusted_json.loads(raw, max_depth=MAX_NESTING, max_number_chars=MAX_NUMBER_CHARS)
    except untrusted_json.UntrustedJson as exc:
        if size > MAX_SDP_MESSAGE_BYTES:
            data = None  # too large says more than malformed
        else:
            raise ProtocolError("malformed", f"the message is refused: {exc}") from None
    if size > MAX_SDP_MESSAGE_BYTES:
        # Parsed anyway (the transport caps frames) only to echo the sender's id.
        ref = _ref_of(data) if isinstance(data, dict) else None
        raise ProtocolError(
            "too_large",
            f"message of {size} bytes refused: the limit is {MAX_SDP_MESSAGE_BYTES}",
            ref,
        )
    if not isinstance(data, dict):
        raise ProtocolError("malformed", "a message must be a JSON object")
    ref = _ref_of(data)
    type_ = data.get("type")
    if not isinstance(type_, str):
        raise ProtocolError("malformed", 'a message needs a "type" (a string)', ref)
    if type_ not in CLIENT_TYPES:
        shown = type_ if len(type_) <= 40 else type_[:40] + "…"
        raise ProtocolError("unknown_type", f"unknown message type {shown!r}", ref)
    if type_ not in _SDP_TYPES and size > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            "too_large",
            f"{type_} message of {size} bytes refused: the limit is {MAX_MESSAGE_BYTES}",
            ref,
        )
    if type_ == "auth":
        version = data.get("v")
        if "v" in data and (type(version) is not int or version != PROTOCOL_VERSION):
            shown = json.dumps(version)[:24]
            if type(version) is not int:
                shown += f" (a version is the integer {PROTOCOL_VERSION})"
            raise ProtocolError(
                "unsupported_version",
                f"this server speaks protocol version {PROTOCOL_VERSION}, not {shown}: "
                "reload the page",
                ref,
            )
    try:
        return _CLIENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError("invalid", _describe_validation(type_, exc), ref) from None


# --- server -> client ------------------------------------------------------------------


class LanguageInfo(WireMessage):
    code: str
    name: str


class BoothInfo(WireMessage):
    id: str
    name: str
    #: "sign": the booth's interpreter signs on camera (a video attendees may show).
    kind: Literal["spoken", "sign"] = "spoken"
    works_into: list[str]


class EventSummary(WireMessage):
    id: str
    title: dict[str, str]
    languages: list[LanguageInfo]
    booths: list[BoothInfo]
    fallback: Literal["floor", "silence"]
    #: The length of an interpreter's turn on air, after which the booth is reminded to
    #: hand over (the program's ``shift_minutes``).
    shift_minutes: int = 30


class Scope(WireMessage):
    subject: str
    booth: str | None = None
    speaker: str | None = None
    #: The id of the staff link (``links``), when it is a recorded one.
    invitation: str | None = None


class IceServer(WireMessage):
    """One entry of the page's ``RTCConfiguration.iceServers``."""

    urls: list[str]
    #: Only for TURN servers (absent from the JSON otherwise).
    username: str | None = None
    credential: str | None = None

    @model_serializer(mode="wrap")
    def _without_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A browser reads a null username as the string "null".
        return {key: value for key, value in handler(self).items() if value is not None}


class Welcome(WireMessage):
    type: Literal["welcome"] = "welcome"
    v: int = PROTOCOL_VERSION
    role: Role
    scope: Scope
    event: EventSummary
    #: STUN/TURN servers for the browser's peer connections: the node's ``ice_servers``,
    #: then its TURN server(s) with credentials made for this page.
    ice_servers: list[IceServer] = []
    #: The node (or worker) this connection landed on: for the organizer's logs and
    #: support, when several nodes serve the event.
    node: str = ""


class SpeakerOnAir(WireMessage):
    speaker: str
    #: The language the floor is in now: the moderator's choice (`State.floor_language`),
    #: else the speaker's language as in the program.
    language: str
    connected: bool
    #: False while his media has stopped arriving (browser or network gone): pages say
    #: his connection was lost instead of showing a frozen picture.
    media_live: bool = True


class ChannelState(WireMessage):
    kind: Literal["floor", "interpreter", "silence"]
    reason: Literal["speaker_language", "interpretation", "fallback", "cough", "no_speaker"]
    booth: str | None = None
    interpreter: str | None = None


class Direction(WireMessage):
    source: str | None
    into: str


class Handover(WireMessage):
    by: str
    at: float
    take_over_at: float


class InterpreterState(WireMessage):
    id: str
    connected: bool
    on_air: bool
    #: The interpreter's own choice ("floor" or a language), null = the booth's default.
    listen: str | None
    publishing: bool


class FailoverInfo(WireMessage):
    """The interpreter on air (``lost``) went silent and the channel went to ``to`` (null:
    to the event's fallback), at ``at``."""

    lost: str
    to: str | None
    at: float


class BoothState(WireMessage):
    id: str
    works_into: list[str]
    direction: Direction | None
    direction_override: str | None
    #: What the booth's interpreters hear unless they choose: "floor" or a language (relay).
    listen_default: str
    on_air: str | None
    on_air_connected: bool
    on_air_since: float | None
    coughing: bool
    handover: Handover | None
    interpreters: list[InterpreterState]
    last_failover: FailoverInfo | None = None


class SlowDownView(WireMessage):
    """A booth's request that the speaker on air slow down (`booth.SlowDownRequest`), as
    the state shows it until ``until``."""

    booth: str
    by: str
    since: float
    until: float


class Alarm(WireMessage):
    """A condition the moderator (and the booth concerned) must see; shown while it holds.

    ``speaker_media_lost``: the speaker on air sends nothing. ``dead_air``: an interpreted
    channel has been near-silent while the floor speaks. ``poor_reception``: a publisher's
    stream arrives with heavy loss or jitter. ``poor_delivery``: a channel's listeners
    report heavy loss or jitter. ``recording_stopped``: the recording of ``channel``
    (``program``, ``original`` or a language) failed, a full disk most likely.
    """

    kind: Literal[
        "speaker_media_lost", "dead_air", "poor_reception", "poor_delivery", "recording_stopped"
    ]
    since: float | None = None
    speaker: str | None = None
    channel: str | None = None
    booth: str | None = None
    interpreter: str | None = None
    publisher: str | None = None
    loss: float | None = None
    jitter_ms: float | None = None


class Reception(WireMessage):
    """How well a stream arrives: loss (0..1) over the last second, jitter in ms."""

    loss: float
    jitter_ms: float


class Health(WireMessage):
    """Reception per publisher (what the node receives) and per channel (the median of
    what its listeners report; ``worst_loss``: the worst listener's)."""

    publishers: dict[str, Reception] = {}
    channels: dict[str, Reception] = {}
    worst_loss: dict[str, float] = {}


class Publishers(WireMessage):
    speakers: list[str]
    interpreters: dict[str, list[str]]


class AttendeeView(WireMessage):
    channel: str
    original_under: bool
    audio_only: bool
    #: The sign booth shown over the program video, null: none.
    sign: str | None = None


class InterpreterView(WireMessage):
    booth: str
    listen: str
    on_air: bool
    may_take_over: bool
    #: The channels this interpreter may not listen to now: they lead back to his own
    #: channel (the relay rule, `signaling.relay_rule`).
    listen_loops: list[str] = []
    #: When the channel listened to is itself interpreted from another channel (a relay of
    #: a relay): the language(s) it is interpreted from.
    listen_relayed_from: list[str] = []


class SpeakerView(WireMessage):
    speaker: str
    on_air: bool
    publishing: bool


class State(WireMessage):
    type: Literal["state"] = "state"
    server_time: float
    session: str | None
    on_air: SpeakerOnAir | None
    channels: dict[str, ChannelState]
    booths: list[BoothState]
    listeners: dict[str, int]
    publishers: Publishers
    #: The moderator's choice of the floor language for the speaker on air; null = as in
    #: the program.
    floor_language: str | None = None
    #: Active slow-down requests; sent to the moderator, interpreters and the speaker on
    #: air (empty for everyone else).
    slow_down: list[SlowDownView] = []
    #: For the moderator: every alarm; for an interpreter: those about his booth's
    #: channels; empty for everyone else.
    alarms: list[Alarm] = []
    #: For the moderator only.
    health: Health | None = None
    #: For the moderator: what he listens to ("floor" or a language).
    monitor: str | None = None
    you: AttendeeView | InterpreterView | SpeakerView | None = None


class SlotView(WireMessage):
    """One m-section of a subscription (a `streamer` slot), as the offer describes it."""

    name: str
    kind: Literal["audio", "video"]
    output: str
    mid: str | None = None


class ServerOffer(WireMessage):
    type: Literal["offer"] = "offer"
    purpose: Literal["subscribe"] = "subscribe"
    sdp: str
    slots: list[SlotView]


class ServerAnswer(WireMessage):
    type: Literal["answer"] = "answer"
    purpose: Literal["publish"] = "publish"
    sdp: str


class ChatMessage(WireMessage):
    thread: str
    #: Increases within a thread: the page marks as read up to a number.
    seq: int
    at: float
    #: The sender's subject (an interpreter's id, the moderator's).
    sender: str
    role: Role
    text: str


class Chat(WireMessage):
    """Chat messages: the history of every thread the client may read right after the
    welcome (``history`` true), then each new message as it is sent."""

    type: Literal["chat"] = "chat"
    history: bool = False
    messages: list[ChatMessage]


class Error(WireMessage):
    type: Literal["error"] = "error"
    code: str
    message: str
    ref: str | int | None = None


class Pong(WireMessage):
    type: Literal["pong"] = "pong"
    ref: str | int | None = None


class SeatCheck(WireMessage):
    """Is the page holding this seat still there? Answer with ``seat_here`` at once."""

    type: Literal["seat_check"] = "seat_check"
    check: str


class SeatClaim(WireMessage):
    """To the page holding a seat: another page opened with the same link asks to take
    over (``pending`` true: answer with ``answer_claim``), or no longer does (false)."""

    type: Literal["seat_claim"] = "seat_claim"
    claim: str
    pending: bool
    #: Seconds left before the request lapses (refused).
    wait_s: float = 0.0


class SeatWaiting(WireMessage):
    """To a page asking for a seat (``auth`` with ``claim``): the request is with the
    holder and the moderator; ``welcome`` follows if one agrees, else an ``error``."""

    type: Literal["seat_waiting"] = "seat_waiting"
    claim: str
    wait_s: float


class SeatClaimView(WireMessage):
    claim: str
    role: Role
    subject: str
    booth: str | None = None
    speaker: str | None = None
    #: Seconds (server clock) when the request lapses.
    until: float


class SeatClaims(WireMessage):
    """To the moderator: the requests to take over a seat waiting for an answer."""

    type: Literal["seat_claims"] = "seat_claims"
    claims: list[SeatClaimView]


class StaffLinkView(WireMessage):
    id: str
    role: Role
    subject: str
    booth: str | None = None
    speaker: str | None = None
    #: Who the organizer gave it to (``invite --name``, or the speaker's name).
    name: str = ""
    issued_at: float
    expires_at: float
    revoked_at: float | None = None
    status: Literal["active", "expired", "revoked"]


class StaffLinks(WireMessage):
    """To the moderator: every staff link of the event (``list_links``, and after each
    revocation)."""

    type: Literal["links"] = "links"
    links: list[StaffLinkView]


ServerMessage = Annotated[
    Welcome
    | State
    | ServerOffer
    | ServerAnswer
    | Chat
    | Error
    | Pong
    | SeatCheck
    | SeatClaim
    | SeatWaiting
    | SeatClaims
    | StaffLinks,
    Field(discriminator="type"),
]


def encode(message: WireMessage) -> str:
    """A server message as the JSON text of one frame.

    Never fails: a string that cannot be written as UTF-8 (a lone surrogate that came in
    with a client's message) is written with U+FFFD in its place, so the reply that
    echoes it still goes out.
    """
    try:
        return message.model_dump_json()
    except PydanticSerializationError:
        data = _replace_surrogates(message.model_dump(mode="python"))
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        if _is_text(value):
            return value
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace_surrogates(item) for item in value]
    return value
