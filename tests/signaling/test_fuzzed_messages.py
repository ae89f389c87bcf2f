"""Property-based fuzzing (hypothesis) of every client message type over the real ``/ws``.

For each role, an authenticated client sends generated frames: every message type of the
protocol with its own fields (plausible values, wrong types, unknown fields, lone
surrogates, big numbers) and plain garbage (not JSON, not an object, binary). Whatever it
sends:

- the answer is never ``internal`` and nothing is logged as an error;
- the connection goes on (only the rate limit may close it, with its documented code);
- another client, well-behaved, stays connected and gets its answers.

Examples are few (the suite must stay short); hypothesis's own database replays any
failure first on the next run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import typing
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling import protocol as p
from signaling import websocket
from signaling.tokens import Role
from signaling.websocket import install_live
from tests.signaling.conftest import WsClient, token

pytestmark = pytest.mark.timeout(300)

#: Per role. Every example is a batch holding two frames of every message type (a
#: plausible one, a mangled one) and some garbage: each example covers the whole protocol,
#: and the cost is hypothesis drawing those batches (up to a second each on a loaded
#: machine), so more examples widen the values tried, not the types.
EXAMPLES = 15

#: Every client message model, by its type.
MODELS = {
    model.model_fields["type"].annotation.__args__[0]: model
    for model in typing.get_args(typing.get_args(p.ClientMessage)[0])
}
#: Values that mean something to the live service (so that some frames are carried out).
DOMAIN = ["ru", "fr", "original", "floor", "ru-fr", "plenary", "andre-samray", "", 1, 0, -1]
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(DOMAIN),
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


LANGUAGES = st.sampled_from(["ru", "fr", "original", "floor", "de", ""]) | st.none()
#: Values each field of the protocol expects (or nearly): most frames get carried out.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "id": st.integers(0, 10**6) | st.text(max_size=10),
    "v": st.just(1),
    "token": st.text(max_size=40),
    "purpose": st.sampled_from(["publish", "subscribe"]),
    "sdp": st.sampled_from(["v=0\r\n", "not sdp", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"])
    | st.text(min_size=1, max_size=80),
    "language": LANGUAGES,
    "source": LANGUAGES,
    "into": LANGUAGES,
    "on": st.booleans(),
    "booth": st.sampled_from(["ru-fr", "lsfb", "nowhere"]) | st.none(),
    "session_id": st.sampled_from(["plenary", "session-1", "nope"]),
    "speaker_id": st.sampled_from(["alexander-tokovinin", "andre-samray", "nobody"]),
    "thread": st.sampled_from(["booth:ru-fr", "studio:ru-fr", "booth:other", "x"]),
    "text": st.text(max_size=600),
}


@st.composite
def plausible_message_of(draw: st.DrawFn, type_: str) -> dict[str, Any]:
    """Every field with a value of the expected kind (many are carried out)."""
    fields = [name for name in MODELS[type_].model_fields if name != "type"]
    return {"type": type_, **{name: draw(PLAUSIBLE.get(name, JSON_VALUE)) for name in fields}}


@st.composite
def message_of(draw: st.DrawFn, type_: str) -> dict[str, Any]:
    """Fields left out, of the wrong type, unknown ones added."""
    fields = [name for name in MODELS[type_].model_fields if name != "type"]
    message: dict[str, Any] = {"type": type_}
    for name in fields:
        if draw(st.integers(0, 7)) == 0:
            continue  # a field left out
        if draw(st.integers(0, 3)) == 0:
            message[name] = draw(JSON_VALUE)  # of any type
        else:
            message[name] = draw(PLAUSIBLE.get(name, JSON_VALUE))
    if draw(st.integers(0, 7)) == 0:
        message[draw(st.text(min_size=1, max_size=10))] = draw(JSON_VALUE)
    return message


@st.composite
def garbage(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return json.dumps(draw(JSON_VALUE))
    if kind == 1:
        return draw(st.text(max_size=200))
    return draw(st.binary(max_size=64))


@st.composite
def frames(draw: st.DrawFn) -> list[str | bytes]:
    """Two frames of every message type (a plausible one, a mangled one), in any order,
    and some garbage among them."""
    batch: list[str | bytes] = []
    for type_ in sorted(MODELS):
        batch.append(json.dumps(draw(plausible_message_of(type_))))
        batch.append(json.dumps(draw(message_of(type_))))
    batch.extend(draw(st.lists(garbage(), max_size=3)))
    return draw(st.permutations(batch))


@pytest.fixture
async def fuzz_server(start_server):
    # Generous rates: the fuzzer should reach the commands, not the door.
    return await start_server(
        extensions=[install_live], ws_messages_per_s=1000, ws_message_burst=1000
    )


async def connect_to(server, session, role: Role, subject: str, **scope) -> WsClient:
    client = WsClient(await session.ws_connect(f"{server.url}/ws"))
    await client.send("auth", v=1, token=token(server, role, subject, **scope))
    await client.next("welcome")
    return client


async def answers_until_pong(client: WsClient, ref: str) -> list[dict[str, Any]]:
    """Everything the server sent until the pong to `ref`; raises if the connection closed."""
    seen = []
    async with asyncio.timeout(20):
        while True:
            frame = await client.ws.receive()
            if frame.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"closed: {frame.type.name} {client.ws.close_code}")
            message = json.loads(frame.data)
            if message["type"] == "pong" and message["ref"] == ref:
                return seen
            seen.append(message)


SCOPES = {
    Role.ATTENDEE: {"subject": "fuzz-attendee"},
    Role.INTERPRETER: {"subject": "anna", "booth": "ru-fr"},
    Role.SPEAKER: {"subject": "andre-samray", "speaker": "andre-samray"},
    Role.MODERATOR: {"subject": "fuzz-moderator"},
}


class Fuzzing:
    """One role's fuzzing client and the bystander, kept across the examples of a test."""

    def __init__(self, server, session, role: Role) -> None:
        self.server, self.session, self.role = server, session, role
        self.client: WsClient | None = None
        self.bystander: WsClient | None = None
        self.examples = 0

    async def ready(self) -> WsClient:
        if self.bystander is None:
            self.bystander = await connect_to(self.server, self.session, Role.ATTENDEE, "bystander")
        if self.client is None:
            self.client = await connect_to(
                self.server, self.session, self.role, **SCOPES[self.role]
            )
        return self.client


@pytest.fixture(params=list(SCOPES), ids=lambda r: r.value)
async def fuzzing(fuzz_server, ws_session, request, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING)
    state = Fuzzing(fuzz_server, ws_session, request.param)
    yield state
    assert state.examples > 0
    client = await state.ready()
    await client.alive()
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not failures, [r.getMessage() for r in failures]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frame=frames())
async def test_no_frame_breaks_the_server_or_anyone_else(
    fuzzing: Fuzzing, frame: list[str | bytes]
) -> None:
    fuzzing.examples += 1
    client = await fuzzing.ready()
    for one in frame:
        if isinstance(one, bytes):
            await client.ws.send_bytes(one)
        else:
            await client.ws.send_str(one)
    ref = f"sentinel-{fuzzing.examples}"
    await client.ws.send_str(json.dumps({"type": "ping", "id": ref}))
    try:
        answers = await answers_until_pong(client, ref)
    except ConnectionError:
        # Only the documented limits may close a fuzzing client; it connects again.
        assert client.ws.close_code in (
            websocket.CLOSE_RATE_LIMITED,
            websocket.CLOSE_TOO_SLOW,
        ), client.ws.close_code
        fuzzing.client = None
        answers = []
    internal = [m for m in answers if m["type"] == "error" and m["code"] == "internal"]
    assert not internal, (frame, internal)
    # The bystander still gets his answers, at once.
    assert fuzzing.bystander is not None
    await fuzzing.bystander.alive()
