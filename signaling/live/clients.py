"""The connections of one node, as the live service sees them, and what each wants."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from signaling import protocol as p
from signaling.routing_rule import FLOOR
from signaling.tokens import Claims, Role


@dataclass
class AttendeeChoice:
    """An attendee's listening choices, remembered per link across reconnects."""

    channel: str
    original_under: bool = False
    audio_only: bool = False
    #: The sign booth shown over the program video (picture in picture), if any.
    sign: str | None = None


_client_numbers = itertools.count(1)


@dataclass(eq=False)
class Client:
    """One authenticated connection, as the live service sees it.

    ``send`` queues a server message for the connection (never blocks); the WebSocket
    layer owns the actual writing.
    """

    claims: Claims
    send: Callable[[p.WireMessage], None]
    number: int = field(default_factory=lambda: next(_client_numbers))
    subscriber_id: str | None = None
    subscribed: bool = False
    publisher_id: str | None = None
    slots: dict[str, str] = field(default_factory=dict)
    paused: dict[str, bool] = field(default_factory=dict)
    #: What a moderator listens to in the studio: "floor" or a language.
    monitor: str = FLOOR

    @property
    def role(self) -> Role:
        return self.claims.role


def refuse(code: str, message: str) -> p.ProtocolError:
    """The error a client is sent when what it asked cannot be done now."""
    return p.ProtocolError(code, message)
