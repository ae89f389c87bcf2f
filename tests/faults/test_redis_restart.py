"""Redis restarted under three `dragoman serve` nodes while media flows between them.

tests/cluster/test_shared_live_event.py restarts a durable Redis under two in-process
nodes with no media: nothing is lost and the nodes resync. This adds what only real
processes and real media show: three nodes (staff on A, attendees on B and C, each
pulling the interpretation from A over a node link), Redis (append-only, every write
synced, as docker-compose.yml runs it) stopped for a few seconds and started again on
its port:

- the attendees keep hearing the interpreter while Redis is away (media between nodes
  does not go through Redis) and after. (They did not: after 3.5 s without heartbeats a
  node took the others for gone and stopped pulling their channels, though only the log
  was away; nodes now age each other's presence from the moment the log went away.)
- the live state is the one from before; changes made on one node after the restart
  reach the others (the moderator on C sees the interpreter on A cough);
- a newcomer on B after the restart hears the channel.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signaling.tokens import Role
from tests.faults.people import INTERPRETER_HZ, Person, booth_of, on_air, staff
from tests.support.redis_server import RedisServer
from tests.support.server import dragoman_env

pytestmark = pytest.mark.timeout(240)

SECRET = "faults-redis-restart-" + "x" * 24
#: Longer than a node waits for another's heartbeat (PRESENCE_TIMEOUT_S, 3.5 s), so that
#: the attendees are still checked for 2.5 s after a node would have taken the others for
#: gone (each check hears or fails within 5 s).
REDIS_AWAY_S = 6.0
#: Redis back, the nodes resubscribe and resync: generous on a loaded machine.
RESYNC_S = 20.0


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail("redis-server is not installed (the README's test command installs it)")
    directory = tmp_path / "redis"
    directory.mkdir()
    redis = RedisServer(executable, directory, durable=True)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


async def test_three_nodes_keep_the_event_and_its_media_across_a_redis_restart(
    tmp_path: Path, serve_process, durable_redis: RedisServer
):
    env = dragoman_env(DRAGOMAN_SECRET=SECRET, DRAGOMAN_REDIS_URL=durable_redis.url())
    # Started together, as a deployment starts them: each waits only for its own start.
    a, b, c = await asyncio.gather(*(serve_process(tmp_path / n, env=env) for n in "abc"))
    moderator, speaker, interpreter = staff(SECRET)
    on_b = Person(Role.ATTENDEE, "reg-b", SECRET)
    on_c = Person(Role.ATTENDEE, "reg-c", SECRET)
    newcomer = Person(Role.ATTENDEE, "reg-late", SECRET)
    watcher = Person(Role.MODERATOR, "mod-c", SECRET)
    everyone = [moderator, speaker, interpreter, on_b, on_c, newcomer, watcher]
    try:
        await on_air(moderator, speaker, interpreter, a.url)
        await on_b.join(b.url)
        await on_c.join(c.url)
        await watcher.join(c.url)
        assert len({p.client.welcome["node"] for p in everyone if p.client}) == 3  # type: ignore[index]
        await asyncio.gather(on_b.hears(INTERPRETER_HZ), on_c.hears(INTERPRETER_HZ))

        durable_redis.stop()
        stopped = time.monotonic()
        # Media between nodes does not need Redis: both keep hearing while it is away.
        while time.monotonic() - stopped < REDIS_AWAY_S:
            for where, attendee in (("B", on_b), ("C", on_c)):
                try:
                    await attendee.hears(INTERPRETER_HZ, within=5)
                except AssertionError as exc:
                    away = time.monotonic() - stopped
                    raise AssertionError(
                        f"on {where}, {away:.1f} s into the outage: {exc}"
                    ) from None
        durable_redis.start(same_port=True)
        back = time.monotonic()

        # A change on A reaches C once the nodes are back on Redis (refused with
        # `unavailable` while they are not: the page's user presses again).
        assert interpreter.client is not None and watcher.client is not None
        while True:
            await interpreter.client.send("cough", on=True)
            reply = await interpreter.client.receive(5)
            while reply["type"] == "state" and not booth_of(reply)["coughing"]:
                reply = await interpreter.client.receive(5)
            if reply["type"] == "state":
                break
            assert reply["type"] == "error" and reply["code"] == "unavailable", reply
            assert time.monotonic() - back < RESYNC_S, "the nodes did not come back on Redis"
            await asyncio.sleep(0.5)
        state = await watcher.client.state_where(lambda s: booth_of(s)["coughing"], within=RESYNC_S)
        print(f"\nchanges cross nodes again {time.monotonic() - back:.2f} s after Redis returned")
        # The state from before the restart.
        assert state["session"] == "plenary"
        assert state["on_air"]["speaker"] == speaker.subject
        assert booth_of(state)["on_air"] == "anna"
        await interpreter.client.send("cough", on=False)
        await watcher.client.state_where(lambda s: not booth_of(s)["coughing"], within=RESYNC_S)

        # Everyone still hears; a newcomer on B does too.
        await asyncio.gather(on_b.hears(INTERPRETER_HZ), on_c.hears(INTERPRETER_HZ))
        await newcomer.join(b.url)
        await newcomer.hears(INTERPRETER_HZ, within=RESYNC_S)
    finally:
        for person in everyone:
            await person.close()
