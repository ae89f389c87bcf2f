"""What one page per seat costs when the nodes of an event share it.

Two nodes (in this process, as `bench.cluster` starts them) share the event through a
real redis-server or the embedded hub of ``--workers``. Each round times, from the
``auth`` sent:

- baseline: a studio link's ``welcome`` on node B (a studio has no seat: nothing asked);
- sit: a speaker link's ``welcome`` on node B, its seat free (one ``sit`` change goes
  through the log before the welcome);
- refused: a second page of that link on node A, while B's page holds it, until its
  ``seat_taken`` (A asks B's page through the log, the page answers at once, the answer
  comes back through the log).

    python -m bench.seats                    # both buses, 30 rounds each
    python -m bench.seats --rounds 50 --json

Prints per bus the median and p95 of each, and their ratios to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench.cluster import _connect, _summary, two_nodes
from bench.network import Client
from signaling.tokens import Role

SPEAKER = "alexander-tokovinin"


async def _answer_checks(holder: Client) -> None:
    """The holder's page answers every ``seat_check`` at once, as the product's pages do."""
    while True:
        check = await holder.next("seat_check", within=3600)
        await holder.send("seat_here", check=check["check"])


async def _refused(http: aiohttp.ClientSession, base: str, token: str) -> str:
    """A page opening ``token``: the code of the error it is closed with."""
    ws = await http.ws_connect(f"{base}/ws")
    try:
        await ws.send_str(json.dumps({"type": "auth", "v": 1, "token": token}))
        async for frame in ws:
            message = json.loads(frame.data)
            if message["type"] in ("error", "welcome"):
                return str(message.get("code", "welcome"))
        return "closed"
    finally:
        await ws.close()


async def measure(kind: str, rounds: int, directory: Path) -> dict[str, Any]:
    async with two_nodes(kind, directory) as (base_a, base_b, signer):
        link = signer.issue(Role.SPEAKER, subject=SPEAKER, speaker=SPEAKER, ttl=timedelta(hours=1))
        baseline, sit, refused = [], [], []
        async with aiohttp.ClientSession() as http:
            await asyncio.sleep(0.5)  # the nodes hear of each other
            for n in range(rounds):
                started = time.perf_counter()
                studio, _ = await _connect(http, base_b, signer, Role.MODERATOR, f"mod-{n}")
                baseline.append((time.perf_counter() - started) * 1000)
                await studio.close()

                started = time.perf_counter()
                holder, _ = await _connect(
                    http, base_b, signer, Role.SPEAKER, SPEAKER, speaker=SPEAKER
                )
                sit.append((time.perf_counter() - started) * 1000)
                answering = asyncio.create_task(_answer_checks(holder))
                try:
                    started = time.perf_counter()
                    code = await _refused(http, base_a, link)
                    refused.append((time.perf_counter() - started) * 1000)
                    if code != "seat_taken":
                        raise SystemExit(f"the second page was not refused: {code}")
                finally:
                    answering.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await answering
                    await holder.close()
                await asyncio.sleep(0.05)  # the seat is free again on both nodes
        base = _summary(baseline)
        result: dict[str, Any] = {"bus": kind, "baseline": base}
        for name, values in (("sit", sit), ("refused", refused)):
            summary = _summary(values)
            summary["ratio_median"] = round(summary["median_ms"] / base["median_ms"], 2)
            result[name] = summary
        return result


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for kind in args.bus:
        with tempfile.TemporaryDirectory(prefix="dragoman-seats-") as tmp:
            results.append(await measure(kind, args.rounds, Path(tmp)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bus", nargs="+", choices=["redis", "hub"], default=["redis", "hub"])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for result in results:
        base = result["baseline"]
        print(
            f"{result['bus']}: studio welcome (baseline) median {base['median_ms']} ms, "
            f"p95 {base['p95_ms']} ms"
        )
        for name, label in (("sit", "speaker welcome, seat free"), ("refused", "seat_taken")):
            s = result[name]
            print(
                f"  {label}: median {s['median_ms']} ms, p95 {s['p95_ms']} ms "
                f"({s['ratio_median']}x the baseline)"
            )


if __name__ == "__main__":
    main()
