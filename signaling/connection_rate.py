"""How often one client address may open ``/ws`` connections, and fail to authenticate.

`signaling.connection_caps` bounds the connections an address holds at once, and
`signaling.message_rate` what each one sends; neither bounds a client that opens a
socket, sends junk (or a bad token), is closed, and opens the next one at once: each
round costs the node an upgrade, a task, a parse and a close, and such a loop held about
a core of the node (bench/abuse.py). `ConnectionRate` keeps two token buckets per client
address (an IPv6 client: its /64, which one host may hold whole):

- *new connections*: every ``/ws`` upgrade takes a token;
- *failed authentications*: every connection refused before its ``welcome`` for what it
  sent or did not send (junk, a bad or expired token, silence) takes a token of this
  smaller allowance; while it is empty, no new connection from the address is admitted.

Past either, the upgrade is refused at once (HTTP 429 with ``Retry-After``, before any
WebSocket exists), the cheapest refusal there is. The defaults are far above what people
do: a page reloading opens one connection; a hundred attendees behind one address (a
venue's Wi-Fi) joining within a minute open a hundred, within the burst; a page refused
for its link stops trying.

Memory is bounded by the addresses seen lately: a bucket that has refilled is forgotten
(a sweep at most once a second, which forgets what a full bucket would say anyway).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

#: A code sent for each allowance, in the refusal's JSON body (docs/protocol.md, "Limits").
TOO_MANY_NEW_CONNECTIONS = "too_many_new_connections"
TOO_MANY_FAILED_AUTHS = "too_many_failed_auths"

SWEEP_EVERY_S = 1.0


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass(frozen=True)
class RateRefusal:
    """Why an address may not open a connection now, and when it may try again."""

    code: str
    retry_after_s: int
    message: str


class AddressAllowance:
    """One token bucket per client address (no debt: a refused attempt costs nothing)."""

    def __init__(self, per_s: float, burst: int) -> None:
        self.per_s = per_s
        self.burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}

    def _refilled(self, address: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(address)
        if bucket is not None:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.per_s)
            bucket.at = now
        return bucket

    def has_token(self, address: str, now: float) -> bool:
        bucket = self._refilled(address, now)
        return bucket is None or bucket.tokens >= 1

    def take(self, address: str, now: float) -> None:
        """Take one token (down to zero at most)."""
        bucket = self._refilled(address, now)
        if bucket is None:
            bucket = self._buckets[address] = _Bucket(self.burst, now)
        bucket.tokens = max(0.0, bucket.tokens - 1)

    def wait_s(self, address: str, now: float) -> float:
        """Seconds until `address` has a token again."""
        bucket = self._refilled(address, now)
        if bucket is None or bucket.tokens >= 1:
            return 0.0
        return (1 - bucket.tokens) / self.per_s

    def sweep(self, now: float) -> None:
        """Forget the buckets that have refilled: they say nothing a new one would not."""
        for address, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.at) * self.per_s >= self.burst:
                del self._buckets[address]

    def __len__(self) -> int:
        return len(self._buckets)


class ConnectionRate:
    """New ``/ws`` connections and failed authentications per client address, against
    their allowances (see the module's docstring)."""

    def __init__(
        self,
        connections_per_s: float,
        connection_burst: int,
        auth_failures_per_s: float,
        auth_failure_burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connections = AddressAllowance(connections_per_s, connection_burst)
        self.auth_failures = AddressAllowance(auth_failures_per_s, auth_failure_burst)
        self.clock = clock
        self._next_sweep = 0.0

    def admit(self, address: str) -> RateRefusal | None:
        """Count a new connection from `address`; a `RateRefusal` (and nothing counted)
        when it is past an allowance."""
        now = self.clock()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY_S
            self.connections.sweep(now)
            self.auth_failures.sweep(now)
        if not self.auth_failures.has_token(address, now):
            allowance = self.auth_failures
            return RateRefusal(
                TOO_MANY_FAILED_AUTHS,
                _whole_seconds(allowance.wait_s(address, now)),
                f"too many connections from your address failed to authenticate (at most "
                f"{allowance.burst:.0f}, then {allowance.per_s:g} per second): check the "
                "link, and try again later",
            )
        if not self.connections.has_token(address, now):
            allowance = self.connections
            return RateRefusal(
                TOO_MANY_NEW_CONNECTIONS,
                _whole_seconds(allowance.wait_s(address, now)),
                f"too many new connections from your address (at most {allowance.burst:.0f} "
                f"at once, then {allowance.per_s:g} per second): try again later",
            )
        self.connections.take(address, now)
        return None

    def auth_failed(self, address: str) -> None:
        """Count a connection from `address` refused before its welcome for what it sent."""
        self.auth_failures.take(address, self.clock())


def _whole_seconds(seconds: float) -> int:
    # Retry-After takes whole seconds; rounding down would send the client back too early.
    return max(1, math.ceil(seconds))
