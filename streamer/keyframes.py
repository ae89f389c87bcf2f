"""Keyframes: recognising where one starts, and asking publishers for one.

aiortc answers a subscriber's PLI/FIR by flagging an encoder that does not
exist here, so the streamer relays keyframe requests to the publisher itself.
Two kinds of need, two rules (`KeyframeThrottle`):

- A subscriber that lost a picture sends a PLI. Loss is first repaired by
  NACK/RTX; what reaches the publisher is at most one request a second per
  source, whatever the number of subscribers: one attendee on a bad network
  must not make the speaker send keyframes to everyone several times a second.
- A slot that joins or switches source shows nothing until a keyframe starts,
  so it asks at once, unless a keyframe is already on its way (asked for less
  than `KEYFRAME_PENDING_S` ago and not yet seen): a hundred attendees joining
  together, or a program switch moving them all, cost the publisher one keyframe.
"""

from __future__ import annotations

from .vp8_munger import parse_descriptor

#: Seconds between two loss-driven keyframe requests (subscribers' PLI/FIR) to one source.
KEYFRAME_REQUEST_INTERVAL = 1.0
#: A keyframe asked for is expected within this long; past it (the request or the
#: keyframe was lost), a slot still waiting asks again.
KEYFRAME_PENDING_S = 0.5

_H264_IDR = 5
_H264_SPS = 7
_H264_STAP_A = 24
_H264_FU_A = 28


def is_vp8_keyframe_start(payload: bytes) -> bool:
    """True if this VP8 RTP payload (RFC 7741) starts a keyframe."""
    descriptor = parse_descriptor(payload)
    return descriptor is not None and descriptor.keyframe_start


def is_h264_keyframe_start(payload: bytes) -> bool:
    """True if this H.264 RTP payload (RFC 6184) starts an IDR picture or its SPS."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (_H264_IDR, _H264_SPS):
        return True
    if nal_type == _H264_FU_A:
        return len(payload) > 1 and bool(payload[1] & 0x80) and (payload[1] & 0x1F) == _H264_IDR
    if nal_type == _H264_STAP_A:
        pos = 1
        while pos + 2 < len(payload):
            size = payload[pos] << 8 | payload[pos + 1]
            if size == 0:
                return False
            if payload[pos + 2] & 0x1F in (_H264_IDR, _H264_SPS):
                return True
            pos += 2 + size
    return False


def is_keyframe_start(mime: str, payload: bytes) -> bool:
    """Keyframe test for a lower-case mime type; audio frames all count as keyframes."""
    if mime == "video/vp8":
        return is_vp8_keyframe_start(payload)
    if mime == "video/h264":
        return is_h264_keyframe_start(payload)
    return not mime.startswith("video/")


class KeyframeThrottle:
    """Decides when another keyframe request may go to one publisher track."""

    __slots__ = ("_interval", "_last_loss_request", "_pending", "_pending_since")

    def __init__(
        self, interval: float = KEYFRAME_REQUEST_INTERVAL, pending: float = KEYFRAME_PENDING_S
    ) -> None:
        self._interval = interval
        self._pending = pending
        self._last_loss_request = float("-inf")
        # When the request whose keyframe has not arrived yet was sent.
        self._pending_since: float | None = None

    def due(self, now: float, *, urgent: bool = False) -> bool:
        """True if a request should go out now (the caller sends it).

        `urgent`: a slot joined or switched and shows nothing until a keyframe;
        otherwise a subscriber reported a lost picture.
        """
        since = self._pending_since
        if since is not None and now - since < self._pending:
            return False
        if not urgent:
            if now - self._last_loss_request < self._interval:
                return False
            self._last_loss_request = now
        self._pending_since = now
        return True

    def keyframe_arrived(self) -> None:
        """A keyframe started: the next need is a new one."""
        self._pending_since = None
