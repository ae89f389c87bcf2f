"""The store's disk fills up while the event is live (embedded SQLite on a small
filesystem of its own, a tmpfs mounted for the test).

Real processes: `dragoman serve` with its data directory on the small filesystem, aiortc
peers, the registration form's HTTP requests. What must hold:

- registration is refused with 503 and a sentence a person understands (never a 500,
  never a traceback in the answer);
- the live event goes on: the attendee still hears the channel, the moderator's changes
  still reach everyone, a newcomer still joins;
- once space is freed, registration works again, without a restart.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from signaling.live_state import LiveState
from signaling.registration import NewRegistration
from signaling.store import SqliteStore, StoreFull
from signaling.tokens import Role
from tests.faults.people import INTERPRETER_HZ, Person, on_air, staff
from tests.support.server import dragoman_env

pytestmark = pytest.mark.timeout(180)

SECRET = "faults-disk-full-" + "x" * 24
SIZE = "4m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB filesystem of its own (tmpfs), unmounted at teardown."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(
            "a full disk needs a small filesystem of its own, and mounting one is not "
            f"permitted here: {result.stderr.strip() or result.returncode}"
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem has no space left; returns it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # Big blocks, then smaller ones down to a byte: not a page is left.
        for size in (1 << 16, 4096, 512, 1):
            block = b"\0" * size
            with contextlib.suppress(OSError):
                while os.write(fd, block):
                    pass
    finally:
        os.close(fd)
    return filler


async def register(session: aiohttp.ClientSession, url: str, n: int) -> tuple[int, dict]:
    body = {"name": f"Person {n}", "email": f"person{n}@example.org", "language": "fr"}
    async with session.post(f"{url}/api/registrations", json=body) as response:
        return response.status, await response.json(content_type=None)


async def test_a_full_disk_refuses_registration_with_a_reason_and_the_event_goes_on(
    small_disk: Path, serve_process
):
    env = dragoman_env(DRAGOMAN_SECRET=SECRET)
    node = await serve_process(small_disk / "data", env=env)
    url = node.url
    moderator, speaker, interpreter = staff(SECRET)
    attendee = Person(Role.ATTENDEE, "reg-1", SECRET)
    newcomer = Person(Role.ATTENDEE, "reg-2", SECRET)
    everyone = [moderator, speaker, interpreter, attendee, newcomer]
    try:
        async with aiohttp.ClientSession() as http:
            status, _ = await register(http, url, 0)
            assert status == 201
            await on_air(moderator, speaker, interpreter, url)
            await attendee.join(url)
            await attendee.hears(INTERPRETER_HZ)

            filler = fill(small_disk)
            # Several attempts: a write may still fit in space SQLite already holds.
            answers = [await register(http, url, n) for n in range(1, 30)]
            refused = [(status, body) for status, body in answers if status != 201]
            assert refused, "the full disk never refused a registration"
            for status, body in refused:
                assert status == 503, (status, body)
                error = body["error"]
                assert error["code"] == "store_unavailable"
                assert "disk is full" in error["message"]
                assert "Traceback" not in error["message"]
                # Nothing of the machine leaks: no path of the data directory.
                assert str(small_disk) not in error["message"]
            # The log says why, once a refusal, without a traceback.
            api_log = [line for line in node.output().splitlines() if "signaling.http_api" in line]
            assert any("disk is full" in line for line in api_log)
            assert not any("Traceback" in line for line in api_log)

            # The live event goes on: media, the moderator's changes, a newcomer.
            await attendee.hears(INTERPRETER_HZ)
            assert moderator.client is not None and attendee.client is not None
            await interpreter.client.send("cough", on=True)  # type: ignore[union-attr]
            await moderator.client.state_where(
                lambda s: next(b for b in s["booths"] if b["id"] == "ru-fr")["coughing"]
            )
            await interpreter.client.send("cough", on=False)  # type: ignore[union-attr]
            await newcomer.join(url)
            await newcomer.hears(INTERPRETER_HZ)
            async with http.get(f"{url}/healthz") as response:
                assert response.status == 200

            # Space is freed: registration works again, no restart.
            filler.unlink()
            status, body = await register(http, url, 100)
            assert status == 201, body
            assert body["registration"]["email"] == "person100@example.org"
    finally:
        for person in everyone:
            await person.close()


async def test_every_write_of_the_sqlite_store_says_the_disk_is_full_and_works_once_freed(
    small_disk: Path,
):
    """Each way the store writes, transactions included: SQLite ends a transaction itself
    on a full disk, and that must not turn into another error."""

    def person(n: int) -> NewRegistration:
        return NewRegistration.create(
            event_id="ev",
            name=f"P {n}",
            email=f"p{n}@example.org",
            language="fr",
            languages=("fr", "ru"),
        )

    async with SqliteStore(small_disk / "store.sqlite3") as store:
        kept, _ = await store.register(person(0))
        filler = fill(small_disk)
        writes = {
            "register": lambda n: store.register(person(n)),
            "hit_rate_limit": lambda n: store.hit_rate_limit(f"key-{n}", 10, 60),
            "add_chat_message": lambda n: store.add_chat_message("ev", "t", "a", "x", "hi" * n),
            "put_live_state": lambda n: store.put_live_state("ev", LiveState(session_id=f"s{n}")),
        }
        for name, write in writes.items():
            # A write may fit in pages SQLite holds already: the disk is full by the 50th.
            with pytest.raises(StoreFull, match="disk is full"):
                for n in range(1, 50):
                    await write(n)
            # What is stored can still be read.
            assert await store.registration(kept.id) == kept, name
        filler.unlink()
        for write in writes.values():
            await write(1000)
        assert await store.registration_count("ev") >= 2
