"""The rules behind "nobody left in silence", without peers: which partner takes a
channel whose voice stopped, and which alarms hold for a given picture of the media."""

from __future__ import annotations

import math

import pytest

from signaling.alarms import Thresholds, compute_alarms
from signaling.booth import LiveBooth, NobodyOnAir, NotConnected
from signaling.failover import FailoverDecision, decide_failovers, is_live
from signaling.routing_rule import BoothSpec, route_channels
from streamer import Reception, SourceActivity

LIVE = SourceActivity(kind="audio", packet_age=0.02, sound_age=0.02)
STOPPED = SourceActivity(kind="audio", packet_age=1.5, sound_age=1.5)
QUIET = SourceActivity(kind="audio", packet_age=0.02, sound_age=8.0)


def booth_with(*people: str, on_air: str | None = "anna") -> LiveBooth:
    booth = LiveBooth("ru-fr", ("ru", "fr"))
    for who in people:
        booth.connect(who)
    if on_air is not None:
        booth.mic(on_air, True, now=0.0)
    return booth


def test_is_live_means_a_packet_within_the_last_second() -> None:
    assert is_live(LIVE) and not is_live(STOPPED) and not is_live(None)
    assert is_live(SourceActivity("audio", 0.9, None)) and not is_live(
        SourceActivity("audio", math.inf, None)
    )


@pytest.mark.parametrize(
    ("silent_for", "boris", "boris_connected", "waiting", "expected"),
    [
        (0.0, LIVE, True, False, None),  # all is well
        (0.5, LIVE, True, False, None),  # a short gap is not yet a dropout
        (1.5, LIVE, True, False, "boris"),  # her voice stopped: the partner takes it
        (1.5, STOPPED, True, False, "-"),  # nobody ready: the fallback
        (1.5, None, True, False, "-"),  # the partner does not publish
        (1.5, LIVE, False, False, "-"),  # the partner left the booth
        (3.0, STOPPED, True, True, None),  # already falling back, still nobody ready
        (3.0, LIVE, True, True, "boris"),  # already falling back, now he is ready
    ],
)
def test_failover_decisions(silent_for, boris, boris_connected, waiting, expected) -> None:
    booth = booth_with("anna", "boris")
    if not boris_connected:
        booth.disconnect("boris")
    decisions = decide_failovers(
        [booth.status()],
        {"ru-fr": {"anna": STOPPED, "boris": boris}},
        {"ru-fr": silent_for},
        {"ru-fr"} if waiting else set(),
    )
    if expected is None:
        assert decisions == []
    else:
        to = None if expected == "-" else expected
        assert decisions == [FailoverDecision(booth="ru-fr", lost="anna", to=to)]


def test_nobody_on_air_means_nothing_to_fail_over() -> None:
    booth = booth_with("anna", "boris", on_air=None)
    assert decide_failovers([booth.status()], {"ru-fr": {"boris": LIVE}}, {"ru-fr": 9.0}) == []


def test_a_failover_puts_the_partner_on_air_and_the_one_who_dropped_does_not_take_it_back():
    booth = booth_with("anna", "boris")
    event = booth.fail_over("boris", now=12.0)
    assert (event.lost, event.to, event.at) == ("anna", "boris", 12.0)
    assert booth.on_air == "boris" and booth.on_air_since == 12.0
    assert booth.last_failover == event
    booth.disconnect("anna")
    booth.connect("anna")  # she comes back
    assert booth.on_air == "boris"
    # Nobody ready: he stays on air (his voice is back on the channel when it returns).
    fallback = booth.fail_over(None, now=20.0)
    assert booth.on_air == "boris" and fallback.to is None and fallback.lost == "boris"
    assert booth.last_failover == fallback
    with pytest.raises(NotConnected):
        booth.fail_over("zoe", now=23.0)
    booth.mic("boris", False, now=24.0)
    with pytest.raises(NobodyOnAir):
        booth.fail_over("anna", now=25.0)


# -- alarms ---------------------------------------------------------------------------------


def routing(floor_language: str | None = "ru", on_air: dict | None = None):
    return route_channels(
        ["ru", "fr"],
        [BoothSpec("ru-fr", ("ru", "fr"))],
        floor_language,
        {"ru-fr": "anna"} if on_air is None else on_air,
        set(),
        {},
        "floor",
    )


SPEAKER = "speaker:tok/audio"
ANNA = "interpreter:ru-fr:anna/audio"


def alarms(activity, *, sources_health=None, channels_health=None, speaker="tok", now=100.0):
    return compute_alarms(
        now=now,
        routing=routing(),
        speaker=speaker,
        speaker_audio=SPEAKER if speaker else None,
        interpreter_audio=lambda booth, who: f"interpreter:{booth}:{who}/audio",
        activity=activity,
        sources_health=sources_health or {},
        channels_health=channels_health or {},
        publisher_of=lambda source: source.rsplit("/", 1)[0],
        thresholds=Thresholds(dead_air_after_s=5.0),
    )


def test_no_alarm_when_everyone_speaks() -> None:
    assert alarms({SPEAKER: LIVE, ANNA: LIVE}) == []


def test_the_speaker_whose_media_stopped_raises_an_alarm_with_its_start() -> None:
    [alarm] = alarms({SPEAKER: STOPPED, ANNA: LIVE})
    assert (alarm.kind, alarm.speaker, alarm.since) == ("speaker_media_lost", "tok", 98.5)
    [gone] = alarms({ANNA: LIVE})
    assert gone.kind == "speaker_media_lost" and gone.since is None
    assert alarms({ANNA: LIVE}, speaker=None) == []


def test_dead_air_only_while_the_floor_speaks_and_the_voice_is_sending() -> None:
    [alarm] = alarms({SPEAKER: LIVE, ANNA: QUIET})
    assert (alarm.kind, alarm.channel, alarm.booth, alarm.interpreter, alarm.since) == (
        "dead_air",
        "fr",
        "ru-fr",
        "anna",
        92.0,
    )
    # The speaker pauses too: nobody's fault.
    assert alarms({SPEAKER: QUIET, ANNA: QUIET}) == []
    # Not yet long enough.
    short = SourceActivity("audio", 0.02, 4.0)
    assert alarms({SPEAKER: LIVE, ANNA: short}) == []
    # Her packets stopped: that is a failover's business, not dead air.
    assert [a.kind for a in alarms({SPEAKER: LIVE, ANNA: STOPPED})] == []
    # Never any sound at all: when it started is for the live service to say.
    [never] = alarms({SPEAKER: LIVE, ANNA: SourceActivity("audio", 0.02, math.inf)})
    assert never.kind == "dead_air" and never.since is None
    # A sender without audio levels cannot be judged.
    assert alarms({SPEAKER: LIVE, ANNA: SourceActivity("audio", 0.02, None)}) == []


def test_poor_reception_and_delivery_above_the_thresholds() -> None:
    found = alarms(
        {SPEAKER: LIVE, ANNA: LIVE},
        sources_health={SPEAKER: Reception(0.08, 5.0), ANNA: Reception(0.01, 65.0)},
        channels_health={"fr": Reception(0.06, 10.0), "ru": Reception(0.0, 2.0)},
    )
    assert [(a.kind, a.publisher, a.channel) for a in found] == [
        ("poor_reception", "interpreter:ru-fr:anna", None),
        ("poor_reception", "speaker:tok", None),
        ("poor_delivery", None, "fr"),
    ]
    assert (
        alarms({SPEAKER: LIVE, ANNA: LIVE}, sources_health={SPEAKER: Reception(0.05, 30.0)}) == []
    )
