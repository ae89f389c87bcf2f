"""Per-subscriber packet history, so a subscriber's NACK can be answered.

Packets are stored as they were sent (before SRTP), indexed by their outgoing
sequence number, as this slot's own header plus the payload object that every
subscriber of the source shares: a video subscriber's history costs a few
dozen bytes per packet, not a copy of the video. Retransmissions go out as RTX (RFC 4588) when the
subscriber negotiated it, else as the original packet.
"""

from __future__ import annotations

HISTORY_SIZE = 512  # about 2 s of 720p video; a power of two for cheap indexing


class PacketHistory:
    """A ring of the most recent packets sent to one slot."""

    __slots__ = ("_mask", "_packets")

    def __init__(self, size: int = HISTORY_SIZE) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size & (size - 1):
            raise ValueError(f"a history holds a power of two of packets, not {size!r:.20}")
        self._mask = size - 1
        self._packets: list[tuple[bytes, bytes] | None] = [None] * size

    def store(self, seq: int, header: bytes, payload: bytes) -> None:
        self._packets[seq & self._mask] = (header, payload)

    def get(self, seq: int) -> tuple[bytes, bytes] | None:
        """(header including extensions, payload) of packet `seq`, if still held."""
        packet = self._packets[seq & self._mask]
        if packet is None or (packet[0][2] << 8 | packet[0][3]) != seq:
            return None
        return packet

    def clear(self) -> None:
        self._packets = [None] * len(self._packets)
