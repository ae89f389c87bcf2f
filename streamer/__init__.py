"""The media plane: an RTP-forwarding SFU built on aiortc.

Publishers attach tracks to sources; outputs point at one source at a time;
subscribers receive outputs on one peer connection. Media is forwarded packet
by packet, never decoded. This package knows nothing of events, roles or
tokens. Start with `streamer.sfu` (the facade, with a usage example).
"""

from .activity import Reception, SourceActivity
from .errors import (
    InvalidNetworkSetting,
    InvalidSdp,
    KindMismatch,
    LinkError,
    LinkLimitReached,
    PortRangeExhausted,
    SfuClosed,
    StreamerError,
    UnknownName,
    UnknownOutput,
    UnknownPublisher,
    UnknownSlot,
    UnknownSource,
    UnknownSubscriber,
)
from .hls import HlsPackager
from .negotiation import IceServer
from .node_link import LinkLimits, remote_source_id
from .recorder import Recording
from .sfu import Sfu, SfuConfig

__all__ = [
    "HlsPackager",
    "IceServer",
    "InvalidNetworkSetting",
    "InvalidSdp",
    "KindMismatch",
    "LinkError",
    "LinkLimitReached",
    "LinkLimits",
    "PortRangeExhausted",
    "Reception",
    "Recording",
    "Sfu",
    "SfuClosed",
    "SfuConfig",
    "SourceActivity",
    "StreamerError",
    "UnknownName",
    "UnknownOutput",
    "UnknownPublisher",
    "UnknownSlot",
    "UnknownSource",
    "UnknownSubscriber",
    "remote_source_id",
]
