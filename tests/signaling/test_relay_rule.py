"""The relay rule over every small live state: three languages, three booths, every
direction, every set of what the other booths hear, every floor and every choice; checked
against a plain reachability computation written another way."""

from __future__ import annotations

import itertools

import pytest

from signaling.relay_rule import check_relay, looping_sources
from signaling.routing_rule import FLOOR

LANGUAGES = ("de", "fr", "ru")
SOURCES = (FLOOR, *LANGUAGES)
HEARD_SETS = [
    frozenset(combo) for size in (1, 2) for combo in itertools.combinations(SOURCES, size)
]


def reachable(
    source: str, me: str, floor: str | None, into: dict[str, str | None], hears: dict
) -> set[str]:
    """Every channel whose sound ends up in ``source``, by fixpoint iteration."""
    reach = {source}
    while True:
        grown = set(reach)
        for channel in reach:
            if channel in (FLOOR, floor):
                continue
            for booth, language in into.items():
                if booth != me and language == channel:
                    grown |= set(hears[booth])
        if grown == reach:
            return reach
        reach = grown


def states():
    for into in itertools.product((None, *LANGUAGES), repeat=3):
        for heard_y, heard_z in itertools.product(HEARD_SETS, repeat=2):
            yield dict(zip("XYZ", into, strict=True)), {"X": {FLOOR}, "Y": heard_y, "Z": heard_z}


def test_every_small_state_against_reachability() -> None:
    checked = 0
    for into, hears in states():
        for floor in (None, *LANGUAGES):
            for source in SOURCES:
                verdict = check_relay("X", source, floor, into, hears)
                own = into["X"]
                reach = reachable(source, "X", floor, into, hears)
                expected_loop = source != FLOOR and own is not None and own in reach
                assert verdict.allowed is not expected_loop, (into, hears, floor, source)
                if not verdict.allowed:
                    loop = verdict.loop
                    assert loop[0] == source and loop[-1] == own
                    # Each step is a booth working into one channel and hearing the next.
                    for channel, heard in itertools.pairwise(loop):
                        assert any(
                            b != "X" and into[b] == channel and heard in hears[b] for b in into
                        ), (loop, into, hears)
                    assert own in verdict.refusal() and "yourself" in verdict.refusal()
                checked += 1
    assert checked > 100_000


def test_relayed_from_names_what_the_feeding_booth_hears() -> None:
    into = {"X": "ru", "Y": "fr", "Z": "de"}
    hears = {"X": {"fr"}, "Y": {"de"}, "Z": {FLOOR}}
    verdict = check_relay("X", "fr", "en", into, hears)
    assert verdict.allowed
    assert verdict.relayed_from == ("de",)
    assert check_relay("X", "de", "en", into, hears).relayed_from == ()
    assert check_relay("X", FLOOR, "en", into, hears).relayed_from == ()


def test_own_channel_is_refused_with_a_sentence() -> None:
    verdict = check_relay("X", "ru", "fr", {"X": "ru"}, {"X": {FLOOR}})
    assert verdict.loop == ("ru",)
    assert verdict.refusal().startswith("you cannot listen to channel ru: it is your own channel")


def test_a_loop_through_another_booth_names_the_chain() -> None:
    into = {"X": "ru", "Y": "fr"}
    hears = {"X": {FLOOR}, "Y": {"ru"}}
    verdict = check_relay("X", "fr", "en", into, hears)
    assert verdict.loop == ("fr", "ru")
    assert "interpreted from your own channel ru (fr ← ru)" in verdict.refusal()


@pytest.mark.parametrize("floor", ["fr", "ru"])
def test_the_floor_language_channel_never_loops(floor: str) -> None:
    into = {"X": "de", "Y": floor}
    assert check_relay("X", floor, floor, into, {"Y": {"de"}}).allowed


def test_looping_sources_lists_the_refused_languages() -> None:
    into = {"X": "ru", "Y": "fr", "Z": "de"}
    hears = {"Y": {"ru"}, "Z": {"fr"}}
    assert looping_sources("X", LANGUAGES, "en", into, hears) == ["de", "fr", "ru"]
