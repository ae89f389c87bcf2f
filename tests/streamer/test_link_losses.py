"""What an edge asks for again when packets are lost on a node link, and what it does with
what comes back (streamer/link_losses.py). Arrival times are given, not measured."""

from __future__ import annotations

import pytest

from streamer.history import PacketHistory
from streamer.link_losses import (
    AUDIO_REPAIR,
    AUDIO_REPAIR_WITHIN_S,
    MAX_ASKED,
    VIDEO_REPAIR,
    Arrival,
    LinkLosses,
    RepairPolicy,
)

#: Opus packets: one every 20 ms.
PTIME = 0.02


def feed(losses: LinkLosses, arrivals: list[tuple[int, float]]) -> list[tuple[Arrival, tuple]]:
    return [losses.arrived(seq, at) for seq, at in arrivals]


def test_a_gap_is_asked_for_once_and_the_packets_after_it_are_not_held() -> None:
    losses = LinkLosses(AUDIO_REPAIR)
    assert feed(losses, [(10, 0.0), (11, PTIME)]) == [(Arrival.NEWEST, ()), (Arrival.NEWEST, ())]
    # 12 and 13 lost: 14 is forwarded at once (NEWEST), and the two are asked for.
    assert losses.arrived(14, 4 * PTIME) == (Arrival.NEWEST, (12, 13))
    # Nothing is asked for twice, whatever comes next.
    assert losses.arrived(15, 5 * PTIME) == (Arrival.NEWEST, ())
    # The retransmissions fill the gap when they come, in any order.
    assert losses.arrived(13, 5.2 * PTIME) == (Arrival.REPAIRED, ())
    assert losses.arrived(12, 5.4 * PTIME) == (Arrival.REPAIRED, ())
    assert losses.arrived(17, 7 * PTIME) == (Arrival.NEWEST, (16,))
    assert losses.arrived(18, 8 * PTIME) == (Arrival.NEWEST, ())
    assert losses.arrived(16, 8.1 * PTIME) == (Arrival.REPAIRED, ())
    # A copy of a packet already there is not a repair: the source's window drops it.
    assert losses.arrived(12, 8 * PTIME) == (Arrival.OLDER, ())
    assert losses.arrived(15, 8 * PTIME) == (Arrival.OLDER, ())


def test_an_audio_repair_past_its_deadline_is_dropped() -> None:
    losses = LinkLosses(AUDIO_REPAIR)
    feed(losses, [(1, 0.0), (2, PTIME)])
    assert losses.arrived(4, 3 * PTIME) == (Arrival.NEWEST, (3,))  # 3 was due at 2 * PTIME
    late = 2 * PTIME + AUDIO_REPAIR_WITHIN_S + 0.001
    assert losses.arrived(3, late) == (Arrival.TOO_LATE, ())
    assert losses.arrived(6, late + 0.001) == (Arrival.NEWEST, (5,))
    in_time = late + AUDIO_REPAIR_WITHIN_S / 2
    assert losses.arrived(5, in_time) == (Arrival.REPAIRED, ())


def test_after_an_outage_only_what_can_still_be_played_is_asked_for() -> None:
    losses = LinkLosses(AUDIO_REPAIR)
    losses.arrived(100, 10.0)
    # A second without a packet, then 150: 49 numbers lost, due every 20 ms in between.
    arrival, asked = losses.arrived(150, 11.005)
    assert arrival is Arrival.NEWEST
    # Those due within the deadline of now: the last 0.1 s, four packets.
    assert asked == (146, 147, 148, 149)
    # An early one, sent again all the same (by an older edge, say), is too late.
    assert losses.arrived(120, 11.01) == (Arrival.TOO_LATE, ())


def test_video_has_no_deadline_and_a_gap_asks_at_most_one_message() -> None:
    losses = LinkLosses(VIDEO_REPAIR)
    losses.arrived(1, 0.0)
    assert losses.arrived(5, 0.01) == (Arrival.NEWEST, (2, 3, 4))
    assert losses.arrived(3, 5.0) == (Arrival.REPAIRED, ())  # a frame waits for it
    assert losses.arrived(1000, 5.01) == (Arrival.NEWEST, tuple(range(1000 - MAX_ASKED, 1000)))


def test_numbers_wrap_around() -> None:
    losses = LinkLosses(AUDIO_REPAIR)
    feed(losses, [(65534, 0.0)])
    assert losses.arrived(1, 3 * PTIME) == (Arrival.NEWEST, (65535, 0))
    assert losses.arrived(0, 3.5 * PTIME) == (Arrival.REPAIRED, ())
    assert losses.arrived(65535, 3.6 * PTIME) == (Arrival.REPAIRED, ())


def test_bad_policies_and_histories_are_refused() -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        RepairPolicy(within_s=0)
    for size in (0, 3, 100, True):
        with pytest.raises(ValueError, match="power of two"):
            PacketHistory(size)
    history = PacketHistory(4)
    header = bytes([0x80, 111, 0, 9]) + bytes(8)
    history.store(9, header, b"payload")
    assert history.get(9) == (header, b"payload")
    assert history.get(5) is None  # the same place in the ring, another number
