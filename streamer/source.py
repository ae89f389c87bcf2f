"""A publisher's track as a source of RTP packets.

A source is named `<publisher_id>/<kind>`, lives as long as its publisher's
peer connection, and owns the forwarder that fans its packets out to the
outputs pointing at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .aiortc_internals import InboundTap
from .forwarder import Forwarder


def source_id(publisher_id: str, kind: str) -> str:
    return f"{publisher_id}/{kind}"


@dataclass(eq=False)
class Source:
    """One incoming track of one publisher."""

    id: str
    kind: str
    publisher_id: str
    forwarder: Forwarder
    tap: InboundTap | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.tap is not None:
            self.tap.close()
        self.forwarder.close()
