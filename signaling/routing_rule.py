"""The routing rule: what each language channel of an event carries right now.

This is the heart of the product (see the architecture notes), kept as ONE pure
function of the live state so it can be tested over every combination and so
everything else — where the streamer points each output, what the pages say —
follows from its output instead of re-deriving it.

For each event language L, channel L carries:

1. the floor, when the on-air speaker speaks L (nobody interprets a speaker into
   his own language);
2. otherwise the on-air interpreter of the booth working into L. A one-way booth
   always works into its one language. A bidirectional booth works into whichever
   of its two languages is not the floor language, so the direction follows the
   speaker. When the floor language is neither of its languages (the booth must
   then listen to another booth: relay), it works into the one of its languages
   that no other booth already serves; an interpreter's override forces a direction;
3. otherwise the event's fallback: the floor, or silence.

A cough silences the channel the coughing interpreter feeds; it never lets the
floor through. With no speaker on air there is nothing to carry: the floor is
empty and every channel is silent (reason ``no_speaker``); the pages say so.

Inputs name booths and interpreters by id only: the caller decides which
interpreters count as on air (the live service passes only those whose audio is
actually arriving, so a dropped interpreter falls back instead of going silent).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Fallback = Literal["floor", "silence"]

#: What an interpreter listens to when he has not chosen: the floor, or a language channel.
FLOOR = "floor"


class FeedKind(StrEnum):
    FLOOR = "floor"
    INTERPRETER = "interpreter"
    SILENCE = "silence"


class FeedReason(StrEnum):
    """Why a channel carries what it carries; the pages translate these codes."""

    SPEAKER_LANGUAGE = "speaker_language"  # the on-air speaker speaks this language
    INTERPRETATION = "interpretation"  # an interpreter is on air into this language
    FALLBACK = "fallback"  # nobody on air into this language: the event's fallback
    COUGH = "cough"  # the interpreter into this language holds the cough button
    NO_SPEAKER = "no_speaker"  # nobody is on the floor


@dataclass(frozen=True)
class BoothSpec:
    """The routing-relevant part of a booth: its id and the languages it works into."""

    id: str
    works_into: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.works_into) not in (1, 2) or len(set(self.works_into)) != len(self.works_into):
            raise ValueError(
                f"booth {self.id!r} must work into one language or two different ones, "
                f"not {list(self.works_into)}"
            )

    @property
    def bidirectional(self) -> bool:
        return len(self.works_into) == 2


@dataclass(frozen=True)
class ChannelFeed:
    """What one language channel carries."""

    kind: FeedKind
    reason: FeedReason
    booth: str | None = None
    interpreter: str | None = None


@dataclass(frozen=True)
class BoothRoute:
    """Which way a booth works now.

    ``source`` is the language interpreted from (None when unknown: no speaker, or a
    one-way booth whose source is whatever the floor is); ``into`` is the language
    worked into (None when the booth has nothing to do: the speaker speaks its only
    target language, or a bidirectional booth cannot tell its direction).
    ``listen`` is what its interpreters listen to by default: ``"floor"``, or the
    code of the channel to relay from when the floor is in a language the booth does
    not work with.
    """

    booth: str
    source: str | None
    into: str | None
    listen: str
    overridden: bool


@dataclass(frozen=True)
class Routing:
    """The output of the routing rule: a feed per event language and a route per booth."""

    channels: Mapping[str, ChannelFeed]
    booths: Mapping[str, BoothRoute]


def _other(pair: tuple[str, ...], language: str) -> str:
    return pair[1] if pair[0] == language else pair[0]


def _direct_direction(
    booth: BoothSpec, floor_language: str | None, override: str | None
) -> str | None:
    """The direction a booth works in without looking at other booths, or None if undecided."""
    if override is not None and override in booth.works_into:
        return override
    if not booth.bidirectional:
        target = booth.works_into[0]
        # Idle when the speaker speaks the booth's only target language.
        return None if floor_language == target else target
    if floor_language in booth.works_into:
        return _other(booth.works_into, floor_language)
    return None


def route_booths(
    booths: Sequence[BoothSpec],
    floor_language: str | None,
    direction_overrides: Mapping[str, str],
) -> dict[str, BoothRoute]:
    """The direction of every booth (the second half of the rule, also shown in the booth)."""
    direct = {
        b.id: _direct_direction(b, floor_language, direction_overrides.get(b.id)) for b in booths
    }
    routes: dict[str, BoothRoute] = {}
    for booth in booths:
        override = direction_overrides.get(booth.id)
        overridden = override is not None and override in booth.works_into
        into = direct[booth.id]
        if (
            into is None
            and booth.bidirectional
            and floor_language is not None
            and floor_language not in booth.works_into
        ):
            # Relay: the floor is in a third language. Work into the language of the pair
            # that no other booth serves, listening to the channel of the one it serves.
            served = {direct[o.id] for o in booths if o.id != booth.id} - {None}
            unserved = [lang for lang in booth.works_into if lang not in served]
            if len(unserved) == 1:
                into = unserved[0]
        if into is None:
            source = None
        elif booth.bidirectional:
            source = _other(booth.works_into, into)
        else:
            source = floor_language
        if floor_language is None and not overridden and booth.bidirectional:
            into, source = None, None
        relays = floor_language is not None and source not in (None, floor_language)
        listen = source if relays and source is not None else FLOOR
        routes[booth.id] = BoothRoute(
            booth=booth.id, source=source, into=into, listen=listen, overridden=overridden
        )
    return routes


def route_channels(
    event_languages: Sequence[str],
    booths: Sequence[BoothSpec],
    floor_language: str | None,
    on_air_interpreters: Mapping[str, str],
    coughing: Collection[str],
    direction_overrides: Mapping[str, str],
    fallback: Fallback,
) -> Routing:
    """Apply the routing rule.

    - ``floor_language``: the language of the on-air speaker, None when nobody is on air;
    - ``on_air_interpreters``: booth id -> id of the interpreter on air in that booth;
    - ``coughing``: ids of booths whose on-air interpreter holds the cough button;
    - ``direction_overrides``: booth id -> language an interpreter forced it to work into
      (ignored when not one of the booth's languages);
    - ``fallback``: what a channel nobody interprets into carries.

    When several booths work into the same language, the first one in event order with an
    interpreter on air feeds it.
    """
    routes = route_booths(booths, floor_language, direction_overrides)
    channels: dict[str, ChannelFeed] = {}
    for language in event_languages:
        channels[language] = _feed(
            language, booths, routes, floor_language, on_air_interpreters, coughing, fallback
        )
    return Routing(channels=channels, booths=routes)


def _feed(
    language: str,
    booths: Sequence[BoothSpec],
    routes: Mapping[str, BoothRoute],
    floor_language: str | None,
    on_air_interpreters: Mapping[str, str],
    coughing: Collection[str],
    fallback: Fallback,
) -> ChannelFeed:
    if floor_language is None:
        return ChannelFeed(FeedKind.SILENCE, FeedReason.NO_SPEAKER)
    if floor_language == language:
        return ChannelFeed(FeedKind.FLOOR, FeedReason.SPEAKER_LANGUAGE)
    for booth in booths:
        interpreter = on_air_interpreters.get(booth.id)
        if interpreter is None or routes[booth.id].into != language:
            continue
        if booth.id in coughing:
            return ChannelFeed(FeedKind.SILENCE, FeedReason.COUGH, booth.id, interpreter)
        return ChannelFeed(FeedKind.INTERPRETER, FeedReason.INTERPRETATION, booth.id, interpreter)
    kind = FeedKind.FLOOR if fallback == "floor" else FeedKind.SILENCE
    return ChannelFeed(kind, FeedReason.FALLBACK)
