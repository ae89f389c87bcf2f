"""The seat table of the shared replica: who holds which seat, in the one order of the live
log (signaling/live/seats.py). The same changes in the same order give every node the
same table; of two pages sitting down at once, the first in the log wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from signaling.live.replica import Change, ChangeError, LiveReplica, SeatTaken
from signaling.live.seats import seat_key
from signaling.program import load_program

PROGRAM = (
    Path(__file__).resolve().parents[2] / "config" / "events" / "shared-historical-memory.yaml"
)
ELENA = seat_key(("speaker", "elena-naumova"))


@pytest.fixture
def replica() -> LiveReplica:
    return LiveReplica(load_program(PROGRAM), take_over_after=10)


def sit(node: str, ticket: str, replaces: dict[str, str] | None = None) -> Change:
    return Change("sit", {"seat": ELENA, "ticket": ticket, "replaces": replaces}, 1.0, node)


def test_the_first_page_in_the_log_sits_and_the_second_is_refused(replica) -> None:
    replica.apply(sit("a", "t1"))
    with pytest.raises(SeatTaken, match="another page took this link over meanwhile"):
        replica.apply(sit("b", "t2"))
    assert replica.seats == {ELENA: {"node": "a", "ticket": "t1"}}
    assert SeatTaken.code == "seat_taken"


def test_a_page_let_in_replaces_the_one_it_was_let_in_for_and_no_other(replica) -> None:
    replica.apply(sit("a", "t1"))
    replica.apply(sit("b", "t2", replaces={"node": "a", "ticket": "t1"}))
    assert replica.seats[ELENA] == {"node": "b", "ticket": "t2"}
    # A second newcomer let in for the same holder comes too late.
    with pytest.raises(SeatTaken):
        replica.apply(sit("c", "t3", replaces={"node": "a", "ticket": "t1"}))
    # The displaced page leaving frees nothing; the holder leaving frees the seat.
    replica.apply(Change("unseat", {"seat": ELENA, "ticket": "t1"}, 2.0, "a"))
    assert replica.seats[ELENA]["ticket"] == "t2"
    replica.apply(Change("unseat", {"seat": ELENA, "ticket": "t2"}, 2.0, "b"))
    assert replica.seats == {}


def test_a_node_gone_frees_its_seats_and_a_late_node_starts_from_the_table(replica) -> None:
    replica.apply(sit("a", "t1"))
    anna = seat_key(("interpreter", "ru-fr", "anna"))
    replica.apply(Change("sit", {"seat": anna, "ticket": "t9", "replaces": None}, 1.0, "b"))
    assert replica.nodes_with_clients() == {"a", "b"}

    late = LiveReplica(replica.event, take_over_after=10)
    late.restore(replica.snapshot())
    assert late.seats == replica.seats

    for each in (replica, late):
        each.apply(Change("node_gone", {"node": "a"}, 3.0, "b"))
        assert each.seats == {anna: {"node": "b", "ticket": "t9"}}


def test_a_snapshot_without_seats_and_a_malformed_change_are_told(replica) -> None:
    snapshot = replica.snapshot()
    del snapshot["seats"]  # written by a release without seats
    replica.restore(snapshot)
    assert replica.seats == {}
    with pytest.raises(ChangeError, match="malformed live change 'sit'"):
        replica.apply(Change("sit", {"ticket": "t1"}, 1.0, "a"))
    assert replica.seats == {}
