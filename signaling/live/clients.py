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

#: Close codes of a connection the live service ends (docs/protocol.md): another page
#: took over its seat (or its request for one was refused), and its link was revoked.
CLOSE_SEAT = 4409
CLOSE_REVOKED = 4410

#: How the WebSocket layer ends a connection: close code, error code, sentence.
Closer = Callable[[int, str, str], None]


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
    #: Set by the WebSocket layer: sends an error, then closes the connection.
    close: Closer | None = None
    #: Being closed by the service (displaced, revoked): it holds no seat any more.
    closing: bool = False
    #: Its link was revoked: its media goes at once, without the grace of a blink.
    revoked: bool = False
    #: Its seat went to a page on another node, which publishes there: its media goes
    #: at once too (two nodes announcing one source would split the routing).
    moved: bool = False

    def end(self, close_code: int, code: str, message: str) -> None:
        """Close this connection, saying why (``code``, for the page to say in words)."""
        if self.closing:
            return
        self.closing = True
        if self.close is not None:
            self.close(close_code, code, message)

    @property
    def role(self) -> Role:
        return self.claims.role


class Audience:
    """This node's clients counted by role, and its attendees with media by channel,
    kept as they come, choose and go: reading them costs the same however many there
    are (the metrics endpoint, the node's presence), and so does finding one attendee's
    pages (his own choices are answered to him alone)."""

    def __init__(self, channels: Iterable[str]) -> None:
        self.roles: dict[Role, int] = dict.fromkeys(Role, 0)
        self.listeners: dict[str, int] = dict.fromkeys(channels, 0)
        self._counted: dict[int, str] = {}  # client number -> the channel he is counted in
        self._pages: dict[str, list[Client]] = {}  # attendee -> his connections here

    def joined(self, client: Client) -> None:
        self.roles[client.role] += 1
        if client.role is Role.ATTENDEE:
            self._pages.setdefault(client.claims.subject, []).append(client)

    def left(self, client: Client) -> None:
        self.roles[client.role] -= 1
        self.stopped(client)
        pages = self._pages.get(client.claims.subject)
        if client.role is Role.ATTENDEE and pages is not None and client in pages:
            pages.remove(client)
            if not pages:
                del self._pages[client.claims.subject]

    def pages_of(self, subject: str) -> tuple[Client, ...]:
        """The attendee's connections to this node (a few at most: per-link cap)."""
        return tuple(self._pages.get(subject, ()))

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
