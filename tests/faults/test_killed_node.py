"""A node killed with -9 in the middle of a session, while people register, and started
again on the same port and data directory (embedded SQLite, as `dragoman serve` runs by
default).

Real processes: `dragoman serve`, aiortc peers for the speaker, the interpreter and an
attendee, the registration form's HTTP requests. What must hold:

- every registration the node acknowledged (201) before it died is in the store after;
- the live state acknowledged before the kill (the session running, the speaker on air,
  the interpreter on air in his booth) is the state after the restart;
- the pages (clients reconnecting with the pages' back-off) are back soon after the node
  answers again (the goal: 5 s; see PAGES_BACK_S), and the attendee hears again.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from signaling.tokens import Role
from tests.faults.people import (
    INTERPRETER_HZ,
    RUSSIAN_SPEAKER,
    SPEAKER_HZ,
    Person,
    booth_of,
    on_air,
    staff,
)
from tests.support.server import dragoman, dragoman_env

pytestmark = pytest.mark.timeout(240)

SECRET = "faults-killed-node-" + "x" * 24
#: The issue's goal: 5 s after the node answers again (measured here: about 2 s). The
#: pages retry at most 5 s apart (4 s +-25 %); the welcome itself may take a second more
#: on a loaded machine.
PAGES_BACK_S = 6.0
#: Hearing again needs ICE and DTLS anew on a machine shared with other work.
HEARS_AGAIN_S = 20.0
REGISTRANTS = 4


async def _register_until_stopped(
    url: str, worker: int, acknowledged: list[str], stop: asyncio.Event
) -> int:
    """Register people one after another as fast as the node answers; note each address
    the node acknowledged (201). Returns how many attempts failed (the node died)."""
    failed = 0
    n = 0
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            n += 1
            email = f"w{worker}-n{n}@example.org"
            body = {"name": f"Person {worker}-{n}", "email": email, "language": "fr"}
            try:
                async with session.post(f"{url}/api/registrations", json=body) as response:
                    if response.status == 201:
                        acknowledged.append(email)
                    else:
                        failed += 1
            except (aiohttp.ClientError, ConnectionError, OSError):
                failed += 1
                await asyncio.sleep(0.05)
    return failed


async def test_a_node_killed_mid_session_comes_back_with_its_state_and_registrations(
    tmp_path: Path, serve_process
):
    data_dir = tmp_path / "data"
    # Registrations come in bursts from one address here: not what this test is about.
    env = dragoman_env(DRAGOMAN_SECRET=SECRET, DRAGOMAN_REGISTRATIONS_PER_CLIENT="100000")
    node = await serve_process(data_dir, env=env)
    url, port = node.url, node.port
    moderator, speaker, interpreter = staff(SECRET)
    attendee = Person(Role.ATTENDEE, "reg-1", SECRET)
    everyone = [moderator, speaker, interpreter, attendee]
    stop = asyncio.Event()
    acknowledged: list[str] = []
    burst: list[asyncio.Task[int]] = []
    coming_back: list[asyncio.Task[float]] = []
    try:
        await on_air(moderator, speaker, interpreter, url)
        await attendee.join(url)
        await attendee.hears(INTERPRETER_HZ)

        # A burst of registrations; the node dies in the middle of it.
        burst = [
            asyncio.create_task(_register_until_stopped(url, w, acknowledged, stop))
            for w in range(REGISTRANTS)
        ]
        deadline = time.monotonic() + 30
        while len(acknowledged) < 20:
            assert time.monotonic() < deadline, "registrations are not being acknowledged"
            await asyncio.sleep(0.05)
        # A durable change, killed as soon as it is acknowledged (the moderator's page
        # shows it): the speaker speaks French after all.
        assert moderator.client is not None and node.process is not None
        await moderator.client.send("set_floor_language", language="fr")
        await moderator.client.state_where(lambda s: s["floor_language"] == "fr")
        os.kill(node.process.pid, signal.SIGKILL)
        await node.process.wait()
        await asyncio.sleep(0.5)
        stop.set()
        failed = sum(await asyncio.gather(*burst))
        assert failed >= 1, "the burst did not reach the kill"
        before_restart = list(acknowledged)

        # Every page sees its socket close, as a browser does, and keeps trying with its
        # back-off while the node is down.
        for person in everyone:
            await person.close_media()
            await person.close_socket()
        coming_back = [
            asyncio.create_task(person.come_back(url, within=120)) for person in everyone
        ]
        await asyncio.sleep(1.0)

        # The same command, port and data directory: what an init system does.
        restarted = await serve_process(data_dir, env=env, port=port)
        answering_at = time.monotonic()
        await asyncio.gather(*coming_back)
        back_after = time.monotonic() - answering_at
        print(f"\npages back {back_after:.2f} s after the node answered again")
        assert back_after < PAGES_BACK_S

        # The live state as acknowledged before the kill, before anyone did anything.
        state = moderator.state
        assert state["session"] == "plenary"
        assert state["on_air"]["speaker"] == RUSSIAN_SPEAKER
        assert booth_of(state)["on_air"] == "anna"
        assert state["floor_language"] == "fr"

        # The pages publish and subscribe again. The floor is French now: the French
        # channel carries the speaker himself, as routed before the kill.
        for person in (speaker, interpreter, attendee):
            await person.start_media()
        await attendee.hears(SPEAKER_HZ, within=HEARS_AGAIN_S)
        print(f"attendee hears again {time.monotonic() - answering_at:.2f} s after restart")

        # Every registration acknowledged before the kill is kept (read by an organizer's
        # command, its own process, while the node runs).
        result = await dragoman("registrations", "--csv", "-", "--data-dir", data_dir, env=env)
        assert result.status == 0, result.stderr
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        kept = {row["email"] for row in rows}
        lost = [email for email in before_restart if email not in kept]
        assert not lost, f"{len(lost)} acknowledged registrations lost: {lost[:5]}"
        assert len(before_restart) >= 20
        # The node registers again, after as before.
        async with aiohttp.ClientSession() as session:
            body = {"name": "After", "email": "after@example.org", "language": "ru"}
            async with session.post(f"{restarted.url}/api/registrations", json=body) as r:
                assert r.status == 201, await r.text()
    finally:
        stop.set()
        for task in [*burst, *coming_back]:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for person in everyone:
            await person.close()
