"""The part of the live event every node holds alike, and the changes that move it.

A `LiveReplica` is the durable `LiveState` (session, speaker on air, floor language,
interpreters on air, forced directions) plus the booths' state machines (who is
connected where, microphones, coughs, handovers, slow-down requests, listening choices).
It changes only by `Change`s, applied in one order on every node (the live bus sees to
the order): the same changes in the same order give the same replica, so every node
runs the routing rule on the same input and points its outputs the same way.

A change carries the clock of the node that made it (``at``) and the node's id: applying
it reads nothing of the node applying it. A change that is no longer possible when its
turn comes (two nodes raced) raises `BoothError` and leaves the replica as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from signaling.booth import BoothError, LiveBooth
from signaling.live_state import LiveState
from signaling.program import Event


class ChangeError(ValueError):
    """A serialised change cannot be read back (another release wrote it, or garbage)."""


@dataclass(frozen=True)
class Change:
    """One change of the shared live state, or an announcement every node must hear.

    ``op`` names it (see `LiveReplica.apply`), ``args`` are its JSON-safe arguments,
    ``at`` the wall clock (seconds) of ``node``, the node that made it.
    """

    op: str
    args: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0
    node: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {"op": self.op, "args": self.args, "at": self.at, "node": self.node},
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Change:
        try:
            data = json.loads(text)
            change = cls(op=data["op"], args=data["args"], at=float(data["at"]), node=data["node"])
        except (ValueError, TypeError, KeyError) as exc:
            raise ChangeError(f"not a live change: {exc}") from None
        if not isinstance(change.op, str) or not isinstance(change.args, dict):
            raise ChangeError("not a live change: op or args of the wrong type")
        return change


#: The seats' messages between nodes (`seats`): a node asks another's page whether it is
#: still there and hears the answer; a request to take over a seat, its answer, its end.
SEAT_ANNOUNCEMENTS = frozenset(
    {"seat_check", "seat_here", "seat_claim", "seat_answer", "seat_claim_over"}
)
#: Everything `seats` is told of: its announcements and the seat table's changes.
SEAT_OPS = SEAT_ANNOUNCEMENTS | {"sit", "unseat"}

#: Changes that carry news and change no state (every node hears them, in order):
#: a chat message; a staff link revoked (every node closes its connections); the seats'.
ANNOUNCEMENTS = frozenset({"chat", "revoke"}) | SEAT_ANNOUNCEMENTS


class SeatTaken(BoothError):
    """Another page sat down on the seat first (the log's order decided)."""

    code = "seat_taken"


class LiveReplica:
    """The shared live state of one event, as one node holds it."""

    def __init__(self, event: Event, take_over_after: float) -> None:
        self.event = event
        self.state = LiveState()
        self.booths: dict[str, LiveBooth] = {
            booth.id: LiveBooth(booth.id, tuple(booth.works_into), take_over_after=take_over_after)
            for booth in event.booths
        }
        #: node -> booth -> interpreter -> open connections: a node that dies takes its
        #: interpreters' connections with it (`node_gone`).
        self.connections: dict[str, dict[str, dict[str, int]]] = {}
        #: seat (`seats.seat_key`) -> the page holding it, {"node": ..., "ticket": ...}:
        #: one table in the log's one order, so of two pages sitting down at once on two
        #: nodes the first wins, and a node that dies frees its seats (`node_gone`).
        self.seats: dict[str, dict[str, str]] = {}
        self._ops: dict[str, Callable[[Change], bool]] = {
            "connect": self._connect,
            "disconnect": self._disconnect,
            "node_gone": self._node_gone,
            "sit": self._sit,
            "unseat": self._unseat,
            "mic": self._booth_op(lambda b, c: b.mic(c.args["who"], c.args["on"], c.at)),
            "cough": self._booth_op(lambda b, c: b.cough(c.args["who"], c.args["on"])),
            "request_handover": self._booth_op(
                lambda b, c: b.request_handover(c.args["who"], c.at)
            ),
            "withdraw_handover": self._booth_op(lambda b, c: b.withdraw_handover(c.args["who"])),
            "accept_handover": self._booth_op(lambda b, c: b.accept_handover(c.args["who"], c.at)),
            "take_over": self._booth_op(lambda b, c: b.take_over(c.args["who"], c.at)),
            "listen": self._booth_op(lambda b, c: b.listen(c.args["who"], c.args["source"])),
            "set_direction": self._booth_op(
                lambda b, c: b.set_direction(c.args["who"], c.args["into"])
            ),
            "slow_down": self._booth_op(
                lambda b, c: b.slow_down(c.args["who"], c.args["on"], c.at)
            ),
            "fail_over": self._fail_over,
            "start_session": self._start_session,
            "end_session": self._end_session,
            "put_on_air": self._put_on_air,
            "take_off_air": self._take_off_air,
            "set_floor_language": self._set_floor_language,
        }

    # --- loading ----------------------------------------------------------------------

    def load(self, state: LiveState, now: float) -> None:
        """Start from a durable state (a node's first start, or one alone)."""
        self.state = state
        self._drop_stale_state()
        for booth_id, booth in self.booths.items():
            on_air = state.on_air_interpreter.get(booth_id)
            booth.restore(
                {
                    **booth.to_dict(),
                    "on_air": on_air,
                    # His time on air counts from now; he is remembered before he reconnects.
                    "on_air_since": now if on_air else None,
                    "direction_override": state.direction_override.get(booth_id),
                    "seats": {on_air: {"connections": 0}} if on_air else {},
                }
            )

    def snapshot(self) -> dict[str, Any]:
        """Everything, as JSON-safe data: what a node starting late begins from."""
        return {
            "state": self.state.to_dict(),
            "booths": {booth_id: booth.to_dict() for booth_id, booth in self.booths.items()},
            "connections": self.connections,
            "seats": self.seats,
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.state = LiveState.from_dict(snapshot["state"])
        self._drop_stale_state()
        for booth_id, data in snapshot["booths"].items():
            if booth_id in self.booths:
                self.booths[booth_id].restore(data)
        self.connections = {
            node: {b: dict(who) for b, who in booths.items() if b in self.booths}
            for node, booths in snapshot["connections"].items()
        }
        # A snapshot of a release without seats has none.
        self.seats = {
            str(seat): {"node": str(held["node"]), "ticket": str(held["ticket"])}
            for seat, held in snapshot.get("seats", {}).items()
        }

    def nodes_with_clients(self) -> set[str]:
        """The nodes this replica says hold connections: interpreters, or seats."""
        return set(self.connections) | {held["node"] for held in self.seats.values()}

    def _drop_stale_state(self) -> None:
        """Forget what the program no longer has (the program may change between runs)."""
        state, event = self.state, self.event
        speaker_ids = {s.id for s in event.speakers}
        if state.session_id not in {s.id for s in event.sessions}:
            state.session_id = None
        if state.on_air_speaker not in speaker_ids:
            state.on_air_speaker = None
        if state.on_air_speaker is None or state.floor_language not in event.language_codes:
            state.floor_language = None
        state.on_air_interpreter = {
            b: who for b, who in state.on_air_interpreter.items() if b in self.booths
        }
        state.direction_override = {
            b: lang
            for b, lang in state.direction_override.items()
            if b in self.booths and lang in event.booth(b).works_into
        }

    # --- changes ----------------------------------------------------------------------

    def apply(self, change: Change) -> bool:
        """Apply one change; True when the durable part (`state`) changed.

        Raises `BoothError` (nothing changed) when the change is not possible now, and
        `ChangeError` for an operation this release does not know.
        """
        if change.op in ANNOUNCEMENTS:
            return False
        operation = self._ops.get(change.op)
        if operation is None:
            raise ChangeError(f"unknown live change {change.op!r}")
        before = self.state.to_dict()
        try:
            changed_booths = operation(change)
        except (KeyError, TypeError) as exc:
            raise ChangeError(f"malformed live change {change.op!r}: {exc}") from None
        if changed_booths:
            self._sync_booths()
        return self.state.to_dict() != before

    def _booth_op(self, act: Callable[[LiveBooth, Change], Any]) -> Callable[[Change], bool]:
        def operation(change: Change) -> bool:
            act(self._booth(change), change)
            return True

        return operation

    def _booth(self, change: Change) -> LiveBooth:
        booth = self.booths.get(change.args["booth"])
        if booth is None:
            raise BoothError(f"there is no booth {change.args['booth']!r}")
        return booth

    def _sync_booths(self) -> None:
        """The durable part follows the booths: who is on air, forced directions."""
        self.state.on_air_interpreter = {
            booth_id: booth.on_air for booth_id, booth in self.booths.items() if booth.on_air
        }
        self.state.direction_override = {
            booth_id: booth.direction_override
            for booth_id, booth in self.booths.items()
            if booth.direction_override
        }

    def _connect(self, change: Change) -> bool:
        booth = self._booth(change)
        who = change.args["who"]
        seats = self.connections.setdefault(change.node, {}).setdefault(booth.booth_id, {})
        seats[who] = seats.get(who, 0) + 1
        booth.connect(who)
        return True

    def _disconnect(self, change: Change) -> bool:
        booth = self._booth(change)
        who = change.args["who"]
        seats = self.connections.get(change.node, {}).get(booth.booth_id, {})
        if not seats.get(who):
            return False
        seats[who] -= 1
        if not seats[who]:
            del seats[who]
        booth.disconnect(who)
        return True

    def _node_gone(self, change: Change) -> bool:
        """A node stopped answering: its interpreters' connections and its seats went
        with it."""
        node = change.args["node"]
        self.seats = {seat: held for seat, held in self.seats.items() if held["node"] != node}
        gone = self.connections.pop(node, {})
        for booth_id, seats in gone.items():
            for who, count in seats.items():
                for _ in range(count):
                    self.booths[booth_id].disconnect(who)
        return bool(gone)

    def _sit(self, change: Change) -> bool:
        """A page of ``change.node`` sits down: on a free seat, or in place of the page
        it was let in to replace (``replaces``); anyone else holding it came first."""
        seat = str(change.args["seat"])
        holder = {"node": change.node, "ticket": str(change.args["ticket"])}
        current = self.seats.get(seat)
        if current is not None and current != change.args.get("replaces") and current != holder:
            raise SeatTaken("another page took this link over meanwhile")
        self.seats[seat] = holder
        return False

    def _unseat(self, change: Change) -> bool:
        """A page left its seat (if it still held it: a displaced page no longer does)."""
        seat = str(change.args["seat"])
        if self.seats.get(seat) == {"node": change.node, "ticket": str(change.args["ticket"])}:
            del self.seats[seat]
        return False

    def _fail_over(self, change: Change) -> bool:
        booth = self._booth(change)
        if booth.on_air != change.args["lost"]:
            return False  # decided on a state that has moved on (or twice)
        booth.fail_over(change.args["to"], change.at)
        return True

    def _start_session(self, change: Change) -> bool:
        self.state.session_id = change.args["session"]
        return False

    def _end_session(self, change: Change) -> bool:
        self.state.session_id = None
        self._set_speaker(None)
        return False

    def _put_on_air(self, change: Change) -> bool:
        self._set_speaker(change.args["speaker"])
        return False

    def _take_off_air(self, change: Change) -> bool:
        self._set_speaker(None)
        return False

    def _set_floor_language(self, change: Change) -> bool:
        self.state.floor_language = change.args["language"]
        return False

    def _set_speaker(self, speaker_id: str | None) -> None:
        """Put ``speaker_id`` on the floor (None: nobody).

        What was said about the previous speaker does not carry over to another one: the
        language the moderator said he speaks and the booths' requests to slow down.
        """
        if speaker_id == self.state.on_air_speaker:
            return
        self.state.on_air_speaker = speaker_id
        self.state.floor_language = None
        for booth in self.booths.values():
            booth.clear_slow_down()
