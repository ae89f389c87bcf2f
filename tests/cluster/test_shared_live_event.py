"""Several nodes, one event: the live state is shared through a real redis-server.

Staff on node A, others on node B (and a node started late): every live change made on
one node is seen on the others, a node that starts late begins from the current state,
the same command on two nodes at once is decided once (the other is told why), listener
counts add up, booth chat crosses nodes, and a node that dies takes its interpreters'
connections with it. Media between nodes is the media plane's business; here a
publisher's presence is enough (a speaker publishing on A may be put on air from B).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

from signaling.live.seats import SEAT_CHECK_S
from signaling.registration import NewRegistration
from signaling.tokens import Role, TokenSigner
from signaling.websocket import install_live
from tests.signaling.conftest import WsClient
from tests.signaling.media_peers import RUSSIAN_SPEAKER, Subscription, ToneTrack, publish
from tests.support.redis_server import RedisServer
from tests.support.server import dragoman_env

#: Generous on a loaded machine: the bus itself takes milliseconds (bench/cluster.py).
FOLLOW_S = 3.0
SECRET = "cluster-secret-" + "x" * 24


async def _nodes(start_server: Any, redis_url: str, count: int) -> list[Any]:
    return [
        await start_server(extensions=[install_live], redis_url=redis_url, secret=SECRET)
        for _ in range(count)
    ]


async def _started(start_node: Any, count: int) -> list[Any]:
    return [await start_node() for _ in range(count)]


def _booth(state: dict[str, Any]) -> dict[str, Any]:
    return next(b for b in state["booths"] if b["id"] == "ru-fr")


async def test_a_change_made_on_one_node_is_seen_on_the_others(start_node, connect, peers):
    a, b = await _started(start_node, 2)
    moderator = await connect(Role.MODERATOR, server=a)
    speaker = await connect(
        Role.SPEAKER, subject=RUSSIAN_SPEAKER, speaker=RUSSIAN_SPEAKER, server=a
    )
    peers.append(await publish(speaker, ToneTrack(1000.0)))
    interpreter = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr", server=a)
    peers.append(await publish(interpreter, ToneTrack(440.0)))
    observer = await connect(Role.MODERATOR, subject="observer", server=b)
    peers.extend([moderator, speaker, interpreter, observer])

    # Who publishes where is known everywhere: B may put A's speaker on air.
    await observer.state_where(
        lambda s: RUSSIAN_SPEAKER in s["publishers"]["speakers"], within=FOLLOW_S
    )
    await observer.send("start_session", session_id="plenary")
    await observer.send("put_on_air", speaker_id=RUSSIAN_SPEAKER)
    await moderator.state_where(
        lambda s: (
            s["session"] == "plenary"
            and s["on_air"] is not None
            and s["on_air"]["speaker"] == RUSSIAN_SPEAKER
        ),
        within=FOLLOW_S,
    )

    # A booth's life on A, followed on B.
    await interpreter.send("mic", on=True)
    await observer.state_where(lambda s: _booth(s)["on_air"] == "anna", within=FOLLOW_S)
    await observer.state_where(
        lambda s: s["channels"]["fr"]["kind"] == "interpreter", within=FOLLOW_S
    )
    await interpreter.send("cough", on=True)
    await observer.state_where(lambda s: _booth(s)["coughing"], within=FOLLOW_S)
    await interpreter.send("cough", on=False)
    await interpreter.send("slow_down", on=True)
    await observer.state_where(
        lambda s: [r["booth"] for r in s["slow_down"]] == ["ru-fr"], within=FOLLOW_S
    )
    await interpreter.send("set_direction", into="ru")
    await observer.state_where(lambda s: _booth(s)["direction_override"] == "ru", within=FOLLOW_S)
    await observer.send("set_floor_language", language="fr")
    await moderator.state_where(lambda s: s["floor_language"] == "fr", within=FOLLOW_S)
    await observer.send("take_off_air")
    await moderator.state_where(lambda s: s["on_air"] is None, within=FOLLOW_S)


async def test_a_node_that_starts_late_begins_from_the_current_state(start_node, connect, peers):
    (a,) = await _started(start_node, 1)
    moderator = await connect(Role.MODERATOR, server=a)
    anna = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr", server=a)
    boris = await connect(Role.INTERPRETER, subject="boris", booth="ru-fr", server=a)
    peers.extend([moderator, anna, boris])
    await moderator.send("start_session", session_id="plenary")
    await anna.send("mic", on=True)
    await boris.state_where(lambda s: _booth(s)["on_air"] == "anna", within=FOLLOW_S)
    await boris.send("request_handover")
    await moderator.state_where(lambda s: _booth(s)["handover"] is not None, within=FOLLOW_S)

    (late,) = await _started(start_node, 1)
    newcomer = await connect(Role.MODERATOR, subject="late", server=late)
    peers.append(newcomer)
    first = newcomer.state
    assert first["session"] == "plenary"
    booth = _booth(first)
    assert booth["on_air"] == "anna"
    assert booth["handover"]["by"] == "boris"
    assert sorted(i["id"] for i in booth["interpreters"] if i["connected"]) == ["anna", "boris"]


async def test_the_same_command_on_two_nodes_at_once_is_decided_once(start_node, connect, peers):
    a, b = await _started(start_node, 2)
    watcher = await connect(Role.MODERATOR, server=a)
    anna = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr", server=a)
    boris = await connect(Role.INTERPRETER, subject="boris", booth="ru-fr", server=b)
    peers.extend([watcher, anna, boris])
    await watcher.state_where(
        lambda s: {i["id"] for i in _booth(s)["interpreters"]} == {"anna", "boris"},
        within=FOLLOW_S,
    )
    # Both press the microphone at once: one is on air, the other is told his partner is.
    await asyncio.gather(anna.send("mic", on=True), boris.send("mic", on=True))
    state = await watcher.state_where(lambda s: _booth(s)["on_air"] is not None, within=FOLLOW_S)
    winner = _booth(state)["on_air"]
    loser = boris if winner == "anna" else anna
    error = await loser.error()
    assert error["code"] == "partner_on_air", error
    # Both nodes agree, and stay agreed.
    await asyncio.sleep(0.5)
    for client in (anna, boris):
        await client.send("ping")
        await client.next("pong")
        assert _booth(client.state)["on_air"] == winner


async def test_listeners_add_up_and_chat_crosses_nodes(start_node, connect, peers):
    a, b = await _started(start_node, 2)
    moderator = await connect(Role.MODERATOR, server=a)
    interpreter = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr", server=b)
    attendees = [
        await connect(Role.ATTENDEE, subject=f"reg-{n}", server=node)
        for n, node in enumerate((a, b, b))
    ]
    peers.extend([moderator, interpreter, *attendees])
    await attendees[1].send("select_channel", language="fr")
    await attendees[2].send("select_channel", language="fr")
    for attendee in attendees:
        peers.append(await Subscription.open(attendee))
    await moderator.state_where(
        lambda s: s["listeners"] == {"original": 1, "fr": 2, "ru": 0}, within=FOLLOW_S
    )
    await interpreter.state_where(lambda s: s["listeners"]["fr"] == 2, within=FOLLOW_S)

    await interpreter.send("chat_send", thread="studio:ru-fr", text="Slower, please?")
    chat = await moderator.next("chat", within=FOLLOW_S)
    assert [m["text"] for m in chat["messages"]] == ["Slower, please?"]


async def test_a_node_that_dies_takes_its_interpreters_with_it(
    tmp_path: Path, redis_url, serve_process, ws_session
):
    env = dragoman_env(DRAGOMAN_REDIS_URL=redis_url, DRAGOMAN_SECRET=SECRET)
    a, b = await asyncio.gather(*(serve_process(tmp_path / n, env=env) for n in "ab"))
    signer = TokenSigner(SECRET.encode())

    async def connect_to(node: Any, role: Role, subject: str, **scope: Any) -> WsClient:
        client = WsClient(await ws_session.ws_connect(f"{node.url}/ws"))
        issued = signer.issue(role, subject=subject, ttl=timedelta(hours=1), **scope)
        await client.send("auth", v=1, token=issued)
        await client.next("welcome")
        await client.next("state")
        return client

    moderator = await connect_to(a, Role.MODERATOR, "mod")
    boris = await connect_to(b, Role.INTERPRETER, "boris", booth="ru-fr")
    await moderator.state_where(
        lambda s: any(i["id"] == "boris" and i["connected"] for i in _booth(s)["interpreters"]),
        within=FOLLOW_S,
    )
    assert b.process is not None
    b.process.send_signal(signal.SIGKILL)
    await b.process.wait()
    # Nobody said goodbye: the registry's heartbeat finds the node gone.
    await moderator.state_where(
        lambda s: not any(i["connected"] for i in _booth(s)["interpreters"]), within=10.0
    )
    # His seat went with the node: his page, back on A, is not kept waiting for an answer
    # from a page that is gone (SEAT_CHECK_S).
    started = time.monotonic()
    back = await connect_to(a, Role.INTERPRETER, "boris", booth="ru-fr")
    assert time.monotonic() - started < SEAT_CHECK_S - 0.5
    for client in (moderator, boris, back):
        await client.close()
    assert isinstance(ws_session, aiohttp.ClientSession)


async def test_a_redis_restart_loses_nothing_and_the_nodes_resync(
    tmp_path: Path, start_server, connect, peers
):
    executable = shutil.which("redis-server")
    assert executable is not None
    directory = tmp_path / "redis"
    directory.mkdir()
    redis = RedisServer(executable, directory, durable=True)
    redis.start()
    try:
        a, b = await _nodes(start_server, redis.url(), 2)
        moderator = await connect(Role.MODERATOR, server=a)
        anna = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr", server=b)
        peers.extend([moderator, anna])
        await moderator.send("start_session", session_id="plenary")
        await anna.send("mic", on=True)
        await moderator.state_where(lambda s: _booth(s)["on_air"] == "anna", within=FOLLOW_S)
        registered, _ = await a.store.register(
            NewRegistration.create(
                event_id=a.event.id,
                name="Véra",
                email="vera@example.org",
                language="fr",
                languages=a.event.language_codes,
            )
        )

        redis.stop()
        # Redis away: what needs the other nodes is refused with a reason, nothing breaks.
        await anna.send("cough", on=True)
        assert (await anna.error())["code"] == "unavailable"
        redis.start(same_port=True)

        # Back: changes flow again both ways, and what was there before is still there.
        async def cough_reaches_a() -> None:
            while True:
                await anna.send("cough", on=True)
                message = await anna.receive(FOLLOW_S)
                while message["type"] == "state":
                    if _booth(message)["coughing"]:
                        return
                    message = await anna.receive(FOLLOW_S)
                await asyncio.sleep(0.2)  # an `unavailable` error: Redis still coming back

        await asyncio.wait_for(cough_reaches_a(), 15.0)
        state = await moderator.state_where(lambda s: _booth(s)["coughing"], within=FOLLOW_S)
        assert state["session"] == "plenary"
        assert _booth(state)["on_air"] == "anna"
        await moderator.send("end_session")
        await moderator.state_where(lambda s: s["session"] is None, within=FOLLOW_S)
        await anna.state_where(lambda s: s["session"] is None, within=FOLLOW_S)

        # A node started now begins from the state the others kept.
        (late,) = await _nodes(start_server, redis.url(), 1)
        newcomer = await connect(Role.MODERATOR, subject="late", server=late)
        peers.append(newcomer)
        assert _booth(newcomer.state)["on_air"] == "anna"
        assert newcomer.state["session"] is None
        assert await late.store.registration(registered.id) == registered
    finally:
        redis.stop()


async def test_an_audience_on_another_node_is_not_sent_what_does_not_concern_it(
    start_node, connect, peers
):
    """Listener counts of other nodes go to staff, at most once a second; a speaker whose
    media flows on another node stays live for the audience (no state every second)."""
    a, b = await _started(start_node, 2)
    moderator = await connect(Role.MODERATOR, server=a)
    speaker = await connect(
        Role.SPEAKER, subject=RUSSIAN_SPEAKER, speaker=RUSSIAN_SPEAKER, server=a
    )
    peers.extend([moderator, speaker])
    peers.append(await publish(speaker, ToneTrack(1000.0)))
    await moderator.state_where(lambda s: RUSSIAN_SPEAKER in s["publishers"]["speakers"])
    await moderator.send("start_session", session_id="plenary")
    await moderator.send("put_on_air", speaker_id=RUSSIAN_SPEAKER)
    watcher = await connect(Role.ATTENDEE, subject="reg-watcher", server=b)
    peers.append(watcher)
    peers.append(await Subscription.open(watcher))
    await watcher.state_where(
        lambda s: s["on_air"] is not None and s["on_air"]["media_live"], within=FOLLOW_S
    )
    await asyncio.sleep(2.5)  # whatever was on its way has arrived
    while True:  # drain
        try:
            await watcher.receive(within=0.1)
        except TimeoutError:
            break
    # Others come and listen on A; time passes over several heartbeats.
    for n in range(3):
        other = await connect(Role.ATTENDEE, subject=f"reg-a-{n}", server=a)
        peers.append(other)
        peers.append(await Subscription.open(other))
    await moderator.state_where(lambda s: s["listeners"]["original"] == 4, within=FOLLOW_S)
    received = []
    deadline = asyncio.get_running_loop().time() + 3.0
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            received.append(await watcher.receive(within=left))
        except TimeoutError:
            break
    assert received == []
