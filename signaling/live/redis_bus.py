"""The live bus through Redis: several nodes (or workers) of one event, one live state.

Keys (``<e>`` is ``dragoman:event:<event id>:live``):

  <e>:changes    stream: every change, in the one order every node applies them
  <e>:snapshot   JSON {"id": stream id, "replica": ...}: the replica after that change
  <e>:nodes      hash: node id -> its presence (JSON): the node registry of the event

The logic is `SharedBus`'s; this is its transport. The snapshot is written by a Lua
script that compares stream ids, so a slow node never puts back an older one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from signaling.live.shared_bus import PUBLISH_TIMEOUT_S, Entry, SharedBus
from signaling.redis_client import reconnecting_client

#: How long one blocking read waits for changes before looking again.
READ_BLOCK_MS = 250
#: Changes kept in the stream (approximately): far more than a node needs to catch up.
STREAM_LENGTH = 10_000

# KEYS: the snapshot key. ARGV: the stream id of the snapshot, its JSON.
# Writes only when no snapshot is there or the one there is older.
_PUT_SNAPSHOT = """
local current = redis.call('GET', KEYS[1])
if current then
  local id = cjson.decode(current)['id']
  local cms, cseq = string.match(id, '(%d+)-(%d+)')
  local nms, nseq = string.match(ARGV[1], '(%d+)-(%d+)')
  cms, cseq, nms, nseq = tonumber(cms), tonumber(cseq), tonumber(nms), tonumber(nseq)
  if cms > nms or (cms == nms and cseq >= nseq) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


class RedisBus(SharedBus):
    """The live bus of a node sharing an event with others through Redis."""

    unreachable = (RedisError, OSError)

    def __init__(
        self,
        url: str,
        event_id: str,
        *,
        node: str | None = None,
        clock: Callable[[], float] = time.time,
        publish_timeout: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        super().__init__(node=node, clock=clock, publish_timeout=publish_timeout)
        self.url = url
        base = f"dragoman:event:{event_id}:live"
        self.changes_key = f"{base}:changes"
        self.snapshot_key = f"{base}:snapshot"
        self.nodes_key = f"{base}:nodes"
        self._redis: aioredis.Redis | None = None
        self._put_script: Any = None

    async def _open(self) -> None:
        self._redis = reconnecting_client(self.url)
        self._put_script = self._redis.register_script(_PUT_SNAPSHOT)

    async def _close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise ConnectionError("the bus is not started")
        return self._redis

    async def _append(self, fields: dict[str, str]) -> None:
        await self._client().xadd(self.changes_key, fields, maxlen=STREAM_LENGTH, approximate=True)

    async def _read(self, after: str, *, block: bool) -> list[Entry]:
        replies = await self._client().xread(
            {self.changes_key: after}, count=500, block=READ_BLOCK_MS if block else None
        )
        return [entry for _stream, entries in replies or [] for entry in entries]

    async def _newest_id(self) -> str:
        newest = await self._client().xrevrange(self.changes_key, count=1)
        return newest[0][0] if newest else "0-0"

    async def _get_snapshot(self) -> str | None:
        return await self._client().get(self.snapshot_key)

    async def _put_snapshot(self, entry_id: str, body: str) -> None:
        await self._put_script(keys=[self.snapshot_key], args=[entry_id, body])

    async def _put_presence(self, node: str, body: str) -> None:
        await self._client().hset(self.nodes_key, node, body)

    async def _all_presences(self) -> dict[str, str]:
        return await self._client().hgetall(self.nodes_key)

    async def _forget_presence(self, node: str) -> None:
        await self._client().hdel(self.nodes_key, node)
