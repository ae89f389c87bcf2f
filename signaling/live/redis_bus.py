"""The live bus through Redis: several nodes (or workers) of one event, one live state.

Keys (``<e>`` is ``dragoman:event:<event id>:live``):

  <e>:changes    stream: every change, in the one order every node applies them
  <e>:snapshot   JSON {"id": stream id, "replica": ...}: the replica after that change
  <e>:nodes      hash: node id -> its presence (JSON): the node registry of the event

A node publishes a change with XADD and applies, in stream order, every change it reads
(its own included); `publish` returns when its own change has been applied here. After
applying a change it made, the node writes the snapshot, unless a later one is there
already (a Lua script compares stream ids), so a node that starts late begins from the
snapshot and reads the stream from its id.

Presence goes into the hash (every `HEARTBEAT_S`, and a stream entry when the facts
changed, so the others hear of it within milliseconds). A node whose presence is older
than `PRESENCE_TIMEOUT_S` is gone: the live node with the lowest id says so with a
`node_gone` change, which disconnects that node's interpreters everywhere.

Redis going away stops nothing that is live: the node keeps its replica and its media,
retries, and once Redis answers again writes its snapshot if Redis lost it (a restart
without persistence) and goes on reading after the last change it applied. Stream ids
grow with Redis's clock, so changes made after a restart come after those before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from signaling.booth import BoothError
from signaling.live.bus import BusUnavailable, OnChange, OnPresence
from signaling.live.presence import PRESENCE_TIMEOUT_S, NodePresence
from signaling.live.replica import Change, ChangeError, LiveReplica
from signaling.redis_client import reconnecting_client

log = logging.getLogger(__name__)

#: How long `publish` waits for its change to come back from Redis.
PUBLISH_TIMEOUT_S = 5.0
#: How long one blocking read waits for changes before looking at presences again.
READ_BLOCK_MS = 250
#: How often the registry is read for heartbeats and gone nodes.
REGISTRY_EVERY_S = 1.0
#: Changes kept in the stream (approximately): far more than a node needs to catch up.
STREAM_LENGTH = 10_000
#: Changes remembered to skip one written twice.
SEEN_REFS = 4096
#: Waits between attempts while Redis does not answer.
RETRY_S = 0.5

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


def _stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


class RedisBus:
    """The live bus of a node sharing an event with others through Redis."""

    def __init__(
        self,
        url: str,
        event_id: str,
        *,
        node: str | None = None,
        clock: Any = time.time,
        publish_timeout: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        self.node = node or f"node-{secrets.token_hex(4)}"
        self.url = url
        self.clock = clock
        self.publish_timeout = publish_timeout
        base = f"dragoman:event:{event_id}:live"
        self.changes_key = f"{base}:changes"
        self.snapshot_key = f"{base}:snapshot"
        self.nodes_key = f"{base}:nodes"
        self._redis: aioredis.Redis | None = None
        self._replica: LiveReplica | None = None
        self._on_change: OnChange | None = None
        self._on_presence: OnPresence | None = None
        self._last_id = "0-0"
        self._waiting: dict[str, asyncio.Future[bool]] = {}
        self._seen_refs: dict[str, None] = {}
        self._presences: dict[str, NodePresence] = {}
        self._announced: NodePresence | None = None
        self._reader: asyncio.Task[None] | None = None
        self._registry: asyncio.Task[None] | None = None
        self._put_snapshot: Any = None
        self._lost_redis = False
        self._started_at = 0.0

    # --- life cycle -------------------------------------------------------------------

    async def start(
        self, replica: LiveReplica, on_change: OnChange, on_presence: OnPresence
    ) -> None:
        self._replica, self._on_change, self._on_presence = replica, on_change, on_presence
        self._started_at = self.clock()
        self._redis = reconnecting_client(self.url)
        self._put_snapshot = self._redis.register_script(_PUT_SNAPSHOT)
        raw = await self._redis.get(self.snapshot_key)
        if raw is not None:
            snapshot = json.loads(raw)
            replica.restore(snapshot["replica"])
            self._last_id = snapshot["id"]
            # Changes made since the snapshot come from the stream, in order.
            await self._read_once(block=False)
        else:
            # The first node of the event: what it loaded from the store is the state.
            newest = await self._redis.xrevrange(self.changes_key, count=1)
            self._last_id = newest[0][0] if newest else "0-0"
            await self._write_snapshot()
        await self._read_registry()
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read_forever())
        self._registry = loop.create_task(self._watch_registry())

    async def stop(self) -> None:
        for task in (self._reader, self._registry):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._reader = self._registry = None
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.hdel(self.nodes_key, self.node)
            await self._redis.aclose()
            self._redis = None

    # --- changes ----------------------------------------------------------------------

    async def publish(self, change: Change) -> bool:
        assert self._redis is not None, "bus not started"
        ref = secrets.token_hex(8)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = future
        try:
            await self._redis.xadd(
                self.changes_key,
                {"change": change.to_json(), "ref": ref},
                maxlen=STREAM_LENGTH,
                approximate=True,
            )
            return await asyncio.wait_for(asyncio.shield(future), self.publish_timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            raise BusUnavailable(
                f"the event's other nodes could not be reached ({type(exc).__name__})"
            ) from None
        finally:
            self._waiting.pop(ref, None)

    async def _read_forever(self) -> None:
        while True:
            try:
                if self._lost_redis:
                    await self._after_redis_came_back()
                await self._read_once(block=True)
            except (RedisError, OSError) as exc:
                if not self._lost_redis:
                    log.warning("lost Redis (%s); live changes wait until it is back", exc)
                self._lost_redis = True
                await asyncio.sleep(RETRY_S)

    async def _read_once(self, *, block: bool) -> None:
        assert self._redis is not None
        replies = await self._redis.xread(
            {self.changes_key: self._last_id},
            count=500,
            block=READ_BLOCK_MS if block else None,
        )
        for _stream, entries in replies or []:
            for entry_id, fields in entries:
                self._last_id = entry_id
                await self._apply_entry(entry_id, fields)

    async def _apply_entry(self, entry_id: str, fields: dict[str, str]) -> None:
        assert self._replica is not None and self._on_change is not None
        ref = fields.get("ref", "")
        if ref:
            if ref in self._seen_refs:
                return  # written twice (a retried XADD whose first try went through)
            self._seen_refs[ref] = None
            if len(self._seen_refs) > SEEN_REFS:
                del self._seen_refs[next(iter(self._seen_refs))]
        future = self._waiting.get(ref)
        try:
            change = Change.from_json(fields.get("change", ""))
        except ChangeError as exc:
            log.warning("skipped a live change that could not be read: %s", exc)
            return
        if change.op == "presence":
            self._learn_presence(NodePresence.from_dict(change.args))
            return
        try:
            durable = self._replica.apply(change)
        except (BoothError, ChangeError) as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
            elif isinstance(exc, ChangeError):
                log.warning("skipped a live change: %s", exc)
            return
        self._on_change(change, durable)
        if change.node == self.node:
            await self._write_snapshot()
        if future is not None and not future.done():
            future.set_result(durable)

    async def _write_snapshot(self) -> None:
        assert self._replica is not None
        body = json.dumps({"id": self._last_id, "replica": self._replica.snapshot()})
        try:
            await self._put_snapshot(keys=[self.snapshot_key], args=[self._last_id, body])
        except (RedisError, OSError):
            log.warning("could not write the live snapshot; the next change will", exc_info=True)

    async def _after_redis_came_back(self) -> None:
        """Redis answers again: put back what it may have lost, then read on."""
        assert self._redis is not None
        raw = await self._redis.get(self.snapshot_key)
        if raw is None or _stream_id(json.loads(raw)["id"]) < _stream_id(self._last_id):
            await self._write_snapshot()
        if self._announced is not None:
            await self._redis.hset(self.nodes_key, self.node, json.dumps(self._announced.to_dict()))
        log.warning("Redis is back; live changes flow again")
        self._lost_redis = False

    # --- presence -----------------------------------------------------------------------

    async def announce(self, presence: NodePresence) -> None:
        if self._redis is None:
            return
        news = not presence.same_facts(self._announced)
        self._announced = presence
        self._presences[self.node] = presence
        body = json.dumps(presence.to_dict())
        await self._redis.hset(self.nodes_key, self.node, body)
        if news:
            await self._redis.xadd(
                self.changes_key,
                {
                    "change": Change(
                        "presence", presence.to_dict(), presence.at, self.node
                    ).to_json()
                },
                maxlen=STREAM_LENGTH,
                approximate=True,
            )

    def presences(self) -> list[NodePresence]:
        now = self.clock()
        return [p for p in self._presences.values() if now - p.at < PRESENCE_TIMEOUT_S]

    def _learn_presence(self, presence: NodePresence) -> None:
        if presence.node == self.node:
            return
        known = self._presences.get(presence.node)
        self._presences[presence.node] = presence
        if not presence.same_facts(known) and self._on_presence is not None:
            self._on_presence()

    async def _watch_registry(self) -> None:
        while True:
            await asyncio.sleep(REGISTRY_EVERY_S)
            try:
                await self._read_registry()
                await self._bury_the_gone()
            except (RedisError, OSError):
                pass  # the reader reports Redis's absence and its return

    async def _read_registry(self) -> None:
        assert self._redis is not None
        for node, raw in (await self._redis.hgetall(self.nodes_key)).items():
            try:
                presence = NodePresence.from_dict(json.loads(raw))
            except (ValueError, KeyError, TypeError):
                log.warning("skipped an unreadable presence of node %s", node)
                continue
            known = self._presences.get(node)
            if known is not None and presence.at <= known.at:
                continue
            if self.clock() - presence.at >= PRESENCE_TIMEOUT_S:
                self._presences[node] = presence  # a dead node's last word: to be buried
            else:
                self._learn_presence(presence)

    async def _bury_the_gone(self) -> None:
        """Forget the nodes that stopped answering; the lowest live id tells every node."""
        assert self._redis is not None and self._replica is not None
        now = self.clock()
        alive = {p.node for p in self.presences()} | {self.node}
        gone = {
            node
            for node, presence in self._presences.items()
            if node not in alive and now - presence.at >= PRESENCE_TIMEOUT_S
        }
        if now - self._started_at >= PRESENCE_TIMEOUT_S:
            # Nodes that held interpreters and died before this one started.
            gone |= {
                node
                for node in self._replica.connections
                if node not in alive and node not in self._presences
            }
        if not gone:
            return
        for node in gone:
            self._presences.pop(node, None)
        if min(alive) == self.node:
            for node in sorted(gone):
                log.warning("node %s stopped answering: its clients are gone with it", node)
                await self._redis.hdel(self.nodes_key, node)
                if node in self._replica.connections:
                    await self.publish(Change("node_gone", {"node": node}, self.clock(), self.node))
        if self._on_presence is not None:
            self._on_presence()  # their sources and listeners no longer count
