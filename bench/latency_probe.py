"""Server-side clocks for the benchmark: when a packet arrived, when each copy of it left.

Runs inside the benchmark server process. While a probe is active it wraps three aiortc
methods at class level (so it sees every peer connection without knowing the SFU's insides):

- ``RTCDtlsTransport._handle_rtp_data``: the moment a decrypted datagram starts being handled;
- ``RtpRouter.route_rtp``: files that moment under the packet's payload and SSRC;
- ``RTCDtlsTransport._send_rtp`` (and any extra synchronous send point the caller names, for
  a forwarder that hands packets to the socket itself): once a packet is protected and handed
  to the socket, looks its payload up among the arrivals. A forwarder never touches the
  payload, so the payload bytes identify a packet across the server.

The wrapping costs a few microseconds per packet, so probes run outside the CPU windows.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter
from aiortc.rtp import is_rtcp


def rtp_payload(data: bytes) -> bytes:
    """The payload of a serialized (unencrypted) RTP packet."""
    offset = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
    end = len(data) - (data[-1] if data[0] & 0x20 else 0)
    return data[offset:end]


@dataclass
class Arrival:
    at: float
    ssrc: int
    delays: list[float] = field(default_factory=list)


@dataclass
class SwitchWait:
    ssrcs: set[int]
    started: float
    expected: int
    done: asyncio.Future[None]
    first_sent: float | None = None
    first_arrival: float | None = None
    transports: set[int] = field(default_factory=set)
    all_sent: float | None = None


def summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median_ms": None}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "median_ms": round(1000 * statistics.median(ordered), 3),
        "p90_ms": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 3),
        "max_ms": round(1000 * ordered[-1], 3),
    }


class PacketClock:
    """Installs the timing wrappers between `start()` and `stop()`."""

    def __init__(self, send_points: list[tuple[type, str]] | None = None) -> None:
        """`send_points`: extra synchronous methods `(self, data: bytes, ...)` that send RTP."""
        self.send_points = send_points or []
        self.arrivals: dict[bytes, Arrival] = {}
        self.wait: SwitchWait | None = None
        self._arrival = 0.0
        self._saved: list[tuple[type, str, Any]] = []

    def start(self) -> None:
        if self._saved:
            return
        clock = self
        handle_rtp_data = RTCDtlsTransport._handle_rtp_data
        route_rtp = RtpRouter.route_rtp
        send_rtp = RTCDtlsTransport._send_rtp

        async def timed_handle_rtp_data(transport: Any, data: bytes, arrival_time_ms: int) -> None:
            clock._arrival = time.perf_counter()
            await handle_rtp_data(transport, data, arrival_time_ms)

        def timed_route_rtp(router: Any, packet: Any) -> Any:
            clock.arrivals[packet.payload] = Arrival(clock._arrival, packet.ssrc)
            return route_rtp(router, packet)

        async def timed_send_rtp(transport: Any, data: bytes) -> None:
            await send_rtp(transport, data)
            if not is_rtcp(data):
                clock._sent(transport, data)

        self._saved = [
            (RTCDtlsTransport, "_handle_rtp_data", handle_rtp_data),
            (RtpRouter, "route_rtp", route_rtp),
            (RTCDtlsTransport, "_send_rtp", send_rtp),
        ]
        RTCDtlsTransport._handle_rtp_data = timed_handle_rtp_data  # type: ignore[method-assign]
        RtpRouter.route_rtp = timed_route_rtp  # type: ignore[method-assign]
        RTCDtlsTransport._send_rtp = timed_send_rtp  # type: ignore[method-assign]
        for owner, name in self.send_points:
            original = getattr(owner, name)
            self._saved.append((owner, name, original))
            setattr(owner, name, self._timed_send_point(original))

    def _timed_send_point(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(sender: Any, data: bytes, *args: Any, **kwargs: Any) -> Any:
            result = original(sender, data, *args, **kwargs)
            self._sent(sender, data)
            return result

        return timed

    def _sent(self, way: object, data: bytes) -> None:
        """A copy of a packet left through `way` (one per subscriber stream)."""
        now = time.perf_counter()
        arrival = self.arrivals.get(rtp_payload(data))
        if arrival is None:
            return
        arrival.delays.append(now - arrival.at)
        wait = self.wait
        if wait and arrival.ssrc in wait.ssrcs:
            if wait.first_sent is None:
                wait.first_sent, wait.first_arrival = now, arrival.at
            wait.transports.add(id(way))
            if len(wait.transports) >= wait.expected and not wait.done.done():
                wait.all_sent = now
                wait.done.set_result(None)

    def stop(self) -> None:
        for owner, name, original in self._saved:
            setattr(owner, name, original)
        self._saved = []
        self.arrivals.clear()

    async def added(self, seconds: float) -> dict[str, Any]:
        """Receive-to-send delay of every forwarded copy over `seconds`."""
        self.arrivals.clear()
        self.start()
        try:
            await asyncio.sleep(seconds)
            records = [a for a in self.arrivals.values() if a.delays]
        finally:
            self.stop()
        return {
            "every_copy": summary([d for a in records for d in a.delays]),
            "first_copy": summary([min(a.delays) for a in records]),
            "last_copy": summary([max(a.delays) for a in records]),
            "copies_per_packet": round(statistics.mean(len(a.delays) for a in records), 1)
            if records
            else 0,
        }

    async def switches(
        self,
        count: int,
        flip: Callable[[int], tuple[set[int], int]],
    ) -> dict[str, Any]:
        """Time `count` switches. `flip(i)` re-points something and returns the SSRCs of the
        newly selected source and how many subscriber transports should then carry it.

        Switches happen at random moments, so the wait for the new source's next packet
        (0 to one packet interval) is sampled fairly.
        """
        loop = asyncio.get_running_loop()
        first, every, own, misses = [], [], [], 0
        self.arrivals.clear()
        self.start()
        try:
            for i in range(count):
                await asyncio.sleep(random.uniform(0.15, 0.3))
                if len(self.arrivals) > 5000:
                    self.arrivals.clear()
                started = time.perf_counter()
                self.wait = SwitchWait(set(), started, 1, loop.create_future())
                ssrcs, expected = flip(i)
                self.wait.ssrcs, self.wait.expected = ssrcs, expected
                try:
                    await asyncio.wait_for(asyncio.shield(self.wait.done), 2.0)
                except TimeoutError:
                    misses += 1
                    continue
                w = self.wait
                assert w.first_sent is not None and w.all_sent is not None
                first.append(w.first_sent - started)
                every.append(w.all_sent - started)
                own.append(w.first_sent - max(started, w.first_arrival or started))
        finally:
            self.wait = None
            self.stop()
        return {
            "to_first_copy": summary(first),
            "to_every_subscriber": summary(every),
            "after_new_source_packet_arrived": summary(own),
            "missed": misses,
        }
