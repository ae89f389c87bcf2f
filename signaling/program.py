"""The event program: what an event is (sessions, speakers, languages, booths) and how
a program file in ``config/events/`` is loaded and checked.

An organizer writes the program by hand in YAML, so loading it must tell a person every
mistake at once, each with its place in the file (``sessions[1].speakers[2].language:
'de' is not one of the event's languages (ru, fr)``), rather than pydantic's raw report.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

#: Languages the user interface (and therefore every localized text) exists in.
UI_LANGUAGES: tuple[str, ...] = ("en", "fr", "ru")
#: The UI language every localized text must have: the fallback for the others.
DEFAULT_UI_LANGUAGE = "en"

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
# BCP 47 shaped: a 2-3 letter primary subtag (ISO 639), optional subtags (``pt-BR``).
LANGUAGE_CODE_PATTERN = r"^[a-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$"

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, max_length=64)]
LanguageCode = Annotated[str, StringConstraints(pattern=LANGUAGE_CODE_PATTERN, max_length=35)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


#: How long an interpreter's turn on air lasts unless the program says otherwise.
DEFAULT_SHIFT_MINUTES = 30
SHIFT_MINUTES_RANGE = (5, 120)


class ProgramError(Exception):
    """A program file that cannot be used; ``problems`` lists every mistake, one a line."""

    def __init__(self, source: str | Path, problems: list[str]) -> None:
        self.source = str(source)
        self.problems = list(problems)
        super().__init__(self.source, self.problems)

    def __str__(self) -> str:
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"{self.source}: invalid event program ({count} {noun}):"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


class UnknownProgramItem(LookupError):
    """Asked the program for an id it does not have (a speaker, booth, session, language)."""

    kind = "item"

    def __init__(self, item_id: str) -> None:
        self.item_id = item_id
        super().__init__(item_id)

    def __str__(self) -> str:
        return f"there is no {self.kind} {self.item_id!r} in the program"


class UnknownSpeaker(UnknownProgramItem):
    kind = "speaker"


class UnknownBooth(UnknownProgramItem):
    kind = "booth"


class UnknownLanguage(UnknownProgramItem):
    kind = "language"


class LocalizedText(RootModel[dict[str, str]]):
    """A text in each UI language (en is required); ``get`` falls back to English."""

    model_config = ConfigDict(frozen=True)

    @field_validator("root")
    @classmethod
    def _check_languages(cls, texts: dict[str, str]) -> dict[str, str]:
        for lang, text in texts.items():
            if lang not in UI_LANGUAGES:
                raise PydanticCustomError(
                    "ui_language",
                    "'{lang}' is not a UI language ({allowed})",
                    {"lang": lang, "allowed": ", ".join(UI_LANGUAGES)},
                )
            if not text.strip():
                raise PydanticCustomError("blank_text", "the {lang} text is empty", {"lang": lang})
        if DEFAULT_UI_LANGUAGE not in texts:
            raise PydanticCustomError(
                "missing_default_text",
                "the English text (en) is required; found only: {found}",
                {"found": ", ".join(texts) or "nothing"},
            )
        return texts

    def get(self, lang: str | None = None) -> str:
        """The text in ``lang`` (``fr``, ``fr-BE``, ``RU`` all work), else in English."""
        if lang:
            primary = lang.split("-", 1)[0].lower()
            if primary in self.root:
                return self.root[primary]
        return self.root[DEFAULT_UI_LANGUAGE]

    def __getitem__(self, lang: str) -> str:
        return self.root[lang]

    def __contains__(self, lang: object) -> bool:
        return lang in self.root

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self.root)

    def __len__(self) -> int:
        return len(self.root)

    def items(self) -> Iterator[tuple[str, str]]:
        return iter(self.root.items())

    def __str__(self) -> str:
        return self.get()


class _ProgramModel(BaseModel):
    # Unknown keys are almost always typos in a hand-written file: refuse them.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Language(_ProgramModel):
    """One language of the event: a channel attendees can choose."""

    code: LanguageCode
    #: The language's name in itself ("Русский", "Français"), as its speakers look for it.
    name: Name


class Booth(_ProgramModel):
    """An interpreters' booth: one-way (works into one language) or bidirectional (two).

    A ``sign`` booth interprets the floor into a sign language: its interpreter's camera
    is a video attendees may show over the program (picture in picture). It works into
    one sign language, named by any code (``vgt``, ``lsfb``, ``rsl``...), which is not
    one of the event's spoken languages and no audio channel.
    """

    id: Slug
    name: Name
    kind: Literal["spoken", "sign"] = "spoken"
    works_into: list[str]

    @field_validator("works_into")
    @classmethod
    def _one_or_two(cls, codes: list[str]) -> list[str]:
        if not 1 <= len(codes) <= 2:
            raise PydanticCustomError(
                "booth_languages",
                "a booth works into one language (one-way) or two (bidirectional), not {count}",
                {"count": len(codes)},
            )
        if len(codes) == 2 and codes[0] == codes[1]:
            raise PydanticCustomError(
                "booth_languages",
                "'{code}' is listed twice: a bidirectional booth works into two "
                "different languages",
                {"code": codes[0]},
            )
        return codes

    @model_validator(mode="after")
    def _sign_language_is_one(self) -> Booth:
        if self.kind == "sign" and len(self.works_into) != 1:
            raise PydanticCustomError(
                "booth_languages",
                "a sign booth works into one sign language, not {count}",
                {"count": len(self.works_into)},
            )
        return self

    @property
    def bidirectional(self) -> bool:
        return len(self.works_into) == 2

    @property
    def sign(self) -> bool:
        return self.kind == "sign"


class Speaker(_ProgramModel):
    """One slot of the program: a person who speaks, in one language."""

    id: Slug
    #: The name in Latin script, as printed in the program.
    name: Name
    #: The name in the speaker's own script (e.g. Cyrillic), when it differs.
    name_native: Name | None = None
    affiliation: LocalizedText
    #: The language the speaker speaks: one of the event's language codes.
    language: str


class Session(_ProgramModel):
    """A session of the program, its speakers in the order they speak."""

    id: Slug
    title: LocalizedText
    speakers: list[Speaker] = Field(min_length=1)


class Event(_ProgramModel):
    """A whole event program, checked for consistency (see ``consistency_problems``)."""

    id: Slug
    title: LocalizedText
    organizer: LocalizedText
    supporters: list[LocalizedText] = []
    #: Local wall time at the venue, without offset; ``timezone`` says where.
    starts_at: datetime
    timezone: str
    venue: LocalizedText
    registration_required: bool
    languages: list[Language] = Field(min_length=1)
    booths: list[Booth] = []
    #: What a language channel carries when nobody interprets into it.
    fallback: Literal["floor", "silence"] = "floor"
    #: Minutes an interpreter stays on air before the booth is reminded to hand over.
    shift_minutes: int = DEFAULT_SHIFT_MINUTES
    note: LocalizedText | None = None
    sessions: list[Session] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _iana_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(name, available_timezones(), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "e.g. 'Europe/Brussels'"
            raise PydanticCustomError(
                "timezone",
                "'{name}' is not an IANA time zone ({hint})",
                {"name": name, "hint": hint},
            ) from None
        return name

    @field_validator("shift_minutes", mode="before")
    @classmethod
    def _shift(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PydanticCustomError(
                "shift_minutes",
                "should be a whole number of minutes, e.g. 30 (got {value})",
                {"value": _short(value)},
            )
        if not SHIFT_MINUTES_RANGE[0] <= value <= SHIFT_MINUTES_RANGE[1]:
            raise PydanticCustomError(
                "shift_minutes",
                "{value} minutes is not a usable turn in a booth: give between {low} and "
                "{high} (interpreters usually hand over every 20 to 30 minutes)",
                {"value": value, "low": SHIFT_MINUTES_RANGE[0], "high": SHIFT_MINUTES_RANGE[1]},
            )
        return value

    @field_validator("starts_at")
    @classmethod
    def _wall_time(cls, value: datetime) -> datetime:
        if value.tzinfo is not None:
            raise PydanticCustomError(
                "aware_start",
                "give the local time without an offset (e.g. 2026-06-21T14:00); "
                "the time zone goes in 'timezone'",
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Event:
        problems = consistency_problems(self.model_dump(mode="python"))
        zone_problem = _wall_time_problem(self.starts_at, self.timezone)
        if zone_problem:
            problems.append(f"starts_at: {zone_problem}")
        if problems:
            raise PydanticCustomError(
                "program_consistency",
                "{joined}",
                {"joined": "; ".join(problems), "problems": problems},
            )
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def starts_at_local(self) -> datetime:
        """The start as an aware datetime in the event's time zone."""
        return self.starts_at.replace(tzinfo=self.tz)

    @property
    def starts_at_utc(self) -> datetime:
        return self.starts_at_local.astimezone(UTC)

    @property
    def language_codes(self) -> list[str]:
        return [language.code for language in self.languages]

    @property
    def speakers(self) -> list[Speaker]:
        """Every speaker of every session, in program order."""
        return [speaker for session in self.sessions for speaker in session.speakers]

    def language(self, code: str) -> Language:
        for language in self.languages:
            if language.code == code:
                return language
        raise UnknownLanguage(code)

    def speaker(self, speaker_id: str) -> Speaker:
        for speaker in self.speakers:
            if speaker.id == speaker_id:
                return speaker
        raise UnknownSpeaker(speaker_id)

    def booth(self, booth_id: str) -> Booth:
        for booth in self.booths:
            if booth.id == booth_id:
                return booth
        raise UnknownBooth(booth_id)

    @property
    def spoken_booths(self) -> list[Booth]:
        """The booths whose voices feed the language channels."""
        return [booth for booth in self.booths if not booth.sign]

    @property
    def sign_booths(self) -> list[Booth]:
        return [booth for booth in self.booths if booth.sign]


def _wall_time_problem(starts_at: datetime, timezone: str) -> str | None:
    """A wall time that does not exist in the zone (skipped by a DST change) is a typo."""
    zone = ZoneInfo(timezone)
    local = starts_at.replace(tzinfo=zone)
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != starts_at:
        return f"{starts_at.isoformat()} does not exist in {timezone} (clocks skip it)"
    return None


def consistency_problems(data: Mapping[str, Any]) -> list[str]:
    """The problems between fields of a program: duplicates and language references.

    Works on the raw mapping (defensively: parts may have the wrong shape, which the
    field validation reports) so that a file with field errors still gets these too.
    """
    problems: list[str] = []

    codes: dict[str, int] | None = {}
    names: dict[str, str] = {}
    languages = data.get("languages")
    if isinstance(languages, list):
        for i, language in enumerate(languages):
            code = language.get("code") if isinstance(language, Mapping) else None
            if not isinstance(code, str):
                continue
            if code in codes:
                problems.append(
                    f"languages[{i}].code: {code!r} is listed twice "
                    f"(first at languages[{codes[code]}])"
                )
            else:
                codes[code] = i
                name = language.get("name")
                names[code] = name if isinstance(name, str) else code
    else:
        codes = None
    listed = f"({', '.join(codes)})" if codes else ""

    def check_language(location: str, code: object) -> None:
        if codes is not None and isinstance(code, str) and code not in codes:
            problems.append(f"{location}: {code!r} is not one of the event's languages {listed}")

    interpreted: set[str] | None = set()
    booth_ids: dict[str, str] = {}
    booths = data.get("booths", [])
    if isinstance(booths, list):
        for i, booth in enumerate(booths):
            if not isinstance(booth, Mapping):
                interpreted = None
                continue
            _check_unique(problems, booth_ids, booth.get("id"), f"booths[{i}]")
            works_into = booth.get("works_into")
            if not isinstance(works_into, list):
                interpreted = None
                continue
            if booth.get("kind", "spoken") != "spoken":
                # A sign language (no audio channel, not one of the languages), or a kind
                # reported as wrong on its own: nothing to check against the languages.
                continue
            for j, code in enumerate(works_into):
                check_language(f"booths[{i}].works_into[{j}]", code)
                if interpreted is not None and isinstance(code, str):
                    interpreted.add(code)
    else:
        interpreted = None

    # With one language there is nothing to interpret; with more, every channel needs a booth.
    if codes is not None and interpreted is not None and len(codes) > 1:
        for code, i in codes.items():
            if code not in interpreted:
                problems.append(
                    f"languages[{i}].code: nobody interprets into {code!r} ({names[code]}): "
                    f"no booth works into it"
                )

    session_ids: dict[str, str] = {}
    speaker_ids: dict[str, str] = {}
    sessions = data.get("sessions")
    if isinstance(sessions, list):
        for i, session in enumerate(sessions):
            if not isinstance(session, Mapping):
                continue
            _check_unique(problems, session_ids, session.get("id"), f"sessions[{i}]")
            speakers = session.get("speakers")
            if not isinstance(speakers, list):
                continue
            for j, speaker in enumerate(speakers):
                if not isinstance(speaker, Mapping):
                    continue
                where = f"sessions[{i}].speakers[{j}]"
                _check_unique(problems, speaker_ids, speaker.get("id"), where)
                check_language(f"{where}.language", speaker.get("language"))
    return problems


def _check_unique(problems: list[str], seen: dict[str, str], item_id: object, where: str) -> None:
    if not isinstance(item_id, str):
        return
    if item_id in seen:
        problems.append(f"{where}.id: {item_id!r} is already used by {seen[item_id]}")
    else:
        seen[item_id] = where


# --- turning pydantic's report into lines a person reads ------------------------------

_MODEL_KEYS: dict[str, list[str]] = {
    "": list(Event.model_fields),
    "languages": list(Language.model_fields),
    "booths": list(Booth.model_fields),
    "sessions": list(Session.model_fields),
    "speakers": list(Speaker.model_fields),
}
_FIELD_ORDER: dict[str, int] = {
    name: index
    for index, name in enumerate(dict.fromkeys(n for keys in _MODEL_KEYS.values() for n in keys))
}


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str] | None:
    """The keys the model at ``loc`` (the parent of an unknown key) accepts."""
    names = [part for part in loc if isinstance(part, str)]
    return _MODEL_KEYS.get(names[-1] if names else "")


def _describe(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    value = error.get("input")
    loc = tuple(error["loc"])
    if kind == "missing":
        return "this key is required"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1]) or []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        listing = f" (allowed: {', '.join(allowed)}{hint})" if allowed else ""
        return f"unknown key{listing}"
    if kind == "string_pattern_mismatch":
        if error["ctx"]["pattern"] == SLUG_PATTERN:
            return (
                f"{_short(value)} is not a valid id: use lowercase letters, digits and single "
                f"hyphens (e.g. 'andre-samray')"
            )
        if error["ctx"]["pattern"] == LANGUAGE_CODE_PATTERN:
            return f"{_short(value)} is not a language code (e.g. 'fr', 'ru', 'pt-BR')"
    if kind == "literal_error":
        return f"{_short(value)} is not allowed: expected {error['ctx']['expected']}"
    if kind in {"string_too_short", "too_short"} and value in ("", [], None):
        return "must not be empty"
    if kind == "dict_type" and loc and _is_text_field(loc):
        return (
            f"should be a mapping of texts per language, e.g. {{en: ..., fr: ..., ru: ...}} "
            f"(got {_short(value)})"
        )
    message = str(error["msg"])
    if message.startswith("Input should be"):
        message = "should be" + message[len("Input should be") :]
        hint = ""
        if isinstance(value, bool) and kind == "string_type":
            hint = "; YAML reads unquoted yes/no/on/off/true/false as booleans: quote it"
        return f"{message} (got {_short(value)}{hint})"
    if kind == "value_error" and message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return message


def _is_text_field(loc: tuple[int | str, ...]) -> bool:
    return loc[-1] in {"title", "organizer", "venue", "note", "affiliation"} or (
        len(loc) >= 2 and loc[-2] == "supporters"
    )


def _sort_key(loc: tuple[int | str, ...]) -> tuple[tuple[int, int], ...]:
    return tuple(
        (0, part) if isinstance(part, int) else (1, _FIELD_ORDER.get(part, 999)) for part in loc
    )


def _located_problems(exc: ValidationError) -> tuple[list[tuple[tuple, str]], bool]:
    located: list[tuple[tuple, str]] = []
    consistency = False
    for error in exc.errors():
        if error["type"] == "program_consistency":
            consistency = True
            continue
        loc = tuple(error["loc"])
        where = _location(loc)
        text = _describe(error)
        located.append((loc, f"{where}: {text}" if where else text))
    return located, consistency


def _consistency_located(problems: list[str]) -> list[tuple[tuple, str]]:
    located = []
    for problem in problems:
        where = problem.split(": ", 1)[0]
        loc = tuple(
            int(part) if part.isdigit() else part for part in re.split(r"[.\[\]]+", where) if part
        )
        located.append((loc, problem))
    return located


def validation_problems(data: object) -> list[str]:
    """Every problem of an already parsed program, as location-prefixed lines."""
    if not isinstance(data, Mapping):
        if data is None:
            return ["the file is empty: it should hold an event program (id, title, ...)"]
        return [
            "the program must be a mapping of keys (id, title, ...) at the top level, "
            f"not a {type(data).__name__}"
        ]
    try:
        Event.model_validate(data)
    except ValidationError as exc:
        located, consistency = _located_problems(exc)
        if consistency:
            # Fields were all valid: only the cross-field checks failed.
            ctx = next(e["ctx"] for e in exc.errors() if e["type"] == "program_consistency")
            located += _consistency_located(ctx["problems"])
        else:
            located += _consistency_located(consistency_problems(data))
        seen: set[str] = set()
        ordered = []
        for _loc, text in sorted(located, key=lambda item: _sort_key(item[0])):
            if text not in seen:
                seen.add(text)
                ordered.append(text)
        return ordered
    return []


class _ProgramLoader(yaml.SafeLoader):
    """SafeLoader that notes duplicate keys (PyYAML silently keeps the last one)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue
            if duplicate:
                mark = key_node.start_mark
                self.duplicates.append(
                    f"line {mark.line + 1}, column {mark.column + 1}: the key {key!r} "
                    f"appears twice in the same mapping"
                )
        return super().construct_mapping(node, deep=deep)


def parse_program(text: str) -> tuple[object, list[str]]:
    """The YAML document in ``text`` and the syntax problems found while reading it."""
    loader = _ProgramLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = ": ".join(p for p in (exc.context, exc.problem) if p)
        return None, [f"{where}YAML syntax error: {problem}"]
    except yaml.YAMLError as exc:
        return None, [f"YAML syntax error: {exc}"]
    finally:
        loader.dispose()
    return data, loader.duplicates


def program_problems(path: str | Path) -> list[str]:
    """Every problem of the program file at ``path``; empty when it loads."""
    try:
        load_program(path)
    except ProgramError as exc:
        return exc.problems
    return []


def load_program(path: str | Path) -> Event:
    """Read and check a program file; raises ``ProgramError`` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProgramError(path, ["the file does not exist"]) from None
    except IsADirectoryError:
        raise ProgramError(path, ["this is a directory, not a program file"]) from None
    except UnicodeDecodeError as exc:
        raise ProgramError(path, [f"the file is not UTF-8 text (byte {exc.start})"]) from None
    except OSError as exc:
        raise ProgramError(path, [f"cannot read the file: {exc.strerror}"]) from None
    data, problems = parse_program(text)
    if problems and data is None:
        raise ProgramError(path, problems)
    problems += validation_problems(data)
    if problems:
        raise ProgramError(path, problems)
    return Event.model_validate(data)
