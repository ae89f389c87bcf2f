"""What one node tells the others about itself: its media, its audience, its load.

These facts belong to one node and are true only while it lives: each node announces
its own (on change, and as a heartbeat), and a node whose announcement is older than
`PRESENCE_TIMEOUT_S` is taken for gone. The union of the live nodes' sources is what
the routing rule may use; the sum of their listeners is the audience a booth sees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: How often a node repeats its announcement when nothing changed.
HEARTBEAT_S = 1.0
#: A node silent for this long is gone: its sources and listeners no longer count.
PRESENCE_TIMEOUT_S = 3.5


@dataclass(frozen=True)
class NodePresence:
    node: str
    at: float
    #: The streamer's sources the node receives from its own publishers: id -> kind.
    sources: Mapping[str, str] = field(default_factory=dict)
    #: Attendees listening, per channel ("original" or a language code).
    listeners: Mapping[str, int] = field(default_factory=dict)
    #: Open connections (any role): the node's load, for placing newcomers.
    clients: int = 0
    #: Where pages reach the node (its public URL), empty when not told.
    address: str = ""
    #: Where other nodes pull its outputs ("host:port" of its media link), empty: none.
    link: str = ""
    #: How its sources arrive, when it announced: id -> (packet age, sound age) in
    #: seconds (None: no audio level). Not news by itself (see `same_facts`).
    activity: Mapping[str, tuple[float, float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "at": self.at,
            "sources": dict(self.sources),
            "listeners": dict(self.listeners),
            "clients": self.clients,
            "address": self.address,
            "link": self.link,
            "activity": {k: list(v) for k, v in self.activity.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodePresence:
        return cls(
            node=str(data["node"]),
            at=float(data["at"]),
            sources={str(k): str(v) for k, v in dict(data["sources"]).items()},
            listeners={str(k): int(v) for k, v in dict(data["listeners"]).items()},
            clients=int(data.get("clients", 0)),
            address=str(data.get("address", "")),
            link=str(data.get("link", "")),
            activity={
                str(k): (_age(v[0]), None if v[1] is None else _age(v[1]))
                for k, v in dict(data.get("activity", {})).items()
            },
        )

    def same_facts(self, other: NodePresence | None) -> bool:
        """Equal but for the time and the ages: nothing to tell the others at once."""
        if other is None:
            return False
        moving = {"at": 0, "activity": {}}
        return self.to_dict() | moving == other.to_dict() | moving


def _age(value: object) -> float:
    # JSON has no infinity: a source that never sent is announced as null or a huge age.
    return math.inf if value is None else float(value)  # type: ignore[arg-type]


def live_nodes(presences: Iterable[NodePresence], now: float) -> list[NodePresence]:
    return [p for p in presences if now - p.at < PRESENCE_TIMEOUT_S]


def all_sources(presences: Iterable[NodePresence]) -> dict[str, str]:
    """Every source of the event, wherever its publisher is: id -> node."""
    return {source: p.node for p in presences for source in p.sources}


def total_listeners(presences: Iterable[NodePresence]) -> dict[str, int]:
    total: dict[str, int] = {}
    for presence in presences:
        for channel, count in presence.listeners.items():
            total[channel] = total.get(channel, 0) + count
    return total
