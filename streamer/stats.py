"""Counters of the media plane, for the metrics endpoint.

Plain integer fields bumped on the hot path (no locks: one event loop), read
into a dict by `Sfu.stats()`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class NodeErrors:
    """Unexpected failures on the media path of the whole node, counted where they happen
    (each is logged once per connection; the count says whether it keeps happening)."""

    forwarding: int = 0  # received packets whose forwarding raised
    rtcp: int = 0  # subscribers' RTCP packets whose handling raised

    def forwarding_failed(self) -> None:
        self.forwarding += 1

    def rtcp_failed(self) -> None:
        self.rtcp += 1


@dataclass(slots=True)
class SourceCounters:
    """What arrived from one publisher track."""

    packets: int = 0
    bytes: int = 0
    keyframe_requests: int = 0  # PLIs actually sent to the publisher (after throttling)
    duplicates: int = 0  # packets dropped: already forwarded (network copy, late retransmission)
    too_late: int = 0  # packets dropped: further behind the newest than anyone could use

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class OutputCounters:
    """What an output carried (whatever source it pointed at at the time)."""

    packets: int = 0
    bytes: int = 0
    keyframe_requests: int = 0  # requests made on behalf of this output's subscribers
    switches: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class SlotCounters:
    """What one subscriber slot was sent, and what its receiver reported back."""

    packets: int = 0
    bytes: int = 0  # RTP bytes before SRTP
    packets_lost: int = 0  # cumulative, from the subscriber's last receiver report
    fraction_lost: int = 0  # 0..255, from the last receiver report
    jitter: int = 0  # interarrival jitter, in timestamp units, from the last receiver report
    nacked: int = 0  # sequence numbers the subscriber asked for again
    retransmitted: int = 0
    keyframe_requests: int = 0  # PLI/FIR received from the subscriber
    unsupported_codec: int = 0  # packets dropped: codec not negotiated with this subscriber
    before_anchor: int = 0  # packets dropped: older than the first one sent from their source
    errors: int = 0  # packets lost to an unexpected error (logged once per slot)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
