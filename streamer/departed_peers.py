"""Giving back the memory of peers that left.

A closed aiortc peer connection is a web of reference cycles (its transports, senders
and receivers point at each other, pyee handlers close over them, finished tasks keep
their coroutines): reference counting never frees it, only Python's cycle collector
does, and only its full collection, since a peer that stayed a few seconds has moved
to the oldest generation. The interpreter runs a full collection when the objects that
reached the oldest generation since the last one grow by a quarter of it, which on a
node holding a hundred listeners is tens of departures later: until then every
departed listener's peer (about 0.4 MB, some 1,600 objects) stays in memory, and by
the time it is freed the allocator's arenas are interleaved with the newer peers'
objects, so resident memory climbs with the churn of an audience (bench/soak.py).

`DepartedPeers` collects them soon after they leave: the first departure after a
quiet spell schedules one full collection `COLLECT_AFTER_S` later, and every departure
until then joins it, so a crowd leaving at once costs one collection, and a steady
churn one every `COLLECT_AFTER_S` at most.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

logger = logging.getLogger(__name__)

#: From a departure to the collection that frees its peer. A full collection walks every
#: object the node tracks (tens of milliseconds with a hundred listeners, during which
#: the event loop forwards nothing): long enough that a steady churn pays it twice a
#: minute at most and the departures of one wave share it, short enough that few peers
#: (a few hundred kilobytes each) wait for it. aiortc's closing tasks, which still
#: reference the peer, have long finished by then.
COLLECT_AFTER_S = 30.0


class DepartedPeers:
    """Schedules full cycle collections after peer connections close; `close()` cancels
    the pending one."""

    def __init__(self, collect_after_s: float = COLLECT_AFTER_S) -> None:
        self.collect_after_s = collect_after_s
        self._pending: asyncio.TimerHandle | None = None
        #: Departures since the last collection.
        self.waiting = 0
        #: Collections run, and the unreachable objects they found (for the metrics).
        self.collections = 0
        self.freed_objects = 0
        #: How long the last collection held the event loop, and all of them, in seconds.
        self.last_pause_s = 0.0
        self.pause_s = 0.0
        self._closed = False

    def left(self) -> None:
        """A peer connection was closed and let go: collect it soon."""
        self.waiting += 1
        if self._pending is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(self.collect_after_s, self._collect)

    def _collect(self) -> None:
        self._pending = None
        started, cpu = time.perf_counter(), time.process_time()
        found = gc.collect()
        self.last_pause_s = time.perf_counter() - started
        cpu = time.process_time() - cpu
        self.pause_s += self.last_pause_s
        self.collections += 1
        self.freed_objects += found
        # Info: the pause is the node's, operators may want to see it beside its effects.
        logger.info(
            "collected %d departed peers: %d unreachable objects, the loop held %.1f ms "
            "(%.1f ms of CPU)",
            self.waiting,
            found,
            1000 * self.last_pause_s,
            1000 * cpu,
        )
        self.waiting = 0

    def close(self) -> None:
        self._closed = True
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
