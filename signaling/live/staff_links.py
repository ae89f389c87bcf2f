"""Staff links on a live node: a revoked link is refused, and its open pages are closed.

Every node checks a staff link against the store when it authenticates (no cache: a link
revoked a moment ago is refused on every node at once). A revocation made in the studio
is announced on the live bus (`Change("revoke")`), so every node closes the connections
holding that link within the bus's latency; one made with `dragoman revoke` (another
process, which has no bus) is found by each node polling the store's revocations every
`REVOCATION_POLL_S`. Both lead to `StaffLinks.revoked`, which closes the connections
with `CLOSE_REVOKED` and the error ``token_revoked``, which the pages say in words.

When the store cannot be read at authentication, the link is admitted (unless this node
already knows it was revoked): a store that fails for a moment must not lock the booths
out in the middle of the event; the failure is in the log.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from signaling import protocol as p
from signaling.invitations import (
    STAFF_ROLES,
    AlreadyRevoked,
    Invitation,
    NoSuchInvitation,
    check_invitation,
    withdrawn_message,
)
from signaling.live.clients import CLOSE_REVOKED
from signaling.live.replica import Change
from signaling.store import StoreError
from signaling.tokens import Claims, RevokedToken, Role, TokenError

if TYPE_CHECKING:
    from signaling.live.event import LiveEvent

log = logging.getLogger(__name__)

#: How often a node reads the revocations made outside it (`dragoman revoke`).
REVOCATION_POLL_S = 1.0
#: Revocations are looked for this far before the last one seen: the clock of the
#: machine that revoked may lag this node's.
CLOCK_SKEW_S = 60.0


class StaffLinks:
    """The node's side of staff invitations: refusal at the door, closing on revocation,
    the list the studio shows."""

    def __init__(self, live: LiveEvent, *, poll_s: float = REVOCATION_POLL_S) -> None:
        self.live = live
        self.poll_s = poll_s
        #: Revoked invitations this node has closed the connections of.
        self._handled: set[str] = set()
        self._since = 0.0
        self._poll_task: asyncio.Task[None] | None = None
        self._listing_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._since = self.live.clock() - CLOCK_SKEW_S
        self._poll_task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        for task in (self._poll_task, self._listing_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._poll_task = self._listing_task = None

    async def refusal(self, claims: Claims) -> TokenError | None:
        """Why this verified link may not join now (revoked, unknown), or None."""
        if claims.invitation is not None and claims.invitation in self._handled:
            return RevokedToken(withdrawn_message())
        try:
            await check_invitation(self.live.store, self.live.event.id, claims)
        except TokenError as exc:
            return exc
        except StoreError:
            log.warning("could not check a staff link against the store; admitted", exc_info=True)
        return None

    async def revoke(self, invitation_id: str) -> Invitation:
        """Revoke a link of this event (the studio's command) and close it everywhere."""
        store = self.live.store
        found = await store.invitation(invitation_id)
        if found is None or found.event_id != self.live.event.id:
            raise NoSuchInvitation(invitation_id)
        invitation, now = await store.revoke_invitation(invitation_id)
        assert invitation is not None
        if not now:
            raise AlreadyRevoked(invitation)
        log.info("staff link revoked", extra={"invitation": invitation_id})
        await self.live.publish(Change("revoke", {"invitation": invitation_id}))
        return invitation

    def revoked(self, invitation_id: str) -> None:
        """Close every connection of this node holding the link (once per link)."""
        if invitation_id in self._handled:
            return
        self._handled.add(invitation_id)
        for client in list(self.live.clients):
            if client.claims.invitation == invitation_id:
                client.revoked = True
                client.end(CLOSE_REVOKED, RevokedToken.code, withdrawn_message())
        self.live.seats.link_revoked(invitation_id)
        self.send_listing_soon()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                found = await self.live.store.invitations_revoked_since(
                    self.live.event.id, self._since
                )
            except Exception:  # the store failing now is told by every other path too
                log.warning("could not read the revoked staff links", exc_info=True)
                continue
            for invitation in found:
                self.revoked(invitation.id)
                assert invitation.revoked_at is not None
                self._since = max(self._since, invitation.revoked_at.timestamp() - CLOCK_SKEW_S)

    async def listing(self) -> p.StaffLinks:
        """Every staff link of the event, as the studio lists them."""
        found = await self.live.store.invitations(self.live.event.id)
        now = self.live.clock()
        return p.StaffLinks(
            links=[
                p.StaffLinkView(
                    id=invitation.id,
                    role=invitation.role,
                    subject=invitation.subject,
                    booth=invitation.booth,
                    speaker=invitation.speaker,
                    name=invitation.name,
                    issued_at=invitation.issued_at.timestamp(),
                    expires_at=invitation.expires_at.timestamp(),
                    revoked_at=None
                    if invitation.revoked_at is None
                    else invitation.revoked_at.timestamp(),
                    status=invitation.status(datetime.fromtimestamp(now, UTC)),
                )
                for invitation in found
                if invitation.role in STAFF_ROLES
            ]
        )

    def send_listing_soon(self) -> None:
        """The studios of this node get the list again (a link was revoked)."""
        if not any(c.role is Role.MODERATOR for c in self.live.clients):
            return
        if self._listing_task is not None and not self._listing_task.done():
            return
        self._listing_task = asyncio.get_running_loop().create_task(self._send_listing())

    async def _send_listing(self) -> None:
        try:
            listing = await self.listing()
        except Exception:
            log.warning("could not read the staff links for the studio", exc_info=True)
            return
        for client in list(self.live.clients):
            if client.role is Role.MODERATOR:
                client.send(listing)
