"""Sender reports for every subscriber slot of the node, from one timer.

A subscriber's browser keeps its audio and video in sync, and estimates the
round trip, from the RTCP sender reports (SR) each of our senders sends it.
aiortc sends them from one task per sender, which wakes every 0.5 to 1.5 s:
with a few hundred subscribers, a few hundred coroutine wake-ups a second,
each building aiortc's packet objects and going through its two-coroutine send
path. Here one timer (an event-loop timer, no task) serves every sender of the
node: each sender keeps its own randomised interval, as aiortc draws it
(RFC 3550 6.2's "0.5 to 1.5 times the calculated interval", around 1 s), and
the reports that fall due within `COALESCE_S` of each other go out in the same
wake-up, each one `struct.pack` and a send (`SenderLink.send_report`).

The scheduler only decides when; what a report says (the NTP/RTP mapping of the
last packet sent, the counts) is the link's.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import time
from typing import Protocol

logger = logging.getLogger(__name__)

#: Mean interval between two reports of one sender, in seconds (as aiortc).
REPORT_INTERVAL_S = 1.0
#: Reports due this close to each other share a wake-up: at most 1 / COALESCE_S wake-ups
#: a second for the whole node, whatever the number of senders.
COALESCE_S = 0.1


class Reporting(Protocol):
    """A sender the scheduler reports for."""

    def send_report(self) -> bool:
        """Send one sender report now; False if it could not be sent."""
        ...


def next_interval() -> float:
    """Seconds until a sender's next report: uniform in [0.5, 1.5] x the interval."""
    return REPORT_INTERVAL_S * (0.5 + random.random())


class SenderReports:
    """One timer sending the sender reports of every registered sender."""

    def __init__(self) -> None:
        # (due on the monotonic clock, entry number, sender). An entry counts only while
        # it is its sender's current one (`_active`: sender -> entry number): a removed
        # sender's entry is skipped when it comes up, cheaper than deleting from a heap.
        self._due: list[tuple[float, int, Reporting]] = []
        self._active: dict[Reporting, int] = {}
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.closed = False
        # Reports sent, refused by their sender (not connected), and failed (raised).
        self.sent = 0
        self.refused = 0
        self.errors = 0
        self.wakeups = 0

    def __len__(self) -> int:
        return len(self._active)

    def __contains__(self, sender: object) -> bool:
        return sender in self._active

    def add(self, sender: Reporting) -> None:
        """Report for `sender` from now on, the first report within 0.5-1.5 s."""
        if self.closed or sender in self._active:
            return
        due = time.monotonic() + next_interval()
        entry = self._active[sender] = next(self._order)
        heapq.heappush(self._due, (due, entry, sender))
        self._arm(due)

    def remove(self, sender: Reporting) -> None:
        """No more reports for `sender` (its slot closed or its sender stopped)."""
        self._active.pop(sender, None)
        if not self._active:
            self._due.clear()
            self._disarm()

    def close(self) -> None:
        """Stop the timer; nothing is reported any more."""
        self.closed = True
        self._active.clear()
        self._due.clear()
        self._disarm()

    def _arm(self, due: float) -> None:
        """Make sure the timer fires by `due`."""
        timer = self._timer
        if timer is not None:
            if self._timer_at <= due:
                return
            timer.cancel()
        loop = asyncio.get_running_loop()
        # The loop's clock is time.monotonic() for asyncio's default loops; convert anyway.
        self._timer_at = due
        self._timer = loop.call_at(loop.time() + (due - time.monotonic()), self._fire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self.wakeups += 1
        due = self._due
        active = self._active
        now = time.monotonic()
        limit = now + COALESCE_S
        while due and due[0][0] <= limit:
            _, entry, sender = heapq.heappop(due)
            if active.get(sender) != entry:
                continue
            try:
                if sender.send_report():
                    self.sent += 1
                else:
                    self.refused += 1
            except Exception:
                # One sender's failure must not stop the reports of the others.
                self.errors += 1
                if self.errors == 1:
                    logger.exception("sending a sender report failed")
            if active.get(sender) == entry:
                entry = active[sender] = next(self._order)
                heapq.heappush(due, (now + next_interval(), entry, sender))
        if due:
            self._arm(due[0][0])
