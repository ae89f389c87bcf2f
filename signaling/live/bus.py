"""The live bus: how the nodes of one event share its live state.

One interface, two implementations, as LiveKit keeps its local and Redis routers behind
one interface: `LocalBus` for a node alone (no Redis, nothing leaves the process) and
`signaling.live.redis_bus.RedisBus` for the nodes and workers that share a Redis.

The bus does two things:

- **Changes.** A node that accepts a command makes a `Change` and publishes it; the bus
  applies every change to every node's `LiveReplica` in one order, and tells each node
  (`on_change`) so that it re-routes and pushes the new state to its clients. `publish`
  returns once the change is applied on the publishing node, and raises what applying it
  raised there (a handover raced by another node's, say), so the client that asked is
  told.
- **Presence.** Each node announces its own facts (`NodePresence`: its sources, its
  listeners, its load); `presences()` gives those of every live node, this one included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from signaling.live.presence import NodePresence
from signaling.live.replica import Change, LiveReplica

#: Called on a node for every change applied there, in order; ``durable`` tells whether
#: the durable part of the state changed.
OnChange = Callable[[Change, bool], None]
#: Called when another node's announcement changed what this node knows.
OnPresence = Callable[[], None]


class BusUnavailable(Exception):
    """The event's other nodes could not be reached in time: the change was not made."""


class LiveBus(Protocol):
    node: str

    async def start(
        self, replica: LiveReplica, on_change: OnChange, on_presence: OnPresence
    ) -> None:
        """Bring ``replica`` up to date with the event's other nodes (if any) and deliver
        every later change."""

    async def publish(self, change: Change) -> bool:
        """Apply ``change`` on every node; True when its durable part changed."""
        ...

    async def announce(self, presence: NodePresence) -> None:
        """Tell the other nodes this node's facts."""

    def presences(self) -> list[NodePresence]:
        """The facts of every live node of the event, this one's included."""
        ...

    async def stop(self) -> None: ...


class LocalBus:
    """The bus of a node alone: changes apply at once, presence is this node's own."""

    def __init__(self, node: str = "local") -> None:
        self.node = node
        self._replica: LiveReplica | None = None
        self._on_change: OnChange | None = None
        self._own: NodePresence | None = None

    async def start(
        self, replica: LiveReplica, on_change: OnChange, on_presence: OnPresence
    ) -> None:
        self._replica = replica
        self._on_change = on_change

    async def publish(self, change: Change) -> bool:
        assert self._replica is not None and self._on_change is not None, "bus not started"
        durable = self._replica.apply(change)
        self._on_change(change, durable)
        return durable

    async def announce(self, presence: NodePresence) -> None:
        self._own = presence

    def presences(self) -> list[NodePresence]:
        return [self._own] if self._own is not None else []

    async def stop(self) -> None:
        self._replica = self._on_change = None
