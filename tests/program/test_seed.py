"""The seed conference and every program shipped in config/events/ load and say what the
organizer published."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from signaling.program import (
    UI_LANGUAGES,
    Event,
    UnknownBooth,
    UnknownLanguage,
    UnknownSpeaker,
    load_program,
    program_problems,
)
from signaling.settings import Settings

EVENTS = Path(__file__).resolve().parents[2] / "config" / "events"
SEED = EVENTS / "shared-historical-memory.yaml"


@pytest.fixture(scope="module")
def seed() -> Event:
    return load_program(SEED)


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.yaml")), ids=lambda path: path.name)
def test_every_shipped_program_loads(path: Path) -> None:
    assert program_problems(path) == []
    load_program(path)


def test_settings_default_to_the_seed() -> None:
    assert Settings().event_file.resolve() == SEED


def test_seed_sessions_and_speakers(seed: Event) -> None:
    assert seed.id == "shared-historical-memory"
    assert [session.id for session in seed.sessions] == ["plenary", "session-1", "session-2"]
    assert [len(session.speakers) for session in seed.sessions] == [6, 3, 4]
    assert len(seed.speakers) == 13
    assert [speaker.id for speaker in seed.speakers] == [
        "alexander-tokovinin",
        "alexander-khinstein",
        "andre-samray",
        "francis-bairin",
        "vladimir-terentyev",
        "konstantin-mogilevsky",
        "olivier-van-der-wilt",
        "grigory-tsidenkov",
        "jean-michel-bodelet",
        "christian-simon",
        "elena-gundorina",
        "alla-zhuplatova",
        "elena-naumova",
    ]
    french = {speaker.id for speaker in seed.speakers if speaker.language == "fr"}
    assert french == {
        "andre-samray",
        "francis-bairin",
        "olivier-van-der-wilt",
        "jean-michel-bodelet",
        "christian-simon",
    }
    assert {speaker.language for speaker in seed.speakers} == {"ru", "fr"}


def test_seed_languages_booth_and_fallback(seed: Event) -> None:
    assert seed.language_codes == ["ru", "fr"]
    assert seed.language("ru").name == "Русский"
    assert seed.language("fr").name == "Français"
    booth = seed.booth("ru-fr")
    assert booth.works_into == ["ru", "fr"]
    assert booth.bidirectional
    assert seed.fallback == "floor"
    assert seed.registration_required is True


def test_seed_time_is_brussels_afternoon(seed: Event) -> None:
    assert seed.timezone == "Europe/Brussels"
    assert seed.starts_at == datetime(2027, 6, 21, 14, 0)
    # Brussels is on summer time (UTC+2) in June.
    assert seed.starts_at_utc == datetime(2027, 6, 21, 12, 0, tzinfo=UTC)


def test_seed_texts_exist_in_every_ui_language(seed: Event) -> None:
    texts = [seed.title, seed.organizer, seed.venue, *seed.supporters]
    assert seed.note is not None
    texts.append(seed.note)
    texts += [session.title for session in seed.sessions]
    texts += [speaker.affiliation for speaker in seed.speakers]
    for text in texts:
        assert sorted(text) == sorted(UI_LANGUAGES), text
    assert seed.title["ru"] == "Общая историческая память: движение Сопротивления"
    assert "Trois-Ponts" in seed.note["en"] and "Lierneux" in seed.note["en"]
    assert len(seed.supporters) == 2


def test_seed_speaker_facts(seed: Event) -> None:
    tokovinin = seed.speaker("alexander-tokovinin")
    assert tokovinin.name == "Alexander Tokovinin"
    assert tokovinin.affiliation.get("en") == "Ambassador of Russia to Belgium"
    assert tokovinin.language == "ru"
    samray = seed.speaker("andre-samray")
    assert samray.name == "André Samray"
    assert samray.language == "fr"
    assert "Lierneux" in samray.affiliation.get("fr")


def test_localized_text_falls_back_to_english(seed: Event) -> None:
    assert seed.title.get("fr-BE") == seed.title["fr"]
    assert seed.title.get("RU") == seed.title["ru"]
    assert seed.title.get("de") == seed.title["en"]
    assert seed.title.get(None) == seed.title["en"]
    assert str(seed.title) == seed.title["en"]


def test_unknown_ids_raise_typed_errors(seed: Event) -> None:
    with pytest.raises(UnknownSpeaker, match="no speaker 'nobody'"):
        seed.speaker("nobody")
    with pytest.raises(UnknownBooth):
        seed.booth("en-fr")
    with pytest.raises(UnknownLanguage):
        seed.language("de")
    assert not isinstance(UnknownSpeaker("x"), KeyError)


def test_model_round_trips_through_json(seed: Event) -> None:
    assert Event.model_validate_json(seed.model_dump_json()) == seed


def test_models_built_in_code_are_checked_too(seed: Event) -> None:
    data = seed.model_dump(mode="json")
    data["sessions"][1]["speakers"][0]["language"] = "de"
    with pytest.raises(ValidationError, match="is not one of the event's languages"):
        Event.model_validate(data)
