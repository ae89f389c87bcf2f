"""The connections of one node, as the live service sees them, and what each wants."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
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


class Audience:
    """This node's clients counted by role, and its attendees with media by channel,
    kept as they come, choose and go: reading them costs the same however many there
    are (the metrics endpoint, the node's presence)."""

    def __init__(self, channels: Iterable[str]) -> None:
        self.roles: dict[Role, int] = dict.fromkeys(Role, 0)
        self.listeners: dict[str, int] = dict.fromkeys(channels, 0)
        self._counted: dict[int, str] = {}  # client number -> the channel he is counted in

    def joined(self, client: Client) -> None:
        self.roles[client.role] += 1

    def left(self, client: Client) -> None:
        self.roles[client.role] -= 1
        self.stopped(client)

    def listening(self, client: Client, channel: str) -> None:
        """The client receives `channel` now (counted once, wherever he was before)."""
        self.stopped(client)
        self._counted[client.number] = channel
        self.listeners[channel] += 1

    def stopped(self, client: Client) -> None:
        channel = self._counted.pop(client.number, None)
        if channel is not None:
            self.listeners[channel] -= 1


def refuse(code: str, message: str) -> p.ProtocolError:
    """The error a client is sent when what it asked cannot be done now."""
    return p.ProtocolError(code, message)
