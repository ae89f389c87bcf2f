"""`dragoman serve --workers N`: the cores of one machine behind one port, as people use it.

Real processes: the supervisor and its workers, the embedded hub (no Redis), SQLite.
Connections are spread over the workers by load; an attendee on any worker hears the
interpreter who publishes to another; a worker killed with -9 is started again, and its
people, reconnecting as their pages do, land on a worker that lives and hear again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

from signaling.tokens import Role, TokenSigner
from tests.signaling.conftest import WsClient
from tests.signaling.media_peers import (
    RUSSIAN_SPEAKER,
    PatternVideoTrack,
    Subscription,
    ToneTrack,
    publish,
)
from tests.support.server import dragoman, dragoman_env

SECRET = "workers-secret-" + "x" * 24
SPEAKER_HZ, INTERPRETER_HZ = 1000.0, 440.0
#: The product brings a page back within 5 s (bench/cluster.py); a loaded machine gets more.
BACK_WITHIN_S = 15.0


@dataclass
class Member:
    """Someone with a page open: reconnects and resumes as the page does."""

    role: Role
    subject: str
    scope: dict[str, Any] = field(default_factory=dict)
    client: WsClient | None = None
    media: list[Any] = field(default_factory=list)

    @property
    def node(self) -> str:
        assert self.client is not None
        return self.client.welcome["node"]


async def _join(session: aiohttp.ClientSession, url: str, member: Member) -> None:
    signer = TokenSigner(SECRET.encode())
    if member.client is not None:
        await member.client.close()
    client = WsClient(await session.ws_connect(f"{url}/ws"))
    token = signer.issue(
        member.role, subject=member.subject, ttl=timedelta(hours=1), **member.scope
    )
    await client.send("auth", v=1, token=token)
    client.welcome = await client.next("welcome")
    await client.next("state")
    member.client = client
    for item in member.media:
        await item.close()
    member.media = []
    if member.role is Role.SPEAKER:
        member.media.append(await publish(client, ToneTrack(SPEAKER_HZ), PatternVideoTrack()))
    elif member.role is Role.INTERPRETER:
        member.media.append(await publish(client, ToneTrack(INTERPRETER_HZ)))
        await client.send("mic", on=True)
    elif member.role is Role.ATTENDEE:
        await client.send("select_channel", language="fr")
        await client.state_where(lambda s: s["you"]["channel"] == "fr")
        member.media.append(await Subscription.open(client))


def _pid(node: str) -> int:
    return int(node.rsplit("-", 1)[1])


def _mapped_files(pid: int) -> str:
    """What the process has loaded (its shared libraries among them)."""
    with open(f"/proc/{pid}/maps") as maps:
        return maps.read()


async def all_hear(members: list[Member], within: float = 15.0) -> None:
    """Every member's channel carries the interpreter; listened to together, since each
    check waits for half a second of fresh audio."""
    await asyncio.gather(
        *(member.media[0].hears("channel", INTERPRETER_HZ, within=within) for member in members)
    )


async def test_workers_share_one_port_one_event_and_survive_a_killed_worker(
    tmp_path: Path, serve_process, ws_session: aiohttp.ClientSession
):
    env = dragoman_env(DRAGOMAN_SECRET=SECRET, DRAGOMAN_WORKERS="2")
    server = await serve_process(tmp_path / "data", env=env)
    url = server.url
    moderator = Member(Role.MODERATOR, "mod")
    speaker = Member(Role.SPEAKER, RUSSIAN_SPEAKER, {"speaker": RUSSIAN_SPEAKER})
    interpreter = Member(Role.INTERPRETER, "anna", {"booth": "ru-fr"})
    attendees = [Member(Role.ATTENDEE, f"reg-{n}") for n in range(4)]
    everyone = [moderator, speaker, interpreter, *attendees]
    try:
        for member in (moderator, speaker, interpreter):
            await _join(ws_session, url, member)
        assert moderator.client is not None
        await moderator.client.state_where(
            lambda s: (
                RUSSIAN_SPEAKER in s["publishers"]["speakers"]
                and s["publishers"]["interpreters"]["ru-fr"] == ["anna"]
            )
        )
        await moderator.client.send("start_session", session_id="plenary")
        await moderator.client.send("put_on_air", speaker_id=RUSSIAN_SPEAKER)
        for attendee in attendees:
            await _join(ws_session, url, attendee)

        # Placed by load: both workers serve; every attendee hears the interpreter,
        # wherever he publishes.
        assert len({m.node for m in everyone}) == 2
        # The supervisor itself never loaded the media stack: its workers did.
        assert server.process is not None
        supervisor_maps = _mapped_files(server.process.pid)
        assert "srtp" in _mapped_files(_pid(attendees[0].node))
        assert "srtp" not in supervisor_maps and "libavcodec" not in supervisor_maps
        await all_hear(attendees)

        # Kill the worker of the first attendee: its people come back on a live worker.
        victim = attendees[0].node
        before = {m.node for m in everyone}
        os.kill(_pid(victim), signal.SIGKILL)
        killed_at = time.monotonic()
        hit = [m for m in everyone if m.node == victim]
        for member in hit:
            assert member.client is not None
            await member.client.close()
        while True:
            try:
                for member in sorted(hit, key=lambda m: m.role is Role.ATTENDEE):
                    await _join(ws_session, url, member)
                break
            except (aiohttp.ClientError, ConnectionError, TimeoutError):
                assert time.monotonic() - killed_at < BACK_WITHIN_S
                await asyncio.sleep(0.2)
        await all_hear(attendees, within=BACK_WITHIN_S)
        back_after = time.monotonic() - killed_at
        assert back_after < BACK_WITHIN_S
        assert all(m.node != victim for m in hit)

        # The supervisor started the killed worker again: newcomers fill it first. (A
        # speaker's or interpreter's page may be there already: its seat, held on the
        # killed worker, was given back once that worker did not answer for it.)
        latecomers = [Member(Role.ATTENDEE, f"late-{n}") for n in range(2)]
        everyone.extend(latecomers)
        deadline = time.monotonic() + BACK_WITHIN_S
        while True:
            for member in latecomers:
                await _join(ws_session, url, member)
            if any(m.node not in before for m in [*hit, *latecomers]):
                break
            assert time.monotonic() < deadline, "the killed worker was not started again"
            await asyncio.sleep(0.5)
        await all_hear(latecomers)
    finally:
        for member in everyone:
            for item in member.media:
                await item.close()
            if member.client is not None:
                await member.client.close()


async def test_a_wrong_number_of_workers_is_refused_with_the_reason(tmp_path: Path):
    cases = [
        (["--workers", "0"], "'0' is not a number of workers (1, 2, ... or auto)"),
        (["--workers", "many"], "'many' is not a number of workers"),
        (["--workers", "4", "--rtc-ports", "40000-40005"], "too small for 4 workers"),
    ]
    # Each is refused before it serves anything: run together.
    results = await asyncio.gather(
        *(dragoman("serve", "--data-dir", tmp_path, *args) for args, _ in cases)
    )
    for (_, reason), result in zip(cases, results, strict=True):
        assert result.status != 0
        assert reason in result.stderr, result.stderr


async def test_three_nodes_on_redis_one_dies_and_its_attendee_hears_again_elsewhere(
    tmp_path: Path, serve_process, redis_url: str, ws_session: aiohttp.ClientSession
):
    """Nodes on several machines, as docker-compose.yml runs them (here three processes on
    loopback): staff on A, an attendee on B; B dies; the attendee's page reconnects
    through the proxy to a node that lives (C) and hears the channel again."""
    env = dragoman_env(DRAGOMAN_SECRET=SECRET, DRAGOMAN_REDIS_URL=redis_url)
    # Started together, as a deployment starts them: each waits only for its own start.
    a, b, c = await asyncio.gather(*(serve_process(tmp_path / n, env=env) for n in "abc"))
    moderator = Member(Role.MODERATOR, "mod")
    speaker = Member(Role.SPEAKER, RUSSIAN_SPEAKER, {"speaker": RUSSIAN_SPEAKER})
    interpreter = Member(Role.INTERPRETER, "anna", {"booth": "ru-fr"})
    attendee = Member(Role.ATTENDEE, "reg-b")
    everyone = [moderator, speaker, interpreter, attendee]
    try:
        for member in (moderator, speaker, interpreter):
            await _join(ws_session, a.url, member)
        assert moderator.client is not None
        await moderator.client.state_where(
            lambda s: (
                RUSSIAN_SPEAKER in s["publishers"]["speakers"]
                and s["publishers"]["interpreters"]["ru-fr"] == ["anna"]
            )
        )
        await moderator.client.send("start_session", session_id="plenary")
        await moderator.client.send("put_on_air", speaker_id=RUSSIAN_SPEAKER)
        await _join(ws_session, b.url, attendee)
        media = attendee.media[0]
        await media.hears("channel", INTERPRETER_HZ)

        # A switch made on A (the interpreter's cough, then the floor in French) on B.
        assert interpreter.client is not None
        await moderator.client.send("set_floor_language", language="fr")
        await media.hears("channel", SPEAKER_HZ, within=BACK_WITHIN_S)
        await moderator.client.send("set_floor_language", language=None)
        await media.hears("channel", INTERPRETER_HZ, within=BACK_WITHIN_S)

        assert b.process is not None
        b.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        await b.process.wait()
        assert attendee.client is not None
        await attendee.client.close()
        await _join(ws_session, c.url, attendee)
        await attendee.media[0].hears("channel", INTERPRETER_HZ, within=BACK_WITHIN_S)
        assert time.monotonic() - killed_at < BACK_WITHIN_S
    finally:
        for member in everyone:
            for item in member.media:
                await item.close()
            if member.client is not None:
                await member.client.close()
