"""Staff invitations: the id a staff link carries, how long it lives by default, and the
check a node makes of it against the store (a real SQLite file)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signaling.invitations import (
    ID_ALPHABET,
    ID_LENGTH,
    Invitation,
    check_invitation,
    new_invitation_id,
    staff_link_ttl,
)
from signaling.program import load_program
from signaling.settings import default_event_file
from signaling.store import SqliteStore
from signaling.tokens import RevokedToken, Role, TokenSigner, UnknownInvitation

SECRET = b"s" * 32


@pytest.fixture(scope="module")
def event():
    return load_program(default_event_file())


def test_a_staff_link_carries_its_invitation_id_and_attendee_links_none() -> None:
    signer = TokenSigner(SECRET)
    staff = signer.issue(
        Role.INTERPRETER, subject="anna", booth="ru-fr", invitation="k7m2x9qa", ttl=timedelta(1)
    )
    assert signer.verify(staff).invitation == "k7m2x9qa"
    older = signer.issue(Role.MODERATOR, subject="marie", ttl=timedelta(1))
    assert signer.verify(older).invitation is None
    with pytest.raises(ValueError, match="attendee links are not invitations"):
        signer.issue(Role.ATTENDEE, subject="r1", invitation="k7m2x9qa", ttl=timedelta(1))


def test_invitation_ids_are_short_unambiguous_and_distinct() -> None:
    ids = {new_invitation_id() for _ in range(2000)}
    assert len(ids) == 2000
    for invitation_id in ids:
        assert len(invitation_id) == ID_LENGTH and set(invitation_id) <= set(ID_ALPHABET)
    assert not set("01ilo") & set(ID_ALPHABET)


def test_a_link_made_weeks_ahead_lives_through_the_event_day_plus_the_margin(event) -> None:
    # The seed starts on 2027-06-21 at 14:00 in Brussels (UTC+2 in summer).
    weeks_ahead = datetime(2027, 6, 1, 9, 0, tzinfo=UTC)
    ttl = staff_link_ttl(event, 12, weeks_ahead)
    assert weeks_ahead + ttl == datetime(2027, 6, 21, 22, 0, tzinfo=UTC) + timedelta(hours=12)


def test_a_link_made_on_the_day_or_after_lives_at_least_the_margin(event) -> None:
    on_the_day = datetime(2027, 6, 21, 20, 0, tzinfo=UTC)
    assert on_the_day + staff_link_ttl(event, 3, on_the_day) == datetime(
        2027, 6, 22, 1, 0, tzinfo=UTC
    )
    long_after = datetime(2027, 9, 1, tzinfo=UTC)
    assert staff_link_ttl(event, 3, long_after) == timedelta(hours=3)


def test_the_event_day_ends_at_midnight_in_its_own_time_zone(event) -> None:
    tokyo = event.model_copy(update={"timezone": "Asia/Tokyo"})
    issued = datetime(2027, 6, 1, tzinfo=UTC)
    # Midnight after 2027-06-21 in Tokyo is 15:00 UTC on the 21st.
    assert issued + staff_link_ttl(tokyo, 1, issued) == datetime(2027, 6, 21, 16, 0, tzinfo=UTC)


async def test_the_check_admits_recorded_links_and_refuses_revoked_or_unknown_ones(
    tmp_path: Path, event
) -> None:
    signer = TokenSigner(SECRET)
    now = datetime.now(UTC)
    recorded = Invitation(
        id="k7m2x9qa",
        event_id=event.id,
        role=Role.SPEAKER,
        subject="elena-naumova",
        speaker="elena-naumova",
        issued_at=now,
        expires_at=now + timedelta(hours=1),
    )

    def claims(invitation: str | None):
        return signer.verify(
            signer.issue(
                Role.SPEAKER,
                subject="elena-naumova",
                speaker="elena-naumova",
                invitation=invitation,
                ttl=timedelta(hours=1),
            )
        )

    async with SqliteStore(tmp_path / "store.sqlite3") as store:
        await store.add_invitation(recorded)
        await check_invitation(store, event.id, claims("k7m2x9qa"))
        await check_invitation(store, event.id, claims(None))  # made before links were recorded
        with pytest.raises(UnknownInvitation, match="not known to this event"):
            await check_invitation(store, event.id, claims("nothere2"))
        with pytest.raises(UnknownInvitation):
            await check_invitation(store, "another-event", claims("k7m2x9qa"))
        await store.revoke_invitation("k7m2x9qa")
        with pytest.raises(RevokedToken, match="withdrawn by the organizer") as refused:
            await check_invitation(store, event.id, claims("k7m2x9qa"))
        assert refused.value.code == "token_revoked"
