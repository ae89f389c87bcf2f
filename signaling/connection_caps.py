"""How many WebSocket connections one link, and one client address, may hold at once.

One attendee link opened in a few tabs is normal; the same link opened hundreds of times
(or as many connections as one machine can open, with no link at all) is someone taking
the node's sockets, tasks and state pushes from everyone else. `ConnectionCaps` counts
the open ``/ws`` connections of this node per client address (from the upgrade on, so
connections that never authenticate count too) and per link (from authentication on),
and refuses one more past either cap.

The counts are this node's (this worker's, with ``--workers``): a person reaching several
nodes or workers may hold the cap on each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable

from signaling.tokens import Claims


def link_of(claims: Claims) -> Hashable:
    """What makes two connections "the same link": the role and whom and what it is for."""
    return (claims.role.value, claims.subject, claims.booth, claims.speaker)


class ConnectionCaps:
    """Open connections of this node by client address and by link, against their caps."""

    def __init__(self, per_address: int, per_link: int) -> None:
        self.per_address = per_address
        self.per_link = per_link
        self._addresses: Counter[str] = Counter()
        self._links: Counter[Hashable] = Counter()

    def admit_address(self, address: str) -> bool:
        """Count a new connection from `address`; False (and not counted) past the cap."""
        if self._addresses[address] >= self.per_address:
            return False
        self._addresses[address] += 1
        return True

    def release_address(self, address: str) -> None:
        self._addresses[address] -= 1
        if self._addresses[address] <= 0:
            del self._addresses[address]

    def admit_link(self, claims: Claims) -> bool:
        """Count a new authenticated connection of this link; False past the cap."""
        link = link_of(claims)
        if self._links[link] >= self.per_link:
            return False
        self._links[link] += 1
        return True

    def release_link(self, claims: Claims) -> None:
        link = link_of(claims)
        self._links[link] -= 1
        if self._links[link] <= 0:
            del self._links[link]
