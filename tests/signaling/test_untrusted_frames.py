"""Frames built to break the parser, against the real ``/ws``: deep nesting, numbers of
thousands of digits, lone surrogates, protocol versions that are not the integer 1.

Each is refused with the documented error, never a traceback: before authentication the
connection is then closed with 4401 (not dropped, 1006); after it, the connection goes on,
and another client notices nothing.
"""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest

from signaling import websocket
from signaling.tokens import Role
from tests.signaling.conftest import token

pytestmark = pytest.mark.timeout(60)

DEEP_ARRAY = "[" * 30_000 + "]" * 30_000
DEEP_OBJECT = '{"type": "ping", "id": ' + '{"a": ' * 5_000 + "1" + "}" * 5_000 + "}"
HUGE_ID = '{"type": "ping", "id": ' + "9" * 4_000 + "}"
HUGE_FLOAT = '{"type": "select_channel", "language": "fr", "id": 1' + "0" * 3_000 + ".5}"
SURROGATE_ID = '{"type": "ping", "id": "\\ud800"}'
SURROGATE_FIELD = '{"type": "select_channel", "language": "\\udfff", "id": 4}'
SURROGATE_KEY = '{"type": "ping", "\\ud83d": 1}'
NOT_A_NUMBER = '{"type": "ping", "id": NaN}'

HOSTILE = [DEEP_ARRAY, DEEP_OBJECT, HUGE_ID, HUGE_FLOAT, SURROGATE_KEY, NOT_A_NUMBER]


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    yield
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not failures, [r.getMessage() for r in failures]


@pytest.mark.parametrize("frame", HOSTILE, ids=lambda f: f[:30])
async def test_hostile_json_after_auth_is_malformed_and_the_connection_goes_on(
    connect, frame, no_tracebacks
):
    bystander = await connect(Role.ATTENDEE, subject="bystander")
    client = await connect(Role.ATTENDEE, subject="prober")
    await client.ws.send_str(frame)
    error = await client.next("error")
    assert error["code"] == "malformed", error
    assert error["ref"] is None
    await client.alive()
    await bystander.alive()


async def test_deep_nesting_above_the_size_cap_is_too_large(connect, no_tracebacks):
    client = await connect(Role.ATTENDEE, subject="prober")
    await client.ws.send_str("[" * 400_000)
    error = await client.next("error")
    assert error["code"] == "too_large"
    await client.alive()


@pytest.mark.parametrize("frame", [SURROGATE_ID, SURROGATE_FIELD])
async def test_a_lone_surrogate_gets_an_error_that_can_be_written(connect, frame, no_tracebacks):
    client = await connect(Role.ATTENDEE, subject="prober")
    await client.ws.send_str(frame)
    error = await client.next("error")
    assert error["code"] == "malformed"
    assert "lone UTF-16 surrogate" in error["message"]
    await client.alive()
    # The connection still does what it is for.
    ref = await client.send("select_channel", language="fr")
    await client.state_where(lambda s: s["you"]["channel"] == "fr")
    assert ref


@pytest.mark.parametrize("frame", [*HOSTILE, SURROGATE_ID], ids=lambda f: f[:30])
async def test_hostile_json_before_auth_is_refused_with_a_close_code(
    live_server, open_ws, frame, no_tracebacks
):
    client = await open_ws(live_server)
    await client.ws.send_str(frame)
    error = await client.next("error")
    assert error["code"] == "malformed", error
    closing = await client.ws.receive(timeout=5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert client.ws.close_code == websocket.CLOSE_UNAUTHENTICATED


@pytest.mark.parametrize("version", [True, 1.0, "1", 2, None, [1]], ids=repr)
async def test_the_protocol_version_is_exactly_the_integer_1(live_server, open_ws, version):
    client = await open_ws(live_server)
    frame = {"type": "auth", "v": version, "token": token(live_server, Role.ATTENDEE)}
    await client.ws.send_str(json.dumps(frame))
    error = await client.next("error")
    assert error["code"] == "unsupported_version", error
    assert f"version 1, not {json.dumps(version)}" in error["message"]
    if type(version) is not int:
        assert "a version is the integer 1" in error["message"]
    await client.ws.receive(timeout=5)
    assert client.ws.close_code == websocket.CLOSE_UNAUTHENTICATED


async def test_lax_values_are_refused_by_name(connect):
    """Booleans are booleans: ``1`` or ``"true"`` is not an answer to on/off."""
    client = await connect(Role.ATTENDEE, subject="lax")
    for value in (1, "true", "yes"):
        ref = await client.send("set_audio_only", on=value)
        error = await client.error(ref)
        assert error["code"] == "invalid"
        assert "on:" in error["message"]


async def test_a_command_failing_again_and_again_logs_one_traceback(
    connect, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """A client repeating the message that makes the server fail gets ``internal`` each
    time; the log gets one traceback a minute, not one per message."""
    from signaling.live import commands

    async def broken(live, client, message):
        raise RuntimeError("a bug")

    monkeypatch.setitem(commands.COMMANDS, "select_channel", broken)
    monkeypatch.setattr(websocket, "_failures", websocket.FailureLog())
    caplog.set_level(logging.INFO)
    client = await connect(Role.ATTENDEE, subject="unlucky")
    for _ in range(30):
        ref = await client.send("select_channel", language="fr")
        assert (await client.error(ref))["code"] == "internal"
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1
    await client.alive()
