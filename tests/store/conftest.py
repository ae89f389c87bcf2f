"""Fixtures that run the store contract against both backends.

`backend` is parametrised over SQLite (a real file in the test's temporary directory) and
Redis (the session's real redis-server, emptied per test). It makes stores and can reach
under them to damage stored data the way a crash or an operator might. `store` is an open
store of that backend driven by `clock`, a clock the test moves by hand.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from signaling.store import RedisStore, SqliteStore, Store


class ManualClock:
    """Seconds since the epoch, moved only by the test."""

    def __init__(self, start: float = 1_750_500_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    name: str
    sqlite_path: Path | None = None
    redis_url: str | None = None

    def make(self, clock: ManualClock) -> Store:
        if self.sqlite_path is not None:
            return SqliteStore(self.sqlite_path, clock=clock)
        assert self.redis_url is not None
        return RedisStore(self.redis_url, clock=clock)

    def write_raw_live_state(self, event_id: str, raw: str) -> None:
        if self.sqlite_path is not None:
            with sqlite3.connect(self.sqlite_path) as conn:
                conn.execute(
                    "INSERT INTO live_state (event_id, state) VALUES (?, ?) "
                    "ON CONFLICT (event_id) DO UPDATE SET state = excluded.state",
                    (event_id, raw),
                )
            conn.close()
        else:
            client = redis.Redis.from_url(self.redis_url)
            client.set(f"dragoman:event:{event_id}:live", raw)
            client.close()

    def write_schema_version(self, version: str) -> None:
        if self.sqlite_path is not None:
            with sqlite3.connect(self.sqlite_path) as conn:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (version,),
                )
            conn.close()
        else:
            client = redis.Redis.from_url(self.redis_url)
            client.hset("dragoman:meta", "schema_version", version)
            client.close()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", sqlite_path=tmp_path / "data" / "dragoman.sqlite3")
    return Backend("redis", redis_url=request.getfixturevalue("redis_url"))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(backend: Backend, clock: ManualClock) -> AsyncIterator[Store]:
    async with backend.make(clock) as opened:
        yield opened
