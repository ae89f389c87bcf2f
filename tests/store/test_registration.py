"""Registration input rules: every bad submission is refused with the field and a reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from signaling.registration import (
    NAME_MAX,
    NewRegistration,
    Registration,
    RegistrationError,
    RegistrationLimits,
    RegistrationRateLimited,
    email_key,
    register_attendee,
)
from signaling.store import Store

from .conftest import ManualClock

LANGUAGES = ["ru", "fr"]


def create(**overrides: object) -> NewRegistration:
    fields: dict[str, object] = {
        "event_id": "shm",
        "name": "Grigory Tsidenkov",
        "email": "grigory@example.org",
        "language": "ru",
        "languages": LANGUAGES,
    }
    fields.update(overrides)
    return NewRegistration.create(**fields)  # type: ignore[arg-type]


def refused(**overrides: object) -> RegistrationError:
    with pytest.raises(RegistrationError) as caught:
        create(**overrides)
    return caught.value


def test_a_valid_submission_is_accepted_and_tidied() -> None:
    new = create(name="  Елена Гундорина\t", email=" Elena.G@Samara.EXAMPLE.ru ", language="ru")

    assert new.name == "Елена Гундорина"
    assert new.email == "Elena.G@samara.example.ru"  # the domain is lower-cased, not the rest
    assert new.email_key == "elena.g@samara.example.ru"
    assert new.language == "ru"


@pytest.mark.parametrize(
    "email",
    [
        "anna@example.org",
        "anna.maria+dragoman@mail.example.co.uk",
        "o'brien@example.ie",
        "user_name-1@sub-domain.example.travel",
        "иван@пример.рф",
        "anna@xn--e1afmkfd.xn--p1ai",
    ],
)
def test_plausible_addresses_are_accepted(email: str) -> None:
    assert create(email=email).email_key == email.lower()


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        ("", "required"),
        ("   ", "required"),
        ("anna", "looks like name@example.org"),
        ("anna@", "looks like name@example.org"),
        ("@example.org", "looks like name@example.org"),
        ("anna@localhost", "not a valid email domain"),
        ("anna@example.", "not a valid email domain"),
        ("anna@-example.org", "not a valid email domain"),
        ("anna@exa_mple.org", "not a valid email domain"),
        ("anna@example..org", "not a valid email domain"),
        ("anna@@example.org", "part before @"),
        (".anna@example.org", "part before @"),
        ("an..na@example.org", "part before @"),
        ("anna.@example.org", "part before @"),
        ("an na@example.org", "spaces"),
        ("anna@example.org\r\nBcc: victim@example.org", "spaces"),
        ("anna\u200b@example.org", "invisible"),
        ("a" * 65 + "@example.org", "at most 64"),
        ("a" * 60 + "@" + "b" * 190 + ".org", "at most 254"),
    ],
)
def test_bad_addresses_are_refused_with_a_reason(email: str, reason: str) -> None:
    error = refused(email=email)

    assert error.field == "email"
    assert reason in error.message


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "required"),
        ("  \t ", "required"),
        ("x" * (NAME_MAX + 1), f"at most {NAME_MAX}"),
        ("x" * 10_000, "far too long"),
        ("Anna\x00Smith", "control characters (found U+0000)"),
        ("Anna\nSmith", "control characters (found U+000A)"),
        ("Anna\x1b[31mSmith", "control characters (found U+001B)"),
        ("Anna\u202eSmith", "control characters (found U+202E)"),
        ("Anna\x85Smith", "control characters (found U+0085)"),
    ],
)
def test_bad_names_are_refused_with_a_reason(name: str, reason: str) -> None:
    error = refused(name=name)

    assert error.field == "name"
    assert reason in error.message


def test_a_name_of_exactly_the_maximum_length_is_accepted() -> None:
    assert len(create(name="Я" * NAME_MAX).name) == NAME_MAX


@pytest.mark.parametrize("language", ["de", "RU", "", "ru-RU", "x" * 500])
def test_a_language_the_event_does_not_offer_is_refused(language: str) -> None:
    error = refused(language=language)

    assert error.field == "language"
    assert "fr, ru" in error.message or "required" in error.message
    assert len(error.message) < 200  # a huge input is not echoed back


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("name", 42, "must be text"),
        ("email", ["a@example.org"], "must be text"),
        ("language", None, "must be text"),
    ],
)
def test_values_that_are_not_text_are_refused(field: str, value: object, reason: str) -> None:
    error = refused(**{field: value})

    assert error.field == field
    assert reason in error.message


def test_the_first_bad_field_in_form_order_is_reported() -> None:
    error = refused(name="", email="nope", language="de")

    assert error.field == "name"
    assert str(error) == "name: a name is required"


def test_validation_with_a_context_checks_the_language_too() -> None:
    data = {"event_id": "shm", "name": "A", "email": "a@example.org", "language": "de"}

    with pytest.raises(ValidationError, match="not a language of this event"):
        NewRegistration.model_validate(data, context={"languages": {"ru", "fr"}})
    assert NewRegistration.model_validate({**data, "language": "fr"}).language == "fr"


def test_unknown_fields_are_refused() -> None:
    data = {"event_id": "shm", "name": "A", "email": "a@example.org", "language": "fr", "x": 1}

    with pytest.raises(ValidationError, match="Extra inputs"):
        NewRegistration.model_validate(data)


def test_email_key_ignores_case_and_surrounding_space() -> None:
    assert email_key("  Anna.Maria@Example.ORG ") == "anna.maria@example.org"


def test_registration_records_round_trip() -> None:
    created = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
    registration = Registration.issue(create(name="Алла Жуплатова"), now=created)

    assert Registration.from_record(registration.to_record()) == registration
    assert registration.created_at == created


def test_registration_ids_are_unique_and_url_safe() -> None:
    ids = {Registration.issue(create()).id for _ in range(1000)}

    assert len(ids) == 1000
    assert all(len(i) == 22 and i.replace("-", "").replace("_", "").isalnum() for i in ids)


# The service: validation, rate limits and the store together.


async def register(store: Store, client: str = "192.0.2.1", **fields: object):
    values: dict[str, object] = {
        "name": "Jean-Michel Bodelet",
        "email": "jm@example.be",
        "language": "fr",
    }
    values.update(fields)
    return await register_attendee(
        store,
        event_id="shm",
        languages=LANGUAGES,
        client=client,
        limits=RegistrationLimits(per_client=4, per_email=2, window_s=60.0),
        **values,  # type: ignore[arg-type]
    )


async def test_register_attendee_registers_once(store: Store) -> None:
    first, created = await register(store)
    again, created_again = await register(store, email="JM@example.be")

    assert (created, created_again) == (True, False)
    assert again == first


async def test_register_attendee_refuses_bad_input_without_storing(store: Store) -> None:
    with pytest.raises(RegistrationError) as caught:
        await register(store, email="not-an-address")

    assert caught.value.field == "email"
    assert await store.registrations("shm") == []


async def test_register_attendee_limits_attempts_per_address(
    store: Store, clock: ManualClock
) -> None:
    await register(store, client="192.0.2.1")
    await register(store, client="192.0.2.2")

    with pytest.raises(RegistrationRateLimited) as caught:
        await register(store, client="192.0.2.3", email="Jm@Example.be")
    assert caught.value.field == "email"
    assert "too many" in caught.value.message

    await register(store, client="192.0.2.3", email="someone@example.be")  # others unaffected
    clock.advance(61)
    await register(store, client="192.0.2.4")  # the window has passed


async def test_register_attendee_limits_attempts_per_client_even_when_invalid(
    store: Store,
) -> None:
    for _ in range(4):
        with pytest.raises(RegistrationError):
            await register(store, email="garbage")

    with pytest.raises(RegistrationRateLimited, match="too many registration attempts"):
        await register(store, email="fine@example.org")
    await register(store, client="198.51.100.9", email="fine@example.org")
