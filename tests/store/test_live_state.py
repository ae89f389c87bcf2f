"""The live state's JSON form: exact round trips, unknown keys kept, damage named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from signaling.live_state import LiveState, LiveStateError


def test_a_full_state_round_trips() -> None:
    state = LiveState(
        session_id="session-1",
        on_air_speaker="grigory-tsidenkov",
        on_air_interpreter={"ru-fr": "interpreter-2"},
        direction_override={"ru-fr": "ru"},
        updated_at=datetime(2026, 6, 21, 12, 5, 30, 123456, tzinfo=UTC),
    )

    assert LiveState.from_json(state.to_json()) == state


def test_an_empty_object_is_the_empty_state() -> None:
    assert LiveState.from_json("{}") == LiveState()
    assert LiveState.from_json(LiveState().to_json()) == LiveState()


def test_unknown_keys_are_kept_and_written_back() -> None:
    written_by_a_newer_version = json.dumps(
        {
            "session_id": "plenary",
            "on_air_speaker": None,
            "on_air_interpreter": {},
            "direction_override": {},
            "updated_at": None,
            "spotlight": {"speaker": "alla-zhuplatova", "since": 12.5},
            "queue": ["a", "b"],
        }
    )

    state = LiveState.from_json(written_by_a_newer_version)
    state.on_air_speaker = "christian-simon"
    written_back = json.loads(state.to_json())

    assert state.extra == {
        "spotlight": {"speaker": "alla-zhuplatova", "since": 12.5},
        "queue": ["a", "b"],
    }
    assert written_back["spotlight"] == {"speaker": "alla-zhuplatova", "since": 12.5}
    assert written_back["queue"] == ["a", "b"]
    assert written_back["on_air_speaker"] == "christian-simon"


def test_known_fields_win_over_extra_keys_of_the_same_name() -> None:
    state = LiveState(session_id="real", extra={"session_id": "stale"})

    assert json.loads(state.to_json())["session_id"] == "real"


def test_times_are_read_back_in_utc() -> None:
    state = LiveState.from_json('{"updated_at": "2026-06-21T14:00:00+02:00"}')

    assert state.updated_at == datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
    assert state.updated_at.utcoffset() == timedelta(0)


def test_stamped_sets_the_time_and_leaves_the_original_alone() -> None:
    original = LiveState(session_id="plenary")
    moment = datetime(2026, 6, 21, 14, 0, tzinfo=timezone(timedelta(hours=2)))

    stamped = original.stamped(moment)

    assert stamped.updated_at == datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
    assert original.updated_at is None
    assert stamped.session_id == "plenary"


def test_unicode_survives() -> None:
    state = LiveState(session_id="сессия-1", extra={"note": "Сады памяти"})

    assert LiveState.from_json(state.to_json().encode()) == state


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "not valid JSON"),
        ("{", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        ("null", "expected a JSON object, found NoneType"),
        ('"text"', "expected a JSON object, found str"),
        ('{"session_id": 1}', "session_id: expected text or null, found int"),
        ('{"on_air_speaker": {"id": "x"}}', "on_air_speaker: expected text or null"),
        ('{"on_air_interpreter": "ru-fr"}', "on_air_interpreter: expected an object"),
        ('{"direction_override": {"ru-fr": 1}}', "direction_override: expected an object"),
        ('{"updated_at": 1750500000}', "updated_at: expected an ISO 8601 time"),
        ('{"updated_at": "21 June"}', "'21 June' is not an ISO 8601 time"),
    ],
)
def test_damaged_json_names_the_problem(raw: str | bytes, reason: str) -> None:
    with pytest.raises(LiveStateError) as caught:
        LiveState.from_json(raw)

    assert reason in str(caught.value)
