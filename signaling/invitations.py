"""Staff invitations: every staff link is recorded when it is issued, so that the organizer
can list them and take one back.

A staff link (moderator, interpreter, speaker) carries the id of its `Invitation`; the
store keeps the invitation (who it is for, when it was issued, until when it is valid,
whether and when it was revoked). A node admits a staff link only while its invitation is
recorded and not revoked (`check_invitation`), and closes the open connections of a link
the moment it is revoked (`signaling.live.staff_links`).

Staff links issued before invitations were recorded carry no id: they stay valid until
they expire (an organizer who upgrades on the morning of the event must not lock out his
booths), cannot be revoked one by one, and are withdrawn all together only by rotating the
secret (docs/operations.md). Attendee links are not invitations: the registration is
their record.

The default lifetime of a staff link follows the event (`staff_link_ttl`): valid until
the end of the event's day, in the event's time zone, plus a margin (a setting), instead
of a fixed number of days.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from signaling.program import Event
from signaling.tokens import Claims, RevokedToken, Role, UnknownInvitation

if TYPE_CHECKING:
    from signaling.store.base import Store

#: Roles whose links are invitations (attendee links come from registration).
STAFF_ROLES = frozenset({Role.MODERATOR, Role.INTERPRETER, Role.SPEAKER})
#: Invitation ids are typed by the organizer (`dragoman revoke ID`): short, unambiguous.
ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
ID_LENGTH = 8


class InvitationError(Exception):
    """A request about invitations that cannot be done; ``str()`` says why, ``code`` is
    a stable name for the wire."""

    code = "invitation_error"


class NoSuchInvitation(InvitationError):
    code = "unknown_link"

    def __init__(self, invitation_id: str) -> None:
        shown = invitation_id if len(invitation_id) <= 40 else invitation_id[:40] + "…"
        super().__init__(f"there is no staff link with id {shown!r}")
        self.invitation_id = invitation_id


class AlreadyRevoked(InvitationError):
    code = "already_revoked"

    def __init__(self, invitation: Invitation) -> None:
        assert invitation.revoked_at is not None
        super().__init__(
            f"staff link {invitation.id} ({invitation.described}) was already revoked on "
            f"{invitation.revoked_at:%Y-%m-%d %H:%M} UTC"
        )
        self.invitation = invitation


def new_invitation_id() -> str:
    """A fresh id: 8 letters and digits without look-alikes (40 bits)."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


@dataclass(frozen=True, kw_only=True)
class Invitation:
    """One staff link as issued: to whom, for what, until when; and whether taken back."""

    id: str
    event_id: str
    role: Role
    #: The identity the link gives on the wire (the token's subject).
    subject: str
    booth: str | None = None
    speaker: str | None = None
    #: Who the organizer gave it to, as he wrote it (``--name``), else the speaker's name.
    name: str = ""
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    @property
    def described(self) -> str:
        """ "an interpreter of booth ru-fr, Anna" — for messages to the organizer."""
        where = ""
        if self.booth:
            where = f" of booth {self.booth}"
        elif self.speaker:
            where = f" for speaker {self.speaker}"
        who = f", {self.name}" if self.name else ""
        return f"{self.role.described}{where}{who}"

    def status(self, now: datetime) -> str:
        """``revoked``, ``expired`` or ``active``."""
        if self.revoked_at is not None:
            return "revoked"
        if now >= self.expires_at:
            return "expired"
        return "active"

    def revoked(self, at: datetime) -> Invitation:
        return replace(self, revoked_at=at)

    def to_record(self) -> dict[str, Any]:
        """JSON-safe, without ``revoked_at`` (the stores keep it apart, to query it)."""
        return {
            "id": self.id,
            "event_id": self.event_id,
            "role": self.role.value,
            "subject": self.subject,
            "booth": self.booth,
            "speaker": self.speaker,
            "name": self.name,
            "issued_at": self.issued_at.timestamp(),
            "expires_at": self.expires_at.timestamp(),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], revoked_at: float | None) -> Invitation:
        return cls(
            id=record["id"],
            event_id=record["event_id"],
            role=Role(record["role"]),
            subject=record["subject"],
            booth=record.get("booth"),
            speaker=record.get("speaker"),
            name=record.get("name") or "",
            issued_at=datetime.fromtimestamp(float(record["issued_at"]), UTC),
            expires_at=datetime.fromtimestamp(float(record["expires_at"]), UTC),
            revoked_at=None if revoked_at is None else datetime.fromtimestamp(revoked_at, UTC),
        )

    def as_dict(self, now: datetime) -> dict[str, Any]:
        """For ``invite --list --json`` and the studio: times as ISO 8601 UTC."""

        def iso(moment: datetime | None) -> str | None:
            return None if moment is None else moment.isoformat().replace("+00:00", "Z")

        return {
            "id": self.id,
            "role": self.role.value,
            "subject": self.subject,
            "booth": self.booth,
            "speaker": self.speaker,
            "name": self.name,
            "issued_at": iso(self.issued_at),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "status": self.status(now),
        }


def staff_link_ttl(event: Event, margin_hours: float, now: datetime) -> timedelta:
    """How long a staff link issued ``now`` stays valid by default: until the end of the
    event's day (midnight after its start, in its time zone) plus ``margin_hours``, and at
    least ``margin_hours`` (a link made after the event, for a rehearsal of the next)."""
    start = event.starts_at_local
    day_ends = datetime.combine(start.date() + timedelta(days=1), time(0), tzinfo=event.tz)
    until = day_ends.astimezone(UTC) + timedelta(hours=margin_hours)
    return max(until - now, timedelta(hours=margin_hours))


async def check_invitation(store: Store, event_id: str, claims: Claims) -> None:
    """Raise a `TokenError` when the staff link of ``claims`` was revoked, or names an
    invitation this event has no record of. Links without an invitation pass (see the
    module's text); so do attendee links. Raises `StoreError` when the store cannot say."""
    if claims.invitation is None or claims.role not in STAFF_ROLES:
        return
    invitation = await store.invitation(claims.invitation)
    if invitation is None or invitation.event_id != event_id:
        raise UnknownInvitation(
            "this link is not known to this event (it was issued for another one, or its "
            "record was lost); ask the organizer for a new link"
        )
    if invitation.revoked_at is not None:
        raise RevokedToken(withdrawn_message())


def withdrawn_message() -> str:
    return "this link was withdrawn by the organizer; ask him for a new one if you need it"
