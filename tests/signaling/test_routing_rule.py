"""The routing rule over every combination, against oracles written from the rule's text.

Two topologies: the common one (two languages, one bidirectional booth) and a relay one
(three languages: a one-way booth into Russian and a Russian<>French booth that must relay
when the speaker speaks German). The oracles are written per topology as plain decision
tables, independently of the implementation's booth-direction pass.
"""

from __future__ import annotations

import itertools

import pytest

from signaling.routing_rule import (
    FLOOR,
    BoothSpec,
    ChannelFeed,
    FeedKind,
    FeedReason,
    route_channels,
)

SILENT_NO_SPEAKER = ChannelFeed(FeedKind.SILENCE, FeedReason.NO_SPEAKER)
FLOOR_FEED = ChannelFeed(FeedKind.FLOOR, FeedReason.SPEAKER_LANGUAGE)


def fallback_feed(fallback: str) -> ChannelFeed:
    kind = FeedKind.FLOOR if fallback == "floor" else FeedKind.SILENCE
    return ChannelFeed(kind, FeedReason.FALLBACK)


def interpreted(booth: str, who: str, coughing: bool) -> ChannelFeed:
    if coughing:
        return ChannelFeed(FeedKind.SILENCE, FeedReason.COUGH, booth, who)
    return ChannelFeed(FeedKind.INTERPRETER, FeedReason.INTERPRETATION, booth, who)


# --- topology 1: ru, fr and one RU<>FR booth ---------------------------------------------

RU_FR = [BoothSpec("ru-fr", ("ru", "fr"))]
SPEAKER_LANGUAGES = [None, "ru", "fr", "de"]  # "de": a language no booth covers
OVERRIDES = [None, "ru", "fr"]
INTERPRETERS = [None, "anna"]
FALLBACKS = ["floor", "silence"]


def oracle_one_booth(speaker, override, interpreter, cough, fallback):
    """Expected (channels, booth direction, listen) for topology 1."""
    if speaker is None:
        channels = {"ru": SILENT_NO_SPEAKER, "fr": SILENT_NO_SPEAKER}
        into = override
    else:
        if override is not None:
            into = override
        elif speaker == "ru":
            into = "fr"
        elif speaker == "fr":
            into = "ru"
        else:  # a German speaker, and no other booth serves ru or fr: undecided
            into = None
        channels = {}
        for lang in ("ru", "fr"):
            if speaker == lang:
                channels[lang] = FLOOR_FEED
            elif interpreter is not None and into == lang:
                channels[lang] = interpreted("ru-fr", interpreter, cough)
            else:
                channels[lang] = fallback_feed(fallback)
    source = None if into is None else ("ru" if into == "fr" else "fr")
    if speaker is None or source is None or source == speaker:
        listen = FLOOR
    else:
        listen = source
    return channels, into, source, listen


@pytest.mark.parametrize(
    ("speaker", "override", "interpreter", "cough", "fallback"),
    list(itertools.product(SPEAKER_LANGUAGES, OVERRIDES, INTERPRETERS, [False, True], FALLBACKS)),
)
def test_one_bidirectional_booth_every_combination(speaker, override, interpreter, cough, fallback):
    routing = route_channels(
        event_languages=["ru", "fr"],
        booths=RU_FR,
        floor_language=speaker,
        on_air_interpreters={"ru-fr": interpreter} if interpreter else {},
        coughing={"ru-fr"} if cough else set(),
        direction_overrides={"ru-fr": override} if override else {},
        fallback=fallback,
    )
    channels, into, source, listen = oracle_one_booth(
        speaker, override, interpreter, cough, fallback
    )
    assert dict(routing.channels) == channels
    route = routing.booths["ru-fr"]
    assert (route.into, route.source, route.listen) == (into, source, listen)
    assert route.overridden == (override is not None)


# --- topology 2: de, ru, fr; a one-way booth into ru, then a RU<>FR booth -----------------

RELAY_BOOTHS = [BoothSpec("into-ru", ("ru",)), BoothSpec("ru-fr", ("ru", "fr"))]
RELAY_SPEAKERS = [None, "de", "ru", "fr", "en"]  # "en": not even an event language


def oracle_relay(speaker, override, into_ru_on, ru_fr_on, into_ru_cough, ru_fr_cough, fallback):
    if speaker is None:
        return {lang: SILENT_NO_SPEAKER for lang in ("de", "ru", "fr")}, override
    # The one-way booth works into ru unless the speaker speaks ru.
    into_ru_active = speaker != "ru"
    if override is not None:
        bidir_into = override
    elif speaker == "ru":
        bidir_into = "fr"
    elif speaker == "fr":
        bidir_into = "ru"
    else:  # de or en: ru is served by the one-way booth, so the pair relays into fr
        bidir_into = "fr"
    channels = {}
    for lang in ("de", "ru", "fr"):
        if speaker == lang:
            channels[lang] = FLOOR_FEED
        elif lang == "ru" and into_ru_active and into_ru_on:
            channels[lang] = interpreted("into-ru", "ivan", into_ru_cough)
        elif bidir_into == lang and ru_fr_on:
            channels[lang] = interpreted("ru-fr", "anna", ru_fr_cough)
        else:
            channels[lang] = fallback_feed(fallback)
    return channels, bidir_into


@pytest.mark.parametrize(
    ("speaker", "override", "into_ru_on", "ru_fr_on", "into_ru_cough", "ru_fr_cough", "fallback"),
    list(
        itertools.product(
            RELAY_SPEAKERS,
            OVERRIDES,
            [False, True],
            [False, True],
            [False, True],
            [False, True],
            FALLBACKS,
        )
    ),
)
def test_relay_topology_every_combination(
    speaker, override, into_ru_on, ru_fr_on, into_ru_cough, ru_fr_cough, fallback
):
    on_air = {}
    if into_ru_on:
        on_air["into-ru"] = "ivan"
    if ru_fr_on:
        on_air["ru-fr"] = "anna"
    coughing = {b for b, c in (("into-ru", into_ru_cough), ("ru-fr", ru_fr_cough)) if c}
    routing = route_channels(
        ["de", "ru", "fr"],
        RELAY_BOOTHS,
        speaker,
        on_air,
        coughing,
        {"ru-fr": override} if override else {},
        fallback,
    )
    channels, bidir_into = oracle_relay(
        speaker, override, into_ru_on, ru_fr_on, into_ru_cough, ru_fr_cough, fallback
    )
    assert dict(routing.channels) == channels
    assert routing.booths["ru-fr"].into == bidir_into


# --- named cases, readable on their own ---------------------------------------------------


def route(speaker, on_air=None, coughing=(), overrides=None, fallback="floor"):
    return route_channels(
        ["ru", "fr"], RU_FR, speaker, on_air or {}, set(coughing), overrides or {}, fallback
    )


def test_russian_speaker_floor_on_russian_interpreter_on_french():
    routing = route("ru", {"ru-fr": "anna"})
    assert routing.channels["ru"] == FLOOR_FEED
    assert routing.channels["fr"] == interpreted("ru-fr", "anna", False)
    assert (routing.booths["ru-fr"].source, routing.booths["ru-fr"].into) == ("ru", "fr")
    assert routing.booths["ru-fr"].listen == FLOOR


def test_direction_follows_the_speaker_without_any_button():
    routing = route("fr", {"ru-fr": "anna"})
    assert routing.channels["fr"] == FLOOR_FEED
    assert routing.channels["ru"] == interpreted("ru-fr", "anna", False)
    assert (routing.booths["ru-fr"].source, routing.booths["ru-fr"].into) == ("fr", "ru")


def test_cough_silences_and_never_lets_the_floor_through():
    routing = route("ru", {"ru-fr": "anna"}, coughing={"ru-fr"}, fallback="floor")
    assert routing.channels["fr"].kind is FeedKind.SILENCE
    assert routing.channels["fr"].reason is FeedReason.COUGH
    assert routing.channels["ru"] == FLOOR_FEED  # the speaker's own language is untouched


def test_nobody_in_the_booth_falls_back_as_the_event_says():
    assert route("ru", fallback="floor").channels["fr"] == fallback_feed("floor")
    assert route("ru", fallback="silence").channels["fr"] == fallback_feed("silence")


def test_no_speaker_on_air_means_every_channel_is_silent():
    routing = route(None, {"ru-fr": "anna"})
    assert set(routing.channels.values()) == {SILENT_NO_SPEAKER}
    assert routing.booths["ru-fr"].into is None


def test_an_override_forces_the_direction_but_the_floor_rule_comes_first():
    routing = route("ru", {"ru-fr": "anna"}, overrides={"ru-fr": "ru"})
    assert routing.booths["ru-fr"].into == "ru"
    assert routing.channels["ru"] == FLOOR_FEED
    assert routing.channels["fr"] == fallback_feed("floor")


def test_an_override_outside_the_booth_is_ignored():
    routing = route("ru", {"ru-fr": "anna"}, overrides={"ru-fr": "de"})
    assert routing.booths["ru-fr"].into == "fr"
    assert not routing.booths["ru-fr"].overridden


def test_relay_booth_listens_to_the_channel_it_interprets_from():
    on_air = {"into-ru": "ivan", "ru-fr": "anna"}
    routing = route_channels(["de", "ru", "fr"], RELAY_BOOTHS, "de", on_air, (), {}, "floor")
    assert routing.booths["into-ru"].listen == FLOOR
    assert (routing.booths["ru-fr"].source, routing.booths["ru-fr"].into) == ("ru", "fr")
    assert routing.booths["ru-fr"].listen == "ru"
    assert routing.channels["ru"] == interpreted("into-ru", "ivan", False)
    assert routing.channels["fr"] == interpreted("ru-fr", "anna", False)


def test_first_booth_in_event_order_feeds_a_language_two_booths_work_into():
    booths = [BoothSpec("a", ("fr",)), BoothSpec("b", ("fr",))]
    routing = route_channels(["ru", "fr"], booths, "ru", {"a": "x", "b": "y"}, (), {}, "floor")
    assert routing.channels["fr"].booth == "a"
    routing = route_channels(["ru", "fr"], booths, "ru", {"b": "y"}, (), {}, "floor")
    assert routing.channels["fr"].booth == "b"


def test_a_one_way_booth_is_idle_when_the_speaker_speaks_its_language():
    routing = route_channels(
        ["ru", "fr"], [BoothSpec("into-fr", ("fr",))], "fr", {"into-fr": "x"}, (), {}, "silence"
    )
    assert routing.booths["into-fr"].into is None
    assert routing.channels["fr"] == FLOOR_FEED
    assert routing.channels["ru"] == fallback_feed("silence")


@pytest.mark.parametrize("works_into", [(), ("ru", "ru"), ("ru", "fr", "de")])
def test_a_booth_must_work_into_one_or_two_languages(works_into):
    with pytest.raises(ValueError, match="must work into one language or two"):
        BoothSpec("bad", works_into)
