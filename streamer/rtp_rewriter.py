"""Per-subscriber RTP header rewriting: one continuous stream out of many sources.

A subscriber's slot sees packets from whichever source its output points at,
and that changes (speaker change, interpreter handover, language switch,
pause). The subscriber must see one stream: its own SSRC, sequence numbers
that continue by one, and timestamps that advance by the wall-clock time that
passed, never backwards. Within one incoming stream the original spacing (and
reordering, and loss) is kept, so the subscriber's jitter buffer and NACKs work
as if it were talking to the publisher.

The first packet forwarded from a stream is the slot's *anchor*. A packet of
that stream older than the anchor (late, reordered or retransmitted around the
switch) is dropped: numbered, it would take an outgoing sequence number the
previous stream already used, so the subscriber would take it for a copy of
another packet, the NACK history would hold two contents under one number, and
SRTP would protect two packets under one index. Packets arrive here with
extended sequence numbers (streamer/sequence_window.py), so "older" is a plain
comparison however long the stream runs, and duplicates are already gone.
"""

from __future__ import annotations

import random
import struct

_HEADER = struct.Struct("!BBHII")
_ONE_BYTE_PROFILE = 0xBEDE


class RtpRewriter:
    """Rebases sequence numbers and timestamps for one subscriber slot."""

    __slots__ = (
        "_anchor",
        "_extension_head",
        "_highest",
        "_last_wall",
        "_pack",
        "_seq_offset",
        "_stream",
        "_ts_offset",
        "extension_words",
        "seq",
        "ssrc",
        "ts",
    )

    def __init__(
        self, ssrc: int, extension_words: int, extension_head: bytes = b"", tail_length: int = 0
    ) -> None:
        self.ssrc = ssrc
        # Length of the header extension block in 32-bit words (0 = none).
        self.extension_words = extension_words
        # The block's content: what is the same for every packet of this slot (the MID,
        # padding), then `tail_length` bytes that change per packet (given to `rewrite`).
        self._extension_head = extension_head
        # One struct for the whole header, extension block included: no joining per packet.
        self._pack = struct.Struct(f"!BBHIIHH{len(extension_head)}s{tail_length}s").pack
        self._stream: object = None
        # Extended sequence numbers of the current stream's anchor and newest packet.
        self._anchor = 0
        self._highest = 0
        self._seq_offset = 0
        self._ts_offset = 0
        # Start in the lower half of the sequence space, as aiortc does, so the
        # SRTP rollover counter is not exercised right away.
        self.seq = random.randrange(0, 0x8000)
        self.ts = random.randrange(0, 0x1_0000_0000)
        self._last_wall: float | None = None

    def reanchor(self) -> None:
        """The next packet starts a new stretch (new source, resume after pause)."""
        self._stream = None

    def rewrite(
        self,
        stream: object,
        marker_pt: int,
        seq: int,
        ts: int,
        wall: float,
        clock_rate: int,
        tail: bytes = b"",
    ) -> bytes | None:
        """The rewritten header for one packet, with its extension block if it has one.

        `stream` identifies the incoming stream (same object = same stream);
        `marker_pt` is the marker bit and the subscriber's payload type; `seq` the
        packet's extended sequence number; `tail` the per-packet end of the
        extension block (zero-padded to its length). None: the packet is older than
        this slot's anchor and must not be sent. After the call, `self.seq`/`self.ts`
        hold the newest values sent.
        """
        if stream is not self._stream:
            if self._last_wall is None:
                out_seq = self.seq
                out_ts = self.ts
            else:
                out_seq = (self.seq + 1) & 0xFFFF
                gap = int((wall - self._last_wall) * clock_rate)
                out_ts = (self.ts + (gap if gap > 0 else 1)) & 0xFFFFFFFF
            self._seq_offset = (out_seq - seq) & 0xFFFF
            self._ts_offset = (out_ts - ts) & 0xFFFFFFFF
            self._stream = stream
            self._anchor = self._highest = seq
            newest = True
        elif seq < self._anchor:
            return None
        else:
            out_seq = (seq + self._seq_offset) & 0xFFFF
            out_ts = (ts + self._ts_offset) & 0xFFFFFFFF
            newest = seq > self._highest
            if newest:
                self._highest = seq
        if newest:
            # Newest packet so far: the reference for the next re-anchoring.
            self.seq = out_seq
            self.ts = out_ts
            self._last_wall = wall
        if self.extension_words:
            return self._pack(
                0x90,
                marker_pt,
                out_seq,
                out_ts,
                self.ssrc,
                _ONE_BYTE_PROFILE,
                self.extension_words,
                self._extension_head,
                tail,
            )
        return _HEADER.pack(0x80, marker_pt, out_seq, out_ts, self.ssrc)
