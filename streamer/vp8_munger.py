"""VP8 payload descriptors rewritten per subscriber slot, so picture ids continue.

A VP8 RTP payload starts with a descriptor (RFC 7741 section 4.2) that may
carry a PictureID (7 or 15 bits) and a TL0PICIDX. Receivers use them to track
which frames a frame refers to and to notice lost frames. When a slot moves
from one speaker's video to another's, the new publisher's numbers have
nothing to do with the old one's: forwarded as they are, picture ids jump, and
a decoder that trusts them may wait for references it will never get or take a
frame for a very late one. So, like the sequence numbers
(streamer/rtp_rewriter.py), each slot shifts them by an offset fixed at its
anchor, a keyframe, so that they continue by one from the last frame sent.

The descriptor is parsed once per packet (`parse_descriptor`); each slot then
only adds its offsets (`Vp8Munger.munge`). A slot whose offsets are zero (it
never switched) sends the payload untouched. Picture ids always leave in the
15-bit form once rewritten, so a 7-bit id of the new source cannot wrap early.
"""

from __future__ import annotations

from typing import NamedTuple

_TL0_MODULO = 0x100


class Vp8Descriptor(NamedTuple):
    """Where the rewritable fields of one packet's descriptor are (a tuple: built for
    every video packet, it must cost next to nothing)."""

    picture_id: int | None  # None: the packet carries no PictureID
    picture_id_at: int  # byte offset of the PictureID field
    picture_id_width: int  # 1 (7-bit) or 2 (15-bit) bytes
    tl0: int | None  # TL0PICIDX, None if absent
    tl0_at: int
    keyframe_start: bool  # the first packet of a keyframe


def parse_descriptor(payload: bytes) -> Vp8Descriptor | None:
    """The descriptor's fields, or None if the payload is too short to hold one."""
    length = len(payload)
    if length < 1:
        return None
    first = payload[0]
    picture_id: int | None = None
    picture_id_at = picture_id_width = 0
    tl0: int | None = None
    tl0_at = 0
    pos = 1
    if first & 0x80:  # X: extended control bits follow
        if length < 2:
            return None
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: PictureID
            if length <= pos:
                return None
            picture_id_at = pos
            if payload[pos] & 0x80:  # M: 15 bits
                if length <= pos + 1:
                    return None
                picture_id = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
                picture_id_width = 2
            else:
                picture_id = payload[pos]
                picture_id_width = 1
            pos += picture_id_width
        if ext & 0x40:  # L: TL0PICIDX
            if length <= pos:
                return None
            tl0 = payload[pos]
            tl0_at = pos
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    if length <= pos:
        return None
    # S bit, partition index 0, and the VP8 header's inverse key frame bit clear.
    keyframe_start = bool(first & 0x10) and not (first & 0x07) and not (payload[pos] & 0x01)
    return Vp8Descriptor(picture_id, picture_id_at, picture_id_width, tl0, tl0_at, keyframe_start)


class Vp8Munger:
    """One slot's PictureID and TL0PICIDX offsets, fixed at each anchor keyframe."""

    __slots__ = (
        "_anchored",
        "_in_last",
        "_last_picture_id",
        "_last_tl0",
        "_picture_offset",
        "_tl0_offset",
    )

    def __init__(self) -> None:
        self._anchored = False
        self._picture_offset = 0
        self._tl0_offset = 0
        # The newest incoming picture id, in 15 bits. A sender may write ids below 128
        # in the 7-bit form (aiortc does): those are its low bits.
        self._in_last = 0
        # The newest values sent (None until the first packet).
        self._last_picture_id: int | None = None
        self._last_tl0: int | None = None

    def reanchor(self) -> None:
        """The next packet (a keyframe) starts a new stretch: continue from the last one sent."""
        self._anchored = False

    def munge(self, descriptor: Vp8Descriptor, payload: bytes) -> bytes:
        """The payload with this slot's picture id and TL0PICIDX."""
        picture_id = descriptor.picture_id
        tl0 = descriptor.tl0
        if not self._anchored:
            self._anchored = True
            if picture_id is not None:
                self._in_last = picture_id
                last = self._last_picture_id
                self._picture_offset = 0 if last is None else last + 1 - picture_id
            last_tl0 = self._last_tl0
            self._tl0_offset = 0 if tl0 is None or last_tl0 is None else last_tl0 + 1 - tl0
        out_picture_id = None
        if picture_id is not None:
            in_last = self._in_last
            if descriptor.picture_id_width == 2:
                incoming = picture_id
            else:
                delta = (picture_id - in_last) & 0x7F
                incoming = (in_last + (delta - 0x80 if delta >= 0x40 else delta)) & 0x7FFF
            if 0 < (incoming - in_last) & 0x7FFF < 0x4000:
                self._in_last = incoming
            out_picture_id = (incoming + self._picture_offset) & 0x7FFF
            last = self._last_picture_id
            if last is None or 0 < (out_picture_id - last) & 0x7FFF < 0x4000:
                self._last_picture_id = out_picture_id
        out_tl0 = None
        if tl0 is not None:
            out_tl0 = (tl0 + self._tl0_offset) % _TL0_MODULO
            last_tl0 = self._last_tl0
            if last_tl0 is None or 0 < (out_tl0 - last_tl0) % _TL0_MODULO < 0x80:
                self._last_tl0 = out_tl0
        if out_picture_id == picture_id and out_tl0 == tl0:
            return payload
        return rewrite_descriptor(payload, descriptor, out_picture_id, out_tl0)


def rewrite_descriptor(
    payload: bytes, descriptor: Vp8Descriptor, picture_id: int | None, tl0: int | None
) -> bytes:
    """`payload` with new PictureID (written in 15 bits) and TL0PICIDX values."""
    if picture_id is None:
        if tl0 is None:
            return payload
        at = descriptor.tl0_at
        return b"".join((payload[:at], bytes((tl0,)), payload[at + 1 :]))
    start = descriptor.picture_id_at
    end = start + descriptor.picture_id_width
    parts = [payload[:start], bytes((0x80 | (picture_id >> 8), picture_id & 0xFF))]
    if tl0 is None:
        parts.append(payload[end:])
    else:
        at = descriptor.tl0_at
        parts.extend((payload[end:at], bytes((tl0,)), payload[at + 1 :]))
    return b"".join(parts)
