"""The store's part of staff invitations, run against SQLite and Redis alike."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from signaling.invitations import Invitation
from signaling.store import Store
from signaling.tokens import Role

from .conftest import Backend, ManualClock

EVENT = "shared-historical-memory"


def invitation(
    invitation_id: str, *, event_id: str = EVENT, role: Role = Role.INTERPRETER, name: str = ""
) -> Invitation:
    issued = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    return Invitation(
        id=invitation_id,
        event_id=event_id,
        role=role,
        subject=f"ru-fr-interpreter-{invitation_id}",
        booth="ru-fr" if role is Role.INTERPRETER else None,
        speaker="alexander-tokovinin" if role is Role.SPEAKER else None,
        name=name,
        issued_at=issued,
        expires_at=issued + timedelta(days=1),
    )


async def test_an_invitation_is_kept_as_issued_and_listed_oldest_first(store: Store) -> None:
    first = invitation("aaaa2222", name="Anna «Аня» Petrova")
    second = invitation("bbbb3333", role=Role.SPEAKER)
    other = invitation("cccc4444", event_id="another-event")
    for made in (first, second, other):
        await store.add_invitation(made)

    assert await store.invitation("aaaa2222") == first
    assert await store.invitation("nothere") is None
    assert await store.invitation("' OR 1=1 --") is None
    assert await store.invitations(EVENT) == [first, second]
    assert await store.invitations("no-such-event") == []


async def test_revoking_marks_the_time_once(store: Store, clock: ManualClock) -> None:
    await store.add_invitation(invitation("aaaa2222"))

    revoked, now = await store.revoke_invitation("aaaa2222")
    clock.advance(60)
    again, now_again = await store.revoke_invitation("aaaa2222")

    assert now is True and now_again is False
    assert revoked is not None
    assert revoked.revoked_at == datetime.fromtimestamp(clock.now - 60, UTC)
    assert again == revoked  # the first time stays
    assert await store.invitation("aaaa2222") == revoked
    assert (await store.invitations(EVENT))[0].revoked_at == revoked.revoked_at


async def test_revoking_an_unknown_id_changes_nothing(store: Store) -> None:
    assert await store.revoke_invitation("nothere") == (None, False)
    assert await store.invitations_revoked_since(EVENT, 0.0) == []


async def test_revocations_are_found_after_a_moment_in_their_order(
    store: Store, clock: ManualClock
) -> None:
    for invitation_id in ("aaaa2222", "bbbb3333", "cccc4444"):
        await store.add_invitation(invitation(invitation_id))
    await store.add_invitation(invitation("dddd5555", event_id="another-event"))
    mark = clock.now
    await store.revoke_invitation("cccc4444")
    clock.advance(1.5)
    await store.revoke_invitation("aaaa2222")
    await store.revoke_invitation("dddd5555")

    assert [i.id for i in await store.invitations_revoked_since(EVENT, mark - 1)] == [
        "cccc4444",
        "aaaa2222",
    ]
    assert [i.id for i in await store.invitations_revoked_since(EVENT, mark + 1)] == ["aaaa2222"]
    assert await store.invitations_revoked_since(EVENT, clock.now) == []


async def test_concurrent_revocations_through_two_stores_revoke_once(
    backend: Backend, clock: ManualClock
) -> None:
    async with backend.make(clock) as one, backend.make(clock) as two:
        await one.add_invitation(invitation("aaaa2222"))
        results = await asyncio.gather(
            *(store.revoke_invitation("aaaa2222") for store in [one, two] * 5)
        )

    assert sum(now for _, now in results) == 1
    assert len({revoked.revoked_at for revoked, _ in results if revoked is not None}) == 1


async def test_invitations_survive_closing_and_reopening(
    backend: Backend, clock: ManualClock
) -> None:
    async with backend.make(clock) as store:
        await store.add_invitation(invitation("aaaa2222"))
        await store.revoke_invitation("aaaa2222")
        kept = await store.invitations(EVENT)
    async with backend.make(clock) as store:
        assert await store.invitations(EVENT) == kept
