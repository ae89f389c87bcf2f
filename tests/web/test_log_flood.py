"""No client can fill a node's disk with log lines: what a client can make the node write
at will (refusals, warnings, errors) passes a few times per kind and interval, and the
rest is counted in one line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from pathlib import Path

import aiohttp

from signaling.logs import JsonFormatter, RepeatLimit
from tests.support.server import StartServeProcess, dragoman_env


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def handler_with_limit(clock: FakeClock) -> tuple[logging.Handler, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RepeatLimit(handler.handle, burst=5, interval_s=10.0, clock=clock))
    return handler, out


def record(name: str, level: int, msg: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    made.__dict__.update(extra)
    return made


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_repeated_warning_passes_a_few_times_then_is_counted() -> None:
    clock = FakeClock()
    handler, out = handler_with_limit(clock)
    for number in range(100):
        handler.handle(
            record("signaling.x", logging.WARNING, "refused from %s", f"192.0.2.{number}")
        )
    assert len(lines(out)) == 5
    clock.now += 11
    handler.handle(record("signaling.x", logging.INFO, "something else"))
    written = lines(out)
    assert len(written) == 7
    summary = written[5]
    assert summary["message"] == (
        "95 similar messages suppressed in the last 10 s: refused from %s"
    )
    assert summary["logger"] == "signaling.x" and summary["suppressed"] == 95
    # The next window lets the kind through again.
    handler.handle(record("signaling.x", logging.WARNING, "refused from %s", "198.51.100.1"))
    assert len(lines(out)) == 8


def test_served_requests_are_all_logged_refused_ones_are_limited() -> None:
    clock = FakeClock()
    handler, out = handler_with_limit(clock)
    for _ in range(50):
        handler.handle(
            record("aiohttp.access", logging.INFO, "%s %s %s", "GET", "/", 200, status=200)
        )
        handler.handle(
            record("aiohttp.access", logging.INFO, "%s %s %s", "GET", "/x", 404, status=404)
        )
        handler.handle(
            record("aiohttp.access", logging.INFO, "%s %s %s", "POST", "/a", 400, status=400)
        )
        handler.handle(record("signaling.live", logging.INFO, "client joined"))
    written = lines(out)
    assert sum(1 for line in written if line.get("status") == 200) == 50
    assert sum(1 for line in written if line.get("status") == 404) == 5
    assert sum(1 for line in written if line.get("status") == 400) == 5
    assert sum(1 for line in written if line["message"] == "client joined") == 50


def test_the_kinds_it_remembers_are_bounded() -> None:
    clock = FakeClock()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    limit = RepeatLimit(handler.handle, burst=1, interval_s=10.0, max_kinds=10, clock=clock)
    handler.addFilter(limit)
    for number in range(10_000):
        handler.handle(record("x", logging.ERROR, f"distinct message {number}"))
    # Ten kinds, and one count for all the others.
    assert len(limit._windows) <= 11
    assert len(out.getvalue().splitlines()) <= 11


async def test_a_flood_of_bad_requests_writes_a_bounded_log(
    serve_process: StartServeProcess, tmp_path: Path
) -> None:
    # A shorter interval than the default 10 s, so that the test need not wait it out; the
    # flood lasts about a second, within one interval unless the machine is very slow.
    interval_s = 3
    node = await serve_process(
        tmp_path / "data", env=dragoman_env(DRAGOMAN_LOG_REPEAT_INTERVAL_S=str(interval_s))
    )
    assert node.stderr_path is not None
    before = len(node.stderr_path.read_text("utf-8").splitlines())
    floods = 400
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        for number in range(floods):
            async with http.post(
                f"{node.url}/api/registrations",
                data="[" * 5000,
                headers={"Content-Type": "application/json"},
            ) as response:
                assert response.status in (400, 429)
            async with http.get(f"{node.url}/api/nothing/{number}") as response:
                assert response.status == 404
        for _ in range(floods):
            reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
            await writer.drain()
            await reader.read()
            writer.close()
        intervals = int((time.monotonic() - started) // interval_s) + 1
        written = node.stderr_path.read_text("utf-8").splitlines()[before:]
        # 1,200 refusals; a few lines of each kind pass per interval (each with its access
        # log line).
        assert len(written) < 120 * intervals, "\n".join(written[-20:])
        assert not any("Traceback" in line for line in written)
        # Once the interval is over, the next line of the node reports what it held back.
        summary = f"similar messages suppressed in the last {interval_s} s"
        deadline = time.monotonic() + interval_s + 15
        while summary not in node.stderr_path.read_text("utf-8"):
            assert time.monotonic() < deadline, "no line reported the suppressed ones"
            await asyncio.sleep(0.5)
            async with http.get(f"{node.url}/healthz") as response:
                assert response.status == 200
