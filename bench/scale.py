"""What more workers hold: light attendees on `dragoman serve --workers W`, W = 1, 2, 3.

For each W, a real server process on loopback (bench/audience.py's `Server`: for W = 1 a
single process, for W > 1 the supervisor and its W workers sharing the event through the
embedded hub), a speaker and an interpreter on air, then:

1. *Idle*: the server tree's CPU (utime+stime of the supervisor and every worker, /proc)
   over `--window` seconds (`--idle-window` if given) with the staff and `--seed`
   attendees per worker (default 1): cpu0(W). What does not grow with the audience is
   in it: each worker forwarding the channel (waking for every packet) and, with W > 1,
   the node links carrying it from the worker the interpreter publishes on to the others
   (a node pulls an output only while someone on it listens), and the hub. `--seed 0`
   measures it with the staff only, and the links' cost is then spread over the N.
2. *Loaded*: N more attendees (`--n`) join as pages do over the WebSocket (auth, pick French,
   audio only, subscribe, answer) on light aiortc peers (RTP packets counted, not decoded),
   spread over `--clients` client processes; the supervisor places them. After
   `--warmup` seconds, the tree's CPU over `--window` seconds: cpuN(W). Every attendee
   must receive at least 80 % of the channel's 50 packets/s, or the row says so.

Per attendee with W workers: c(W) = (cpuN(W) - cpu0(W)) / N. Held at the same server CPU
per worker: each worker is given the budget B (`--budget`, CPU-s/s; a core minus headroom),
and held(W) = (W * B - cpu0(W)) / c(W): the attendees W workers carry before the tree
spends W * B, extrapolated linearly from the measured cost. The ratio held(W) / held(1) is
the figure (target: held(2) / held(1) >= 1.8). It is an extrapolation from a marginal cost,
not a saturation test, because this machine cannot saturate the server:

The machine has 2 cores, and one run puts on them the server (1 to 3 workers and the
supervisor), the staff's two Opus publishers (this process) and the client processes (one
aiortc peer per attendee: ICE, SRTP, RTCP; a light listener costs the client side about as
much as the server spends on it). So a saturation test ("how many before a worker runs out
of CPU") would measure the clients, not the server; and with W = 3 the three workers
share two cores with everything else. What the machine can show honestly is what an
attendee costs the server tree with W workers (does splitting add overhead: node links,
the hub, the supervisor's hand-off?) and the fixed cost of each extra worker; held(W)
assumes each worker has a core of its own, as it would on a machine with W free cores.
The per-worker column (attendees and CPU of each worker) shows the placement is even.

    python -m bench.scale                          # W = 1,2,3, N = 100, 10 s windows
    python -m bench.scale --workers 1,2 --n 150 --window 15 --json
    python -m bench.scale --workers 1,2 --reps 3   # interleaved, ratio of the medians
    python -m bench.scale --workers 1,2 --reps 3 --together

With `--together`, the worker counts of a repetition run at the same time (a server,
staff and audience each, their windows aligned): the machine's slow and fast minutes
(the same run a minute apart can cost 40 % more here) fall on every W alike, and the
ratio is what repeats. Each W then shares the cores with the others' work as well.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.audience import Audience, Server, Staff, cpu_between, issue, log
from bench.forwarding import machine_busy
from signaling.tokens import Role

#: The channel's packet rate (Opus, 20 ms frames); a listener under 80 % of it is starved.
PACKETS_PER_S = 50.0
#: Seconds between two seed attendees' joins: the supervisor places each on the least
#: loaded worker, so that every worker gets its own.
SEED_EVERY_S = 0.3


async def window(server: Server, seconds: float) -> tuple[float, dict[int, float], float]:
    """Server tree CPU-s/s over a window, per pid too, and the machine's busy cores."""
    c0, m0, t0 = server.cpu(), machine_busy(), time.monotonic()
    await asyncio.sleep(seconds)
    c1, m1, t1 = server.cpu(), machine_busy(), time.monotonic()
    wall = t1 - t0
    per_pid = {pid: (value - c0.get(pid, 0.0)) / wall for pid, value in c1.items()}
    busy = (os.cpu_count() or 1) * (1 - (m1[1] - m0[1]) / max(1, m1[0] - m0[0]))
    return cpu_between(c0, c1) / wall, per_pid, busy


async def in_step(barrier: asyncio.Barrier | None) -> None:
    """With `--together`, wait until every worker count's run reaches the same point."""
    if barrier is not None:
        await barrier.wait()


async def one(
    workers: int, options: argparse.Namespace, barrier: asyncio.Barrier | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dragoman-scale-") as tmp:
        server = Server(workers, Path(tmp) / "data")
        staff = Staff()
        audience = None
        try:
            await server.start()
            audience = Audience(server.url, options.clients)
            await staff.on_air(server.url)
            seeds = options.seed * workers
            tokens = [issue(Role.ATTENDEE, f"scale-seed-{i}") for i in range(seeds)]
            start = time.monotonic() + 0.2
            at = [start + i * SEED_EVERY_S for i in range(seeds)]
            joins = await audience.join(tokens, at, [True] * seeds) if seeds else []
            await asyncio.sleep(options.warmup)
            await in_step(barrier)
            idle, _, idle_busy = await window(server, options.idle_window)
            log(f"W={workers}: idle {idle:.4f} CPU-s/s; {options.n} attendees joining")
            n = options.n
            tokens = [issue(Role.ATTENDEE, f"scale-{i}") for i in range(n)]
            await in_step(barrier)
            start = time.monotonic() + 0.2
            # Not a wave: a steady trickle, so joining is over before the window.
            at = [start + i * options.join_every for i in range(n)]
            joins += await audience.join(tokens, at, [True] * n)
            failed = [j["error"] for j in joins if j["error"]]
            await asyncio.sleep(options.warmup)
            await in_step(barrier)
            await audience.ask_all([{"cmd": "mark"}] * options.clients)
            loaded, per_pid, busy = await window(server, options.window)
            reports = await audience.ask_all([{"cmd": "report"}] * options.clients)
        except BaseException:
            if barrier is not None:
                await barrier.abort()  # the other runs stop too instead of waiting for this one
            raise
        finally:
            if audience is not None:
                await audience.stop()
            await staff.close()
            await server.stop()
    pps = [x for r in reports for x in r["pps"]]
    placement: dict[str, int] = {}
    for j in joins:
        if j["node"]:
            placement[j["node"]] = placement.get(j["node"], 0) + 1
    per_worker = [
        (node, count, per_pid.get(int(node.rsplit("-", 1)[1]), 0.0))
        for node, count in sorted(placement.items())
        if node.startswith("worker-")
    ]
    if not per_worker:  # one process: no supervisor, the node is the whole tree
        per_worker = [(node, count, loaded) for node, count in placement.items()]
    cost = (loaded - idle) / n
    return {
        "workers": workers,
        "n": n,
        "seeds": seeds,
        "failed": len(failed),
        "errors": sorted(set(failed))[:3],
        "idle_cpu": idle,
        "loaded_cpu": loaded,
        "cpu_per_attendee": cost,
        "held": (workers * options.budget - idle) / cost if cost > 0 else None,
        "receiving": sum(x >= 0.8 * PACKETS_PER_S for x in pps),
        "pps_median": statistics.median(pps) if pps else 0.0,
        "per_worker": per_worker,
        "clients_cpu": sum(r["cpu"] or 0.0 for r in reports),
        "machine_busy_idle": idle_busy,
        "machine_busy": busy,
    }


async def bench(options: argparse.Namespace) -> dict[str, Any]:
    rows = []
    # Repetitions interleaved (1, 2, 1, 2, ...): a busy minute of the machine falls on
    # every worker count alike instead of on one of them.
    for rep in range(options.reps):
        base = None
        if options.together:
            barrier = asyncio.Barrier(len(options.workers))
            together = await asyncio.gather(*(one(w, options, barrier) for w in options.workers))
        for index, workers in enumerate(options.workers):
            row = together[index] if options.together else await one(workers, options)
            row["rep"] = rep + 1
            base = base or row
            compare(row, base)
            rows.append(row)
    return {
        "budget": options.budget,
        "window": options.window,
        "reps": options.reps,
        "together": options.together,
        "seed": options.seed,
        "rows": rows,
        "medians": medians(rows, options.workers, options.budget),
    }


def compare(row: dict[str, Any], base: dict[str, Any]) -> None:
    """`row`'s cost and held attendees as ratios to the W = 1 row of its repetition."""
    # A cost at or under zero: the noise of the machine exceeded N attendees' cost.
    positive = base["cpu_per_attendee"] > 0
    row["cost_ratio"] = row["cpu_per_attendee"] / base["cpu_per_attendee"] if positive else None
    row["held_ratio"] = row["held"] / base["held"] if row["held"] and base["held"] else None


def medians(rows: list[dict[str, Any]], counts: list[int], budget: float) -> list[dict[str, Any]]:
    """Per worker count, the median idle CPU and cost per attendee over the repetitions
    in which every attendee joined and received the channel, and held(W) and its ratio
    to W = 1 computed from those medians.

    A repetition with starved attendees is left out, as bench/vs_janus.py leaves out runs
    with packets not delivered: an overloaded machine delivers less and so costs less.
    """
    out = []
    for workers in counts:
        mine = [
            r
            for r in rows
            if r["workers"] == workers
            and r["failed"] == 0
            and r["receiving"] == r["n"] + r.get("seeds", 0)
        ]
        left_out = sum(r["workers"] == workers for r in rows) - len(mine)
        row: dict[str, Any] = {"workers": workers, "runs": len(mine), "left_out": left_out}
        if mine:
            row["idle_cpu"] = statistics.median(r["idle_cpu"] for r in mine)
            row["cpu_per_attendee"] = cost = statistics.median(r["cpu_per_attendee"] for r in mine)
            row["held"] = (workers * budget - row["idle_cpu"]) / cost if cost > 0 else None
        else:
            row.update(idle_cpu=None, cpu_per_attendee=None, held=None)
        out.append(row)
    base = out[0]
    for row in out:
        if base["held"] and row["held"]:
            compare(row, base)
        else:
            row["cost_ratio"] = row["held_ratio"] = None
    return out


def report(result: dict[str, Any]) -> None:
    rows = result["rows"]
    print(
        f"light attendees (audio only, packets counted) on dragoman serve --workers W; "
        f"budget B = {result['budget']} CPU-s/s per worker; {result['window']:g} s windows"
        + ("; every W at the same time, windows aligned" if result["together"] else "")
    )
    print(
        f"idle: the staff and {result['seed']} attendee(s) per worker; per attendee: "
        f"(loaded - idle) / N"
    )
    print(
        "| W | N | receiving | failed | server idle CPU-s/s | server loaded CPU-s/s "
        "| per attendee | vs W=1 | held = (W*B - idle)/per attendee | held vs W=1 "
        "| per worker: attendees, CPU-s/s | clients CPU-s/s | machine busy cores (idle, loaded) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if result["reps"] > 1 and r["workers"] == rows[0]["workers"]:
            print(f"| repetition {r['rep']} |||||||||||||")
        workers = "; ".join(f"{count}, {cpu:.3f}" for _, count, cpu in r["per_worker"]) or "-"
        held = f"{r['held']:.0f}" if r["held"] else "-"
        held_ratio = f"{r['held_ratio']:.2f}x" if r["held_ratio"] else "-"
        cost_ratio = f"{r['cost_ratio']:.2f}x" if r["cost_ratio"] else "-"
        listeners = r["n"] + r.get("seeds", 0)
        print(
            f"| {r['workers']} | {r['n']} | {r['receiving']}/{listeners} "
            f"(median {r['pps_median']:.1f} pkt/s) | {r['failed']} | {r['idle_cpu']:.4f} "
            f"| {r['loaded_cpu']:.4f} | {r['cpu_per_attendee']:.5f} | {cost_ratio} "
            f"| {held} | {held_ratio} | {workers} | {r['clients_cpu']:.2f} "
            f"| {r['machine_busy_idle']:.2f}, {r['machine_busy']:.2f} |"
        )
    for r in rows:
        if r["workers"] > 1 and r["held_ratio"]:
            target = "  (target >= 1.8x)" if r["workers"] == 2 else ""
            rep = f", repetition {r['rep']}" if result["reps"] > 1 else ""
            print(f"    held({r['workers']}) / held(1) = {r['held_ratio']:.2f}x{target}{rep}")
    if result["reps"] > 1:
        print(f"  medians of {result['reps']} repetitions:")
        for m in result["medians"]:
            left_out = f" ({m['left_out']} left out: attendees starved)" if m["left_out"] else ""
            if not m["runs"]:
                print(f"    W={m['workers']}: no repetition with every attendee served{left_out}")
                continue
            held = f"{m['held']:.0f}" if m["held"] else "-"
            ratio = f", held vs W=1 {m['held_ratio']:.2f}x" if m["held_ratio"] else ""
            print(
                f"    W={m['workers']}: idle {m['idle_cpu']:.4f} CPU-s/s, per attendee "
                f"{m['cpu_per_attendee']:.5f}, held {held}{ratio}, "
                f"{m['runs']} repetitions{left_out}"
            )
    for r in rows:
        if r["errors"]:
            print(f"    W={r['workers']}: {r['failed']} failed joins, e.g. {r['errors']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,3", help="worker counts (1,2,3)")
    parser.add_argument("--n", type=int, default=100, help="attendees per run (100)")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured (10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each (3)")
    parser.add_argument(
        "--idle-window",
        type=float,
        help="seconds the idle CPU is measured (as --window); shorter only for a quick try",
    )
    parser.add_argument("--join-every", type=float, default=0.05, help="s between joins (0.05)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (2)")
    parser.add_argument(
        "--budget", type=float, default=0.8, help="CPU-s/s each worker may spend (0.8)"
    )
    parser.add_argument(
        "--reps", type=int, default=1, help="repetitions of the worker counts, interleaved (1)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="attendees per worker already listening during the idle window (1)",
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="run every worker count at the same time, their windows aligned (one server, "
        "staff and audience each): the machine's slow and fast minutes fall on all alike",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    options = parser.parse_args()
    try:
        options.workers = [int(w) for w in options.workers.split(",")]
    except ValueError:
        parser.error(f"--workers: {options.workers!r} is not a list like 1,2,3")
    if min(*options.workers, options.n, options.clients, options.reps) < 1:
        parser.error("--workers, --n, --clients and --reps must be at least 1")
    if options.seed < 0:
        parser.error("--seed cannot be negative")
    if options.workers[0] != 1:
        parser.error("--workers must start with 1: every other count is compared with it")
    if options.idle_window is None:
        options.idle_window = options.window
    if options.window <= 0 or options.idle_window <= 0 or options.budget <= 0:
        parser.error("--window, --idle-window and --budget must be positive")
    result = asyncio.run(bench(options))
    if options.json:
        print(json.dumps(result))
    else:
        report(result)


if __name__ == "__main__":
    main()
