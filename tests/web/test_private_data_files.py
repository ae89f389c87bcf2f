"""Names and email addresses stay the node user's: the data directory a node creates is
0700, the SQLite store (and its -wal/-shm) and the secret 0600, whatever the umask;
an export of the registrations is 0600 and keeps the ids the node wrote intact while
neutralising what a stranger typed."""

from __future__ import annotations

import csv
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from signaling.secret import SECRET_FILE
from signaling.store import SQLITE_FILE_NAME
from tests.support.server import RunningServer, StartServer, dragoman


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that lets everyone read new files, as many systems have."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


async def register(
    http: aiohttp.ClientSession, server: RunningServer, name: str, email: str
) -> str:
    async with http.post(
        f"{server.url}/api/registrations",
        json={"name": name, "email": email, "language": "fr"},
    ) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["registration"]["id"])


async def test_a_new_data_directory_and_its_store_are_private(
    start_server: StartServer, http: aiohttp.ClientSession, tmp_path: Path, open_umask: None
) -> None:
    server = await start_server()
    data_dir = server.settings.data_dir
    await register(http, server, "Jean Dupont", "jean@example.org")
    assert mode(data_dir) == 0o700
    database = data_dir / SQLITE_FILE_NAME
    assert mode(database) == 0o600
    for companion in ("-wal", "-shm"):
        path = data_dir / f"{SQLITE_FILE_NAME}{companion}"
        if path.exists():
            assert mode(path) == 0o600, companion
    assert mode(data_dir / SECRET_FILE) == 0o600


async def test_a_store_found_readable_by_others_is_narrowed(
    start_server: StartServer, tmp_path: Path, open_umask: None
) -> None:
    data_dir = tmp_path / "server-1"  # where the first server of this test keeps its data
    data_dir.mkdir()
    database = data_dir / SQLITE_FILE_NAME
    sqlite3.connect(database).close()
    database.chmod(0o644)
    server = await start_server()
    assert server.settings.data_dir == data_dir
    assert mode(database) == 0o600


async def test_the_export_keeps_ids_and_neutralises_only_typed_text(
    server: RunningServer, http: aiohttp.ClientSession, tmp_path: Path, open_umask: None
) -> None:
    first = await register(http, server, "-2+3", "minus@example.org")
    second = await register(http, server, '=HYPERLINK("http://evil.example")', "eve@example.org")
    # Ids are random URL-safe text: one in 64 starts with "-". Make sure both do.
    database = server.settings.data_dir / SQLITE_FILE_NAME
    with sqlite3.connect(database) as conn:
        for registration_id in (first, second):
            conn.execute(
                "UPDATE registrations SET id = ? WHERE id = ?",
                (f"-{registration_id}", registration_id),
            )
    out = tmp_path / "export.csv"
    exported = await dragoman("registrations", "--data-dir", server.settings.data_dir, "--csv", out)
    assert exported.status == 0, exported.stderr
    assert mode(out) == 0o600
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert [row["id"] for row in rows] == [f"-{first}", f"-{second}"]
    assert rows[0]["name"] == "'-2+3"
    assert rows[1]["name"] == '\'=HYPERLINK("http://evil.example")'
    assert rows[0]["language"] == "fr"
    assert rows[0]["created_at"][:2] == "20"
