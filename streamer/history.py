"""Per-subscriber packet history, so a subscriber's NACK can be answered.

Packets are stored exactly as they were sent (before SRTP), indexed by their
outgoing sequence number. Retransmissions go out as RTX (RFC 4588) when the
subscriber negotiated it, else as the original packet.
"""

from __future__ import annotations

import struct

_RTX_HEADER = struct.Struct("!BBHII")

HISTORY_SIZE = 512  # about 2 s of 720p video; a power of two for cheap indexing


class PacketHistory:
    """A ring of the most recent packets sent to one slot."""

    __slots__ = ("_packets",)

    def __init__(self) -> None:
        self._packets: list[bytes | None] = [None] * HISTORY_SIZE

    def store(self, seq: int, packet: bytes) -> None:
        self._packets[seq & (HISTORY_SIZE - 1)] = packet

    def get(self, seq: int) -> bytes | None:
        packet = self._packets[seq & (HISTORY_SIZE - 1)]
        if packet is None or (packet[2] << 8 | packet[3]) != seq:
            return None
        return packet

    def clear(self) -> None:
        self._packets = [None] * HISTORY_SIZE


def rtx_packet(original: bytes, rtx_payload_type: int, rtx_seq: int, rtx_ssrc: int) -> bytes:
    """Wrap a packet we sent earlier into an RTX packet (RFC 4588 section 4)."""
    # Our own packets never carry CSRCs; only the extension block varies.
    header_length = 12
    if original[0] & 0x10:
        header_length = 16 + 4 * (original[14] << 8 | original[15])
    timestamp = int.from_bytes(original[4:8], "big")
    header = _RTX_HEADER.pack(
        original[0], (original[1] & 0x80) | rtx_payload_type, rtx_seq, timestamp, rtx_ssrc
    )
    return b"".join((header, original[12:header_length], original[2:4], original[header_length:]))
