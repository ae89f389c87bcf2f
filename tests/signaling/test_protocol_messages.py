"""Parsing client frames: every message type, and every way a frame is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from signaling import protocol
from signaling.protocol import (
    ALLOWED_ROLES,
    CLIENT_TYPES,
    MAX_MESSAGE_BYTES,
    MAX_SDP_MESSAGE_BYTES,
    ProtocolError,
    parse_client_message,
)

VALID = {
    "auth": {"v": 1, "token": "abc.def"},
    "ping": {},
    "offer": {"purpose": "publish", "sdp": "v=0\r\n"},
    "answer": {"purpose": "subscribe", "sdp": "v=0\r\n"},
    "subscribe": {},
    "select_channel": {"language": "fr"},
    "set_original_under": {"on": True},
    "set_audio_only": {"on": False},
    "mic": {"on": True},
    "cough": {"on": True, "booth": "ru-fr"},
    "request_handover": {},
    "accept_handover": {},
    "withdraw_handover": {},
    "leave_stage": {},
    "chat_send": {"thread": "booth:ru-fr", "text": "1948, not 1984"},
    "take_over": {},
    "listen": {"source": "floor"},
    "set_direction": {"into": None},
    "slow_down": {"on": True},
    "start_session": {"session_id": "plenary"},
    "end_session": {},
    "put_on_air": {"speaker_id": "olivier-van-der-wilt"},
    "take_off_air": {},
    "set_floor_language": {"language": None},
    "monitor": {"source": "floor"},
    "select_sign": {"booth": None},
    "seat_here": {"check": "a1b2"},
    "answer_claim": {"claim": "c3d4", "allow": True},
    "list_links": {},
    "revoke_link": {"link": "k7m2x9qa"},
}


def frame(**fields) -> str:
    return json.dumps(fields)


def refused(raw) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(raw)
    return caught.value


def test_every_client_type_has_an_example_and_a_role_rule():
    assert set(VALID) == CLIENT_TYPES
    assert set(ALLOWED_ROLES) == CLIENT_TYPES - {"auth"}


def test_every_client_type_is_documented_with_an_example():
    text = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text("utf-8")
    headings = set(re.findall(r"^### `(\w+)`", text, flags=re.MULTILINE))
    assert CLIENT_TYPES <= headings, CLIENT_TYPES - headings
    for type_ in CLIENT_TYPES:
        assert f'{{"type": "{type_}"' in text, type_


@pytest.mark.parametrize("type_", sorted(VALID))
def test_every_client_message_parses(type_):
    message = parse_client_message(frame(type=type_, id=7, **VALID[type_]))
    assert message.type == type_
    assert message.id == 7


def test_not_json_is_malformed():
    error = refused("{nope")
    assert error.code == "malformed"
    assert "not valid JSON" in error.message


@pytest.mark.parametrize("raw", ["[1, 2]", '"auth"', "3", "null"])
def test_not_an_object_is_malformed(raw):
    assert refused(raw).code == "malformed"


def test_missing_type_is_malformed_and_keeps_the_ref():
    error = refused(frame(id="a1", token="x"))
    assert (error.code, error.ref) == ("malformed", "a1")


def test_binary_frames_are_malformed():
    assert refused(b'{"type": "ping"}').code == "malformed"


def test_unknown_type():
    error = refused(frame(type="launch_rockets", id=3))
    assert (error.code, error.ref) == ("unknown_type", 3)
    assert "launch_rockets" in error.message


def test_oversized_messages():
    big = "x" * MAX_MESSAGE_BYTES
    error = refused(frame(type="select_channel", language=big, id=1))
    assert error.code == "too_large"
    assert error.ref == 1
    # SDP-carrying messages may be larger, up to their own cap
    sdp = "a=" + "x" * (MAX_SDP_MESSAGE_BYTES // 2)
    assert parse_client_message(frame(type="offer", purpose="publish", sdp=sdp)).sdp == sdp
    error = refused(frame(type="offer", purpose="publish", sdp="x" * MAX_SDP_MESSAGE_BYTES))
    assert error.code == "too_large"
    assert str(MAX_SDP_MESSAGE_BYTES) in error.message


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"type": "mic"}, "on: Field required"),
        ({"type": "mic", "on": "loud"}, "on: Input should be a valid boolean"),
        ({"type": "ping", "colour": "red"}, "colour: unknown field"),
        ({"type": "offer", "purpose": "subscribe", "sdp": "v=0"}, "purpose"),
        ({"type": "select_channel", "language": ""}, "language"),
        ({"type": "slow_down"}, "on: Field required"),
        ({"type": "set_floor_language"}, "language: Field required"),
        ({"type": "set_floor_language", "language": 7}, "language"),
        ({"type": "auth", "v": 1}, "token: Field required"),
    ],
)
def test_invalid_fields_name_the_field(fields, says):
    error = refused(json.dumps(fields))
    assert error.code == "invalid"
    assert says in error.message
    assert error.message.startswith(f"{fields['type']} is not valid")


def test_a_huge_or_odd_id_is_not_echoed():
    assert refused(frame(type="nope", id="x" * 100)).ref is None
    assert refused(frame(type="nope", id=True)).ref is None


def test_server_messages_round_trip_through_their_union():
    server_messages = TypeAdapter(protocol.ServerMessage)
    error = protocol.Error(code="forbidden", message="no", ref=2)
    assert server_messages.validate_json(protocol.encode(error)) == error
    pong = protocol.Pong(ref="p")
    assert server_messages.validate_json(protocol.encode(pong)) == pong
