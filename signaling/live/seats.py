"""Seats: one page per speaker and per interpreter, on every node, and never a silent swap.

A speaker link gives the seat of its speaker; an interpreter link the seat of its
interpreter in his booth. Two pages opened with the same link would publish the same
media: the second one would silently replace the first (LiveKit refuses such a second
participant with DUPLICATE_IDENTITY). So, when a connection arrives for a seat another
connection holds, on this node or on any other node of the event:

1. The server asks the holder's page whether it is still there (``seat_check``, which a
   page answers at once with ``seat_here``). A page that does not answer within
   `SEAT_CHECK_S` is gone (a network that dropped without a close, a laptop shut): the
   newcomer simply takes the seat, the way a page reconnecting after a blink does.
2. The holder answered: the newcomer is refused with ``seat_taken``; his page says the
   link is in use on another page and offers to ask to take over.
3. Asked (``auth`` with ``claim``), the holder's page is asked (``seat_claim``) and so is
   every studio (``seat_claims``, the event's requests, whatever node they wait on); the
   newcomer waits (``seat_waiting``). The first ``answer_claim`` decides: allowed, the
   holder is closed with `CLOSE_SEAT` and ``displaced`` (its page says another page took
   over) and the newcomer is welcomed; refused, or no answer within `CLAIM_WAIT_S`, the
   newcomer is closed with ``claim_refused`` or ``claim_expired``. A holder that leaves
   meanwhile leaves the seat to the newcomer.

Moderator links have no seat: several studios may be open at once.

Across nodes. Who holds which seat is a table of the shared replica
(`LiveReplica.seats`: seat -> the holder's node and a *ticket* naming his connection),
moved only by the ``sit`` and ``unseat`` changes of the live bus, so every node sees the
same table and, of two pages sitting down at once on two nodes, the log's order lets the
first in and refuses the second (`SeatTaken`), with the hub as with Redis. A node applying
a ``sit`` closes its own page that held the seat (``displaced``): that is how a page
on another node is displaced. The questions to a page on another node travel as
announcements of the bus (``seat_check``/``seat_here``, ``seat_claim``, ``seat_answer``,
``seat_claim_over``), addressed to a node and ignored by the others. A node that is not
live any more (its presence timed out) is not asked: its pages are gone, and the
``node_gone`` change frees its seats in the table. A node alone (`LocalBus`) runs the
same code, its changes applied at once. While the log cannot be reached, a node checks
only its own pages (and says so in its log).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from signaling import protocol as p
from signaling.live.bus import BusUnavailable
from signaling.live.clients import CLOSE_SEAT, Client, refuse
from signaling.live.replica import Change, SeatTaken
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
#: A request announced by another node is forgotten this long after it lapsed there
#: (that node may have died before saying it was over).
LAPSE_SLACK_S = 1.0

Seat = tuple[str, ...]


def seat_of(claims: Claims) -> Seat | None:
    """The seat a link gives (None: a link that may be open on several pages)."""
    if claims.role is Role.SPEAKER and claims.speaker is not None:
        return ("speaker", claims.speaker)
    if claims.role is Role.INTERPRETER and claims.booth is not None:
        return ("interpreter", claims.booth, claims.subject)
    return None


def seat_key(seat: Seat) -> str:
    """The seat's name in the replica's table (JSON: unambiguous whatever the ids hold)."""
    return json.dumps(list(seat), ensure_ascii=False, separators=(",", ":"))


@dataclass(eq=False)
class SeatRefusal:
    """Why a newcomer does not get the seat: an error code and a sentence."""

    code: str
    message: str


def _taken_meanwhile() -> SeatRefusal:
    return SeatRefusal("seat_taken", "another page took this link over meanwhile")


@dataclass(frozen=True, eq=False)
class Holder:
    """The page holding a seat: its node, its ticket (None: seated while the log was
    away), and its connection when it is on this node."""

    node: str
    ticket: str | None
    client: Client | None = None

    def entry(self) -> dict[str, str | None]:
        """As the replica's table names it."""
        return {"node": self.node, "ticket": self.ticket}


@dataclass(eq=False)
class Claim:
    """A newcomer's request to take over a seat, waiting on this node for an answer."""

    id: str
    claims: Claims
    holder: Holder
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


@dataclass(eq=False)
class RemoteClaim:
    """A request waiting on another node (``origin``), as this node shows and answers it."""

    view: p.SeatClaimView
    holder: Holder
    origin: str
    lapse: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class Pending:
    """A seat given to a newcomer of this node who has not joined yet."""

    ticket: str | None
    since: float
    #: Another page was let in in his place before he joined: he is displaced at once.
    lost: bool = False


class Seats:
    """Who holds which seat, and the requests to take one over, as this node sees them."""

    def __init__(
        self, live: LiveEvent, *, check_s: float = SEAT_CHECK_S, wait_s: float = CLAIM_WAIT_S
    ) -> None:
        self.live = live
        self.check_s = check_s
        self.wait_s = wait_s
        #: The requests of newcomers on this node.
        self.claims: dict[str, Claim] = {}
        #: The requests of newcomers on other nodes.
        self.remote_claims: dict[str, RemoteClaim] = {}
        #: Checks this node waits on: check -> (the page asked, if on this node; answer).
        self._checks: dict[str, tuple[Client | None, asyncio.Future[bool]]] = {}
        #: Checks another node asked a page of this node: check -> (page, node, since).
        self._asked: dict[str, tuple[Client, str, float]] = {}
        #: Seats given to a newcomer of this node who has not joined yet: two newcomers
        #: let in at once must not both sit down.
        self._pending: dict[Seat, Pending] = {}
        #: The ticket of each connection of this node holding a seat.
        self._tickets: dict[Client, str | None] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def node(self) -> str:
        return self.live.node

    async def stop(self) -> None:
        for remote in self.remote_claims.values():
            if remote.lapse is not None:
                remote.lapse.cancel()
        self.remote_claims.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- who holds a seat ------------------------------------------------------------

    def holder(self, claims: Claims) -> Client | None:
        """The connection of this node holding the seat of ``claims``, if any."""
        seat = seat_of(claims)
        return None if seat is None else self._local_holder(seat)

    def _local_holder(self, seat: Seat) -> Client | None:
        for client in self.live.clients:
            if not client.closing and seat_of(client.claims) == seat:
                return client
        return None

    def _table(self, seat: Seat) -> dict[str, str] | None:
        return self.live.replica.seats.get(seat_key(seat))

    def _holder_of(self, seat: Seat) -> Holder | None:
        """Whoever holds ``seat``: a page of this node, or one the table puts on another."""
        client = self._local_holder(seat)
        if client is not None:
            return Holder(self.node, self._tickets.get(client), client)
        entry = self._table(seat)
        if entry is None or entry["node"] == self.node:
            # This node's own entry without a page: given a moment ago (`_is_reserved`),
            # or left behind by a page whose leaving could not be told.
            return None
        return Holder(entry["node"], entry["ticket"])

    def _client_with(self, ticket: object) -> Client | None:
        if ticket is None:
            return None
        for client, held in self._tickets.items():
            if held == ticket and not client.closing and client in self.live.clients:
                return client
        return None

    def _is_reserved(self, seat: Seat) -> bool:
        pending = self._pending.get(seat)
        return (
            pending is not None
            and not pending.lost
            and self.live.clock() - pending.since < RESERVED_S
        )

    # --- a newcomer ------------------------------------------------------------------

    async def sit_if_free(self, claims: Claims) -> bool:
        """Give a newcomer the seat of ``claims`` if nobody holds it on any node (True),
        so that joining needs no questions; False: `admit` asks."""
        seat = seat_of(claims)
        if seat is None:
            return True
        if (
            self._local_holder(seat) is not None
            or self._is_reserved(seat)
            or self._table(seat) is not None
        ):
            return False
        # Another node's page may sit down at the same moment: the log's order decides.
        return await self._sit(seat, None) is None

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
        seat = seat_of(claims)
        if seat is None:
            return None
        holder = self._holder_of(seat)
        if holder is None:
            entry = self._table(seat)
            return await self._sit(seat, entry if entry and entry["node"] == self.node else None)
        if not await self._still_there(holder):
            log.info("a seat's page did not answer; the new page takes it")
            return await self._sit(seat, holder)
        if holder.client is not None and (
            holder.client.closing or holder.client not in self.live.clients
        ):
            return await self._sit(seat, holder)  # it left while answering
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
            if holder.client is not None:
                holder.client.send(p.SeatClaim(claim=request.id, pending=True, wait_s=self.wait_s))
            self._tell_moderators()
            try:
                await self._tell_others(
                    "seat_claim",
                    {
                        "view": request.view().model_dump(mode="json"),
                        "holder": holder.entry(),
                        "wait_s": self.wait_s,
                    },
                )
            except BusUnavailable:
                # This node's holder and studios are asked all the same.
                log.warning("could not tell the other nodes of a request to take over a seat")
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
            if holder.client is not None:
                holder.client.send(p.SeatClaim(claim=request.id, pending=False))
            self._tell_moderators()
            # Also when cancelled (the newcomer left): told in a task of its own.
            self._soon(self._tell_others("seat_claim_over", {"claim": request.id}))
        if not allowed:
            return SeatRefusal(
                "claim_refused", "the page holding this link (or the moderator) kept it"
            )
        log.info("a page took over a seat with its holder's or the moderator's agreement")
        return await self._sit(seat, holder)

    async def _sit(
        self, seat: Seat, replaces: Holder | dict[str, str] | None
    ) -> SeatRefusal | None:
        """Sit the newcomer down in place of ``replaces`` (None: on a free seat), or
        refuse him: another newcomer got the seat first (on this node, or in the log).

        The page replaced is closed when the change is applied on its node (`_seated`).
        """
        if self._is_reserved(seat):
            return _taken_meanwhile()
        ticket: str | None = secrets.token_hex(6)
        replaced = replaces.entry() if isinstance(replaces, Holder) else replaces
        try:
            await self.live.publish(
                Change("sit", {"seat": seat_key(seat), "ticket": ticket, "replaces": replaced})
            )
        except SeatTaken:
            return _taken_meanwhile()
        except BusUnavailable:
            log.warning(
                "could not tell the other nodes that a page took a seat: while the live log "
                "is away, only this node's pages are checked"
            )
            ticket = None
            if isinstance(replaces, Holder) and replaces.client is not None:
                self._displace(replaces.client)
        self._pending[seat] = Pending(ticket, self.live.clock())
        return None

    def joined(self, client: Client) -> None:
        """A newcomer sat down: his seat is no longer only reserved, it is his."""
        seat = seat_of(client.claims)
        if seat is None:
            return
        pending = self._pending.pop(seat, None)
        self._tickets[client] = pending.ticket if pending is not None else None
        if pending is not None and pending.lost:
            self._displace(client, elsewhere=True)

    async def _still_there(self, holder: Holder) -> bool:
        check = secrets.token_hex(4)
        answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._checks[check] = (holder.client, answered)
        try:
            if holder.client is not None:
                holder.client.send(p.SeatCheck(check=check))
            elif holder.node not in {presence.node for presence in self.live.bus.presences()}:
                return False  # its node is gone, and its pages with it
            else:
                try:
                    await self._tell_others(
                        "seat_check", {"check": check, "to": holder.node, "ticket": holder.ticket}
                    )
                except BusUnavailable:
                    # The page cannot be asked, and may well be there: no silent swap.
                    return True
            return await asyncio.wait_for(answered, self.check_s)
        except TimeoutError:
            return False
        finally:
            self._checks.pop(check, None)

    def _displace(self, holder: Client, *, elsewhere: bool = False) -> None:
        # A page on another node publishes the media now: this one's goes at once.
        holder.moved = holder.moved or elsewhere
        holder.end(
            CLOSE_SEAT,
            "displaced",
            "this link was opened on another page, which took over (this page, or the "
            "moderator, agreed; or this page did not answer)",
        )

    # --- answers ---------------------------------------------------------------------

    async def here(self, client: Client, check: str) -> None:
        """``seat_here``: a page answers a ``seat_check`` (a late answer changes nothing
        and is not an error the page should show)."""
        found = self._checks.get(check)
        if found is not None and found[0] is client and not found[1].done():
            found[1].set_result(True)
            return
        asked = self._asked.get(check)
        if asked is not None and asked[0] is client:
            del self._asked[check]
            try:
                answer = {"check": check, "to": asked[1], "here": True}
                await self._tell_others("seat_here", answer)
            except BusUnavailable:
                # Nothing the page can do: the other node takes its silence for absence.
                log.warning("could not answer another node's seat check")

    def left(self, client: Client) -> None:
        """A connection went: a request waiting on it is granted (nobody holds the seat),
        and the other nodes are told the seat is free (without holding up the leaving)."""
        ticket = self._tickets.pop(client, None)
        for request in list(self.claims.values()):
            if request.holder.client is client and not request.decided.done():
                request.decided.set_result(True)
        for check in [c for c, asked in self._asked.items() if asked[0] is client]:
            del self._asked[check]
        seat = seat_of(client.claims)
        if ticket is None or seat is None or not self.live.running:
            return
        if self._table(seat) == {"node": self.node, "ticket": ticket}:
            self._soon(
                self.live.publish(Change("unseat", {"seat": seat_key(seat), "ticket": ticket}))
            )

    async def answer(self, client: Client, claim_id: str, allow: bool) -> None:
        """``answer_claim``: the seat's holder or a moderator decides a request, on any
        node (the first answer to reach the newcomer's node decides)."""
        request = self.claims.get(claim_id)
        if request is not None:
            if client is not request.holder.client and client.role is not Role.MODERATOR:
                raise refuse("forbidden", "only the page holding the seat or the moderator decides")
            if not request.decided.done():
                request.decided.set_result(allow)
            return
        remote = self.remote_claims.get(claim_id)
        if remote is None:
            raise refuse("unknown_claim", "this request to take over is no longer waiting")
        holds = (
            remote.holder.node == self.node
            and remote.holder.ticket is not None
            and self._client_with(remote.holder.ticket) is client
        )
        if not holds and client.role is not Role.MODERATOR:
            raise refuse("forbidden", "only the page holding the seat or the moderator decides")
        await self._tell_others(
            "seat_answer", {"claim": claim_id, "allow": allow, "to": remote.origin}
        )

    def link_revoked(self, invitation_id: str) -> None:
        """A revoked link asks for nothing any more."""
        for request in list(self.claims.values()):
            if request.claims.invitation == invitation_id and not request.decided.done():
                request.decided.set_result(False)

    # --- what the other nodes say ----------------------------------------------------

    def on_change(self, change: Change) -> None:
        """A change of the seat table, or a seat announcement, applied on this node."""
        try:
            if change.op == "sit":
                self._seated(change)
            elif change.op == "unseat":
                self._unseated(change)
            elif change.node == self.node:
                return  # this node's own announcement: handled where it was made
            elif change.op == "seat_check":
                self._checked(change)
            elif change.op == "seat_here":
                self._answered(change)
            elif change.op == "seat_claim":
                self._claimed(change)
            elif change.op == "seat_claim_over":
                self._forget_claim(str(change.args["claim"]))
            elif change.op == "seat_answer":
                request = self.claims.get(str(change.args["claim"]))
                if change.args["to"] == self.node and request is not None:
                    if not request.decided.done():
                        request.decided.set_result(bool(change.args["allow"]))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("skipped a seat message that could not be read: %s", exc)

    def _seated(self, change: Change) -> None:
        """A page sat down: any other page of this node on that seat is displaced."""
        seat_name, ticket = str(change.args["seat"]), str(change.args["ticket"])
        ours = change.node == self.node
        for client in list(self.live.clients):
            seat = seat_of(client.claims)
            if client.closing or seat is None or seat_key(seat) != seat_name:
                continue
            if ours and self._tickets.get(client) == ticket:
                continue
            self._displace(client, elsewhere=not ours)
        for seat, pending in self._pending.items():
            if seat_key(seat) == seat_name and not (ours and pending.ticket == ticket):
                pending.lost = True

    def _unseated(self, change: Change) -> None:
        """A page left its seat: a request waiting on it here is granted."""
        left = {"node": change.node, "ticket": str(change.args["ticket"])}
        for request in list(self.claims.values()):
            if request.holder.entry() == left and not request.decided.done():
                request.decided.set_result(True)

    def node_gone(self, node: str) -> None:
        """A node stopped answering: its pages no longer hold seats, nor ask for them."""
        for request in list(self.claims.values()):
            if request.holder.node == node and not request.decided.done():
                request.decided.set_result(True)
        for claim_id, remote in list(self.remote_claims.items()):
            if remote.origin == node:
                self._forget_claim(claim_id)

    def _checked(self, change: Change) -> None:
        """Another node asks whether a page of this node is still there."""
        if change.args["to"] != self.node:
            return
        check, ticket = str(change.args["check"]), change.args["ticket"]
        now = self.live.clock()
        for old in [c for c, asked in self._asked.items() if now - asked[2] > 4 * self.check_s]:
            del self._asked[old]
        client = self._client_with(ticket)
        if client is not None:
            self._asked[check] = (client, change.node, now)
            client.send(p.SeatCheck(check=check))
            return
        # No page with that ticket: given to a newcomer a moment ago, or gone.
        reserved = any(
            pending.ticket == ticket and self._is_reserved(seat)
            for seat, pending in self._pending.items()
        )
        answer = {"check": check, "to": change.node, "here": reserved}
        self._soon(self._tell_others("seat_here", answer))

    def _answered(self, change: Change) -> None:
        if change.args["to"] != self.node:
            return
        found = self._checks.get(str(change.args["check"]))
        if found is not None and found[0] is None and not found[1].done():
            found[1].set_result(bool(change.args["here"]))

    def _claimed(self, change: Change) -> None:
        """A newcomer on another node asks: the holder (if here) and the studios hear it."""
        view = p.SeatClaimView.model_validate(change.args["view"])
        held = change.args["holder"]
        holder = Holder(str(held["node"]), held["ticket"])
        remote = RemoteClaim(view, holder, origin=change.node)
        self._forget_claim(view.claim, tell=False)
        self.remote_claims[view.claim] = remote
        lapse_in = max(view.until - self.live.clock(), 0.0) + LAPSE_SLACK_S
        remote.lapse = asyncio.get_running_loop().call_later(
            lapse_in, self._forget_claim, view.claim
        )
        if holder.node == self.node:
            client = self._client_with(holder.ticket)
            if client is not None:
                wait_s = float(change.args["wait_s"])
                client.send(p.SeatClaim(claim=view.claim, pending=True, wait_s=wait_s))
        self._tell_moderators()

    def _forget_claim(self, claim_id: str, *, tell: bool = True) -> None:
        remote = self.remote_claims.pop(claim_id, None)
        if remote is None:
            return
        if remote.lapse is not None:
            remote.lapse.cancel()
        if not tell:
            return
        if remote.holder.node == self.node:
            client = self._client_with(remote.holder.ticket)
            if client is not None:
                client.send(p.SeatClaim(claim=claim_id, pending=False))
        self._tell_moderators()

    # --- telling ---------------------------------------------------------------------

    async def _tell_others(self, op: str, args: dict[str, Any]) -> None:
        """An announcement on the bus (every node hears it; those it is not for ignore
        it). Raises `BusUnavailable` when the log cannot be reached."""
        await self.live.publish(Change(op, args))

    def _soon(self, telling: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(telling)
        self._tasks.add(task)
        task.add_done_callback(self._told)

    def _told(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not tell the other nodes about a seat", exc_info=task.exception())

    # --- the studio ------------------------------------------------------------------

    def waiting(self) -> bool:
        """Requests wait for an answer somewhere in the event."""
        return bool(self.claims or self.remote_claims)

    def view(self) -> p.SeatClaims:
        """The event's requests, wherever the newcomer waits."""
        views = [request.view() for request in self.claims.values()]
        views += [remote.view for remote in self.remote_claims.values()]
        return p.SeatClaims(claims=sorted(views, key=lambda view: view.until))

    def _tell_moderators(self) -> None:
        message = self.view()
        for client in list(self.live.clients):
            if client.role is Role.MODERATOR:
                client.send(message)
