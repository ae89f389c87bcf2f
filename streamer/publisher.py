"""Publishers: one peer connection sending at most one audio and one video track.

Each incoming track becomes a source named `<publisher_id>/<kind>`. Packets are
taken from the receiver as they are decrypted and handed to the source's
forwarder; aiortc never decodes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc import RTCPeerConnection, RTCSessionDescription

from .aiortc_internals import InboundTap
from .errors import InvalidSdp, StreamerError
from .forwarder import Forwarder
from .negotiation import VideoCodec, codec_preferences
from .source import Source, source_id


@dataclass(eq=False)
class Publisher:
    """A sending peer and the sources it feeds."""

    id: str
    pc: RTCPeerConnection
    sources: dict[str, Source] = field(default_factory=dict)  # kind -> source
    closing: bool = False

    async def close(self) -> None:
        for source in self.sources.values():
            source.close()
        await self.pc.close()


def _make_source(
    publisher_id: str,
    kind: str,
    pc: RTCPeerConnection,
    on_error: Callable[[], None],
    video_codec: VideoCodec,
) -> Source:
    transceiver = pc.addTransceiver(kind, direction="recvonly")
    # The answer lists the preferred codec first: the browser sends with it.
    transceiver.setCodecPreferences(codec_preferences(kind, video_codec))
    tap: InboundTap | None = None

    async def request_upstream(urgent: bool) -> bool:
        # A publisher answers a PLI the same way whatever the need behind it.
        return tap is not None and await tap.request_keyframe()

    forwarder = Forwarder(kind, request_upstream)
    tap = InboundTap(transceiver.receiver, forwarder.handle, on_error)
    return Source(
        id=source_id(publisher_id, kind),
        kind=kind,
        publisher_id=publisher_id,
        forwarder=forwarder,
        tap=tap,
    )


async def open_publisher(
    publisher_id: str,
    offer_sdp: str,
    kinds: list[str],
    pc: RTCPeerConnection,
    on_error: Callable[[], None] = lambda: None,
    *,
    video_codec: VideoCodec = "vp8",
) -> tuple[Publisher, RTCSessionDescription]:
    """Answer a publisher's (already checked) offer; the peer connection is ours to close.
    `on_error` is called for each received packet whose forwarding raised; `video_codec`
    is asked for when the browser offers both."""
    publisher = Publisher(id=publisher_id, pc=pc)
    for kind in kinds:
        publisher.sources[kind] = _make_source(publisher_id, kind, pc, on_error, video_codec)
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
    except StreamerError:
        # Raised on purpose under aiortc (no free port in the range): it says it all.
        await publisher.close()
        raise
    except Exception as exc:
        await publisher.close()
        raise InvalidSdp(f"the offer was refused: {exc or type(exc).__name__}") from None
    return publisher, pc.localDescription
