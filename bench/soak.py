"""Does a node hold steady for hours? Light listeners joining and leaving on `dragoman
serve` for `--minutes`, while what the server holds is sampled (issue 12's soak).

A node (bench/audience.py's `Server`, one process, SQLite), the staff on air (the
Russian speaker and the RU<>FR interpreter publishing tones), and `--listeners` attendees
(100) in `--clients` client processes, each doing what a page does over the WebSocket
(auth, French, audio only, subscribe, answer) on a light aiortc peer (RTP packets
counted, not decoded). Every `--churn-every` seconds `--churn` of them (2) leave (socket
and peer closed, as a closed tab) and as many new ones join, so the room stays the same
size while people come and go.

Every `--sample-every` seconds, right after a churn has settled, the server's resident
memory, open descriptors, UDP sockets (bench/footprint.py, from /proc) and event-loop
tasks (`dragoman_asyncio_tasks` on its /metrics), and its CPU. After `--warmup` seconds
(a third of the run, at most five minutes: set against a climb over the first few
hundred joins, which was departed peers waiting for a full collection, see
bench/README.md) the first sample is the
reference; printed: each sample, then the growth of each figure
from the reference to the end (the mean of the last three samples, so one join in flight
does not decide it), and the verdict: flat when every figure grew under 5 %
(`--max-growth`). Each sample also says how many listeners received the channel since
the one before (80 % of its 50 packets/s), whether both publishers are still there, and the
machine's load average: when the media stopped (publishers gone, listeners starved: on a
machine too busy for the clients ICE consent expires) the verdict is "media stopped" and
the figures say nothing of leaks.

    python -m bench.soak                        # 100 listeners, 30 minutes
    python -m bench.soak --minutes 5 --json
    python -m bench.soak --listeners 20 --minutes 2 --churn-every 5
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

from bench.audience import Attendee, Server, Staff, cpu_between, issue, join, log
from bench.footprint import footprint
from bench.memory_probe import PROBE_ENV
from bench.peers import receive
from signaling.tokens import Role

PACKETS_PER_S = 50.0
FIGURES = ("rss_mb", "fds", "udp_sockets", "tasks")


# -- the listeners (client processes) -----------------------------------------------------


async def _listeners(conn: Connection, cfg: dict[str, Any]) -> None:
    room: collections.deque[Attendee] = collections.deque()
    marks: dict[int, tuple[int, float]] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        while True:
            msg = await receive(conn)
            if msg["cmd"] == "join":
                fresh = [Attendee(token, True) for token in msg["tokens"]]
                await asyncio.gather(*(join(session, cfg["url"], a) for a in fresh))
                room.extend(a for a in fresh if a.error is None)
                conn.send({"errors": [a.error for a in fresh if a.error is not None]})
            elif msg["cmd"] == "leave":
                gone = [room.popleft() for _ in range(min(msg["count"], len(room)))]
                for attendee in gone:
                    marks.pop(id(attendee), None)
                    await _close(attendee)
                conn.send({"left": len(gone)})
            elif msg["cmd"] == "mark":
                now = time.monotonic()
                marks = {id(a): (a.listener.packets if a.listener else 0, now) for a in room}
                conn.send({})
            elif msg["cmd"] == "report":
                now = time.monotonic()
                pps = []
                for a in room:
                    packets, at = marks.get(id(a), (0, now))
                    count = a.listener.packets if a.listener else 0
                    pps.append((count - packets) / max(1e-3, now - at))
                conn.send({"pps": pps})
            elif msg["cmd"] == "stop":
                for attendee in room:
                    await _close(attendee)
                conn.send({})
                return


async def _close(attendee: Attendee) -> None:
    with contextlib.suppress(Exception):
        if attendee.listener is not None:
            await attendee.listener.close()
        if attendee.page is not None:
            await attendee.page.close()


def listeners_process(conn: Connection, cfg: dict[str, Any]) -> None:
    asyncio.run(_listeners(conn, cfg))


class Room:
    """The client processes, driven over pipes; attendee n joins process n % clients."""

    def __init__(self, url: str, clients: int) -> None:
        context = mp.get_context("spawn")
        self.conns: list[Connection] = []
        self.processes: list[Any] = []
        for _ in range(clients):
            mine, theirs = context.Pipe()
            process = context.Process(
                target=listeners_process, args=(theirs, {"url": url}), daemon=True
            )
            process.start()
            self.conns.append(mine)
            self.processes.append(process)
        self.joined = self.left = 0
        self.errors: list[str] = []
        self._next = 0

    async def ask(self, index: int, msg: dict[str, Any]) -> dict[str, Any]:
        self.conns[index].send(msg)
        return await receive(self.conns[index])

    async def join(self, count: int) -> None:
        per: dict[int, list[str]] = collections.defaultdict(list)
        for _ in range(count):
            per[self._next % len(self.conns)].append(issue(Role.ATTENDEE, f"soak-{self._next}"))
            self._next += 1
        replies = await asyncio.gather(
            *(self.ask(i, {"cmd": "join", "tokens": tokens}) for i, tokens in per.items())
        )
        self.joined += count
        for reply in replies:
            self.errors += reply["errors"]

    async def leave(self, count: int) -> None:
        """The `count` who joined first leave (spread over the processes)."""
        per = collections.Counter(i % len(self.conns) for i in range(self.left, self.left + count))
        replies = await asyncio.gather(
            *(self.ask(i, {"cmd": "leave", "count": n}) for i, n in per.items())
        )
        self.left += sum(reply["left"] for reply in replies)

    async def mark(self) -> None:
        """Start counting every listener's packets from now."""
        await asyncio.gather(*(self.ask(i, {"cmd": "mark"}) for i in range(len(self.conns))))

    async def pps(self) -> list[float]:
        """Packets per second of every listener since the last `mark` (0 for those who
        joined since)."""
        replies = await asyncio.gather(
            *(self.ask(i, {"cmd": "report"}) for i in range(len(self.conns)))
        )
        return [value for reply in replies for value in reply["pps"]]

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(60):
                await asyncio.gather(
                    *(self.ask(i, {"cmd": "stop"}) for i in range(len(self.conns)))
                )
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()


# -- the run ------------------------------------------------------------------------------


def growth(samples: list[dict[str, Any]], reference: int) -> dict[str, float | None]:
    """Growth of each figure, in %, from the reference sample to the end (the mean of the
    last three samples)."""
    out: dict[str, float | None] = {}
    tail = samples[-3:] if len(samples) - reference >= 3 else samples[-1:]
    for name in FIGURES:
        first = samples[reference][name]
        last = [s[name] for s in tail if s[name] is not None]
        if first in (None, 0) or not last:
            out[name] = None
            continue
        out[name] = 100.0 * (statistics.fmean(last) - first) / first
    return out


async def run(options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dragoman-soak-") as tmp:
        probe_path = Path(tmp) / "memory.jsonl"
        server = Server(
            1,
            Path(tmp) / "data",
            log_path=Path(tmp) / "server.log",
            module="bench.memory_probe" if options.memory_probe else "signaling.cli",
            extra_env={
                **dict(options.server_env),
                **({PROBE_ENV: str(probe_path)} if options.memory_probe else {}),
            },
        )
        await server.start()
        assert server.process is not None
        staff = Staff()
        room = Room(server.url, options.clients)
        samples: list[dict[str, Any]] = []
        reference: int | None = None
        started = time.monotonic()
        try:
            async with aiohttp.ClientSession() as http:
                await staff.on_air(server.url)
                # The room fills in groups, as an audience arrives.
                for first in range(0, options.listeners, 20):
                    await room.join(min(20, options.listeners - first))
                log(f"{options.listeners} listeners in; soaking for {options.minutes} min")
                started = time.monotonic()
                end = started + 60 * options.minutes
                next_churn = started + options.churn_every
                next_sample = started
                cpu0, t0 = server.cpu(), time.monotonic()
                while True:
                    now = time.monotonic()
                    if now >= next_churn and now < end:
                        await room.leave(options.churn)
                        await room.join(options.churn)
                        next_churn += options.churn_every
                    if now >= next_sample or now >= end:
                        await asyncio.sleep(1.0)  # the churn settles
                        pps = await room.pps() if samples else []
                        await room.mark()
                        held = await footprint(http, server.url, server.process.pid)
                        cpu1, t1 = server.cpu(), time.monotonic()
                        sample = {
                            "t_s": round(t1 - started, 1),
                            **held.as_dict(),
                            "server_cpu": cpu_between(cpu0, cpu1) / (t1 - t0),
                            "joined": room.joined,
                            "left": room.left,
                            # Listeners who received the channel since the last sample.
                            "receiving": sum(v >= 0.8 * PACKETS_PER_S for v in pps),
                            "listeners": len(pps),
                            # Runnable processes on the machine (it is shared).
                            "load_avg": os.getloadavg()[0],
                        }
                        if options.memory_probe:
                            sample["memory"] = await probe(server.process.pid, probe_path)
                        cpu0, t0 = cpu1, t1
                        samples.append(sample)
                        if reference is None and sample["t_s"] >= options.warmup:
                            reference = len(samples) - 1
                        log(
                            f"t={sample['t_s']:>6.0f}s rss {held.rss_mb:.1f} MB, fds {held.fds},"
                            f" udp {held.udp_sockets}, tasks {held.tasks}, cpu "
                            f"{sample['server_cpu']:.2f}, joined {room.joined}, left {room.left}"
                            f", receiving {sample['receiving']}/{sample['listeners']}"
                            f", publishers {held.publishers}, subscribers {held.subscribers}"
                            f", fr packets {held.channel_packets}"
                            f", load {sample['load_avg']:.1f}"
                            + (
                                ""
                                if held.collections is None
                                else f", collections {held.collections}"
                                f" ({1000 * (held.collection_s or 0.0):.0f} ms)"
                            )
                        )
                        if options.memory_probe:
                            log(f"         {probe_summary(sample['memory'])}")
                        next_sample += options.sample_every
                        if now >= end:
                            break
                    await asyncio.sleep(
                        max(0.05, min(next_churn, next_sample, end) - time.monotonic())
                    )
                await asyncio.sleep(3.0)
                pps = await room.pps()
        finally:
            await room.stop()
            await staff.close()
            await server.stop()
            log_levels, log_errors = read_log(Path(tmp) / "server.log")
    if reference is None:
        reference = len(samples) - 1
    grown = growth(samples, reference)
    flat = all(value is not None and value < options.max_growth for value in grown.values())
    # Figures of a node whose media stopped (its publishers gone, its listeners starved:
    # on a machine too busy for the clients, ICE consent expires) say nothing of leaks.
    media_stopped = [
        s["t_s"]
        for s in samples[1:]
        if s["publishers"] != 2 or s["receiving"] < 0.9 * s["listeners"]
    ]
    verdict = "media stopped" if media_stopped else "flat" if flat else "grew"
    return {
        "options": {
            "listeners": options.listeners,
            "minutes": options.minutes,
            "churn": options.churn,
            "churn_every_s": options.churn_every,
            "sample_every_s": options.sample_every,
            "warmup_s": options.warmup,
            "max_growth_pct": options.max_growth,
        },
        "joins": room.joined,
        "leaves": room.left,
        "failed_joins": len(room.errors),
        "errors": room.errors[:10],
        "samples": samples,
        "reference_t_s": samples[reference]["t_s"] if samples else None,
        "growth": grown,
        "verdict": verdict,
        "media_stopped_at_s": media_stopped,
        "listeners_at_end": len(pps),
        "receiving_at_end": sum(value >= 0.8 * PACKETS_PER_S for value in pps),
        "server_log_levels": log_levels,
        "server_log_errors": log_errors,
    }


async def probe(pid: int, path: Path) -> dict[str, Any] | None:
    """Ask bench/memory_probe.py in the node for its heap figures (SIGUSR1), and read them."""
    before = _probe_size(path)
    os.kill(pid, signal.SIGUSR1)
    for _ in range(300):
        await asyncio.sleep(0.1)
        line = _probe_line(path, before)
        if line is not None:
            return line
    return None


def _probe_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _probe_line(path: Path, before: int) -> dict[str, Any] | None:
    """The line the probe appended after `before` bytes, once it is whole."""
    if _probe_size(path) <= before:
        return None
    text = path.read_text()
    return dict(json.loads(text[before:].splitlines()[0])) if text.endswith("\n") else None


def probe_summary(memory: dict[str, Any] | None) -> str:
    if memory is None:
        return "memory probe: no answer"
    traced = memory.get("python_traced_mb")
    return (
        f"pymalloc arenas {memory.get('pymalloc_arenas_mb')} MB (used "
        f"{memory.get('pymalloc_used_mb')} MB), "
        f"heap in use {memory.get('heap_in_use_mb')} MB, free in heap "
        f"{memory.get('heap_free_mb')} MB, mmapped {memory.get('mmapped_mb')} MB, arenas "
        f"{memory.get('arenas')}, threads {memory.get('threads')}, objects "
        f"{memory.get('objects')}" + ("" if traced is None else f", python traced {traced} MB")
    )


def read_log(path: Path) -> tuple[dict[str, int], list[str]]:
    """The server's log lines by level, and its last few warnings and errors."""
    levels: collections.Counter[str] = collections.Counter()
    last: collections.deque[str] = collections.deque(maxlen=8)
    with contextlib.suppress(OSError), path.open(errors="replace") as lines:
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            level = str(entry.get("level", "?"))
            levels[level] += 1
            if level in ("warning", "error", "critical"):
                last.append(f"{entry.get('logger')}: {entry.get('message')}"[:300])
    return dict(levels), list(last)


def print_report(result: dict[str, Any]) -> None:
    columns = ("t (s)", 7), ("rss MB", 9), ("fds", 6), ("udp", 6), ("tasks", 7), ("cpu", 7)
    print(
        "".join(f"{name:>{width}}" for name, width in columns)
        + f"{'joined':>8}{'left':>6}{'receiving':>11}{'pubs':>6}{'load':>6}"
    )
    for s in result["samples"]:
        tasks = "-" if s["tasks"] is None else s["tasks"]
        print(
            f"{s['t_s']:>7.0f}{s['rss_mb']:>9.1f}{s['fds']:>6}{s['udp_sockets']:>6}{tasks:>7}"
            f"{s['server_cpu']:>7.2f}{s['joined']:>8}{s['left']:>6}"
            f"{s['receiving']:>6}/{s['listeners']:<4}{s['publishers']:>6}{s['load_avg']:>6.1f}"
        )
    print(f"\ngrowth from t={result['reference_t_s']} s to the end (mean of the last 3 samples):")
    for name, value in result["growth"].items():
        shown = "-" if value is None else f"{value:+.1f} %"
        print(f"  {name:<12}{shown}")
    limit = result["options"]["max_growth_pct"]
    if result["verdict"] == "media stopped":
        print(
            f"verdict: media stopped (publishers gone or listeners starved at t = "
            f"{result['media_stopped_at_s']} s): these figures do not measure leaks"
        )
    else:
        print(f"verdict: {result['verdict']} (every figure under {limit} % growth)")
    last = result["samples"][-1] if result["samples"] else {}
    if last.get("collections"):
        pause_ms = 1000 * (last.get("collection_s") or 0.0)
        print(
            f"collections of departed peers: {last['collections']}, {pause_ms:.0f} ms in all "
            f"({pause_ms / last['collections']:.0f} ms each on average)"
        )
    print(f"server log: {result['server_log_levels']}")
    for line in result["server_log_errors"]:
        print(f"  {line}")
    print(
        f"joins {result['joins']} (failed {result['failed_joins']}), leaves {result['leaves']};"
        f" receiving at the end: {result['receiving_at_end']}/{result['listeners_at_end']}"
    )


def positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
        return value

    return parse


def env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--listeners", type=positive(int), default=100)
    parser.add_argument("--minutes", type=positive(float), default=30.0)
    parser.add_argument("--clients", type=positive(int), default=2, help="client processes")
    parser.add_argument("--churn", type=positive(int), default=2, help="leave and join each time")
    parser.add_argument("--churn-every", type=positive(float), default=10.0, help="seconds")
    parser.add_argument("--sample-every", type=positive(float), default=30.0, help="seconds")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds before the reference sample (a third of the run, at most 300)",
    )
    parser.add_argument("--max-growth", type=positive(float), default=5.0, help="percent")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument(
        "--memory-probe",
        action="store_true",
        help="run the node under bench/memory_probe.py: each sample adds its malloc figures",
    )
    parser.add_argument(
        "--server-env",
        type=env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="more environment for the node (e.g. MALLOC_ARENA_MAX=2); repeatable",
    )
    options = parser.parse_args(argv)
    if options.churn > options.listeners:
        parser.error(f"--churn {options.churn} is more than the {options.listeners} listeners")
    if options.warmup is None:
        # Kept from before departed peers were collected promptly (bench/README.md).
        options.warmup = min(300.0, 20.0 * options.minutes)
    result = asyncio.run(run(options))
    if options.json:
        json.dump(result, sys.stdout)
        print()
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
