"""Looking at what an aiortc peer of a test receives, and playing a subscriber's part.

Test instruments only: they shadow aiortc's private methods on one receiver, as the
streamer's `aiortc_internals` does, and fail by name if aiortc no longer has them.
"""

from __future__ import annotations

from collections.abc import Callable

from aiortc import RTCDtlsTransport, RTCRtpReceiver, RTCRtpSender
from aiortc.rtp import AnyRtcpPacket, RtpPacket


def _require(obj: object, name: str) -> object:
    try:
        return getattr(obj, name)
    except AttributeError:
        raise AssertionError(f"aiortc: {type(obj).__name__} has no attribute {name!r}") from None


def observe_received_rtp(
    receiver: RTCRtpReceiver, observe: Callable[[RtpPacket], None], *, decode: bool = True
) -> Callable[[], None]:
    """Call `observe` with every RTP packet a receiver gets, then process it as usual.

    To look at what a subscriber really receives;
    with `decode=False` the packets stop there (no jitter buffer, no decoder).
    Returns a function that removes the observer.
    """
    original = _require(receiver, "_handle_rtp_packet")

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        observe(packet)
        if decode:
            await original(packet, arrival_time_ms=arrival_time_ms)  # type: ignore[operator]

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]

    def remove() -> None:
        receiver._handle_rtp_packet = original  # type: ignore[method-assign]

    return remove


def observe_received_rtcp(
    receiver: RTCRtpReceiver, observe: Callable[[AnyRtcpPacket], None]
) -> None:
    """Call `observe` with every RTCP packet a receiver gets (sender reports, for lip sync
    measurements), then process it as usual."""
    original = _require(receiver, "_handle_rtcp_packet")

    async def handle(packet: AnyRtcpPacket) -> None:
        observe(packet)
        await original(packet)  # type: ignore[operator]

    receiver._handle_rtcp_packet = handle  # type: ignore[method-assign]


def observe_sent_rtcp(sender: RTCRtpSender, observe: Callable[[AnyRtcpPacket], None]) -> None:
    """Call `observe` with every RTCP packet a sender gets (a publisher's view of the
    keyframe requests it is sent), then process it as usual."""
    original = _require(sender, "_handle_rtcp_packet")

    async def handle(packet: AnyRtcpPacket) -> None:
        observe(packet)
        await original(packet)  # type: ignore[operator]

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


async def send_rtcp(dtls: RTCDtlsTransport, packet: AnyRtcpPacket) -> None:
    """Send one RTCP packet on a DTLS transport (to play a subscriber's part)."""
    await dtls._send_rtp(bytes(packet))  # type: ignore[attr-defined]
