"""What the node refused on ``/ws``, counted as it happens for /metrics.

The limits that keep one client from taking a node from everyone else
(`signaling.connection_rate`, `signaling.connection_caps`, `signaling.message_rate`)
and the refusals of authentication work silently for the people they do not concern;
an operator needs to see them: a venue whose attendees hit the per-address cap, a link
that keeps failing, an attacker's loop. Two counter families, by reason:

- ``dragoman_ws_connections_refused_total{reason}``: connections refused before their
  ``welcome`` (the reason is the ``error`` code the client gets, ``origin`` for a page of
  another site, ``too_many_connections_per_address``/``_per_link`` for the two caps), and
  connections the node closed for cause later (``rate_limited``, ``too_slow``,
  ``displaced``, ``token_revoked``);
- ``dragoman_ws_messages_refused_total{allowance}``: messages refused ``rate_limited``,
  by the allowance they exceeded (``messages``, ``media``).

The reasons are the codes of docs/protocol.md, a closed set: a label never carries
anything a client chose.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

#: A page of another site (`signaling.origins`): refused 403 before the upgrade.
ORIGIN = "origin"
PER_ADDRESS = "too_many_connections_per_address"
PER_LINK = "too_many_connections_per_link"
#: Closed after its welcome for not reading its messages (close code 4429).
TOO_SLOW = "too_slow"


class Refusals:
    """The node's refusal counters (one per application: several nodes may share a
    process)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._connections = Counter(
            "dragoman_ws_connections_refused",
            "WebSocket connections refused before their welcome, or closed for cause "
            "after it, by reason (the error code; see docs/operations.md).",
            ("reason",),
            registry=registry,
        )
        self._messages = Counter(
            "dragoman_ws_messages_refused",
            "WebSocket messages refused for their rate (rate_limited), by the allowance "
            "they exceeded (messages, media).",
            ("allowance",),
            registry=registry,
        )

    def connection(self, reason: str) -> None:
        self._connections.labels(reason=reason).inc()

    def message(self, allowance: str) -> None:
        self._messages.labels(allowance=allowance).inc()
