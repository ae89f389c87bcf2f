"""The contract every durable store keeps, whatever holds the data.

Two backends implement it (SQLite for one node, Redis for several); the same contract tests
run against both. Everything durable goes through here: registrations, the live state of
each event, the booth chat, the staff invitations (so a staff link can be revoked), and the
rate-limit counters that must be shared by all nodes.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from signaling.booth_chat import ChatEntry
from signaling.invitations import Invitation
from signaling.live_state import LiveState, LiveStateError
from signaling.registration import NewRegistration, Registration

# Bumped whenever the layout of stored data changes; a store refuses data written with a
# newer layout rather than misread it.
SCHEMA_VERSION = 1

Clock = Callable[[], float]
"""Seconds since the epoch, like `time.time` (injectable so tests can move time)."""


class StoreError(RuntimeError):
    """The store cannot do its job: unreachable, unreadable, or written by a newer version."""


class StoreFull(StoreError):
    """The store's disk (or memory) is full: nothing new is kept until space is freed.
    What is stored can still be read."""


class CorruptLiveState(StoreError, LiveStateError):
    """The live state kept for an event cannot be read back.

    Nothing is replaced silently: the operator sees this error, and the next
    `put_live_state` for the event overwrites the unreadable value.
    """

    def __init__(self, event_id: str, reason: str) -> None:
        super().__init__(
            f"the live state stored for event {event_id!r} is unreadable ({reason}); "
            "it will be replaced the next time the live state changes"
        )
        self.event_id = event_id
        self.reason = reason


def read_live_state(event_id: str, raw: str | bytes | None) -> LiveState:
    """The live state from its stored JSON; an empty `LiveState()` when nothing is stored.

    Raises `CorruptLiveState` when the stored value cannot be read.
    """
    if raw is None:
        return LiveState()
    try:
        return LiveState.from_json(raw)
    except LiveStateError as exc:
        raise CorruptLiveState(event_id, str(exc)) from exc


class Store(ABC):
    """Durable state shared by the nodes serving an event.

    Use it as `async with store:` or call `open()` and `close()`. Every method is safe to
    call concurrently from many tasks (and, for the shared backends, from many nodes).
    """

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._opened = False

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _require_open(self) -> None:
        if not self._opened:
            raise StoreError(f"{type(self).__name__} is not open: call `await store.open()`")

    @property
    def is_open(self) -> bool:
        return self._opened

    @abstractmethod
    async def open(self) -> None:
        """Connect, create the schema if missing, check its version.

        Raises `StoreError` with a readable reason when the backing data cannot be used.
        Calling it on an open store does nothing.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release connections and threads. Calling it on a closed store does nothing."""

    @abstractmethod
    async def register(self, reg: NewRegistration) -> tuple[Registration, bool]:
        """Register a person for an event, once per event and address.

        Returns the registration and True when it was created by this call, or the existing
        registration for the same event and email (compared case-insensitively) and False.
        Concurrent calls for the same address, from any number of tasks or nodes, yield one
        registration.
        """

    @abstractmethod
    async def registration_by_email(self, event_id: str, email: str) -> Registration | None:
        """The registration for this event and address (any letter case), or None."""

    @abstractmethod
    async def registration(self, reg_id: str) -> Registration | None:
        """The registration with this id, or None."""

    @abstractmethod
    async def registration_count(self, event_id: str) -> int:
        """How many registrations the event has, read from a count kept as they are made:
        the cost does not grow with their number (the metrics endpoint asks often)."""

    @abstractmethod
    async def registrations(self, event_id: str) -> list[Registration]:
        """Every registration for the event, oldest first."""

    @abstractmethod
    async def get_live_state(self, event_id: str) -> LiveState:
        """The live state of the event; an empty `LiveState()` when none was ever stored.

        Raises `CorruptLiveState` when the stored value cannot be read.
        """

    @abstractmethod
    async def put_live_state(self, event_id: str, state: LiveState) -> LiveState:
        """Store the live state of the event, replacing the previous one.

        The stored copy gets `updated_at` set to the store's current time; it is returned.
        """

    @abstractmethod
    async def hit_rate_limit(self, key: str, limit: int, window_s: float) -> bool:
        """Count one attempt for `key`; True when allowed, False when refused.

        At most `limit` attempts are allowed in any `window_s` seconds (a sliding window);
        refused attempts are not counted. The count is shared by every user of the same
        backing data (all nodes, for Redis).
        """

    @abstractmethod
    async def add_chat_message(
        self, event_id: str, thread: str, sender: str, role: str, text: str
    ) -> ChatEntry:
        """Keep one chat message of a thread of the event; returns it as stored.

        Messages of a thread are numbered 1, 2, 3... in the order they are kept, whatever
        the number of tasks or nodes adding them; ``at`` is the store's current time.
        """

    @abstractmethod
    async def chat_messages(self, event_id: str, thread: str, limit: int) -> list[ChatEntry]:
        """The newest ``limit`` messages of a thread of the event, oldest first."""

    # Staff invitations (signaling/invitations.py)

    @abstractmethod
    async def add_invitation(self, invitation: Invitation) -> None:
        """Record a staff link as it is issued (its id is new: ids are random)."""

    @abstractmethod
    async def invitation(self, invitation_id: str) -> Invitation | None:
        """The invitation with this id (revoked or not), or None."""

    @abstractmethod
    async def invitations(self, event_id: str) -> list[Invitation]:
        """Every invitation of the event, oldest first, revoked ones included."""

    @abstractmethod
    async def revoke_invitation(self, invitation_id: str) -> tuple[Invitation | None, bool]:
        """Mark an invitation revoked at the store's current time, once.

        Returns the invitation as stored after the call (None when there is no such id)
        and True when this call revoked it (False: it was revoked before; its first
        ``revoked_at`` stays). Concurrent calls from any number of nodes revoke it once.
        """

    @abstractmethod
    async def invitations_revoked_since(self, event_id: str, since: float) -> list[Invitation]:
        """The invitations of the event revoked after ``since`` (seconds since the epoch),
        in the order they were revoked: what a node polls to close their connections."""
