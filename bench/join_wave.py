"""A wave of attendees joining at once: N open their sockets within a few seconds.

A real `dragoman serve --workers W` process on loopback (bench/audience.py's `Server`), a
speaker and an interpreter on air (the French channel carries the interpreter), then:

1. *Baseline*: `--baseline` attendees join one after another on the quiet server.
2. *Wave*: N attendees (default 500) open their sockets over `--over` seconds (evenly
   spread), spread over `--clients` client processes. Each does what a page does over the
   WebSocket (auth, `select_channel fr`, `set_audio_only`, `subscribe`, `answer`) and
   receives its channel on a light aiortc peer (RTP packets counted, not decoded).

Per attendee: opening the socket -> the first RTP packet of its channel. Printed: p50, p95
and max for the wave, against the baseline's median (the same steps on a quiet server);
the server's CPU-seconds (supervisor + workers, /proc) from the first socket to the last
first packet; the messages the server sent the attendees (WebSocket frames counted by all
clients) and the staff; how many failed, and how the attendees were placed on workers.

`--media M` gives a light peer to M attendees only (spread evenly through the wave); the
others open their socket, authenticate and pick a channel, and stay on the WebSocket
(their figure is then socket -> the `state` that confirms the channel). Use it when the
machine cannot run N aiortc peers; the printed line says how many had media.

The machine (2 cores) runs the server, the staff's two aiortc publishers and every
client: the clients' own aiortc work (ICE, DTLS handshake, SRTP) competes with the
server's for the same cores, so the times are an upper bound of what the server alone
would give.

    python -m bench.join_wave                       # 500 attendees over 10 s, 2 workers
    python -m bench.join_wave --n 50 --over 2 --workers 1 --json
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def bench(options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dragoman-wave-") as tmp:
        server = Server(options.workers, Path(tmp) / "data")
        await server.start()
        staff = Staff()
        audience = Audience(server.url, options.clients)
        try:
            await staff.on_air(server.url)
            log(f"server up ({options.workers} workers), speaker and interpreter on air")
            lone = []
            for k in range(options.baseline):
                token = issue(Role.ATTENDEE, f"lone-{k}")
                (row,) = await audience.join([token], [time.monotonic()], [True])
                if row["error"]:
                    raise RuntimeError(f"a lone attendee could not join: {row['error']}")
                lone.append(row["join_s"])
            log(f"baseline: {len(lone)} lone joins, median {statistics.median(lone):.3f} s")

            n = options.n
            # The attendees with media are spread evenly through the wave.
            m = options.media
            media = [(i * m) // n != ((i + 1) * m) // n for i in range(n)]
            tokens = [issue(Role.ATTENDEE, f"wave-{i}") for i in range(n)]
            before = await audience.messages()
            staff0 = sum(p.frames for p in staff.pages)
            start = time.monotonic() + 0.2
            at = [start + options.over * i / n for i in range(n)]
            cpu0, m0 = server.cpu(), machine_busy()
            joins = await audience.join(tokens, at, media)
            wall = time.monotonic() - start
            cpu = cpu_between(cpu0, server.cpu())
            m1 = machine_busy()
            busy = (os.cpu_count() or 1) * (1 - (m1[1] - m0[1]) / max(1, m1[0] - m0[0]))
            clients_cpu = audience.join_cpu_s
            # Late messages (listener counts to staff at most once a second) settle.
            await asyncio.sleep(1.5)
            types = await audience.messages()
            types.subtract(before)
            frames = sum(types.values())
            staff_frames = sum(p.frames for p in staff.pages) - staff0
        finally:
            await audience.stop()
            await staff.close()
            await server.stop()
    ok = [j for j in joins if not j["error"]]
    errors: dict[str, int] = {}
    for j in joins:
        if j["error"]:
            errors[j["error"]] = errors.get(j["error"], 0) + 1
    times = [j["join_s"] for j in ok if j["media"]]
    ws_only = [j["join_s"] for j in ok if not j["media"]]
    nodes: dict[str, int] = {}
    for j in ok:
        nodes[j["node"]] = nodes.get(j["node"], 0) + 1
    lone_median = statistics.median(lone)
    result: dict[str, Any] = {
        "n": n,
        "over_s": options.over,
        "workers": options.workers,
        "clients": options.clients,
        "media": sum(media),
        "failed": len(joins) - len(ok),
        "errors": errors,
        "baseline_joins": len(lone),
        "baseline_median_s": lone_median,
        "wall_s": wall,
        "server_cpu_s": cpu,
        "clients_cpu_s": clients_cpu,
        "machine_busy": busy,
        "messages_to_attendees": frames,
        "messages_by_type": dict(types.most_common()),
        "messages_to_staff": staff_frames,
        "placement": dict(sorted(nodes.items())),
    }
    steps = {}
    for step in ("welcome", "channel", "offer", "answer"):
        values = [j["steps"][step] for j in ok if j["media"] and step in j["steps"]]
        if values:
            steps[step] = (percentile(values, 0.5), percentile(values, 0.95))
    result["steps_s"] = steps
    if times:
        result.update(
            p50_s=percentile(times, 0.5),
            p95_s=percentile(times, 0.95),
            max_s=max(times),
            p95_over_baseline=percentile(times, 0.95) / lone_median,
        )
    if ws_only:
        result.update(
            ws_only_p50_s=percentile(ws_only, 0.5), ws_only_p95_s=percentile(ws_only, 0.95)
        )
    return result


def report(r: dict[str, Any]) -> None:
    print(
        f"join wave: {r['n']} attendees opening their sockets over {r['over_s']:g} s, "
        f"{r['workers']} worker(s), {r['clients']} client processes, "
        f"{r['media']} with a light aiortc peer"
    )
    print(
        f"  baseline (lone joins, quiet server, {r['baseline_joins']}): "
        f"socket -> first audio packet {r['baseline_median_s'] * 1000:.0f} ms median"
    )
    if "p50_s" in r:
        print(
            f"  wave: socket -> first audio packet  p50 {r['p50_s'] * 1000:.0f} ms, "
            f"p95 {r['p95_s'] * 1000:.0f} ms, max {r['max_s'] * 1000:.0f} ms "
            f"(target p95 < 2000 ms); p95 / baseline {r['p95_over_baseline']:.1f}x"
        )
    if r["steps_s"]:
        steps = ", ".join(
            f"{step} {p50 * 1000:.0f}/{p95 * 1000:.0f}" for step, (p50, p95) in r["steps_s"].items()
        )
        print(f"    socket -> each step (ms, p50/p95): {steps}, first packet")
    if "ws_only_p50_s" in r:
        print(
            f"  WebSocket-only attendees: socket -> channel confirmed p50 "
            f"{r['ws_only_p50_s'] * 1000:.0f} ms, p95 {r['ws_only_p95_s'] * 1000:.0f} ms"
        )
    print(f"  failed: {r['failed']} of {r['n']}" + (f" {r['errors']}" if r["errors"] else ""))
    print(
        f"  server CPU (supervisor + workers), first socket -> last first packet "
        f"({r['wall_s']:.1f} s): {r['server_cpu_s']:.1f} CPU-s, "
        f"{r['server_cpu_s'] / max(1, r['n']) * 1000:.1f} ms per attendee; "
        f"clients {r['clients_cpu_s']:.1f} CPU-s; machine busy {r['machine_busy']:.2f} of "
        f"{os.cpu_count()} cores"
    )
    print(
        f"  messages the server sent: {r['messages_to_attendees']} to the attendees "
        f"({r['messages_to_attendees'] / max(1, r['n']):.1f} each), "
        f"{r['messages_to_staff']} to the 3 staff pages"
    )
    kinds = ", ".join(f"{kind} {count}" for kind, count in r["messages_by_type"].items())
    print(f"    to the attendees, by type: {kinds}")
    print(f"  placement: {', '.join(f'{k} {v}' for k, v in r['placement'].items())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="attendees in the wave (500)")
    parser.add_argument("--over", type=float, default=10.0, help="seconds they open over (10)")
    parser.add_argument("--workers", type=int, default=2, help="dragoman serve --workers (2)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (2)")
    parser.add_argument(
        "--media", type=int, default=None, help="attendees with a media peer (default all)"
    )
    parser.add_argument("--baseline", type=int, default=5, help="lone joins first (5)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    options = parser.parse_args()
    if options.media is None:
        options.media = options.n
    if options.n < 1 or options.baseline < 1 or options.over < 0 or options.clients < 1:
        parser.error("--n, --baseline and --clients must be at least 1, --over at least 0")
    result = asyncio.run(bench(options))
    if options.json:
        print(json.dumps(result))
    else:
        report(result)


if __name__ == "__main__":
    main()
