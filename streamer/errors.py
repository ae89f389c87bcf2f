"""Errors a caller of the streamer can cause, each naming what was wrong.

Everything raised on purpose by `streamer` is a `StreamerError`, so the control
plane can turn it into a message for a person without catching library noise.
"""

from __future__ import annotations


class StreamerError(Exception):
    """Base of every error the streamer raises on purpose."""


class InvalidSdp(StreamerError):
    """An offer or answer could not be used; the message says why."""


class UnknownName(StreamerError, LookupError):
    """A name (output, slot, source, publisher, subscriber) that does not exist."""

    what = "name"

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown {self.what} {name!r}")
        self.name = name


class UnknownOutput(UnknownName):
    what = "output"


class UnknownSlot(UnknownName):
    what = "slot"


class UnknownSource(UnknownName):
    what = "source"


class UnknownPublisher(UnknownName):
    what = "publisher"


class UnknownSubscriber(UnknownName):
    what = "subscriber"


class KindMismatch(StreamerError, ValueError):
    """Audio connected to video or the other way round."""


class SfuClosed(StreamerError, RuntimeError):
    """The SFU was closed; it accepts nothing any more."""


class InvalidNetworkSetting(StreamerError, ValueError):
    """A setting of `SfuConfig` that cannot be used: a port range, a host address, a codec."""


class PortRangeExhausted(StreamerError):
    """Every UDP port of the configured range is taken: one more peer cannot connect."""

    def __init__(self, first: int, last: int, address: str) -> None:
        super().__init__(
            f"no UDP port is free in the WebRTC port range {first}-{last} on {address}: "
            f"every port of it carries a connection already; widen the range to accept "
            f"more publishers and subscribers"
        )
        self.first = first
        self.last = last
        self.address = address


class LinkError(StreamerError):
    """A node link cannot do what was asked (not configured, not open, a bad origin address)."""


class LinkLimitReached(LinkError):
    """One more pulled output would pass the configured bound."""
