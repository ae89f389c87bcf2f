"""The live bus of nodes that share an ordered log: the logic both transports share.

A node publishes a change by appending it to the event's log and applies, in log order,
every change it reads (its own included); `publish` returns when its own change has been
applied here. After applying a change it made, the node writes the snapshot, unless a
later one is there already, so a node that starts late begins from the snapshot and
reads the log from its id.

Presence goes into the registry (every `HEARTBEAT_S`, and a log entry when the facts
changed, so the others hear of it within milliseconds). A node whose presence is older
than `PRESENCE_TIMEOUT_S` is gone: the live node with the lowest id says so with a
`node_gone` change, which disconnects that node's interpreters everywhere and frees
its seats.

The log going away stops nothing that is live: the node keeps its replica and its media
(the others' presences are not aged while it is away: their channels keep flowing over
the node links), retries, and once the log answers again writes its snapshot if the log
lost it and goes on reading after the last change it applied. Ids are
"<milliseconds>-<sequence>" and grow with the log's clock, so changes made after a
restart come after those before it.

Transports: `redis_bus.RedisBus` (Redis streams, for nodes on several machines) and
`hub.HubBus` (the embedded hub of `dragoman serve --workers N`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from signaling.booth import BoothError
from signaling.live.bus import BusUnavailable, OnChange, OnPresence
from signaling.live.presence import PRESENCE_TIMEOUT_S, NodePresence
from signaling.live.replica import Change, ChangeError, LiveReplica

log = logging.getLogger(__name__)

#: How long `publish` waits for its change to come back from the log.
PUBLISH_TIMEOUT_S = 5.0
#: How often the registry is read for heartbeats and gone nodes.
REGISTRY_EVERY_S = 1.0
#: Changes remembered to skip one written twice.
SEEN_REFS = 4096
#: Waits between attempts while the log does not answer.
RETRY_S = 0.5
#: How long `stop` waits for each of its tasks to end.
STOP_WAIT_S = 2.0

#: One log entry: its id and its fields.
Entry = tuple[str, dict[str, str]]


def stream_id(value: str) -> tuple[int, int]:
    """A log id, comparable: "<milliseconds>-<sequence>"."""
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


class SharedBus(ABC):
    """A live bus over an ordered log that several nodes read (see the module's text)."""

    #: What the transport raises when the log cannot be reached.
    unreachable: tuple[type[BaseException], ...] = (OSError,)

    def __init__(
        self,
        *,
        node: str | None = None,
        clock: Callable[[], float] = time.time,
        publish_timeout: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        self.node = node or f"node-{secrets.token_hex(4)}"
        self.clock = clock
        self.publish_timeout = publish_timeout
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
        self._lost_log = False
        self._stopping = False
        self._started_at = 0.0
        # When the log went away, and came back: see `_presence_now`.
        self._log_lost_at: float | None = None
        self._log_back_at = 0.0

    # --- the transport --------------------------------------------------------------

    @abstractmethod
    async def _open(self) -> None: ...

    @abstractmethod
    async def _close(self) -> None: ...

    @abstractmethod
    async def _append(self, fields: dict[str, str]) -> None: ...

    @abstractmethod
    async def _read(self, after: str, *, block: bool) -> list[Entry]:
        """Entries after ``after``, waiting a moment for some when ``block``."""

    @abstractmethod
    async def _newest_id(self) -> str: ...

    @abstractmethod
    async def _get_snapshot(self) -> str | None: ...

    @abstractmethod
    async def _put_snapshot(self, entry_id: str, body: str) -> None:
        """Keep ``body`` as the snapshot at ``entry_id`` unless a later one is kept."""

    @abstractmethod
    async def _put_presence(self, node: str, body: str) -> None: ...

    @abstractmethod
    async def _all_presences(self) -> dict[str, str]: ...

    @abstractmethod
    async def _forget_presence(self, node: str) -> None: ...

    # --- life cycle -------------------------------------------------------------------

    async def start(
        self, replica: LiveReplica, on_change: OnChange, on_presence: OnPresence
    ) -> None:
        self._replica, self._on_change, self._on_presence = replica, on_change, on_presence
        self._started_at = self.clock()
        await self._open()
        raw = await self._get_snapshot()
        if raw is not None:
            snapshot = json.loads(raw)
            replica.restore(snapshot["replica"])
            self._last_id = snapshot["id"]
            # Changes made since the snapshot come from the log, in order.
            await self._read_once(block=False)
        else:
            # The first node of the event: what it loaded from the store is the state.
            self._last_id = await self._newest_id()
            await self._write_snapshot()
        await self._read_registry()
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read_forever())
        self._registry = loop.create_task(self._watch_registry())

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._reader, self._registry):
            if task is not None:
                task.cancel()
                # A client library may swallow the cancellation of a read it was in (seen
                # with redis-py under load): the loop then ends at its next turn, and the
                # stop does not wait for ever.
                done, _ = await asyncio.wait({task}, timeout=STOP_WAIT_S)
                if not done:
                    log.warning("a live bus task did not stop in time; left to end by itself")
        self._reader = self._registry = None
        for future in self._waiting.values():
            # Whoever waits (a leaving client's handler, say) is told, not cancelled.
            if not future.done():
                future.set_exception(BusUnavailable("this node is stopping"))
        self._waiting.clear()
        with contextlib.suppress(*self.unreachable, TimeoutError):
            await asyncio.wait_for(self._forget_presence(self.node), RETRY_S * 4)
        await self._close()

    # --- changes ----------------------------------------------------------------------

    async def publish(self, change: Change) -> bool:
        ref = secrets.token_hex(8)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = future
        try:
            # The append counts too: a log that takes the change and never answers is
            # as gone as one that refuses it.
            async with asyncio.timeout(self.publish_timeout):
                await self._append({"change": change.to_json(), "ref": ref})
                return await asyncio.shield(future)
        except (*self.unreachable, TimeoutError) as exc:
            raise BusUnavailable(
                f"the event's other nodes could not be reached ({type(exc).__name__})"
            ) from None
        finally:
            self._waiting.pop(ref, None)

    async def _read_forever(self) -> None:
        while not self._stopping:
            try:
                if self._lost_log:
                    await self._after_the_log_came_back()
                await self._read_once(block=True)
            except self.unreachable as exc:
                if not self._lost_log:
                    log.warning("lost the live log (%s); changes wait until it is back", exc)
                    self._log_lost_at = self.clock()
                self._lost_log = True
                await asyncio.sleep(RETRY_S)

    async def _read_once(self, *, block: bool) -> None:
        for entry_id, fields in await self._read(self._last_id, block=block):
            self._last_id = entry_id
            await self._apply_entry(fields)

    async def _apply_entry(self, fields: dict[str, str]) -> None:
        assert self._replica is not None and self._on_change is not None
        ref = fields.get("ref", "")
        if ref:
            if ref in self._seen_refs:
                return  # written twice (a retried append whose first try went through)
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
            try:
                self._learn_presence(NodePresence.from_dict(change.args))
            except (ValueError, KeyError, TypeError):
                log.warning("skipped an unreadable presence")
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
            await self._put_snapshot(self._last_id, body)
        except self.unreachable:
            log.warning("could not write the live snapshot; the next change will", exc_info=True)

    async def _after_the_log_came_back(self) -> None:
        """The log answers again: put back what it may have lost, then read on."""
        raw = await self._get_snapshot()
        if raw is None or stream_id(json.loads(raw)["id"]) < stream_id(self._last_id):
            await self._write_snapshot()
        if self._announced is not None:
            await self._put_presence(self.node, json.dumps(self._announced.to_dict()))
        log.warning("the live log is back; changes flow again")
        self._lost_log = False
        self._log_back_at = self.clock()

    # --- presence -----------------------------------------------------------------------

    async def announce(self, presence: NodePresence) -> None:
        if self._replica is None:
            return
        news = not presence.same_facts(self._announced)
        self._announced = presence
        self._presences[self.node] = presence
        await self._put_presence(self.node, json.dumps(presence.to_dict()))
        if news:
            change = Change("presence", presence.to_dict(), presence.at, self.node)
            await self._append({"change": change.to_json()})

    def presences(self) -> list[NodePresence]:
        now = self._presence_now()
        return [p for p in self._presences.values() if now - p.at < PRESENCE_TIMEOUT_S]

    def _presence_now(self) -> float:
        """The moment the others' presences are aged at.

        Now, except while the log is away and for one timeout after it is back (until the
        others are heard again): then the moment it went away. A node cannot tell a dead
        node from a dead log, and media between nodes does not go through the log:
        ageing the others out would stop the channels this node pulls from them.
        """
        lost_at = self._log_lost_at
        now = self.clock()
        if lost_at is not None and (self._lost_log or now - self._log_back_at < PRESENCE_TIMEOUT_S):
            return lost_at
        return now

    def _learn_presence(self, presence: NodePresence) -> None:
        if presence.node == self.node:
            return
        known = self._presences.get(presence.node)
        self._presences[presence.node] = presence
        if not presence.same_facts(known) and self._on_presence is not None:
            self._on_presence()

    async def _watch_registry(self) -> None:
        while not self._stopping:
            await asyncio.sleep(REGISTRY_EVERY_S)
            try:
                await self._read_registry()
                await self._bury_the_gone()
            except self.unreachable:
                pass  # the reader reports the log's absence and its return

    async def _read_registry(self) -> None:
        for node, raw in (await self._all_presences()).items():
            try:
                presence = NodePresence.from_dict(json.loads(raw))
            except (ValueError, KeyError, TypeError):
                log.warning("skipped an unreadable presence of node %s", node)
                continue
            known = self._presences.get(node)
            if known is not None and presence.at <= known.at:
                continue
            if self._presence_now() - presence.at >= PRESENCE_TIMEOUT_S:
                self._presences[node] = presence  # a dead node's last word: to be buried
            else:
                self._learn_presence(presence)

    async def _bury_the_gone(self) -> None:
        """Forget the nodes that stopped answering; the lowest live id tells every node."""
        assert self._replica is not None
        now = self._presence_now()
        alive = {p.node for p in self.presences()} | {self.node}
        gone = {
            node
            for node, presence in self._presences.items()
            if node not in alive and now - presence.at >= PRESENCE_TIMEOUT_S
        }
        if now - self._started_at >= PRESENCE_TIMEOUT_S:
            # Nodes that held interpreters or seats and died before this one started.
            gone |= {
                node
                for node in self._replica.nodes_with_clients()
                if node not in alive and node not in self._presences
            }
        if not gone:
            return
        for node in gone:
            self._presences.pop(node, None)
        if min(alive) == self.node:
            for node in sorted(gone):
                log.warning("node %s stopped answering: its clients are gone with it", node)
                await self._forget_presence(node)
                if node in self._replica.nodes_with_clients():
                    await self.publish(Change("node_gone", {"node": node}, self.clock(), self.node))
        if self._on_presence is not None:
            self._on_presence()  # their sources and listeners no longer count
