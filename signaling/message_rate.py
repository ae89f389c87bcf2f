"""How fast one WebSocket connection may send: a token bucket per connection.

Every frame a client sends costs one token of its `MessageRate`, whether it is carried
out or refused (malformed, forbidden…): refusing costs the server too. Messages that make
the streamer open a peer connection (``offer`` to publish, ``subscribe``) cost a token of
a second, much smaller allowance as well, since each one costs gathering sockets and a
DTLS handshake.

A message past the allowance is refused with ``rate_limited``; the allowance refills
while the client waits. A client that goes on sending regardless runs into debt, and past
a debt as large as the burst it is closed (`Verdict.CLOSE`): pages never come near it,
a flood gets there within a second.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Messages that open a peer connection in the streamer.
MEDIA_TYPES = frozenset({"offer", "subscribe"})
#: A page publishes or subscribes once, and again after a reload or a network change; while
#: its media network is lost it tries anew every 1.5 to 3 s, for its publication and its
#: subscription both: ten at once and one a second after that is more than any page needs.
MEDIA_BURST = 10
MEDIA_PER_S = 1.0


class Verdict(enum.Enum):
    ACCEPT = "accept"
    #: Refused with ``rate_limited``; the connection goes on.
    REFUSE = "refuse"
    #: The client kept on sending past the limit: the connection is closed.
    CLOSE = "close"


@dataclass
class Allowance:
    """A token bucket that may go into debt (down to minus its burst) as refusals pile up."""

    per_s: float
    burst: float
    tokens: float = field(init=False)
    at: float = field(init=False)

    def start(self, now: float) -> None:
        self.tokens, self.at = self.burst, now

    def take(self, now: float) -> Verdict:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_s)
        self.at = now
        self.tokens -= 1
        if self.tokens >= 0:
            return Verdict.ACCEPT
        if self.tokens < -self.burst:
            return Verdict.CLOSE
        return Verdict.REFUSE


class MessageRate:
    """The allowances of one connection."""

    def __init__(
        self,
        per_s: float,
        burst: int,
        *,
        media_per_s: float = MEDIA_PER_S,
        media_burst: int = MEDIA_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        now = clock()
        self.messages = Allowance(per_s, burst)
        self.messages.start(now)
        self.media = Allowance(media_per_s, media_burst)
        self.media.start(now)
        #: Messages refused for their rate on this connection.
        self.refused = 0
        #: The allowance the last refused frame exceeded.
        self.exceeded = self.messages

    def take(self, message_type: str | None) -> Verdict:
        """Count one frame (its type, or None when it did not parse)."""
        now = self.clock()
        self.exceeded = self.messages
        verdict = self.messages.take(now)
        if verdict is Verdict.ACCEPT and message_type in MEDIA_TYPES:
            self.exceeded = self.media
            verdict = self.media.take(now)
        if verdict is not Verdict.ACCEPT:
            self.refused += 1
        return verdict

    @property
    def exceeded_name(self) -> str:
        """The allowance the last refused frame exceeded: ``messages`` or ``media``."""
        return "media" if self.exceeded is self.media else "messages"

    def limit(self, message_type: str | None) -> str:
        """The allowance the last refused frame exceeded, in words."""
        allowance = self.exceeded
        if allowance is self.media:
            return (
                f"{message_type} opens a media connection: at most {allowance.burst:.0f}, "
                f"then {allowance.per_s:g} per second"
            )
        return (
            f"too many messages: at most {allowance.burst:.0f} at once, "
            f"then {allowance.per_s:g} per second"
        )

    def refusal(self, message_type: str | None) -> str:
        """The sentence for the frame `take` just refused (the connection goes on)."""
        wait = max((1 - self.exceeded.tokens) / self.exceeded.per_s, 0.0)
        return (
            f"{self.limit(message_type)}; this one was not carried out, send it again in "
            f"{wait:.1f} s"
        )
