"""What one link or one address may take of a node: connections, and messages per second.

Against the real server: a link opened in more tabs than the cap, an address opening more
connections than its cap (directly, and behind a trusted proxy), a client flooding
messages, a client opening media connections over and over; and pages that behave, which
never meet any of it.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from signaling import websocket
from signaling.message_rate import MEDIA_BURST
from signaling.tokens import Role
from tests.signaling.conftest import WsClient, token
from tests.signaling.media_peers import INTERPRETER_HZ, Subscription, publish
from tests.support.tones import ToneTrack

pytestmark = pytest.mark.timeout(90)


async def closed_with(client: WsClient, close_code: int, error_code: str) -> dict:
    """Read until the close: the last error must be `error_code`, the close `close_code`."""
    last_error = None
    async with asyncio.timeout(10):
        while True:
            frame = await client.ws.receive()
            if frame.type == aiohttp.WSMsgType.TEXT:
                message = json.loads(frame.data)
                if message["type"] == "error":
                    last_error = message
                continue
            break
    assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), frame
    assert client.ws.close_code == close_code
    assert last_error is not None and last_error["code"] == error_code, last_error
    return last_error


async def authenticate(client: WsClient, server, role: Role, subject: str) -> None:
    await client.send("auth", v=1, token=token(server, role, subject))


async def test_a_link_opened_in_too_many_tabs_is_refused(start_server, open_ws):
    from signaling.websocket import install_live

    server = await start_server(extensions=[install_live], ws_connections_per_link=3)
    tabs = []
    for _ in range(3):
        tab = await open_ws(server)
        await authenticate(tab, server, Role.ATTENDEE, "many-tabs")
        await tab.next("welcome")
        tabs.append(tab)
    extra = await open_ws(server)
    await authenticate(extra, server, Role.ATTENDEE, "many-tabs")
    error = await closed_with(extra, websocket.CLOSE_TOO_MANY_CONNECTIONS, "too_many_connections")
    assert "open in 3 pages" in error["message"]
    # Another link is not counted with it; the tabs already open go on.
    other = await open_ws(server)
    await authenticate(other, server, Role.ATTENDEE, "someone-else")
    await other.next("welcome")
    for tab in tabs:
        await tab.alive()
    # A tab closed frees its place.
    await tabs.pop().close()
    async with asyncio.timeout(10):
        while True:
            await asyncio.sleep(0.1)
            again = await open_ws(server)
            await authenticate(again, server, Role.ATTENDEE, "many-tabs")
            if (await again.receive())["type"] == "welcome":
                break  # else the closed tab was not yet counted out


async def test_an_address_opening_too_many_connections_is_refused(start_server, open_ws):
    from signaling.websocket import install_live

    server = await start_server(extensions=[install_live], ws_connections_per_address=4)
    # Connections that never authenticate count too: they hold sockets all the same.
    silent = [await open_ws(server) for _ in range(2)]
    authenticated = []
    for n in range(2):
        client = await open_ws(server)
        await authenticate(client, server, Role.ATTENDEE, f"person-{n}")
        await client.next("welcome")
        authenticated.append(client)
    extra = await open_ws(server)
    error = await closed_with(extra, websocket.CLOSE_TOO_MANY_CONNECTIONS, "too_many_connections")
    assert "4 connections from your address" in error["message"]
    for client in authenticated:
        await client.alive()
    # One that goes (here: the auth timeout closes a silent one) frees its place.
    await silent[0].close()
    async with asyncio.timeout(10):
        while True:
            await asyncio.sleep(0.1)
            client = await open_ws(server)
            try:
                await authenticate(client, server, Role.ATTENDEE, "latecomer")
                if (await client.receive())["type"] == "welcome":
                    break
            except (ConnectionError, aiohttp.ClientError):
                continue  # the closed one was not yet counted out


async def test_behind_a_trusted_proxy_each_forwarded_address_has_its_own_cap(
    start_server, ws_session
):
    from signaling.websocket import install_live

    server = await start_server(
        extensions=[install_live], ws_connections_per_address=2, trusted_proxies=["127.0.0.1"]
    )

    async def from_(address: str) -> WsClient:
        ws = await ws_session.ws_connect(f"{server.url}/ws", headers={"X-Forwarded-For": address})
        client = WsClient(ws)
        await authenticate(client, server, Role.ATTENDEE, f"at-{address}-{id(ws)}")
        return client

    first = [await from_("198.51.100.7") for _ in range(2)]
    for client in first:
        await client.next("welcome")
    third = await from_("198.51.100.7")
    await closed_with(third, websocket.CLOSE_TOO_MANY_CONNECTIONS, "too_many_connections")
    # Another visitor behind the same proxy is not held back by the first.
    other = await from_("203.0.113.9")
    await other.next("welcome")


async def test_a_message_flood_is_refused_then_closed(connect):
    bystander = await connect(Role.ATTENDEE, subject="bystander")
    flooder = await connect(Role.ATTENDEE, subject="flooder")
    frames = [json.dumps({"type": "ping", "id": n}) for n in range(400)]
    for frame in frames:
        await flooder.ws.send_str(frame)
    pongs, refusals, last_error = 0, 0, None
    async with asyncio.timeout(15):
        while True:
            frame = await flooder.ws.receive()
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            if message["type"] == "pong":
                pongs += 1
            elif message["type"] == "error":
                assert message["code"] == "rate_limited", message
                refusals += 1
                last_error = message
    assert flooder.ws.close_code == websocket.CLOSE_RATE_LIMITED
    # The burst (40) and what refilled while the frames arrived were carried out; then
    # refusals, each naming the message; then the close, long before the 400th.
    assert 40 <= pongs < 200, pongs
    assert refusals >= 1
    assert last_error is not None and "the connection is closed" in last_error["message"]
    assert pongs + refusals < len(frames)
    await bystander.alive()


async def test_a_refused_message_says_when_to_send_it_again(connect):
    client = await connect(Role.ATTENDEE, subject="hasty")
    for n in range(45):
        await client.ws.send_str(json.dumps({"type": "ping", "id": n}))
    refusal = await client.next("error")
    assert refusal["code"] == "rate_limited"
    assert isinstance(refusal["ref"], int) and refusal["ref"] >= 40
    assert "send it again in" in refusal["message"]
    # It slows down: the allowance comes back and the connection is as before.
    await asyncio.sleep(1.0)
    with pytest.raises(TimeoutError):
        while True:  # the answers to the rest of the burst
            assert (await client.receive(within=0.5))["type"] in ("pong", "error")
    await client.alive()


async def test_malformed_frames_count_against_the_rate(connect):
    client = await connect(Role.ATTENDEE, subject="garbage")
    for _ in range(100):
        await client.ws.send_str("{not json")
    error = await closed_with(client, websocket.CLOSE_RATE_LIMITED, "rate_limited")
    assert "the connection is closed" in error["message"]


async def test_subscribing_over_and_over_is_limited_separately(connect):
    client = await connect(Role.ATTENDEE, subject="churner")
    offers = 0
    for _ in range(MEDIA_BURST + 1):
        ref = await client.send("subscribe")
        message = await client.receive()
        while message["type"] == "state":
            message = await client.receive()
        if message["type"] == "offer":
            offers += 1
        else:
            assert message["code"] == "rate_limited" and message["ref"] == ref, message
            assert "subscribe opens a media connection" in message["message"]
    assert offers == MEDIA_BURST
    # Other messages are not held back by it.
    await client.alive()
    await client.send("select_channel", language="fr")
    await client.state_where(lambda s: s["you"]["channel"] == "fr")


async def test_pages_that_behave_never_meet_the_limits(connect, peers):
    """A publisher and a listener doing what pages do, at page speed and in page bursts."""
    interpreter = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr")
    peers.append(await publish(interpreter, ToneTrack(INTERPRETER_HZ)))
    await interpreter.send("mic", on=True)
    attendee = await connect(Role.ATTENDEE, subject="listener")
    # What the watch page sends at once when it opens.
    subscription = await Subscription.open(attendee)
    peers.append(subscription)
    for message in (
        {"type": "select_channel", "language": "fr"},
        {"type": "set_original_under", "on": True},
        {"type": "set_audio_only", "on": False},
        {"type": "select_sign", "booth": None},
    ):
        await attendee.ws.send_str(json.dumps(message))
    # Then a person clicking fast for three seconds, and the booth's buttons too.
    for n in range(30):
        await attendee.send("select_channel", language=("ru", "fr", "original")[n % 3])
        await interpreter.send("cough", on=n % 2 == 0)
        await attendee.send("ping")
        await asyncio.sleep(0.1)
    await interpreter.send("cough", on=False)
    seen: dict[str, list[dict]] = {"attendee": [], "interpreter": []}
    for name, client in (("attendee", attendee), ("interpreter", interpreter)):
        while True:
            try:
                seen[name].append(await client.receive(within=1.0))
            except TimeoutError:
                break
    errors = [m for messages in seen.values() for m in messages if m["type"] == "error"]
    assert not errors, errors
    assert sum(m["type"] == "pong" for m in seen["attendee"]) == 30
