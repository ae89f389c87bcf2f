"""The booth state machine: on air one at a time, cough, handover, take over, direction,
requests to slow down."""

from __future__ import annotations

import pytest

from signaling.booth import (
    AlreadyOnAir,
    DirectionRefused,
    HandoverPending,
    HandoverRequest,
    LiveBooth,
    NobodyOnAir,
    NoHandoverRequested,
    NotConnected,
    NotOnAir,
    PartnerOnAir,
    SlowDownRequest,
    TakeOverRefused,
    TooSoon,
)


@pytest.fixture
def booth() -> LiveBooth:
    b = LiveBooth("ru-fr", ("ru", "fr"), take_over_after=10)
    b.connect("anna")
    b.connect("boris")
    return b


def test_microphone_puts_one_interpreter_on_air(booth):
    booth.mic("anna", True, now=1)
    assert booth.on_air == "anna"
    assert booth.on_air_since == 1
    booth.mic("anna", True, now=2)  # pressing again changes nothing
    assert booth.on_air_since == 1
    with pytest.raises(PartnerOnAir, match="anna is on air in this booth: request a handover"):
        booth.mic("boris", True, now=3)
    booth.mic("anna", False, now=4)
    assert booth.on_air is None
    booth.mic("boris", True, now=5)
    assert booth.on_air == "boris"


def test_microphone_off_when_not_on_air_is_refused(booth):
    with pytest.raises(NotOnAir, match="you are not on air"):
        booth.mic("anna", False, now=1)


def test_cough_only_on_air_and_release_always_succeeds(booth):
    with pytest.raises(NotOnAir, match="nothing to mute"):
        booth.cough("anna", True)
    booth.cough("anna", False)
    booth.mic("anna", True, now=1)
    booth.cough("anna", True)
    assert booth.coughing
    booth.cough("boris", False)  # the partner's release does not end anna's cough
    assert booth.coughing
    booth.cough("anna", False)
    assert not booth.coughing


def test_handover_switches_the_air_at_once(booth):
    booth.mic("anna", True, now=1)
    booth.cough("anna", True)
    booth.request_handover("boris", now=2)
    assert booth.handover == HandoverRequest("boris", 2)
    with pytest.raises(HandoverPending, match="boris has already requested"):
        booth.request_handover("boris", now=3)
    with pytest.raises(NotOnAir, match="only the interpreter on air accepts"):
        booth.accept_handover("boris", now=3)
    booth.accept_handover("anna", now=4)
    assert (booth.on_air, booth.on_air_since, booth.handover) == ("boris", 4, None)
    assert not booth.coughing  # a cough never survives a handover


def test_handover_requests_need_someone_on_air_and_not_yourself(booth):
    with pytest.raises(NobodyOnAir, match="switch your microphone on"):
        booth.request_handover("boris", now=1)
    booth.mic("anna", True, now=1)
    with pytest.raises(AlreadyOnAir):
        booth.request_handover("anna", now=2)
    with pytest.raises(NoHandoverRequested):
        booth.accept_handover("anna", now=2)


def test_take_over_after_an_unanswered_request(booth):
    booth.mic("anna", True, now=0)
    with pytest.raises(TakeOverRefused, match="request a handover first"):
        booth.take_over("boris", now=1)
    booth.request_handover("boris", now=1)
    assert booth.take_over_allowed_at() == 11
    with pytest.raises(TakeOverRefused, match="wait 5 s more"):
        booth.take_over("boris", now=6)
    assert not booth.can_take_over("boris", now=10.9)
    assert booth.can_take_over("boris", now=11)
    booth.take_over("boris", now=11)
    assert booth.on_air == "boris"
    assert booth.handover is None


def test_a_withdrawn_request_gives_no_right_to_take_over(booth):
    booth.mic("anna", True, now=0)
    with pytest.raises(NoHandoverRequested, match="nothing to withdraw"):
        booth.withdraw_handover("boris")
    booth.request_handover("boris", now=1)
    with pytest.raises(NoHandoverRequested):
        booth.withdraw_handover("anna")  # only the requester takes it back
    booth.withdraw_handover("boris")
    assert booth.handover is None
    assert not booth.can_take_over("boris", now=60)
    with pytest.raises(NoHandoverRequested):
        booth.accept_handover("anna", now=2)
    booth.request_handover("boris", now=3)  # and may ask again
    assert booth.handover == HandoverRequest("boris", 3)


def test_take_over_at_once_when_the_one_on_air_dropped(booth):
    booth.mic("anna", True, now=0)
    booth.disconnect("anna")
    status = booth.status()
    assert status.on_air == "anna" and not status.on_air_connected
    booth.take_over("boris", now=1)
    assert booth.on_air == "boris"
    # anna, gone and off air, leaves the booth's list
    assert [i.id for i in booth.status().interpreters] == ["boris"]


def test_the_one_on_air_who_reconnects_is_still_on_air(booth):
    booth.mic("anna", True, now=0)
    booth.disconnect("anna")
    booth.connect("anna")
    assert booth.status().on_air_connected
    with pytest.raises(TakeOverRefused):
        booth.take_over("boris", now=1)


def test_a_second_tab_keeps_the_interpreter_connected(booth):
    booth.connect("anna")
    booth.disconnect("anna")
    assert booth.is_connected("anna")
    booth.disconnect("anna")
    assert not booth.is_connected("anna")
    booth.disconnect("anna")  # one disconnect too many is harmless


def test_a_requester_who_leaves_withdraws_his_request(booth):
    booth.mic("anna", True, now=0)
    booth.request_handover("boris", now=1)
    booth.disconnect("boris")
    assert booth.handover is None


def test_going_off_air_cancels_a_pending_request(booth):
    booth.mic("anna", True, now=0)
    booth.request_handover("boris", now=1)
    booth.mic("anna", False, now=2)
    assert booth.handover is None
    booth.take_over("boris", now=3)  # nobody on air: taking the air is free
    assert booth.on_air == "boris"


def test_commands_from_someone_not_in_the_booth_are_refused(booth):
    for command in (
        lambda: booth.mic("zoe", True, now=0),
        lambda: booth.cough("zoe", True),
        lambda: booth.request_handover("zoe", now=0),
        lambda: booth.accept_handover("zoe", now=0),
        lambda: booth.take_over("zoe", now=0),
        lambda: booth.set_direction("zoe", "fr"),
        lambda: booth.listen("zoe", "floor"),
    ):
        with pytest.raises(NotConnected, match="zoe is not connected to booth ru-fr"):
            command()


def test_direction_override(booth):
    booth.set_direction("anna", "fr")
    assert booth.direction_override == "fr"
    with pytest.raises(DirectionRefused, match="works into ru and fr, not into de"):
        booth.set_direction("anna", "de")
    booth.set_direction("boris", None)
    assert booth.direction_override is None


def test_a_one_way_booth_has_no_direction_to_change():
    booth = LiveBooth("into-fr", ("fr",))
    booth.connect("anna")
    with pytest.raises(DirectionRefused, match="works only into fr"):
        booth.set_direction("anna", "fr")


def test_listen_source_per_interpreter(booth):
    booth.listen("anna", "ru")
    booth.listen("boris", "floor")
    assert booth.listening_to("anna") == "ru"
    assert booth.listening_to("boris") == "floor"
    booth.listen("anna", None)
    assert booth.listening_to("anna") is None
    statuses = {i.id: i.listen for i in booth.status().interpreters}
    assert statuses == {"anna": None, "boris": "floor"}


def test_restored_from_the_store_before_anyone_reconnects():
    booth = LiveBooth("ru-fr", ("ru", "fr"), on_air="anna", direction_override="ru")
    status = booth.status()
    assert status.on_air == "anna"
    assert not status.on_air_connected
    assert status.direction_override == "ru"
    booth.connect("anna")
    booth.mic("anna", False, now=1)
    assert booth.on_air is None


def test_a_request_to_slow_down_shows_for_a_while(booth):
    assert booth.slow_down("boris", True, now=100)  # on air or not: anyone in the booth
    assert booth.slow_down_request(100) == SlowDownRequest(by="boris", at=100, until=115)
    assert not booth.slow_down("anna", True, now=101)  # already showing: unchanged
    assert booth.slow_down_request(114.9) == SlowDownRequest(by="boris", at=100, until=115)
    assert booth.slow_down_request(115) is None
    booth.slow_down("anna", True, now=116)
    assert booth.slow_down_request(116) == SlowDownRequest(by="anna", at=116, until=131)


def test_a_request_to_slow_down_is_withdrawn_and_throttled(booth):
    booth.slow_down("anna", True, now=10)
    assert booth.slow_down("anna", False, now=11)
    assert booth.slow_down_request(11) is None
    assert not booth.slow_down("anna", False, now=11)  # withdrawing twice is fine
    with pytest.raises(TooSoon, match="1 s ago: ask again in 4 s"):
        booth.slow_down("boris", True, now=11)
    booth.slow_down("boris", True, now=15)
    assert booth.slow_down_request(15) is not None
    booth.clear_slow_down()
    assert booth.slow_down_request(15) is None


def test_only_an_interpreter_of_the_booth_asks_to_slow_down(booth):
    with pytest.raises(NotConnected):
        booth.slow_down("olga", True, now=1)
