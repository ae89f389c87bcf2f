"""The relay rule: which channels an interpreter may listen to without hearing himself.

An interpreter who does not understand the floor language listens to another booth's
channel (relay). Listening to one's own channel, or to a channel interpreted from one's
own channel (directly, or through a chain of booths relaying each other), closes a loop:
the interpreter would hear, a few seconds late, what he is saying, and the listeners of
every channel in the loop would lose the floor altogether. A relay that is itself a relay
(a "double relay") is allowed, but the interpreter must know it: every step loses detail.

Like the routing rule, this is a pure function of the live state, kept apart so it can be
tested over every combination; the live service refuses a looping choice with the
sentence it returns, and the booth page shows it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from signaling.routing_rule import FLOOR


@dataclass(frozen=True)
class RelayCheck:
    """What listening to ``source`` means for a booth.

    ``loop`` is the chain of channels that leads back to the booth's own channel (its
    first item is ``source``, its last the booth's own language), empty when there is no
    loop. ``relayed_from`` is set when ``source`` is a channel whose interpreters listen
    to another channel themselves: the languages they relay from, in order.
    """

    source: str
    loop: tuple[str, ...] = ()
    relayed_from: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.loop

    def refusal(self) -> str:
        """The sentence an interpreter reads when his choice is refused."""
        if not self.loop:
            return ""
        own = self.loop[-1]
        if len(self.loop) == 1:
            return (
                f"you cannot listen to channel {own}: it is your own channel, you would hear "
                "yourself; listen to the floor or to another booth"
            )
        chain = " ← ".join(self.loop)
        return (
            f"you cannot listen to channel {self.loop[0]}: it is interpreted from your own "
            f"channel {own} ({chain}), you would hear yourself; listen to the floor or to "
            "another booth"
        )


def check_relay(
    booth: str,
    source: str,
    floor_language: str | None,
    works_into: Mapping[str, str | None],
    hears: Mapping[str, Collection[str]],
) -> RelayCheck:
    """Whether the interpreters of ``booth`` may listen to ``source`` now.

    - ``source``: ``"floor"`` or a language code;
    - ``floor_language``: the language the floor is in, None when nobody speaks;
    - ``works_into``: booth id -> the language it works into now (None: idle);
    - ``hears``: booth id -> every source its interpreters listen to now ("floor" or
      language codes: each interpreter's choice, or the booth's default).

    A channel in the floor language carries the floor itself: it leads nowhere else. Any
    other channel carries what the booths working into it interpret, so it leads to what
    those booths hear. The booth's own choice is left out of ``hears[booth]``'s effect:
    only the other booths' listening can bring a channel back to it.
    """
    own = works_into.get(booth)
    if source == FLOOR or own is None:
        return RelayCheck(
            source, relayed_from=_relayed_from(source, floor_language, works_into, hears, booth)
        )
    # Depth-first search over "channel -> the channels its interpreters listen to".
    path: list[str] = []
    seen: set[str] = set()

    def leads_back(channel: str) -> bool:
        if channel == own:
            path.append(channel)
            return True
        if channel == FLOOR or channel == floor_language or channel in seen:
            return False
        seen.add(channel)
        path.append(channel)
        for other, into in works_into.items():
            if other == booth or into != channel:
                continue
            for heard in sorted(hears.get(other, ())):
                if leads_back(heard):
                    return True
        path.pop()
        return False

    loop = tuple(path) if leads_back(source) else ()
    relayed = _relayed_from(source, floor_language, works_into, hears, booth)
    return RelayCheck(source, loop=loop, relayed_from=relayed)


def _relayed_from(
    source: str,
    floor_language: str | None,
    works_into: Mapping[str, str | None],
    hears: Mapping[str, Collection[str]],
    booth: str,
) -> tuple[str, ...]:
    if source in (FLOOR, floor_language):
        return ()
    relayed: set[str] = set()
    for other, into in works_into.items():
        if other == booth or into != source:
            continue
        relayed.update(h for h in hears.get(other, ()) if h not in (FLOOR, floor_language))
    return tuple(sorted(relayed))


def looping_sources(
    booth: str,
    languages: Collection[str],
    floor_language: str | None,
    works_into: Mapping[str, str | None],
    hears: Mapping[str, Collection[str]],
) -> list[str]:
    """The languages ``booth`` may not listen to now, in the order given."""
    return [
        language
        for language in languages
        if not check_relay(booth, language, floor_language, works_into, hears).allowed
    ]
