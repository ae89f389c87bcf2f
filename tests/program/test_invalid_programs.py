"""Every kind of mistake an organizer can make in a program file gets its own message,
with its place in the file; several mistakes are all reported at once."""

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from signaling.program import ProgramError, load_program, program_problems

SEED = Path(__file__).resolve().parents[2] / "config" / "events" / "shared-historical-memory.yaml"
SEED_DATA: dict[str, Any] = yaml.safe_load(SEED.read_text(encoding="utf-8"))

Mutation = Callable[[dict[str, Any]], None]


def write_program(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "event.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def problems_after(tmp_path: Path, mutate: Mutation) -> list[str]:
    data = copy.deepcopy(SEED_DATA)
    mutate(data)
    path = write_program(tmp_path, data)
    with pytest.raises(ProgramError) as caught:
        load_program(path)
    assert caught.value.problems == program_problems(path)
    return caught.value.problems


def set_speaker(session: int, speaker: int, key: str, value: object) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data["sessions"][session]["speakers"][speaker][key] = value

    return mutate


def set_key(key: str, value: object) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data[key] = value

    return mutate


def delete_key(key: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        del data[key]

    return mutate


def add_booth(booth: dict[str, Any]) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data["booths"].append(booth)

    return mutate


def add_language(code: str, name: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data["languages"].append({"code": code, "name": name})

    return mutate


def set_session(session: int, key: str, value: object) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data["sessions"][session][key] = value

    return mutate


def set_booth(key: str, value: object) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data["booths"][0][key] = value

    return mutate


CASES = [
    pytest.param(
        set_speaker(1, 2, "language", "de"),
        "sessions[1].speakers[2].language: 'de' is not one of the event's languages (ru, fr)",
        id="speaker-language-not-an-event-language",
    ),
    pytest.param(
        set_speaker(2, 0, "id", "alexander-tokovinin"),
        "sessions[2].speakers[0].id: 'alexander-tokovinin' is already used by "
        "sessions[0].speakers[0]",
        id="duplicate-speaker-id-across-sessions",
    ),
    pytest.param(
        set_speaker(0, 1, "id", "alexander-tokovinin"),
        "sessions[0].speakers[1].id: 'alexander-tokovinin' is already used by "
        "sessions[0].speakers[0]",
        id="duplicate-speaker-id-in-a-session",
    ),
    pytest.param(
        set_session(2, "id", "plenary"),
        "sessions[2].id: 'plenary' is already used by sessions[0]",
        id="duplicate-session-id",
    ),
    pytest.param(
        add_booth({"id": "ru-fr", "name": "Français", "works_into": ["fr"]}),
        "booths[1].id: 'ru-fr' is already used by booths[0]",
        id="duplicate-booth-id",
    ),
    pytest.param(
        add_language("en", "English"),
        "languages[2].code: nobody interprets into 'en' (English): no booth works into it",
        id="language-nobody-interprets-into",
    ),
    pytest.param(
        set_key("booths", []),
        "languages[0].code: nobody interprets into 'ru' (Русский): no booth works into it",
        id="no-booth-for-two-languages",
    ),
    pytest.param(
        set_booth("works_into", ["ru", "de"]),
        "booths[0].works_into[1]: 'de' is not one of the event's languages (ru, fr)",
        id="booth-language-not-an-event-language",
    ),
    pytest.param(
        set_booth("works_into", ["ru", "fr", "en"]),
        "booths[0].works_into: a booth works into one language (one-way) or two "
        "(bidirectional), not 3",
        id="booth-with-three-languages",
    ),
    pytest.param(
        set_booth("works_into", ["ru", "ru"]),
        "booths[0].works_into: 'ru' is listed twice: a bidirectional booth works into two "
        "different languages",
        id="booth-with-the-same-language-twice",
    ),
    pytest.param(
        add_language("ru", "Russian"),
        "languages[2].code: 'ru' is listed twice (first at languages[0])",
        id="duplicate-language",
    ),
    pytest.param(
        set_key("languages", [{"code": "Russian", "name": "Русский"}]),
        "languages[0].code: 'Russian' is not a language code (e.g. 'fr', 'ru', 'pt-BR')",
        id="language-code-not-a-code",
    ),
    pytest.param(
        set_key("languages", []),
        "languages: must not be empty",
        id="no-languages",
    ),
    pytest.param(delete_key("timezone"), "timezone: this key is required", id="missing-timezone"),
    pytest.param(
        set_key("timezone", "Europe/Brusels"),
        "timezone: 'Europe/Brusels' is not an IANA time zone (did you mean 'Europe/Brussels'?)",
        id="misspelt-timezone",
    ),
    pytest.param(
        set_key("timezone", "../../etc/passwd"),
        "timezone: '../../etc/passwd' is not an IANA time zone (e.g. 'Europe/Brussels')",
        id="timezone-path",
    ),
    pytest.param(
        set_key("starts_at", "2026-06-21T14:00+02:00"),
        "starts_at: give the local time without an offset (e.g. 2026-06-21T14:00); the time "
        "zone goes in 'timezone'",
        id="start-with-offset",
    ),
    pytest.param(
        set_key("starts_at", "2026-03-29T02:30"),
        "starts_at: 2026-03-29T02:30:00 does not exist in Europe/Brussels (clocks skip it)",
        id="start-in-dst-gap",
    ),
    pytest.param(
        set_key("starts_at", "21 June"),
        "starts_at: should be a valid datetime or date, input is too short (got '21 June')",
        id="start-not-a-date",
    ),
    pytest.param(
        set_key("fallback", "mute"),
        "fallback: 'mute' is not allowed: expected 'floor' or 'silence'",
        id="unknown-fallback",
    ),
    pytest.param(
        set_key("shift_minutes", 2),
        "shift_minutes: 2 minutes is not a usable turn in a booth: give between 5 and 120 "
        "(interpreters usually hand over every 20 to 30 minutes)",
        id="shift-too-short",
    ),
    pytest.param(
        set_key("shift_minutes", "half an hour"),
        "shift_minutes: should be a whole number of minutes, e.g. 30 (got 'half an hour')",
        id="shift-not-a-number",
    ),
    pytest.param(
        set_key("shift_minutes", True),
        "shift_minutes: should be a whole number of minutes, e.g. 30 (got True)",
        id="shift-a-boolean",
    ),
    pytest.param(delete_key("title"), "title: this key is required", id="missing-title"),
    pytest.param(
        set_key("title", {"fr": "Titre", "ru": "Название"}),
        "title: the English text (en) is required; found only: fr, ru",
        id="title-without-english",
    ),
    pytest.param(
        set_session(1, "title", {"ru": "Секция 1"}),
        "sessions[1].title: the English text (en) is required; found only: ru",
        id="session-title-without-english",
    ),
    pytest.param(
        set_key("title", {"en": "Title", "de": "Titel"}),
        "title: 'de' is not a UI language (en, fr, ru)",
        id="text-in-unknown-ui-language",
    ),
    pytest.param(
        set_key("venue", {"en": "   "}),
        "venue: the en text is empty",
        id="blank-text",
    ),
    pytest.param(
        set_key("organizer", "Russian House"),
        "organizer: should be a mapping of texts per language, e.g. {en: ..., fr: ..., "
        "ru: ...} (got 'Russian House')",
        id="text-not-a-mapping",
    ),
    pytest.param(
        set_key("fallbak", "floor"),
        "fallbak: unknown key (allowed: id, title, organizer, supporters, starts_at, timezone, "
        "venue, registration_required, languages, booths, fallback, shift_minutes, note, "
        "sessions; did you mean 'fallback'?)",
        id="unknown-top-level-key",
    ),
    pytest.param(
        set_speaker(0, 0, "photo", "x.jpg"),
        "sessions[0].speakers[0].photo: unknown key (allowed: id, name, name_native, "
        "affiliation, language)",
        id="unknown-speaker-key",
    ),
    pytest.param(
        set_speaker(0, 0, "id", "Alexander Tokovinin"),
        "sessions[0].speakers[0].id: 'Alexander Tokovinin' is not a valid id: use lowercase "
        "letters, digits and single hyphens (e.g. 'andre-samray')",
        id="speaker-id-not-a-slug",
    ),
    pytest.param(
        set_booth("id", "RU_FR"),
        "booths[0].id: 'RU_FR' is not a valid id: use lowercase letters, digits and single "
        "hyphens (e.g. 'andre-samray')",
        id="booth-id-not-a-slug",
    ),
    pytest.param(
        set_key("id", "shared--memory"),
        "id: 'shared--memory' is not a valid id: use lowercase letters, digits and single "
        "hyphens (e.g. 'andre-samray')",
        id="event-id-not-a-slug",
    ),
    pytest.param(
        set_speaker(0, 0, "name", ""),
        "sessions[0].speakers[0].name: must not be empty",
        id="empty-speaker-name",
    ),
    pytest.param(
        set_speaker(0, 0, "language", False),
        "sessions[0].speakers[0].language: should be a valid string (got False; YAML reads "
        "unquoted yes/no/on/off/true/false as booleans: quote it)",
        id="yaml-boolean-where-a-code-belongs",
    ),
    pytest.param(
        set_session(1, "speakers", []),
        "sessions[1].speakers: must not be empty",
        id="session-without-speakers",
    ),
    pytest.param(
        set_key("sessions", "plenary"),
        "sessions: should be a valid list (got 'plenary')",
        id="sessions-not-a-list",
    ),
    pytest.param(
        set_key("registration_required", "maybe"),
        "registration_required: should be a valid boolean, unable to interpret input (got 'maybe')",
        id="registration-not-a-boolean",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), CASES)
def test_invalid_program_is_reported(tmp_path: Path, mutate: Mutation, expected: str) -> None:
    assert expected in problems_after(tmp_path, mutate)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    def many(data: dict[str, Any]) -> None:
        set_key("timezone", "Mars/Olympus")(data)
        set_speaker(1, 2, "language", "de")(data)
        set_speaker(2, 0, "id", "andre-samray")(data)
        set_key("fallback", "mute")(data)

    problems = problems_after(tmp_path, many)
    assert problems == [
        "timezone: 'Mars/Olympus' is not an IANA time zone (e.g. 'Europe/Brussels')",
        "fallback: 'mute' is not allowed: expected 'floor' or 'silence'",
        "sessions[1].speakers[2].language: 'de' is not one of the event's languages (ru, fr)",
        "sessions[2].speakers[0].id: 'andre-samray' is already used by sessions[0].speakers[2]",
    ]


def test_one_language_needs_no_booth(tmp_path: Path) -> None:
    data = copy.deepcopy(SEED_DATA)
    data["languages"] = [{"code": "ru", "name": "Русский"}]
    data["booths"] = []
    for session in data["sessions"]:
        for speaker in session["speakers"]:
            speaker["language"] = "ru"
    event = load_program(write_program(tmp_path, data))
    assert event.language_codes == ["ru"]
    assert event.booths == []


def test_one_way_booths_cover_languages(tmp_path: Path) -> None:
    data = copy.deepcopy(SEED_DATA)
    data["languages"].append({"code": "en", "name": "English"})
    data["booths"] = [
        {"id": "into-ru", "name": "Русский", "works_into": ["ru"]},
        {"id": "into-fr", "name": "Français", "works_into": ["fr"]},
        {"id": "into-en", "name": "English", "works_into": ["en"]},
    ]
    data["fallback"] = "silence"
    event = load_program(write_program(tmp_path, data))
    assert not event.booth("into-en").bidirectional
    assert event.fallback == "silence"
    assert event.shift_minutes == 30  # the default


def test_the_shift_length_is_read_from_the_program(tmp_path: Path) -> None:
    data = copy.deepcopy(SEED_DATA)
    data["shift_minutes"] = 20
    assert load_program(write_program(tmp_path, data)).shift_minutes == 20


def write_text(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "event.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = write_text(tmp_path, "id: x\ntitle: [unclosed\nfallback: floor\n")
    assert program_problems(path) == [
        "line 3, column 9: YAML syntax error: while parsing a flow sequence: expected ',' or "
        "']', but got ':'"
    ]


def test_bad_indentation_names_its_line(tmp_path: Path) -> None:
    path = write_text(tmp_path, "id: x\ntitle:\n  en: a\n fr: b\n")
    [problem] = program_problems(path)
    assert problem.startswith("line 4, column 2: YAML syntax error:")


def test_duplicate_yaml_key_names_its_line(tmp_path: Path) -> None:
    text = SEED.read_text(encoding="utf-8") + "fallback: silence\n"
    line = text.count("\n")
    problems = program_problems(write_text(tmp_path, text))
    assert problems == [
        f"line {line}, column 1: the key 'fallback' appears twice in the same mapping"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "- plenary\n- session-1\n",
            "the program must be a mapping of keys (id, title, ...) at the top level, not a list",
            id="list",
        ),
        pytest.param(
            "just a sentence\n",
            "the program must be a mapping of keys (id, title, ...) at the top level, not a str",
            id="scalar",
        ),
        pytest.param(
            "",
            "the file is empty: it should hold an event program (id, title, ...)",
            id="empty",
        ),
        pytest.param(
            "# only a comment\n",
            "the file is empty: it should hold an event program (id, title, ...)",
            id="only-comments",
        ),
    ],
)
def test_file_that_is_not_a_mapping(tmp_path: Path, text: str, expected: str) -> None:
    assert program_problems(write_text(tmp_path, text)) == [expected]


def test_missing_file(tmp_path: Path) -> None:
    assert program_problems(tmp_path / "nope.yaml") == ["the file does not exist"]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert program_problems(tmp_path) == ["this is a directory, not a program file"]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "event.yaml"
    path.write_bytes("id: événement\n".encode("latin-1"))
    assert program_problems(path) == ["the file is not UTF-8 text (byte 4)"]


def test_error_text_names_file_and_count(tmp_path: Path) -> None:
    path = write_text(tmp_path, "[]\n")
    with pytest.raises(ProgramError) as caught:
        load_program(path)
    text = str(caught.value)
    assert text.splitlines()[0] == f"{path}: invalid event program (1 problem):"
    assert text.splitlines()[1].startswith("  - the program must be a mapping")


def test_a_sign_booth_works_into_a_sign_language_that_is_no_audio_channel(
    tmp_path: Path,
) -> None:
    data = copy.deepcopy(SEED_DATA)
    data["booths"].append(
        {"id": "lsfb", "name": "Langue des signes", "kind": "sign", "works_into": ["lsfb"]}
    )
    event = load_program(write_program(tmp_path, data))
    assert [b.id for b in event.sign_booths] == ["lsfb"]
    assert [b.id for b in event.spoken_booths] == ["ru-fr"]
    assert event.language_codes == ["ru", "fr"]


@pytest.mark.parametrize(
    ("booth", "expected"),
    [
        (
            {"id": "signs", "name": "Signs", "kind": "sign", "works_into": ["vgt", "lsfb"]},
            "booths[1]: a sign booth works into one sign language, not 2",
        ),
        (
            {"id": "signs", "name": "Signs", "kind": "mime", "works_into": ["vgt"]},
            "booths[1].kind: 'mime' is not allowed: expected 'spoken' or 'sign'",
        ),
    ],
)
def test_invalid_sign_booths(tmp_path: Path, booth: dict[str, Any], expected: str) -> None:
    assert problems_after(tmp_path, add_booth(booth)) == [expected]
