"""What is particular to each backend: choosing it, its files and keys, and its failures."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import redis

from signaling.live_state import LiveState
from signaling.registration import NewRegistration
from signaling.settings import Settings
from signaling.store import RedisStore, SqliteStore, StoreError, open_store
from signaling.store.redis import redacted
from tests.support.server import free_port


def submission(email: str = "olivier@example.be") -> NewRegistration:
    return NewRegistration.create(
        event_id="ev", name="Olivier", email=email, language="fr", languages=["fr", "ru"]
    )


def test_open_store_picks_sqlite_in_the_data_directory_by_default(tmp_path: Path) -> None:
    store = open_store(Settings(data_dir=tmp_path / "data"))

    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "data" / "dragoman.sqlite3"
    assert not store.is_open


def test_open_store_picks_redis_when_a_url_is_set(tmp_path: Path) -> None:
    store = open_store(Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6399/2"))

    assert isinstance(store, RedisStore)
    assert store.url == "redis://127.0.0.1:6399/2"


async def test_sqlite_creates_its_directory_and_a_wal_database(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "dragoman.sqlite3"
    async with SqliteStore(path) as store:
        await store.register(submission())

    with sqlite3.connect(path) as conn:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.close()
    assert mode == "wal"
    assert version == "1"


async def test_sqlite_counts_registrations_made_before_it_kept_a_count(tmp_path: Path) -> None:
    path = tmp_path / "dragoman.sqlite3"
    async with SqliteStore(path) as store:
        for i in range(3):
            await store.register(submission(f"p{i}@example.be"))
    # As a file written by a release without the count: the table and trigger absent.
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER registration_counted")
        conn.execute("DROP TABLE registration_counts")
        conn.execute("DELETE FROM meta WHERE key = 'registrations_counted'")
    conn.close()

    async with SqliteStore(path) as store:
        assert await store.registration_count("ev") == 3
        await store.register(submission("p3@example.be"))
        assert await store.registration_count("ev") == 4
    async with SqliteStore(path) as store:
        assert await store.registration_count("ev") == 4


async def test_sqlite_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "dragoman.sqlite3"
    garbage = b"this is not a database, it is a shopping list\n" * 100
    path.write_bytes(garbage)

    with pytest.raises(StoreError, match="cannot be used as the Dragoman database"):
        await SqliteStore(path).open()
    assert path.read_bytes() == garbage  # nothing was overwritten


async def test_sqlite_refuses_a_directory_in_place_of_the_file(tmp_path: Path) -> None:
    (tmp_path / "dragoman.sqlite3").mkdir()

    with pytest.raises(StoreError, match="is a directory"):
        await SqliteStore(tmp_path / "dragoman.sqlite3").open()


async def test_sqlite_refuses_a_data_directory_it_cannot_create(tmp_path: Path) -> None:
    (tmp_path / "occupied").write_text("a file where the data directory should be")

    with pytest.raises(StoreError, match="cannot create the data directory"):
        await SqliteStore(tmp_path / "occupied" / "dragoman.sqlite3").open()


async def test_redis_keys_are_all_namespaced(redis_url: str) -> None:
    async with RedisStore(redis_url) as store:
        registration, _ = await store.register(submission())
        await store.put_live_state("ev", LiveState(session_id="s"))
        await store.hit_rate_limit("register:client:192.0.2.1", 3, 60.0)

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = set(client.keys("*"))
    client.close()
    assert keys == {
        "dragoman:meta",
        f"dragoman:registration:{registration.id}",
        "dragoman:event:ev:emails",
        "dragoman:event:ev:registrations",
        "dragoman:event:ev:live",
        "dragoman:rate:register:client:192.0.2.1",
    }


async def test_redis_rate_counters_expire_by_themselves(redis_url: str) -> None:
    async with RedisStore(redis_url) as store:
        await store.hit_rate_limit("k", 3, 30.0)

    client = redis.Redis.from_url(redis_url)
    ttl_ms = client.pttl("dragoman:rate:k")
    client.close()
    assert 0 < ttl_ms <= 30_000


async def test_unreachable_redis_is_a_clear_error_without_the_password() -> None:
    nobody_listens = free_port()
    url = f"redis://:hunter2-password@127.0.0.1:{nobody_listens}/0"

    with pytest.raises(StoreError, match="cannot use Redis at") as caught:
        await RedisStore(url).open()
    assert "hunter2" not in str(caught.value)


async def test_a_malformed_redis_url_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="not a usable Redis URL"):
        await RedisStore("http://127.0.0.1:6379").open()


def test_redacted_urls_keep_everything_but_the_password() -> None:
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redacted("redis://:s3cret@host:6379/1") == "redis://:***@host:6379/1"
    assert redacted("rediss://user:s3cret@host/0") == "rediss://user:***@host/0"
