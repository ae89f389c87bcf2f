"""The `Store` contract, run against SQLite and Redis alike (see conftest.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from signaling.live_state import LiveState
from signaling.registration import NewRegistration, Registration
from signaling.store import CorruptLiveState, Store, StoreError

from .conftest import Backend, ManualClock

EVENT = "shared-historical-memory"
OTHER_EVENT = "another-event"


def submission(
    name: str = "Alla Zhuplatova",
    email: str = "alla@example.org",
    language: str = "ru",
    event_id: str = EVENT,
) -> NewRegistration:
    return NewRegistration.create(
        event_id=event_id, name=name, email=email, language=language, languages=["ru", "fr"]
    )


# Registration


async def test_register_creates_a_registration_with_an_unguessable_id(
    store: Store, clock: ManualClock
) -> None:
    registration, created = await store.register(submission())

    assert created is True
    assert registration.event_id == EVENT
    assert registration.name == "Alla Zhuplatova"
    assert registration.email == "alla@example.org"
    assert registration.language == "ru"
    assert registration.created_at == datetime.fromtimestamp(clock.now, UTC)
    assert registration.created_at.tzinfo is not None
    assert len(registration.id) >= 22  # 128 random bits, URL-safe
    assert registration.id.replace("-", "").replace("_", "").isalnum()


async def test_registering_again_with_the_same_address_in_another_case_returns_the_same(
    store: Store, clock: ManualClock
) -> None:
    first, created_first = await store.register(submission(email="Alla.Z@Example.ORG"))
    clock.advance(60)
    again, created_again = await store.register(
        submission(name="A. Zhuplatova", email="alla.z@example.org", language="fr")
    )

    assert created_first is True
    assert created_again is False
    assert again == first  # the first registration wins, name and language included
    assert await store.registrations(EVENT) == [first]


async def test_the_same_address_registers_separately_for_another_event(store: Store) -> None:
    here, _ = await store.register(submission())
    there, created = await store.register(submission(event_id=OTHER_EVENT))

    assert created is True
    assert there.id != here.id
    assert await store.registrations(OTHER_EVENT) == [there]


async def test_registration_is_found_by_email_in_any_case(store: Store) -> None:
    registration, _ = await store.register(submission(email="Elena.Naumova@Example.org"))

    assert await store.registration_by_email(EVENT, "elena.naumova@example.org") == registration
    assert await store.registration_by_email(EVENT, "  ELENA.NAUMOVA@EXAMPLE.ORG ") == registration
    assert await store.registration_by_email(EVENT, "someone.else@example.org") is None
    assert await store.registration_by_email(OTHER_EVENT, "elena.naumova@example.org") is None


async def test_registration_is_found_by_id(store: Store) -> None:
    registration, _ = await store.register(submission())

    assert await store.registration(registration.id) == registration
    assert await store.registration("no-such-registration") is None
    assert await store.registration("") is None
    assert await store.registration("' OR 1=1 --") is None


async def test_registrations_are_listed_oldest_first_per_event(
    store: Store, clock: ManualClock
) -> None:
    names = ["Olivier Van der Wilt", "Григорий Циденков", "Jean-Michel Bodelet", "Christian Simon"]
    made: list[Registration] = []
    for i, name in enumerate(names):
        registration, _ = await store.register(submission(name=name, email=f"p{i}@example.org"))
        made.append(registration)
        if i % 2:
            clock.advance(1)  # some share a creation time: order must not depend on it
    await store.register(submission(event_id=OTHER_EVENT))

    assert await store.registrations(EVENT) == made
    assert await store.registrations("no-such-event") == []


@pytest.mark.parametrize(
    "name",
    [
        "Елена Гундорина",
        "Jean-Michel Bodelet",
        "Ольга «Оля» Дмитриевна",
        "Zoë O'Brien-Łukasiewicz",
        "李小龍",
        "محمد",
        "Anna 👩‍🔬",
        "<script>alert('x')</script> & \"friends\"",
        "x" * 200,
    ],
)
async def test_names_are_stored_exactly_as_given(store: Store, name: str) -> None:
    registration, _ = await store.register(submission(name=name))

    assert (await store.registration(registration.id)).name == name
    assert (await store.registrations(EVENT))[0].name == name


async def test_concurrent_registrations_of_one_address_make_one(store: Store) -> None:
    variants = ["Alla@Example.org", "alla@example.org", "ALLA@EXAMPLE.ORG", "alla@EXAMPLE.org"]
    results = await asyncio.gather(
        *(store.register(submission(email=variants[i % len(variants)])) for i in range(20))
    )

    assert sum(created for _, created in results) == 1
    assert len({registration.id for registration, _ in results}) == 1
    assert len(await store.registrations(EVENT)) == 1


async def test_concurrent_registrations_through_two_stores_sharing_the_data_make_one(
    backend: Backend, clock: ManualClock
) -> None:
    # Two stores stand for two nodes (or two processes on one SQLite file): each has its own
    # connection, so the backend itself must refuse the duplicate.
    async with backend.make(clock) as node_a, backend.make(clock) as node_b:
        results = await asyncio.gather(
            *(
                (node_a if i % 2 else node_b).register(submission(email="Same@Example.org"))
                for i in range(20)
            )
        )
        assert sum(created for _, created in results) == 1
        assert len({registration.id for registration, _ in results}) == 1
        assert len(await node_a.registrations(EVENT)) == 1
        hits = await asyncio.gather(
            *((node_a if i % 2 else node_b).hit_rate_limit("shared", 3, 60.0) for i in range(20))
        )
        assert sum(hits) == 3


async def test_concurrent_registrations_of_different_addresses_are_all_kept(store: Store) -> None:
    results = await asyncio.gather(
        *(store.register(submission(email=f"person{i}@example.org")) for i in range(20))
    )

    assert all(created for _, created in results)
    listed = await store.registrations(EVENT)
    assert sorted(r.email for r in listed) == sorted(r.email for r, _ in results)


async def test_the_registration_count_follows_registrations_per_event(
    backend: Backend, clock: ManualClock
) -> None:
    async with backend.make(clock) as node_a, backend.make(clock) as node_b:
        assert await node_a.registration_count(EVENT) == 0
        await asyncio.gather(
            *(
                (node_a if i % 2 else node_b).register(submission(email=f"p{i % 7}@example.org"))
                for i in range(20)
            )
        )
        await node_b.register(submission(event_id=OTHER_EVENT))
        # Seven addresses, whoever registered them twice: seven registrations, on both.
        assert await node_a.registration_count(EVENT) == 7
        assert await node_b.registration_count(EVENT) == 7
        assert await node_a.registration_count(OTHER_EVENT) == 1
        assert await node_a.registration_count("no-such-event") == 0


# Live state


async def test_live_state_is_empty_until_first_stored(store: Store) -> None:
    assert await store.get_live_state(EVENT) == LiveState()


async def test_live_state_round_trips_with_its_update_time(
    store: Store, clock: ManualClock
) -> None:
    state = LiveState(
        session_id="plenary",
        on_air_speaker="alexander-tokovinin",
        on_air_interpreter={"ru-fr": "interpreter-1"},
        direction_override={"ru-fr": "fr"},
    )

    stored = await store.put_live_state(EVENT, state)

    assert stored.updated_at == datetime.fromtimestamp(clock.now, UTC)
    assert state.updated_at is None  # the caller's object is not modified
    assert await store.get_live_state(EVENT) == stored
    assert await store.get_live_state(OTHER_EVENT) == LiveState()


async def test_live_state_keeps_keys_it_does_not_know(store: Store) -> None:
    state = LiveState(
        on_air_speaker="christian-simon",
        extra={"hand_raised": ["elena-gundorina"], "stage": {"layout": "side-by-side"}},
    )

    await store.put_live_state(EVENT, state)
    read = await store.get_live_state(EVENT)

    assert read.extra == {"hand_raised": ["elena-gundorina"], "stage": {"layout": "side-by-side"}}
    assert read.on_air_speaker == "christian-simon"


async def test_live_state_is_replaced_by_the_latest_put(store: Store, clock: ManualClock) -> None:
    await store.put_live_state(EVENT, LiveState(session_id="plenary", on_air_speaker="a"))
    clock.advance(5)
    latest = await store.put_live_state(EVENT, LiveState(session_id="session-1"))

    assert await store.get_live_state(EVENT) == latest
    assert latest.on_air_speaker is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("\x00\xff garbage", "not valid JSON"),
        ("[1, 2, 3]", "expected a JSON object"),
        ('{"on_air_speaker": 42}', "on_air_speaker"),
        ('{"on_air_interpreter": ["ru-fr"]}', "on_air_interpreter"),
        ('{"updated_at": "yesterday"}', "updated_at"),
    ],
)
async def test_unreadable_live_state_is_a_clear_error_until_replaced(
    store: Store, backend: Backend, raw: str, reason: str
) -> None:
    await store.put_live_state(OTHER_EVENT, LiveState(session_id="kept"))
    backend.write_raw_live_state(EVENT, raw)

    with pytest.raises(CorruptLiveState) as caught:
        await store.get_live_state(EVENT)
    assert EVENT in str(caught.value)
    assert reason in str(caught.value)
    assert (await store.get_live_state(OTHER_EVENT)).session_id == "kept"

    await store.put_live_state(EVENT, LiveState(session_id="plenary"))
    assert (await store.get_live_state(EVENT)).session_id == "plenary"


# Rate limit


async def test_rate_limit_allows_the_limit_then_refuses_until_the_window_slides(
    store: Store, clock: ManualClock
) -> None:
    key = "register:client:192.0.2.7"
    allowed = []
    for _ in range(3):
        allowed.append(await store.hit_rate_limit(key, 3, 10.0))
        clock.advance(1)
    assert allowed == [True, True, True]  # at t = 0, 1, 2
    assert await store.hit_rate_limit(key, 3, 10.0) is False  # t = 3
    clock.advance(6.5)
    assert await store.hit_rate_limit(key, 3, 10.0) is False  # t = 9.5: all three still count
    clock.advance(1)
    assert await store.hit_rate_limit(key, 3, 10.0) is True  # t = 10.5: the t = 0 hit left
    assert await store.hit_rate_limit(key, 3, 10.0) is False  # refused hits were not counted
    clock.advance(100)
    assert [await store.hit_rate_limit(key, 3, 10.0) for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


async def test_rate_limits_of_different_keys_are_independent(store: Store) -> None:
    assert await store.hit_rate_limit("a", 1, 60.0) is True
    assert await store.hit_rate_limit("a", 1, 60.0) is False
    assert await store.hit_rate_limit("b", 1, 60.0) is True
    assert await store.hit_rate_limit("a:b", 1, 60.0) is True


async def test_concurrent_hits_never_exceed_the_limit(store: Store) -> None:
    results = await asyncio.gather(*(store.hit_rate_limit("flood", 5, 60.0) for _ in range(20)))

    assert sum(results) == 5


async def test_a_zero_limit_refuses_everything(store: Store) -> None:
    assert await store.hit_rate_limit("closed", 0, 60.0) is False


# Booth chat


async def test_chat_messages_are_numbered_per_thread_and_listed_oldest_first(
    store: Store, clock: ManualClock
) -> None:
    first = await store.add_chat_message(EVENT, "booth:ru-fr", "anna", "interpreter", "1948")
    clock.advance(1.5)
    second = await store.add_chat_message(EVENT, "booth:ru-fr", "boris", "interpreter", "ок")
    other = await store.add_chat_message(EVENT, "studio:ru-fr", "mod", "moderator", "slide 12")

    assert (first.seq, second.seq, other.seq) == (1, 2, 1)
    assert second.at == pytest.approx(first.at + 1.5)
    assert first.at == pytest.approx(clock.now - 1.5)
    assert await store.chat_messages(EVENT, "booth:ru-fr", 10) == [first, second]
    assert await store.chat_messages(EVENT, "studio:ru-fr", 10) == [other]
    assert await store.chat_messages(OTHER_EVENT, "booth:ru-fr", 10) == []


async def test_chat_listing_keeps_the_newest(store: Store) -> None:
    for n in range(5):
        await store.add_chat_message(EVENT, "booth:x", "anna", "interpreter", f"m{n}")
    newest = await store.chat_messages(EVENT, "booth:x", 2)
    assert [(e.seq, e.text) for e in newest] == [(4, "m3"), (5, "m4")]
    assert await store.chat_messages(EVENT, "booth:x", 0) == []


async def test_chat_keeps_any_text_exactly(store: Store) -> None:
    hostile = '<img src=x onerror="alert(1)"> "quotes" \\ Ёлка 🎧\nline'
    entry = await store.add_chat_message(EVENT, "booth:x", 'a"b', "interpreter", hostile)
    assert (await store.chat_messages(EVENT, "booth:x", 1)) == [entry]
    assert entry.text == hostile and entry.sender == 'a"b'


async def test_concurrent_chat_messages_get_distinct_numbers_in_order(store: Store) -> None:
    entries = await asyncio.gather(
        *(
            store.add_chat_message(EVENT, "booth:x", "anna", "interpreter", f"m{n}")
            for n in range(20)
        )
    )
    assert sorted(e.seq for e in entries) == list(range(1, 21))
    listed = await store.chat_messages(EVENT, "booth:x", 100)
    assert [e.seq for e in listed] == list(range(1, 21))
    assert {e.text for e in listed} == {f"m{n}" for n in range(20)}


# Lifecycle and durability


async def test_everything_survives_closing_and_reopening(
    backend: Backend, clock: ManualClock
) -> None:
    async with backend.make(clock) as first:
        registration, _ = await first.register(submission(name="Елена Наумова"))
        state = await first.put_live_state(EVENT, LiveState(session_id="session-2"))
        assert await first.hit_rate_limit("k", 1, 60.0) is True
        said = await first.add_chat_message(EVENT, "studio:ru-fr", "mod", "moderator", "5 min")

    async with backend.make(clock) as reopened:
        assert await reopened.registrations(EVENT) == [registration]
        assert await reopened.registration_by_email(EVENT, "ALLA@example.org") == registration
        assert await reopened.get_live_state(EVENT) == state
        assert await reopened.hit_rate_limit("k", 1, 60.0) is False
        assert await reopened.chat_messages(EVENT, "studio:ru-fr", 10) == [said]
        again, created = await reopened.register(submission())
        assert (again, created) == (registration, False)


async def test_a_store_must_be_opened_before_use(backend: Backend, clock: ManualClock) -> None:
    store = backend.make(clock)

    with pytest.raises(StoreError, match="not open"):
        await store.registrations(EVENT)

    await store.open()
    await store.open()  # opening twice is harmless
    assert await store.registrations(EVENT) == []
    await store.close()
    await store.close()  # so is closing twice
    with pytest.raises(StoreError, match="not open"):
        await store.register(submission())


async def test_data_from_a_newer_version_is_refused_not_misread(
    backend: Backend, clock: ManualClock
) -> None:
    async with backend.make(clock) as store:
        await store.register(submission())
    backend.write_schema_version("99")

    with pytest.raises(StoreError, match="newer Dragoman"):
        await backend.make(clock).open()
