"""Durable state: one `Store` contract, an embedded SQLite backend and a shared Redis one.

`open_store(settings)` picks the backend from the settings: Redis when a Redis URL is
configured (required for several nodes), otherwise a SQLite file in the data directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from signaling.store.base import SCHEMA_VERSION, Clock, CorruptLiveState, Store, StoreError
from signaling.store.redis import RedisStore
from signaling.store.sqlite import SqliteStore

SQLITE_FILE_NAME = "dragoman.sqlite3"

__all__ = [
    "SCHEMA_VERSION",
    "SQLITE_FILE_NAME",
    "Clock",
    "CorruptLiveState",
    "RedisStore",
    "SqliteStore",
    "Store",
    "StoreError",
    "open_store",
]


def open_store(settings: Any) -> Store:
    """The store the settings ask for, not yet opened (`await store.open()` or `async with`).

    Reads `settings.redis_url` (a Redis URL, or None) and `settings.data_dir` (a path).
    """
    redis_url = getattr(settings, "redis_url", None)
    if redis_url:
        return RedisStore(str(redis_url))
    data_dir = Path(getattr(settings, "data_dir", None) or "data")
    return SqliteStore(data_dir / SQLITE_FILE_NAME)
