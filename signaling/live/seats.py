"""Seats: one page per speaker and per interpreter, and never a silent swap.

A speaker link gives the seat of its speaker; an interpreter link the seat of its
interpreter in his booth. Two pages opened with the same link would publish the same
media: the second one would silently replace the first (LiveKit refuses such a second
participant with DUPLICATE_IDENTITY). So, when a connection arrives for a seat another
connection of this node holds:

1. The server asks the holder's page whether it is still there (``seat_check``, which a
   page answers at once with ``seat_here``). A page that does not answer within
   `SEAT_CHECK_S` is gone (a network that dropped without a close, a laptop shut): the
   newcomer simply takes the seat, the way a page reconnecting after a blink does.
2. The holder answered: the newcomer is refused with ``seat_taken``; his page says the
   link is in use on another page and offers to ask to take over.
3. Asked (``auth`` with ``claim``), the holder's page is asked (``seat_claim``) and so is
   the studio (``seat_claims``); the newcomer waits (``seat_waiting``). The first
   ``answer_claim`` decides: allowed, the holder is closed with `CLOSE_SEAT` and
   ``displaced`` (its page says another page took over) and the newcomer is welcomed;
   refused, or no answer within `CLAIM_WAIT_S`, the newcomer is closed with
   ``claim_refused`` or ``claim_expired``. A holder that leaves meanwhile leaves the seat
   to the newcomer.

Moderator links have no seat: several studios may be open at once. Seats are a node's
business: two pages of one link on two nodes are not seen by each other (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from signaling import protocol as p
from signaling.live.clients import CLOSE_SEAT, Client, refuse
from signaling.tokens import Claims, Role

if TYPE_CHECKING:
    from signaling.live.event import LiveEvent

log = logging.getLogger(__name__)

#: How long a page holding a seat has to say it is still there.
SEAT_CHECK_S = 3.0
#: How long a request to take over waits for the holder or the moderator.
CLAIM_WAIT_S = 60.0
#: A seat given to a newcomer is his for this long before he has joined (he may be gone).
RESERVED_S = 5.0

Seat = tuple[str, ...]


def seat_of(claims: Claims) -> Seat | None:
    """The seat a link gives (None: a link that may be open on several pages)."""
    if claims.role is Role.SPEAKER and claims.speaker is not None:
        return ("speaker", claims.speaker)
    if claims.role is Role.INTERPRETER and claims.booth is not None:
        return ("interpreter", claims.booth, claims.subject)
    return None


@dataclass(eq=False)
class SeatRefusal:
    """Why a newcomer does not get the seat: an error code and a sentence."""

    code: str
    message: str


@dataclass(eq=False)
class Claim:
    """A newcomer's request to take over a seat, waiting for an answer."""

    id: str
    claims: Claims
    holder: Client
    until: float
    decided: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def view(self) -> p.SeatClaimView:
        claims = self.claims
        return p.SeatClaimView(
            claim=self.id,
            role=claims.role,
            subject=claims.subject,
            booth=claims.booth,
            speaker=claims.speaker,
            until=self.until,
        )


class Seats:
    """Who holds which seat on this node, and the requests to take one over."""

    def __init__(
        self, live: LiveEvent, *, check_s: float = SEAT_CHECK_S, wait_s: float = CLAIM_WAIT_S
    ) -> None:
        self.live = live
        self.check_s = check_s
        self.wait_s = wait_s
        self.claims: dict[str, Claim] = {}
        self._checks: dict[str, tuple[Client, asyncio.Future[None]]] = {}
        #: Seats given to a newcomer who has not joined yet, and since when: two
        #: newcomers let in at once must not both sit down.
        self._reserved: dict[Seat, float] = {}

    def holder(self, claims: Claims) -> Client | None:
        """The connection of this node holding the seat of ``claims``, if any."""
        seat = seat_of(claims)
        if seat is None:
            return None
        for client in self.live.clients:
            if not client.closing and seat_of(client.claims) == seat:
                return client
        return None

    def free(self, claims: Claims) -> bool:
        """Nobody holds the seat of ``claims`` and nobody was just given it: joining now
        needs no questions (the join follows without a pause, so nobody slips in)."""
        return self.holder(claims) is None and not self._is_reserved(claims)

    async def admit(
        self,
        claims: Claims,
        *,
        claim: bool,
        notify: Callable[[p.WireMessage], Awaitable[None]],
    ) -> SeatRefusal | None:
        """Give the seat of ``claims`` to a newcomer (None) or say why not.

        ``notify`` sends the newcomer a message before he is welcomed (``seat_waiting``).
        Cancelled (the newcomer left), the request is withdrawn.
        """
        holder = self.holder(claims)
        if holder is None:
            return self._reserve(claims)
        if not await self._still_there(holder):
            log.info("a seat's page did not answer; the new page takes it")
            self._displace(holder)
            return self._reserve(claims)
        if holder.closing or holder not in self.live.clients:
            return self._reserve(claims)  # it left while answering
        if not claim:
            return SeatRefusal(
                "seat_taken",
                "this link is already in use on another page; ask to take over, and that "
                "page or the moderator will be asked",
            )
        request = Claim(
            id=secrets.token_hex(4),
            claims=claims,
            holder=holder,
            until=self.live.clock() + self.wait_s,
        )
        self.claims[request.id] = request
        try:
            holder.send(p.SeatClaim(claim=request.id, pending=True, wait_s=self.wait_s))
            self._tell_moderators()
            await notify(p.SeatWaiting(claim=request.id, wait_s=self.wait_s))
            try:
                allowed = await asyncio.wait_for(asyncio.shield(request.decided), self.wait_s)
            except TimeoutError:
                return SeatRefusal(
                    "claim_expired",
                    "nobody answered the request to take over this link in time; the other "
                    "page keeps it",
                )
        finally:
            del self.claims[request.id]
            if not request.decided.done():
                request.decided.cancel()
            holder.send(p.SeatClaim(claim=request.id, pending=False))
            self._tell_moderators()
        if not allowed:
            return SeatRefusal(
                "claim_refused", "the page holding this link (or the moderator) kept it"
            )
        current = self.holder(claims)
        if (current is not None and current is not holder) or self._is_reserved(claims):
            # Another newcomer was let in meanwhile: this request was about a page that
            # no longer holds the seat.
            return SeatRefusal("seat_taken", "another page took this link over meanwhile")
        if current is not None:
            self._displace(holder)
        log.info("a page took over a seat with its holder's or the moderator's agreement")
        return self._reserve(claims)

    def _is_reserved(self, claims: Claims) -> bool:
        seat = seat_of(claims)
        since = self._reserved.get(seat) if seat is not None else None
        return since is not None and self.live.clock() - since < RESERVED_S

    def _reserve(self, claims: Claims) -> SeatRefusal | None:
        """The seat is the newcomer's until he joins (`joined`), or refused: another
        newcomer was given it a moment ago."""
        seat = seat_of(claims)
        if seat is None:
            return None
        if self._is_reserved(claims):
            return SeatRefusal("seat_taken", "another page took this link over meanwhile")
        self._reserved[seat] = self.live.clock()
        return None

    def joined(self, client: Client) -> None:
        """A newcomer sat down: his seat is no longer only reserved."""
        seat = seat_of(client.claims)
        if seat is not None:
            self._reserved.pop(seat, None)

    async def _still_there(self, holder: Client) -> bool:
        check = secrets.token_hex(4)
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._checks[check] = (holder, answered)
        holder.send(p.SeatCheck(check=check))
        try:
            await asyncio.wait_for(answered, self.check_s)
            return True
        except TimeoutError:
            return False
        finally:
            self._checks.pop(check, None)

    def _displace(self, holder: Client) -> None:
        holder.end(
            CLOSE_SEAT,
            "displaced",
            "this link was opened on another page, which took over (this page, or the "
            "moderator, agreed; or this page did not answer)",
        )

    # --- answers ---------------------------------------------------------------------

    def here(self, client: Client, check: str) -> None:
        """``seat_here``: a page answers a ``seat_check`` (a late answer changes nothing
        and is not an error the page should show)."""
        found = self._checks.get(check)
        if found is not None and found[0] is client and not found[1].done():
            found[1].set_result(None)

    def left(self, client: Client) -> None:
        """A connection went: a request waiting on it is granted (nobody holds the seat)."""
        for request in list(self.claims.values()):
            if request.holder is client and not request.decided.done():
                request.decided.set_result(True)

    def answer(self, client: Client, claim_id: str, allow: bool) -> None:
        """``answer_claim``: the seat's holder or a moderator decides a request."""
        request = self.claims.get(claim_id)
        if request is None:
            raise refuse("unknown_claim", "this request to take over is no longer waiting")
        if client is not request.holder and client.role is not Role.MODERATOR:
            raise refuse("forbidden", "only the page holding the seat or the moderator decides")
        if not request.decided.done():
            request.decided.set_result(allow)

    def link_revoked(self, invitation_id: str) -> None:
        """A revoked link asks for nothing any more."""
        for request in list(self.claims.values()):
            if request.claims.invitation == invitation_id and not request.decided.done():
                request.decided.set_result(False)

    # --- the studio ------------------------------------------------------------------

    def view(self) -> p.SeatClaims:
        return p.SeatClaims(claims=[request.view() for request in self.claims.values()])

    def _tell_moderators(self) -> None:
        message = self.view()
        for client in list(self.live.clients):
            if client.role is Role.MODERATOR:
                client.send(message)
