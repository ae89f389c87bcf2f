"""Durable state: one `Store` contract, an embedded SQLite backend and a shared Redis one.

`open_store(settings)` picks the backend from the settings: Redis when a Redis URL is
configured (required for several nodes), otherwise a SQLite file in the data directory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from signaling.store.base import (
    SCHEMA_VERSION,
    Clock,
    CorruptLiveState,
    Store,
    StoreError,
    StoreFull,
)
from signaling.store.redis import RedisStore
from signaling.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from signaling.settings import Settings

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
    "StoreFull",
    "open_store",
]


def open_store(settings: Settings) -> Store:
    """The store the settings ask for, not yet opened (`await store.open()` or `async with`).

    Redis at `settings.redis_url` when set, else SQLite in `settings.data_dir`.
    """
    if settings.redis_url:
        return RedisStore(settings.redis_url)
    return SqliteStore(settings.data_dir / SQLITE_FILE_NAME)
