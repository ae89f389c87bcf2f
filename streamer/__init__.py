"""The media plane: an RTP-forwarding SFU built on aiortc.

Publishers attach tracks to sources; outputs point at one source at a time;
subscribers receive outputs on one peer connection. Media is forwarded packet
by packet, never decoded. This package knows nothing of events, roles or
tokens. Start with `streamer.sfu` (the facade, with a usage example).

Video codecs: publishers are asked for the node's preferred one
(`SfuConfig.video_codec`, VP8 or H.264) and may send the other when their
browser cannot; subscribers are offered both, and each packet leaves with the
payload type of its own codec, so a slot follows a switch between speakers of
different codecs without renegotiation. What taps an output repackages H.264
without decoding (`streamer.h264`: HLS segments, Matroska recordings) and
decodes VP8 only where a format needs H.264 (HLS, encoded once).
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
