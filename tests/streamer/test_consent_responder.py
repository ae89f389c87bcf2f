"""Consent checks on a subscriber's selected pair answered by `ConsentResponder`: the same
bytes aioice would send, verified like aioice verifies them, and anything unusual still
left to aioice."""

from __future__ import annotations

import pytest
from aioice import stun
from aioice.ice import Connection

from streamer import Sfu
from streamer.aiortc_internals import ConsentResponder
from tests.streamer.conftest import Peers
from tests.streamer.peers import SubscriberPeer, eventually
from tests.streamer.test_send_path import add_fed_source, connected_listener, slot_of


def ice_of(listener: SubscriberPeer) -> Connection:
    return listener.pc.getTransceivers()[0].receiver.transport.transport._connection


async def consent_check(client: Connection, *, password: str | None = None, **extra: object):
    """One consent check from the subscriber's side, as aioice's own `query_consent` sends
    it (its transaction verifies the answer's integrity and fingerprint)."""
    pair = client._nominated[1]
    request = client.build_request(pair, nominate=False)
    request.attributes.update(extra)
    if password is not None:
        # Signed with another key: sent as it is (aioice's request would sign it again).
        request.add_message_integrity(password.encode("utf8"))
        return await pair.protocol.request(request, pair.remote_addr)
    return await pair.protocol.request(
        request, pair.remote_addr, integrity_key=client.remote_password.encode("utf8")
    )


async def setup(sfu: Sfu, peers: Peers, monkeypatch: pytest.MonkeyPatch):
    sfu.declare_output("floor", "audio")
    add_fed_source(sfu, "floor")
    listener = await connected_listener(sfu, peers)
    server = slot_of(sfu, "listener").link._dtls.transport._connection
    responder = ConsentResponder.install(slot_of(sfu, "listener").link._dtls)
    assert responder is not None
    by_aioice: list[stun.Message] = []
    original = server.request_received

    def counted(message: stun.Message, addr: tuple[str, int], protocol: object) -> None:
        by_aioice.append(message)
        original(message, addr, protocol)

    monkeypatch.setattr(server, "request_received", counted)
    return listener, server, responder, by_aioice


async def test_a_consent_check_is_answered_as_aioice_would(
    sfu: Sfu, peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener, server, responder, by_aioice = await setup(sfu, peers, monkeypatch)
    before = responder.answered
    client = ice_of(listener)
    response, _ = await consent_check(client)
    assert response.message_class == stun.Class.RESPONSE
    assert responder.answered == before + 1
    assert by_aioice == []

    # Byte for byte what aioice builds for the same request.
    request = client.build_request(client._nominated[1], nominate=False)
    request.add_message_integrity(client.remote_password.encode("utf8"))
    pair = server._nominated[1]
    expected = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.RESPONSE,
        transaction_id=request.transaction_id,
    )
    expected.attributes["XOR-MAPPED-ADDRESS"] = pair.remote_addr
    expected.add_message_integrity(server.local_password.encode("utf8"))
    sent: list[bytes] = []
    monkeypatch.setattr(responder, "_send", lambda data, to: sent.append(data))
    assert responder._answer(bytes(request), pair.remote_addr)
    assert sent == [bytes(expected)]


async def test_what_is_not_a_plain_consent_check_is_left_to_aioice(
    sfu: Sfu, peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener, server, responder, by_aioice = await setup(sfu, peers, monkeypatch)
    client = ice_of(listener)
    before = responder.answered

    # Signed with the wrong password: aioice refuses it (401), the connection lives on.
    with pytest.raises(stun.TransactionFailed):
        await consent_check(client, password="not-the-password")
    # A nomination asks something of ICE: aioice handles it (and answers).
    response, _ = await consent_check(client, **{"USE-CANDIDATE": None})
    assert response.message_class == stun.Class.RESPONSE
    assert [m.attributes.get("USE-CANDIDATE", "-") for m in by_aioice] == ["-", None]
    assert responder.answered == before

    # Garbage that starts like a binding request is not answered here either.
    pair = server._nominated[1]
    for junk in (b"\x00\x01", b"\x00\x01\x00\x08" + bytes(16), b"\x00\x01\x00\x00" + bytes(16)):
        assert not responder._answer(junk, pair.remote_addr)
    await consent_check(client)
    await eventually(lambda: responder.answered == before + 1, what="a plain check answered")
    assert listener.pc.connectionState == "connected"
