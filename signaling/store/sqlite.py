"""The embedded store: one SQLite file in the data directory, the default for a single node.

sqlite3 only offers blocking calls, so every query runs on one dedicated worker thread that
owns the connection; the event loop only awaits results. One thread also serialises the
queries of this process, and SQLite's own locking (WAL mode, a busy timeout, and UNIQUE
constraints) keeps other processes sharing the file honest.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from signaling.booth_chat import ChatEntry
from signaling.data_files import private_directory, private_file, restrict
from signaling.invitations import Invitation
from signaling.live_state import LiveState
from signaling.registration import NewRegistration, Registration, email_key
from signaling.store.base import (
    SCHEMA_VERSION,
    Clock,
    Store,
    StoreError,
    StoreFull,
    read_live_state,
)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS registrations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    language TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (event_id, email_key)
);
-- Kept by the trigger in the insert's own transaction: counting costs one row read.
CREATE TABLE IF NOT EXISTS registration_counts (
    event_id TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS registration_counted AFTER INSERT ON registrations
BEGIN
    INSERT INTO registration_counts (event_id, count) VALUES (NEW.event_id, 1)
    ON CONFLICT (event_id) DO UPDATE SET count = count + 1;
END;
CREATE TABLE IF NOT EXISTS live_state (
    event_id TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rate_hits (
    key TEXT NOT NULL,
    at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_hits_key_at ON rate_hits (key, at);
CREATE INDEX IF NOT EXISTS rate_hits_expires_at ON rate_hits (expires_at);
CREATE TABLE IF NOT EXISTS chat_messages (
    event_id TEXT NOT NULL,
    thread TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    sender TEXT NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (event_id, thread, seq)
);
CREATE TABLE IF NOT EXISTS invitations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL,
    record TEXT NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS invitations_revoked ON invitations (event_id, revoked_at);
"""

_COLUMNS = "id, event_id, name, email, language, created_at"


class SqliteStore(Store):
    """The `Store` kept in one SQLite file at `path` (its directory is created if missing)."""

    def __init__(self, path: Path | str, *, clock: Clock = time.time) -> None:
        super().__init__(clock=clock)
        self.path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        self._require_open()
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        assert self._conn is not None
        try:
            return work(self._conn)
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise StoreFull(f"SQLite store {self.path}: {exc}") from exc
            raise StoreError(f"SQLite store {self.path}: {exc}") from exc

    async def open(self) -> None:
        if self._opened:
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dragoman-sqlite")
        loop = asyncio.get_running_loop()
        try:
            self._conn = await loop.run_in_executor(executor, self._connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._executor = executor
        self._opened = True

    def _connect(self) -> sqlite3.Connection:
        try:
            private_directory(self.path.parent)
        except OSError as exc:
            raise StoreError(f"cannot create the data directory {self.path.parent}: {exc}") from exc
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not a SQLite database file")
        try:
            # Names and email addresses: the file is the node user's only. SQLite gives
            # the -wal and -shm files it creates the database file's mode.
            private_file(self.path)
            for companion in ("-wal", "-shm"):
                restrict(self.path.with_name(self.path.name + companion))
        except OSError as exc:
            raise StoreError(f"cannot create {self.path}: {exc}") from exc
        conn: sqlite3.Connection | None = None
        try:
            # Autocommit mode: transactions are opened explicitly where several statements
            # must agree, with BEGIN IMMEDIATE so that writers queue instead of deadlocking.
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
            self._check_schema(conn)
            self._count_earlier_registrations(conn)
            return conn
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"{self.path} cannot be used as the Dragoman database: {exc}") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    @staticmethod
    def _count_earlier_registrations(conn: sqlite3.Connection) -> None:
        # A file from before the counts were kept: count once, then the trigger keeps up.
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = conn.execute("SELECT 1 FROM meta WHERE key = 'registrations_counted'")
            if done.fetchone() is None:
                conn.execute("DELETE FROM registration_counts")
                conn.execute(
                    "INSERT INTO registration_counts (event_id, count) "
                    "SELECT event_id, COUNT(*) FROM registrations GROUP BY event_id"
                )
                conn.execute("INSERT INTO meta (key, value) VALUES ('registrations_counted', '1')")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
        (found,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if not str(found).isdigit() or int(found) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer Dragoman (schema version {found}; "
                f"this version reads up to {SCHEMA_VERSION}): upgrade Dragoman"
            )

    async def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        executor, conn = self._executor, self._conn
        self._executor = self._conn = None
        assert executor is not None and conn is not None
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, conn.close)
        finally:
            executor.shutdown(wait=True)

    async def register(self, reg: NewRegistration) -> tuple[Registration, bool]:
        candidate = Registration.issue(reg, now=self._now())

        def work(conn: sqlite3.Connection) -> tuple[Registration, bool]:
            record = candidate.to_record()
            cursor = conn.execute(
                f"INSERT INTO registrations ({_COLUMNS}, email_key) "
                "VALUES (:id, :event_id, :name, :email, :language, :created_at, :email_key) "
                "ON CONFLICT (event_id, email_key) DO NOTHING",
                {**record, "email_key": candidate.email_key},
            )
            if cursor.rowcount == 1:
                return candidate, True
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM registrations WHERE event_id = ? AND email_key = ?",
                (candidate.event_id, candidate.email_key),
            ).fetchone()
            return _registration(row), False

        return await self._run(work)

    async def registration_by_email(self, event_id: str, email: str) -> Registration | None:
        key = email_key(email)

        def work(conn: sqlite3.Connection) -> Registration | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM registrations WHERE event_id = ? AND email_key = ?",
                (event_id, key),
            ).fetchone()
            return _registration(row) if row else None

        return await self._run(work)

    async def registration(self, reg_id: str) -> Registration | None:
        def work(conn: sqlite3.Connection) -> Registration | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM registrations WHERE id = ?", (reg_id,)
            ).fetchone()
            return _registration(row) if row else None

        return await self._run(work)

    async def registration_count(self, event_id: str) -> int:
        def work(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT count FROM registration_counts WHERE event_id = ?", (event_id,)
            ).fetchone()
            return int(row[0]) if row else 0

        return await self._run(work)

    async def registrations(self, event_id: str) -> list[Registration]:
        def work(conn: sqlite3.Connection) -> list[Registration]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM registrations WHERE event_id = ? ORDER BY seq",
                (event_id,),
            ).fetchall()
            return [_registration(row) for row in rows]

        return await self._run(work)

    async def get_live_state(self, event_id: str) -> LiveState:
        def work(conn: sqlite3.Connection) -> str | bytes | None:
            row = conn.execute(
                "SELECT state FROM live_state WHERE event_id = ?", (event_id,)
            ).fetchone()
            return row[0] if row else None

        raw = await self._run(work)
        return read_live_state(event_id, raw)

    async def put_live_state(self, event_id: str, state: LiveState) -> LiveState:
        stored = state.stamped(self._now())
        text = stored.to_json()

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO live_state (event_id, state) VALUES (?, ?) "
                "ON CONFLICT (event_id) DO UPDATE SET state = excluded.state",
                (event_id, text),
            )

        await self._run(work)
        return stored

    async def hit_rate_limit(self, key: str, limit: int, window_s: float) -> bool:
        now = self._clock()

        def work(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM rate_hits WHERE expires_at <= ?", (now,))
                (count,) = conn.execute(
                    "SELECT COUNT(*) FROM rate_hits WHERE key = ? AND at > ?",
                    (key, now - window_s),
                ).fetchone()
                allowed = count < limit
                if allowed:
                    conn.execute(
                        "INSERT INTO rate_hits (key, at, expires_at) VALUES (?, ?, ?)",
                        (key, now, now + window_s),
                    )
                conn.execute("COMMIT")
                return allowed
            except BaseException:
                _rollback(conn)
                raise

        return await self._run(work)

    async def add_chat_message(
        self, event_id: str, thread: str, sender: str, role: str, text: str
    ) -> ChatEntry:
        at = self._clock()

        def work(conn: sqlite3.Connection) -> ChatEntry:
            conn.execute("BEGIN IMMEDIATE")
            try:
                (last,) = conn.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM chat_messages "
                    "WHERE event_id = ? AND thread = ?",
                    (event_id, thread),
                ).fetchone()
                entry = ChatEntry(thread, int(last) + 1, at, sender, role, text)
                conn.execute(
                    "INSERT INTO chat_messages (event_id, thread, seq, at, sender, role, text) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (event_id, thread, entry.seq, at, sender, role, text),
                )
                conn.execute("COMMIT")
                return entry
            except BaseException:
                _rollback(conn)
                raise

        return await self._run(work)

    async def chat_messages(self, event_id: str, thread: str, limit: int) -> list[ChatEntry]:
        def work(conn: sqlite3.Connection) -> list[ChatEntry]:
            rows = conn.execute(
                "SELECT seq, at, sender, role, text FROM chat_messages "
                "WHERE event_id = ? AND thread = ? ORDER BY seq DESC LIMIT ?",
                (event_id, thread, max(0, limit)),
            ).fetchall()
            return [
                ChatEntry(thread, int(seq), at, sender, role, text)
                for seq, at, sender, role, text in reversed(rows)
            ]

        return await self._run(work)

    async def add_invitation(self, invitation: Invitation) -> None:
        record = json.dumps(invitation.to_record(), ensure_ascii=False)

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO invitations (id, event_id, record) VALUES (?, ?, ?)",
                (invitation.id, invitation.event_id, record),
            )

        await self._run(work)

    async def invitation(self, invitation_id: str) -> Invitation | None:
        def work(conn: sqlite3.Connection) -> Invitation | None:
            row = conn.execute(
                "SELECT record, revoked_at FROM invitations WHERE id = ?", (invitation_id,)
            ).fetchone()
            return _invitation(row) if row else None

        return await self._run(work)

    async def invitations(self, event_id: str) -> list[Invitation]:
        def work(conn: sqlite3.Connection) -> list[Invitation]:
            rows = conn.execute(
                "SELECT record, revoked_at FROM invitations WHERE event_id = ? ORDER BY seq",
                (event_id,),
            ).fetchall()
            return [_invitation(row) for row in rows]

        return await self._run(work)

    async def revoke_invitation(self, invitation_id: str) -> tuple[Invitation | None, bool]:
        now = self._clock()

        def work(conn: sqlite3.Connection) -> tuple[Invitation | None, bool]:
            # One statement decides: of two nodes revoking at once, one changes the row.
            cursor = conn.execute(
                "UPDATE invitations SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, invitation_id),
            )
            row = conn.execute(
                "SELECT record, revoked_at FROM invitations WHERE id = ?", (invitation_id,)
            ).fetchone()
            return (_invitation(row) if row else None), cursor.rowcount == 1

        return await self._run(work)

    async def invitations_revoked_since(self, event_id: str, since: float) -> list[Invitation]:
        def work(conn: sqlite3.Connection) -> list[Invitation]:
            rows = conn.execute(
                "SELECT record, revoked_at FROM invitations "
                "WHERE event_id = ? AND revoked_at > ? ORDER BY revoked_at",
                (event_id, since),
            ).fetchall()
            return [_invitation(row) for row in rows]

        return await self._run(work)


def _invitation(row: tuple[str, float | None]) -> Invitation:
    record, revoked_at = row
    return Invitation.from_record(json.loads(record), revoked_at)


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite ends the transaction itself on some errors (a full disk: SQLITE_FULL); a
    # ROLLBACK then fails and would hide the error that matters.
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _registration(row: tuple[str, ...]) -> Registration:
    fields = dict(
        zip(("id", "event_id", "name", "email", "language", "created_at"), row, strict=True)
    )
    return Registration.from_record(fields)
