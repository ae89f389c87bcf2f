"""Every way the WebSocket refuses a message, against the real server.

Before authentication a refusal closes the connection; after it, the connection goes on
and other clients are not affected.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import aiohttp
import pytest

from signaling import websocket
from signaling.protocol import MAX_MESSAGE_BYTES, MAX_SDP_MESSAGE_BYTES
from signaling.secret import load_or_create_secret
from signaling.tokens import Role, TokenSigner
from tests.signaling.conftest import token

pytestmark = pytest.mark.timeout(60)


async def refused_at_the_door(client, first_frame: str, code: str) -> dict:
    await client.ws.send_str(first_frame)
    error = await client.next("error")
    assert error["code"] == code, error
    closing = await client.ws.receive(timeout=5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    return error


async def test_anything_before_auth_is_refused_and_closes(live_server, open_ws):
    client = await open_ws(live_server)
    error = await refused_at_the_door(client, json.dumps({"type": "ping"}), "unauthenticated")
    assert "send auth with your token before ping" in error["message"]
    assert client.ws.close_code == websocket.CLOSE_UNAUTHENTICATED


async def test_malformed_first_frame_closes(live_server, open_ws):
    client = await open_ws(live_server)
    await refused_at_the_door(client, "{not json", "malformed")


@pytest.mark.parametrize(
    ("make_token", "code", "says"),
    [
        (lambda server: "bm90.aXQ", "token_forged", "link"),
        (lambda server: "nonsense", "token_malformed", "link"),
        (
            lambda server: TokenSigner(
                load_or_create_secret(server.settings), clock=lambda: time.time() - 7200
            ).issue(Role.ATTENDEE, subject="late", ttl=timedelta(hours=1)),
            "token_expired",
            "expired",
        ),
        (
            lambda server: TokenSigner(b"another instance's secret!").issue(
                Role.MODERATOR, subject="mallory", ttl=timedelta(hours=1)
            ),
            "token_forged",
            "",
        ),
    ],
)
async def test_bad_tokens_are_refused_and_close(live_server, open_ws, make_token, code, says):
    client = await open_ws(live_server)
    frame = json.dumps({"type": "auth", "v": 1, "token": make_token(live_server)})
    error = await refused_at_the_door(client, frame, code)
    assert says in error["message"]


async def test_another_protocol_version_is_refused(live_server, open_ws):
    client = await open_ws(live_server)
    frame = json.dumps({"type": "auth", "v": 2, "token": token(live_server, Role.ATTENDEE)})
    error = await refused_at_the_door(client, frame, "unsupported_version")
    assert "version 1, not 2" in error["message"]


@pytest.mark.parametrize(
    ("role", "scope", "says"),
    [
        (Role.INTERPRETER, {"booth": "de-en"}, "booth de-en"),
        (Role.SPEAKER, {"speaker": "nobody-at-all"}, "speaker nobody-at-all"),
    ],
)
async def test_a_link_for_a_booth_or_speaker_the_program_lacks(
    live_server, open_ws, role, scope, says
):
    client = await open_ws(live_server)
    frame = json.dumps({"type": "auth", "v": 1, "token": token(live_server, role, **scope)})
    error = await refused_at_the_door(client, frame, "out_of_scope")
    assert says in error["message"]
    assert client.ws.close_code == websocket.CLOSE_OUT_OF_SCOPE


async def test_silence_after_connecting_times_out(live_server, open_ws, monkeypatch):
    monkeypatch.setattr(websocket, "AUTH_TIMEOUT_S", 0.3)
    client = await open_ws(live_server)
    error = await client.next("error")
    assert error["code"] == "auth_timeout"
    await client.ws.receive(timeout=5)
    assert client.ws.close_code == websocket.CLOSE_AUTH_TIMEOUT


async def test_welcome_says_role_scope_and_event(connect):
    client = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr")
    welcome = client.welcome
    assert welcome["v"] == 1
    assert welcome["role"] == "interpreter"
    assert welcome["scope"] == {
        "subject": "anna",
        "booth": "ru-fr",
        "speaker": None,
        "invitation": None,  # the fixture's link is not a recorded invitation
    }
    assert [lang["code"] for lang in welcome["event"]["languages"]] == ["ru", "fr"]
    assert welcome["event"]["booths"][0]["works_into"] == ["ru", "fr"]
    assert client.state["you"]["booth"] == "ru-fr"


async def test_after_auth_bad_frames_get_errors_and_the_connection_goes_on(connect):
    client = await connect(Role.ATTENDEE)
    bystander = await connect(Role.ATTENDEE, subject="bystander")

    await client.ws.send_str("{nope")
    assert (await client.error())["code"] == "malformed"
    await client.ws.send_bytes(b"\x00\x01")
    assert (await client.error())["code"] == "malformed"
    await client.ws.send_str("[]")
    assert (await client.error())["code"] == "malformed"

    ref = await client.send("launch_rockets")
    error = await client.error(ref)
    assert error["code"] == "unknown_type"
    assert "launch_rockets" in error["message"]

    ref = await client.send("select_channel", language="x" * MAX_MESSAGE_BYTES)
    error = await client.error(ref)
    assert error["code"] == "too_large"
    assert str(MAX_MESSAGE_BYTES) in error["message"]

    ref = await client.send("answer", purpose="subscribe", sdp="v" * MAX_SDP_MESSAGE_BYTES)
    assert (await client.error(ref))["code"] == "too_large"

    ref = await client.send("set_audio_only", on="yes please")
    error = await client.error(ref)
    assert error["code"] == "invalid"
    assert error["message"].startswith("set_audio_only is not valid: on:")

    ref = await client.send("auth", v=1, token="again")
    assert (await client.error(ref))["code"] == "already_authenticated"

    await client.alive()
    await bystander.alive()


@pytest.mark.parametrize(
    ("role", "scope", "message"),
    [
        (Role.ATTENDEE, {}, {"type": "put_on_air", "speaker_id": "andre-samray"}),
        (Role.ATTENDEE, {}, {"type": "mic", "on": True}),
        (Role.ATTENDEE, {}, {"type": "offer", "purpose": "publish", "sdp": "v=0"}),
        (Role.INTERPRETER, {"booth": "ru-fr"}, {"type": "select_channel", "language": "fr"}),
        (Role.INTERPRETER, {"booth": "ru-fr"}, {"type": "start_session", "session_id": "plenary"}),
        (Role.SPEAKER, {"speaker": "andre-samray"}, {"type": "subscribe"}),
        (Role.SPEAKER, {"speaker": "andre-samray"}, {"type": "take_off_air"}),
        (Role.MODERATOR, {}, {"type": "cough", "on": True}),
        (Role.MODERATOR, {}, {"type": "set_original_under", "on": True}),
        (Role.MODERATOR, {}, {"type": "slow_down", "on": True}),
        (Role.ATTENDEE, {}, {"type": "slow_down", "on": True}),
        (Role.SPEAKER, {"speaker": "andre-samray"}, {"type": "slow_down", "on": True}),
        (Role.ATTENDEE, {}, {"type": "set_floor_language", "language": "fr"}),
        (Role.INTERPRETER, {"booth": "ru-fr"}, {"type": "set_floor_language", "language": "fr"}),
        (
            Role.SPEAKER,
            {"speaker": "andre-samray"},
            {"type": "set_floor_language", "language": "ru"},
        ),
    ],
)
async def test_wrong_role_is_forbidden(connect, role, scope, message):
    client = await connect(role, **scope)
    type_ = message.pop("type")
    ref = await client.send(type_, **message)
    error = await client.error(ref)
    assert error["code"] == "forbidden"
    assert error["message"] == f"{role.described} may not send {type_}"
    await client.alive()


async def test_an_interpreter_cannot_act_in_another_booth(connect):
    client = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr")
    ref = await client.send("mic", on=True, booth="de-en")
    error = await client.error(ref)
    assert error["code"] == "out_of_scope"
    assert "booth ru-fr, not de-en" in error["message"]
    ref = await client.send("slow_down", on=True, booth="de-en")
    error = await client.error(ref)
    assert error["code"] == "out_of_scope"
    assert "booth ru-fr, not de-en" in error["message"]
    ref = await client.send("mic", on=True, booth="ru-fr")  # naming its own booth is fine
    await client.state_where(lambda s: s["booths"][0]["on_air"] == "anna")


@pytest.mark.parametrize(
    ("message", "code", "says"),
    [
        ({"type": "start_session", "session_id": "lunch"}, "unknown_session", "plenary"),
        ({"type": "put_on_air", "speaker_id": "nobody"}, "unknown_speaker", "nobody"),
        (
            {"type": "put_on_air", "speaker_id": "andre-samray"},
            "speaker_not_connected",
            "not connected",
        ),
    ],
)
async def test_moderator_commands_about_what_is_not_there(connect, message, code, says):
    client = await connect(Role.MODERATOR)
    ref = await client.send(message.pop("type"), **message)
    error = await client.error(ref)
    assert error["code"] == code
    assert says in error["message"]


@pytest.mark.parametrize("language", ["de", "original", "FR"])
async def test_a_floor_language_the_event_lacks_is_invalid(connect, language):
    client = await connect(Role.MODERATOR)
    ref = await client.send("set_floor_language", language=language)
    error = await client.error(ref)
    assert error["code"] == "invalid"
    assert f"{language!r} is not a language of this event" in error["message"]
    assert "allowed: ru, fr" in error["message"]
    await client.alive()
    assert client.state["floor_language"] is None


async def test_attendee_commands_about_what_is_not_there(connect):
    client = await connect(Role.ATTENDEE)
    ref = await client.send("select_channel", language="de")
    error = await client.error(ref)
    assert error["code"] == "unknown_language"
    assert "original, ru, fr" in error["message"]
    ref = await client.send("answer", purpose="subscribe", sdp="v=0\r\n")
    assert (await client.error(ref))["code"] == "no_offer"


async def test_a_publisher_offer_that_is_not_sdp(connect):
    client = await connect(Role.SPEAKER, speaker="andre-samray")
    ref = await client.send("offer", purpose="publish", sdp="hello")
    error = await client.error(ref)
    assert error["code"] == "bad_sdp"
    await client.alive()


async def test_an_answer_to_the_servers_offer_that_is_not_sdp(connect):
    client = await connect(Role.ATTENDEE)
    await client.send("subscribe")
    await client.next("offer")
    ref = await client.send("answer", purpose="subscribe", sdp="hello")
    error = await client.error(ref)
    assert error["code"] == "bad_sdp"
    assert "answer" in error["message"]
    await client.alive()


async def test_a_frame_beyond_the_transport_limit_closes_the_connection(connect):
    client = await connect(Role.ATTENDEE)
    await client.ws.send_str("x" * (websocket.MAX_FRAME_BYTES + 1))
    frame = await client.ws.receive(timeout=5)
    assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert client.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
