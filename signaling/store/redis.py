"""The shared store: Redis, for several nodes serving the same event.

Every key starts with `dragoman:` so a Redis instance can be shared with other software.
Operations that must be atomic across nodes (registering an address, counting an attempt
against a rate limit) are Lua scripts, which Redis runs without interleaving.

Keys:
  dragoman:meta                          hash: schema_version
  dragoman:registration:<id>             JSON of one registration
  dragoman:event:<event>:emails          hash: normalised email -> registration id
  dragoman:event:<event>:registrations   list of registration ids, oldest first
  dragoman:event:<event>:live            JSON of the live state
  dragoman:rate:<key>                    sorted set of attempt times (sliding window)
  dragoman:event:<event>:chat:<thread>   list of the thread's chat messages (JSON), oldest first
  dragoman:invitation:<id>               JSON of one staff invitation (without revoked_at)
  dragoman:event:<event>:invitations     list of invitation ids, oldest first
  dragoman:event:<event>:revoked         sorted set: revoked invitation id -> revoked_at (s)
"""

from __future__ import annotations

import json
import math
import secrets
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from signaling.booth_chat import ChatEntry
from signaling.invitations import Invitation
from signaling.live_state import LiveState
from signaling.redis_client import reconnecting_client
from signaling.registration import NewRegistration, Registration, email_key
from signaling.store.base import SCHEMA_VERSION, Clock, Store, StoreError, read_live_state

PREFIX = "dragoman:"

# KEYS: emails hash, registrations list, the new registration's key.
# ARGV: normalised email, new id, new registration JSON.
# Returns {1, id} when created, {0, existing id} when the address was already registered.
_REGISTER = """
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  return {0, existing}
end
redis.call('SET', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[2])
return {1, ARGV[2]}
"""

# KEYS: the rate key. ARGV: now (s), start of the window (s), window (ms), limit, a unique
# member for this attempt. Times are computed by the caller: Lua would print them with only
# 14 significant digits. Returns 1 when allowed (and counted), 0 when refused.
_HIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


def redacted(url: str) -> str:
    """The URL without its password, fit for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


# KEYS: the thread's list. ARGV: the message's JSON up to its number, and what follows
# the number. Numbering and appending in one script keeps the list in number order across
# nodes (a message's number is its place in the list: the list is never trimmed).
_ADD_CHAT = """
local seq = redis.call('LLEN', KEYS[1]) + 1
redis.call('RPUSH', KEYS[1], ARGV[1] .. seq .. ARGV[2])
return seq
"""

# KEYS: the invitation's key, the event's revoked set. ARGV: the invitation id, now (s).
# Returns -1 when there is no such invitation, 1 when revoked now, 0 when revoked before.
_REVOKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
return redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
"""


class RedisStore(Store):
    """The `Store` kept in the Redis server at `url` (e.g. `redis://127.0.0.1:6379/0`)."""

    def __init__(self, url: str, *, clock: Clock = time.time) -> None:
        super().__init__(clock=clock)
        self.url = url
        self._redis: aioredis.Redis | None = None
        self._register_script: Any = None
        self._hit_script: Any = None
        self._add_chat_script: Any = None
        self._revoke_script: Any = None

    @property
    def _client(self) -> aioredis.Redis:
        self._require_open()
        assert self._redis is not None
        return self._redis

    def _fail(self, exc: RedisError) -> StoreError:
        return StoreError(f"Redis store at {redacted(self.url)}: {exc}")

    async def open(self) -> None:
        if self._opened:
            return
        try:
            client = reconnecting_client(self.url)
        except ValueError as exc:
            raise StoreError(f"{redacted(self.url)} is not a usable Redis URL: {exc}") from exc
        try:
            await client.ping()
            await client.hsetnx(f"{PREFIX}meta", "schema_version", str(SCHEMA_VERSION))
            found = await client.hget(f"{PREFIX}meta", "schema_version")
        except RedisError as exc:
            await client.aclose()
            raise StoreError(f"cannot use Redis at {redacted(self.url)}: {exc}") from exc
        except BaseException:
            await client.aclose()
            raise
        if not str(found).isdigit() or int(found) > SCHEMA_VERSION:
            await client.aclose()
            raise StoreError(
                f"Redis at {redacted(self.url)} holds data of a newer Dragoman (schema version "
                f"{found}; this version reads up to {SCHEMA_VERSION}): upgrade Dragoman"
            )
        self._redis = client
        self._register_script = client.register_script(_REGISTER)
        self._hit_script = client.register_script(_HIT)
        self._add_chat_script = client.register_script(_ADD_CHAT)
        self._revoke_script = client.register_script(_REVOKE)
        self._opened = True

    async def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        client, self._redis = self._redis, None
        assert client is not None
        await client.aclose()

    @staticmethod
    def _event_key(event_id: str, what: str) -> str:
        return f"{PREFIX}event:{event_id}:{what}"

    @staticmethod
    def _registration_key(registration_id: str) -> str:
        return f"{PREFIX}registration:{registration_id}"

    async def register(self, reg: NewRegistration) -> tuple[Registration, bool]:
        client = self._client
        candidate = Registration.issue(reg, now=self._now())
        try:
            created, reg_id = await self._register_script(
                keys=[
                    self._event_key(reg.event_id, "emails"),
                    self._event_key(reg.event_id, "registrations"),
                    self._registration_key(candidate.id),
                ],
                args=[candidate.email_key, candidate.id, json.dumps(candidate.to_record())],
            )
            if int(created) == 1:
                return candidate, True
            existing = await client.get(self._registration_key(reg_id))
        except RedisError as exc:
            raise self._fail(exc) from exc
        if existing is None:
            raise StoreError(f"registration {reg_id} is indexed but missing from Redis")
        return Registration.from_record(json.loads(existing)), False

    async def registration_by_email(self, event_id: str, email: str) -> Registration | None:
        client = self._client
        try:
            reg_id = await client.hget(self._event_key(event_id, "emails"), email_key(email))
            if reg_id is None:
                return None
            raw = await client.get(self._registration_key(reg_id))
        except RedisError as exc:
            raise self._fail(exc) from exc
        return Registration.from_record(json.loads(raw)) if raw is not None else None

    async def registration(self, reg_id: str) -> Registration | None:
        client = self._client
        try:
            raw = await client.get(self._registration_key(reg_id))
        except RedisError as exc:
            raise self._fail(exc) from exc
        return Registration.from_record(json.loads(raw)) if raw is not None else None

    async def registration_count(self, event_id: str) -> int:
        try:
            return int(await self._client.llen(self._event_key(event_id, "registrations")))
        except RedisError as exc:
            raise self._fail(exc) from exc

    async def registrations(self, event_id: str) -> list[Registration]:
        client = self._client
        try:
            ids = await client.lrange(self._event_key(event_id, "registrations"), 0, -1)
            if not ids:
                return []
            raws = await client.mget([self._registration_key(i) for i in ids])
        except RedisError as exc:
            raise self._fail(exc) from exc
        return [Registration.from_record(json.loads(raw)) for raw in raws if raw is not None]

    async def get_live_state(self, event_id: str) -> LiveState:
        try:
            raw = await self._client.get(self._event_key(event_id, "live"))
        except RedisError as exc:
            raise self._fail(exc) from exc
        return read_live_state(event_id, raw)

    async def put_live_state(self, event_id: str, state: LiveState) -> LiveState:
        stored = state.stamped(self._now())
        try:
            await self._client.set(self._event_key(event_id, "live"), stored.to_json())
        except RedisError as exc:
            raise self._fail(exc) from exc
        return stored

    async def hit_rate_limit(self, key: str, limit: int, window_s: float) -> bool:
        self._require_open()
        # Times come from this node's clock: nodes are expected to keep time with NTP, and
        # a skew of a few milliseconds only blurs the edge of a window.
        now = self._clock()
        try:
            allowed = await self._hit_script(
                keys=[f"{PREFIX}rate:{key}"],
                args=[
                    repr(now),
                    repr(now - window_s),
                    max(1, math.ceil(window_s * 1000)),
                    int(limit),
                    secrets.token_hex(8),
                ],
            )
        except RedisError as exc:
            raise self._fail(exc) from exc
        return int(allowed) == 1

    async def add_chat_message(
        self, event_id: str, thread: str, sender: str, role: str, text: str
    ) -> ChatEntry:
        self._require_open()
        at = self._clock()
        fields = {"at": repr(at), "sender": sender, "role": role, "text": text}
        head = json.dumps(fields)[:-1] + ', "seq": '
        try:
            seq = await self._add_chat_script(
                keys=[self._event_key(event_id, f"chat:{thread}")], args=[head, "}"]
            )
        except RedisError as exc:
            raise self._fail(exc) from exc
        return ChatEntry(thread, int(seq), at, sender, role, text)

    async def chat_messages(self, event_id: str, thread: str, limit: int) -> list[ChatEntry]:
        self._require_open()
        if limit <= 0:
            return []
        try:
            raws = await self._client.lrange(
                self._event_key(event_id, f"chat:{thread}"), -limit, -1
            )
        except RedisError as exc:
            raise self._fail(exc) from exc
        entries = []
        for raw in raws:
            data = json.loads(raw)
            entries.append(
                ChatEntry(
                    thread,
                    int(data["seq"]),
                    float(data["at"]),
                    data["sender"],
                    data["role"],
                    data["text"],
                )
            )
        return entries

    @staticmethod
    def _invitation_key(invitation_id: str) -> str:
        return f"{PREFIX}invitation:{invitation_id}"

    async def add_invitation(self, invitation: Invitation) -> None:
        client = self._client
        body = json.dumps(invitation.to_record(), ensure_ascii=False)
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.set(self._invitation_key(invitation.id), body)
                pipe.rpush(self._event_key(invitation.event_id, "invitations"), invitation.id)
                await pipe.execute()
        except RedisError as exc:
            raise self._fail(exc) from exc

    async def _read_invitation(self, raw: str | None) -> Invitation | None:
        if raw is None:
            return None
        record = json.loads(raw)
        revoked = self._event_key(record["event_id"], "revoked")
        score = await self._client.zscore(revoked, record["id"])
        return Invitation.from_record(record, None if score is None else float(score))

    async def invitation(self, invitation_id: str) -> Invitation | None:
        try:
            raw = await self._client.get(self._invitation_key(invitation_id))
            return await self._read_invitation(raw)
        except RedisError as exc:
            raise self._fail(exc) from exc

    async def invitations(self, event_id: str) -> list[Invitation]:
        client = self._client
        try:
            ids = await client.lrange(self._event_key(event_id, "invitations"), 0, -1)
            if not ids:
                return []
            raws = await client.mget([self._invitation_key(i) for i in ids])
            revoked = dict(
                await client.zrange(self._event_key(event_id, "revoked"), 0, -1, withscores=True)
            )
        except RedisError as exc:
            raise self._fail(exc) from exc
        found = []
        for raw in raws:
            if raw is not None:
                record = json.loads(raw)
                found.append(Invitation.from_record(record, revoked.get(record["id"])))
        return found

    async def revoke_invitation(self, invitation_id: str) -> tuple[Invitation | None, bool]:
        client = self._client
        try:
            raw = await client.get(self._invitation_key(invitation_id))
            if raw is None:
                return None, False
            event_id = json.loads(raw)["event_id"]
            done = await self._revoke_script(
                keys=[self._invitation_key(invitation_id), self._event_key(event_id, "revoked")],
                args=[invitation_id, repr(self._clock())],
            )
            return await self._read_invitation(raw), int(done) == 1
        except RedisError as exc:
            raise self._fail(exc) from exc

    async def invitations_revoked_since(self, event_id: str, since: float) -> list[Invitation]:
        client = self._client
        try:
            ids = await client.zrangebyscore(
                self._event_key(event_id, "revoked"), f"({since!r}", "+inf"
            )
            if not ids:
                return []
            raws = await client.mget([self._invitation_key(i) for i in ids])
            found = [await self._read_invitation(raw) for raw in raws]
        except RedisError as exc:
            raise self._fail(exc) from exc
        return [invitation for invitation in found if invitation is not None]
