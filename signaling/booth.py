"""What happens inside one interpretation booth: who is on air, coughs, handovers.

A booth holds the interpreters of one booth of the program. One of them at a time is on
air (his microphone feeds the booth's channel). The partner off air may ask for a handover
(and withdraw it while it is pending), which the one on air accepts: the channel switches
to the partner at once, without a gap.
When the one on air has dropped off the network, or does not answer a handover request
within ``take_over_after`` seconds, the partner may take over. The one on air may hold
"cough" to silence the channel for a moment. Any interpreter of a bidirectional booth may
force the direction it works into, and each chooses what he listens to (the floor, or a
channel: relay). Any interpreter of the booth may ask the speaker on air to slow down:
the request shows for ``slow_down_for`` seconds unless withdrawn, and a booth may raise
one at most every ``slow_down_every`` seconds, so a nervous finger cannot flood the
moderator and the speaker with alerts.

This is a plain state machine: time comes in as an argument (seconds, any clock), nothing
is scheduled here, and every illegal transition raises a `BoothError` whose message says
what to do instead. The live service persists ``on_air`` and ``direction_override``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_TAKE_OVER_AFTER = 10.0
#: How long a request to slow down is shown; a speaker reads it and adapts in that time.
DEFAULT_SLOW_DOWN_FOR = 15.0
#: The least time between two requests of one booth (a withdrawn one counts).
DEFAULT_SLOW_DOWN_EVERY = 5.0


class BoothError(Exception):
    """A booth command that is not allowed now; ``code`` is the protocol error code."""

    code = "booth"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotConnected(BoothError):
    code = "not_connected"


class NotOnAir(BoothError):
    code = "not_on_air"


class AlreadyOnAir(BoothError):
    code = "already_on_air"


class PartnerOnAir(BoothError):
    code = "partner_on_air"


class NobodyOnAir(BoothError):
    code = "nobody_on_air"


class HandoverPending(BoothError):
    code = "handover_pending"


class NoHandoverRequested(BoothError):
    code = "no_handover_requested"


class TakeOverRefused(BoothError):
    code = "take_over_refused"


class DirectionRefused(BoothError):
    code = "direction_refused"


class TooSoon(BoothError):
    code = "too_soon"


@dataclass(frozen=True)
class HandoverRequest:
    by: str
    at: float


@dataclass(frozen=True)
class SlowDownRequest:
    """The booth asks the speaker to slow down: asked by ``by`` at ``at``, shown until ``until``."""

    by: str
    at: float
    until: float


@dataclass(frozen=True)
class FailoverEvent:
    """The one on air (``lost``) went silent; ``to`` took the channel (None: nobody was
    ready, and the channel falls back until his voice returns)."""

    lost: str
    to: str | None
    at: float


@dataclass
class _Seat:
    connections: int = 0
    listen: str | None = None  # None: what the routing rule suggests


@dataclass(frozen=True)
class InterpreterStatus:
    id: str
    connected: bool
    on_air: bool
    listen: str | None


@dataclass(frozen=True)
class BoothStatus:
    """A snapshot of the booth for the state pushed to clients."""

    booth: str
    on_air: str | None
    on_air_connected: bool
    on_air_since: float | None
    coughing: bool
    handover: HandoverRequest | None
    take_over_after: float
    direction_override: str | None
    interpreters: tuple[InterpreterStatus, ...]


@dataclass
class LiveBooth:
    """The live state machine of one booth."""

    booth_id: str
    works_into: tuple[str, ...]
    take_over_after: float = DEFAULT_TAKE_OVER_AFTER
    slow_down_for: float = DEFAULT_SLOW_DOWN_FOR
    slow_down_every: float = DEFAULT_SLOW_DOWN_EVERY
    on_air: str | None = None
    on_air_since: float | None = None
    direction_override: str | None = None
    coughing: bool = False
    handover: HandoverRequest | None = None
    #: The last failover, shown to the booth and the moderator until another change.
    last_failover: FailoverEvent | None = None
    _slow_down: SlowDownRequest | None = None
    _slow_down_asked_at: float | None = None
    _seats: dict[str, _Seat] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.on_air is not None:
            # Restored from the store: the one on air is remembered before he reconnects.
            self._seats.setdefault(self.on_air, _Seat())

    # --- presence ---------------------------------------------------------------------

    def connect(self, who: str) -> None:
        self._seats.setdefault(who, _Seat()).connections += 1

    def disconnect(self, who: str) -> None:
        seat = self._seats.get(who)
        if seat is None or seat.connections == 0:
            return
        seat.connections -= 1
        if seat.connections:
            return
        if self.handover is not None and self.handover.by == who:
            self.handover = None
        if who != self.on_air:
            # The one on air stays on air while away: he gets the channel back on reconnect,
            # and his partner may take over meanwhile.
            del self._seats[who]

    def is_connected(self, who: str) -> bool:
        seat = self._seats.get(who)
        return seat is not None and seat.connections > 0

    # --- commands ---------------------------------------------------------------------

    def mic(self, who: str, on: bool, now: float) -> None:
        self._require_connected(who)
        if on:
            if self.on_air == who:
                return
            if self.on_air is not None:
                raise PartnerOnAir(
                    f"{self.on_air} is on air in this booth: request a handover instead"
                )
            self._go_on_air(who, now)
        else:
            if self.on_air != who:
                raise NotOnAir("you are not on air: your microphone is already off")
            self.on_air = None
            self.on_air_since = None
            self.coughing = False
            self.handover = None
            self._forget_departed()

    def cough(self, who: str, on: bool) -> None:
        self._require_connected(who)
        if not on:
            # A release always succeeds: it may arrive just after a handover took the air.
            if self.on_air == who:
                self.coughing = False
            return
        if self.on_air != who:
            raise NotOnAir("you are not on air: there is nothing to mute")
        self.coughing = True

    def request_handover(self, who: str, now: float) -> None:
        self._require_connected(who)
        if self.on_air == who:
            raise AlreadyOnAir("you are already on air")
        if self.on_air is None:
            raise NobodyOnAir("nobody is on air: switch your microphone on")
        if self.handover is not None:
            raise HandoverPending(f"{self.handover.by} has already requested a handover")
        self.handover = HandoverRequest(by=who, at=now)

    def withdraw_handover(self, who: str) -> None:
        """Take back one's own request: the partner on air keeps the channel."""
        self._require_connected(who)
        if self.handover is None or self.handover.by != who:
            raise NoHandoverRequested(
                "you have not requested a handover: there is nothing to withdraw"
            )
        self.handover = None

    def accept_handover(self, who: str, now: float) -> None:
        self._require_connected(who)
        if self.on_air != who:
            raise NotOnAir("you are not on air: only the interpreter on air accepts a handover")
        if self.handover is None:
            raise NoHandoverRequested("nobody has requested a handover")
        self._go_on_air(self.handover.by, now)

    def take_over(self, who: str, now: float) -> None:
        self._require_connected(who)
        if self.on_air == who:
            raise AlreadyOnAir("you are already on air")
        if not self.can_take_over(who, now):
            on_air = self.on_air
            if self.handover is not None and self.handover.by == who:
                wait = self.handover.at + self.take_over_after - now
                raise TakeOverRefused(
                    f"{on_air} is on air and connected: wait {wait:.0f} s more for an answer "
                    "to your handover request"
                )
            raise TakeOverRefused(
                f"{on_air} is on air and connected: request a handover first; you may take "
                f"over if there is no answer within {self.take_over_after:.0f} s"
            )
        self._go_on_air(who, now)

    def fail_over(self, to: str | None, now: float) -> FailoverEvent:
        """The one on air went silent (his media stopped): put ``to`` on air for good.

        ``to`` None: nobody is ready; the one on air stays on air (the live service
        routes the fallback while his voice is missing, and him again when it returns).
        Either way the event is kept for the booth's and the moderator's pages.
        """
        lost = self.on_air
        if lost is None:
            raise NobodyOnAir("nobody is on air: there is nobody to fail over from")
        if to is not None:
            self._require_connected(to)
            self._go_on_air(to, now)
        self.last_failover = FailoverEvent(lost=lost, to=to, at=now)
        return self.last_failover

    def can_take_over(self, who: str, now: float) -> bool:
        """Whether ``who`` may take the air without the partner's consent."""
        if self.on_air is None:
            return True
        if self.on_air == who:
            return False
        if not self.is_connected(self.on_air):
            return True
        return (
            self.handover is not None
            and self.handover.by == who
            and now >= self.handover.at + self.take_over_after
        )

    def take_over_allowed_at(self) -> float | None:
        """When the pending request (if any) turns into the right to take over."""
        if self.handover is None:
            return None
        return self.handover.at + self.take_over_after

    def set_direction(self, who: str, into: str | None) -> None:
        self._require_connected(who)
        if into is None:
            self.direction_override = None
            return
        if len(self.works_into) < 2:
            raise DirectionRefused(
                f"this booth works only into {self.works_into[0]}: its direction cannot change"
            )
        if into not in self.works_into:
            raise DirectionRefused(
                f"this booth works into {' and '.join(self.works_into)}, not into {into}"
            )
        self.direction_override = into

    def slow_down(self, who: str, on: bool, now: float) -> bool:
        """Ask the speaker to slow down (on), or withdraw the booth's request (off).

        Asking while a request is showing changes nothing; a withdrawal always succeeds.
        Returns whether what the booth shows changed (repeats change nothing, and are
        not worth telling anyone).
        """
        self._require_connected(who)
        showing = self.slow_down_request(now) is not None
        if not on:
            self._slow_down = None
            return showing
        if showing:
            return False
        last = self._slow_down_asked_at
        if last is not None and now < last + self.slow_down_every:
            wait = math.ceil(last + self.slow_down_every - now)
            raise TooSoon(
                f"this booth asked the speaker to slow down {now - last:.0f} s ago: "
                f"ask again in {wait} s"
            )
        self._slow_down = SlowDownRequest(by=who, at=now, until=now + self.slow_down_for)
        self._slow_down_asked_at = now
        return True

    def slow_down_request(self, now: float) -> SlowDownRequest | None:
        """The booth's request to slow down if it is still showing at ``now``."""
        request = self._slow_down
        if request is None or now >= request.until:
            return None
        return request

    def clear_slow_down(self) -> None:
        """Forget the request: the speaker it was meant for has left the floor."""
        self._slow_down = None

    def listen(self, who: str, source: str | None) -> None:
        """Choose what ``who`` hears: "floor", a language channel, or None (the default)."""
        self._require_connected(who)
        self._seats[who].listen = source

    def listening_to(self, who: str) -> str | None:
        seat = self._seats.get(who)
        return seat.listen if seat else None

    # --- reading ----------------------------------------------------------------------

    def status(self) -> BoothStatus:
        return BoothStatus(
            booth=self.booth_id,
            on_air=self.on_air,
            on_air_connected=self.on_air is not None and self.is_connected(self.on_air),
            on_air_since=self.on_air_since,
            coughing=self.coughing,
            handover=self.handover,
            take_over_after=self.take_over_after,
            direction_override=self.direction_override,
            interpreters=tuple(
                InterpreterStatus(
                    id=who,
                    connected=seat.connections > 0,
                    on_air=who == self.on_air,
                    listen=seat.listen,
                )
                for who, seat in sorted(self._seats.items())
            ),
        )

    # --- copying between nodes ------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Everything the booth knows, as JSON-safe data (the nodes of an event share it)."""
        return {
            "on_air": self.on_air,
            "on_air_since": self.on_air_since,
            "direction_override": self.direction_override,
            "coughing": self.coughing,
            "handover": asdict(self.handover) if self.handover else None,
            "last_failover": asdict(self.last_failover) if self.last_failover else None,
            "slow_down": asdict(self._slow_down) if self._slow_down else None,
            "slow_down_asked_at": self._slow_down_asked_at,
            "seats": {who: asdict(seat) for who, seat in self._seats.items()},
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Take over what `to_dict` wrote (on another node); the booth's settings stay."""
        self.on_air = data["on_air"]
        self.on_air_since = data["on_air_since"]
        self.direction_override = data["direction_override"]
        self.coughing = data["coughing"]
        handover, failover, slow_down = (
            data["handover"],
            data["last_failover"],
            data["slow_down"],
        )
        self.handover = HandoverRequest(**handover) if handover else None
        self.last_failover = FailoverEvent(**failover) if failover else None
        self._slow_down = SlowDownRequest(**slow_down) if slow_down else None
        self._slow_down_asked_at = data["slow_down_asked_at"]
        self._seats = {who: _Seat(**seat) for who, seat in data["seats"].items()}

    # --- internals --------------------------------------------------------------------

    def _require_connected(self, who: str) -> None:
        if not self.is_connected(who):
            raise NotConnected(f"{who} is not connected to booth {self.booth_id}")

    def _go_on_air(self, who: str, now: float) -> None:
        self.on_air = who
        self.on_air_since = now
        self.coughing = False
        self.handover = None
        self._forget_departed()

    def _forget_departed(self) -> None:
        for who in [w for w, seat in self._seats.items() if not seat.connections]:
            if who != self.on_air:
                del self._seats[who]
