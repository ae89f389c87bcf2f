"""Attendee registration: what a person submits, what Dragoman keeps, and the rules between.

A registration is keyed by event and normalised email address: registering again with the
same address (in any letter case) gives back the same registration and the same personal
link. Everything a person types passes through `NewRegistration`, whose validation errors
are turned into `RegistrationError` naming the field and saying what is wrong in words.
HTTP lives elsewhere; this module only knows people, addresses and languages.
"""

from __future__ import annotations

import math
import secrets
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

if TYPE_CHECKING:
    from signaling.store.base import Store

NAME_MAX = 200
EMAIL_MAX = 254
EMAIL_LOCAL_MAX = 64
LANGUAGE_CODE_MAX = 16
EVENT_ID_MAX = 100

# Characters that are not control characters in the Unicode sense but let a name rewrite how
# the text around it is displayed (right-to-left overrides and isolates) or break lines.
_DISPLAY_TRICKS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")


class RegistrationError(ValueError):
    """A registration was refused because of what the person submitted.

    `field` names the offending form field (`name`, `email`, `language`, or `event_id`),
    `message` is a sentence that can be shown to the person as it is.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class RegistrationRateLimited(RegistrationError):
    """Too many registrations from the same client or for the same address in a short time."""

    def __init__(self, field: str, message: str, retry_after_s: float) -> None:
        super().__init__(field, message)
        self.retry_after_s = retry_after_s


def email_key(email: str) -> str:
    """The form of an address that identifies a person: the whole address lower-cased.

    Strictly the local part is case-sensitive, but no mail provider treats `Anna@` and
    `anna@` as two people, and people do type their address differently on a second visit.
    """
    return email.strip().lower()


def normalise_email(raw: str) -> str:
    """Check the syntax of an email address and return it with its domain lower-cased.

    Raises `ValueError` with a sentence explaining the problem.
    """
    email = raw.strip()
    if not email:
        raise ValueError("an email address is required")
    if len(email) > EMAIL_MAX:
        raise ValueError(f"an email address has at most {EMAIL_MAX} characters")
    if any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in email):
        raise ValueError("an email address cannot contain spaces or invisible characters")
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        raise ValueError("an email address looks like name@example.org")
    if len(local) > EMAIL_LOCAL_MAX:
        raise ValueError(f"the part before @ has at most {EMAIL_LOCAL_MAX} characters")
    # The syntax itself is email-validator's (the library behind pydantic's EmailStr);
    # the domain is checked alone first so that the message says which half is wrong.
    domain = domain.lower()
    try:
        validate_email(f"x@{domain}", check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{domain!r} is not a valid email domain: {exc}") from None
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(
            f"{local!r} is not a valid part before @ in an email address: {exc}"
        ) from None
    # Not the library's normalised form: the stored addresses, and the keys made of them,
    # stay as they were.
    return f"{local}@{domain}"


def check_name(raw: str) -> str:
    """Check a person's name and return it with surrounding whitespace removed.

    Any script is welcome; the name is kept exactly as typed otherwise, and escaping is the
    job of whoever displays it. Raises `ValueError` with a sentence explaining the problem.
    """
    name = raw.strip()
    if not name:
        raise ValueError("a name is required")
    if len(name) > NAME_MAX:
        raise ValueError(f"a name has at most {NAME_MAX} characters (this one has {len(name)})")
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cs") or ch in _DISPLAY_TRICKS:
            raise ValueError(f"a name cannot contain control characters (found U+{ord(ch):04X})")
    return name


def check_language(code: str, allowed: Collection[str]) -> str:
    """Check that `code` is one of the event's language codes; return it.

    Raises `ValueError` listing the languages the event offers.
    """
    code = code.strip()
    if not code:
        raise ValueError("a preferred language is required")
    if code not in allowed:
        shown = code if len(code) <= LANGUAGE_CODE_MAX else code[:LANGUAGE_CODE_MAX] + "…"
        offered = ", ".join(sorted(allowed)) or "none"
        raise ValueError(f"{shown!r} is not a language of this event (offered: {offered})")
    return code


class NewRegistration(BaseModel):
    """What a person submits to register for an event, validated.

    Build it with `NewRegistration.create(...)` (raises `RegistrationError`), or with
    `model_validate(data, context={"languages": codes})` to check the preferred language
    against the event's languages (raises pydantic's `ValidationError`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_max_length=4096)

    event_id: str
    name: str
    email: str
    language: str

    @field_validator("event_id")
    @classmethod
    def _event_id(cls, value: str) -> str:
        if not value or len(value) > EVENT_ID_MAX or not value.isprintable():
            raise ValueError("not a valid event id")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalise_email(value)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str, info: ValidationInfo) -> str:
        allowed = (info.context or {}).get("languages")
        if allowed is None:
            # Without the event's languages only the shape of a code can be checked.
            code = value.strip()
            if not code or len(code) > LANGUAGE_CODE_MAX or not code.isascii():
                raise ValueError("not a valid language code")
            return code
        return check_language(value, allowed)

    @property
    def email_key(self) -> str:
        return email_key(self.email)

    @classmethod
    def create(
        cls,
        *,
        event_id: str,
        name: Any,
        email: Any,
        language: Any,
        languages: Collection[str],
    ) -> NewRegistration:
        """Validate a submission for an event offering `languages` (codes).

        Raises `RegistrationError` for the first field in form order that is wrong.
        """
        data = {"event_id": event_id, "name": name, "email": email, "language": language}
        try:
            return cls.model_validate(data, context={"languages": frozenset(languages)})
        except ValidationError as exc:
            raise registration_error(exc) from None


_FIELD_ORDER = ("name", "email", "language", "event_id")


def registration_error(exc: ValidationError) -> RegistrationError:
    """Turn pydantic's report on a `NewRegistration` into one `RegistrationError`."""
    errors = exc.errors(include_url=False)

    def rank(err: Mapping[str, Any]) -> int:
        field = str(err["loc"][0]) if err["loc"] else ""
        return _FIELD_ORDER.index(field) if field in _FIELD_ORDER else len(_FIELD_ORDER)

    first = min(errors, key=rank)
    field = str(first["loc"][0]) if first["loc"] else "registration"
    kind = first["type"]
    if kind == "value_error":
        message = str(first["ctx"]["error"])
    elif kind in ("string_type", "string_too_long"):
        message = {
            "string_type": "this field must be text",
            "string_too_long": "this field is far too long",
        }[kind]
    elif kind == "missing":
        message = "this field is required"
    elif kind == "extra_forbidden":
        message = "this is not a registration field"
    else:
        message = first["msg"]
    return RegistrationError(field, message)


def new_registration_id() -> str:
    """An unguessable identifier: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class Registration:
    """A person registered for an event, as kept by the store."""

    id: str
    event_id: str
    name: str
    email: str
    language: str
    created_at: datetime  # timezone-aware, UTC

    @property
    def email_key(self) -> str:
        return email_key(self.email)

    @classmethod
    def issue(cls, new: NewRegistration, *, now: datetime | None = None) -> Registration:
        """A fresh registration (new id) for a validated submission."""
        created = (now or datetime.now(UTC)).astimezone(UTC)
        return cls(
            id=new_registration_id(),
            event_id=new.event_id,
            name=new.name,
            email=new.email,
            language=new.language,
            created_at=created,
        )

    def to_record(self) -> dict[str, str]:
        """A JSON-friendly form, the one the stores persist."""
        return {
            "id": self.id,
            "event_id": self.event_id,
            "name": self.name,
            "email": self.email,
            "language": self.language,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Registration:
        created = datetime.fromisoformat(record["created_at"])
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return cls(
            id=record["id"],
            event_id=record["event_id"],
            name=record["name"],
            email=record["email"],
            language=record["language"],
            created_at=created.astimezone(UTC),
        )


@dataclass(frozen=True, slots=True)
class RegistrationLimits:
    """How many registration attempts are accepted, per client and per address."""

    per_client: int = 100
    per_email: int = 5
    window_s: float = 600.0


def _minutes(seconds: float) -> str:
    """At most this long: the oldest attempt counted leaves the window by then."""
    whole = max(1, math.ceil(seconds / 60))
    return f"at most {whole} minute{'s' if whole > 1 else ''}"


async def count_client_attempt(store: Store, client: str, limits: RegistrationLimits) -> None:
    """Count one registration attempt from `client`, whatever becomes of it; raises
    `RegistrationRateLimited` when it is one too many."""
    if not await store.hit_rate_limit(
        f"register:client:{client}", limits.per_client, limits.window_s
    ):
        raise RegistrationRateLimited(
            "registration",
            "too many registration attempts from your network; please try again in "
            f"{_minutes(limits.window_s)}",
            limits.window_s,
        )


async def register_attendee(
    store: Store,
    *,
    event_id: str,
    languages: Collection[str],
    name: Any,
    email: Any,
    language: Any,
    client: str | None,
    limits: RegistrationLimits | None = None,
) -> tuple[Registration, bool]:
    """Validate a submission, apply the rate limits, and register (idempotently).

    `client` identifies where the request came from (the remote address); None when the
    caller counted the attempt already (`count_client_attempt`, as the HTTP API does
    before it reads the body). Returns the registration and whether it was created now.
    Raises `RegistrationError` for bad input and `RegistrationRateLimited` when a client
    or an address tries too often.
    """
    limits = limits or RegistrationLimits()
    # The client limit is checked before validation so that a flood of garbage is limited too.
    if client is not None:
        await count_client_attempt(store, client, limits)
    new = NewRegistration.create(
        event_id=event_id, name=name, email=email, language=language, languages=languages
    )
    if not await store.hit_rate_limit(
        f"register:email:{new.event_id}:{new.email_key}", limits.per_email, limits.window_s
    ):
        raise RegistrationRateLimited(
            "email",
            "too many registration attempts for this address; please try again in "
            f"{_minutes(limits.window_s)}",
            limits.window_s,
        )
    return await store.register(new)
