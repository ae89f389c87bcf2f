"""Dragoman beside Janus, in one run of the Janus harness with the same clients.

Lays out the harness's working folder (the anchor's ``prepare-conf.sh``: Janus configuration
filled in, loopback shim built, in a temporary folder), then runs the harness through
bench/janus_adapter.py for every (kind, N, SFU), interleaving the SFUs so machine noise
falls on both, and prints what each server spends per subscriber,
(cpu(N) - cpu(0)) / N, and the ratio Janus / Dragoman.

    python -m bench.vs_janus                          # audio N=0,100; video N=0,50; 1 rep
    python -m bench.vs_janus --reps 3 --janus-confs conf,conf-evl2 --json
    python -m bench.vs_janus --reps 3 --together      # Dragoman and Janus side by side

With ``--together``, Dragoman and one Janus configuration run each (kind, N) at the same
time, each with its own harness, clients and publisher: this machine's speed moves by
tens of percent from one minute to the next, and run one after the other the ratio
follows it. Side by side, both measure through the same minutes (their windows overlap,
give or take their start-up times).

Janus comes from Debian's ``janus`` package (and gcc for the shim). ``conf-evl2`` is the
anchor's best Janus configuration (``event_loops = 2``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ANCHOR = Path(os.environ.get("DRAGOMAN_JANUS_ANCHOR") or REPO.parent / "shared/anchors/janus")
JANUS_CMD = (
    "env LD_PRELOAD={{d}}/shim/lo_not_loopback.so janus -C {{d}}/{conf}/janus.jcfg "
    "-F {{d}}/{conf} -L {{d}}/logs/janus-{conf}-{{tag}}.log"
)


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def prepare() -> dict[str, str]:
    """Run the anchor's prepare-conf.sh; returns the environment for the harness."""
    env = dict(os.environ)
    env.setdefault("JANUS_BENCH_WORK", str(Path(tempfile.gettempdir()) / "janus-bench"))
    out = subprocess.run(
        [str(ANCHOR / "prepare-conf.sh")], env=env, capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        if line.startswith("export JANUS_BENCH_WORK="):
            env["JANUS_BENCH_WORK"] = line.split("=", 1)[1].strip()
    return env


def run_one(
    sfu: str, kind: str, n: int, rep: int, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, Any] | None:
    cmd = [
        sys.executable,
        "-m",
        "bench.janus_adapter",
        "--kind",
        kind,
        "--n",
        str(n),
        "--warmup",
        str(args.warmup),
        "--window",
        str(args.window),
        "--label",
        f"{sfu}-rep{rep}",
    ]
    if sfu == "dragoman":
        cmd += ["--signalling", "dragoman", "--dragoman-port", str(args.dragoman_port)]
    else:
        cmd += ["--signalling", "janus", "--server-cmd", JANUS_CMD.format(conf=sfu)]
    try:
        done = subprocess.run(
            cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        log(f"  {sfu} {kind} N={n}: timed out")
        return None
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode or not lines:
        log(f"  {sfu} {kind} N={n}: failed ({done.returncode})\n{done.stderr[-2000:]}")
        return None
    res: dict[str, Any] = json.loads(lines[-1])
    res["sfu"] = sfu
    return res


def check_of(r: dict[str, Any]) -> str:
    if not r.get("n"):
        return f"publisher {r.get('pub_pps')} pkt/s"
    text = f"{r.get('subs_ready')}/{r['n']} ready"
    if r["kind"] == "audio":
        return text + f"; 440 Hz {r.get('tone_440_ok')}"
    return text + f"; key frame 640x360 {r.get('subs_with_keyframe_640x360')}/{r['n']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--audio-n", default="0,100")
    ap.add_argument("--video-n", default="0,50")
    ap.add_argument("--kinds", default="audio,video")
    ap.add_argument("--janus-confs", default="conf-evl2", help="conf (stock), conf-evl2 or both")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--warmup", type=float, default=4)
    ap.add_argument("--window", type=float, default=10)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--dragoman-port", type=int, default=18080)
    ap.add_argument("--out", default=None, help="append every run's JSON line to this file")
    ap.add_argument(
        "--together",
        action="store_true",
        help="run Dragoman and Janus at the same time for each (kind, N); one Janus conf",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args()
    sfus = ["dragoman", *[c for c in args.janus_confs.split(",") if c]]
    if args.together and len(sfus) != 2:
        ap.error("--together runs one Janus configuration beside Dragoman (same Janus ports)")

    env = prepare()
    ns = {"audio": args.audio_n, "video": args.video_n}
    runs: list[dict[str, Any]] = []
    started = time.time()
    for rep in range(1, args.reps + 1):
        for kind in [k for k in args.kinds.split(",") if k]:
            for n in sorted({int(x) for x in ns[kind].split(",")}):
                if args.together:
                    with ThreadPoolExecutor(len(sfus)) as pool:
                        futures = [
                            pool.submit(run_one, sfu, kind, n, rep, args, env) for sfu in sfus
                        ]
                        results = [future.result() for future in futures]
                else:
                    results = [run_one(sfu, kind, n, rep, args, env) for sfu in sfus]
                for sfu, r in zip(sfus, results, strict=True):
                    if r is None:
                        continue
                    runs.append(r)
                    log(
                        f"  rep {rep} {kind} N={n} {sfu}: {r['server_cpu_per_s']} CPU-s/s, "
                        f"{check_of(r)}, lost {r.get('sub_lost_total', 0)}, "
                        f"machine busy {r.get('machine_busy_cores')}"
                    )
                    if args.out:
                        with open(args.out, "a") as f:
                            f.write(json.dumps(r) + "\n")

    summary = summarize(runs)
    summary["seconds"] = round(time.time() - started, 1)
    summary["together"] = args.together
    print_summary(summary, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(summary))


def delivered(r: dict[str, Any]) -> bool:
    """Did every subscriber get (nearly) all the publisher sent, at the nominal rate?

    On a loaded machine the publisher or the subscribers starve; a run that forwarded
    fewer packets would look cheaper than it is.
    """
    if not r["n"]:
        return r["kind"] != "audio" or r.get("pub_pps", 0) >= 45
    pps = r.get("sub_pps_min_med_max") or [0, 0, 0]
    nominal = 45 if r["kind"] == "audio" else 0.9 * r.get("pub_pps", 0)
    kbps_ok = r["kind"] == "audio" or r.get("pub_kbps", 0) >= 400
    return pps[0] >= 0.9 * nominal and r.get("subs_ready") == r["n"] and kbps_ok


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    cpu: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    pps: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    rejected = []
    for r in runs:
        key = (r["sfu"], r["kind"], r["n"])
        if not delivered(r):
            rejected.append(f"{r['sfu']} {r['kind']} N={r['n']} ({r.get('label')})")
            continue
        cpu[key].append(r["server_cpu_per_s"])
        if r["n"]:
            pps[key].append((r.get("sub_pps_min_med_max") or [0, 0, 0])[1])
    summary: dict[str, Any] = {
        "cpu": {},
        "per_sub": {},
        "us_per_packet": {},
        "ratio": {},
        "runs_used": {},
        "rejected_runs": rejected,
        "runs": runs,
    }
    for (sfu, kind, n), values in sorted(cpu.items()):
        summary["cpu"][f"{sfu}/{kind}/{n}"] = statistics.mean(values)
        summary["runs_used"][f"{sfu}/{kind}/{n}"] = len(values)
        base = cpu.get((sfu, kind, 0))
        if n and base:
            per_sub = (statistics.mean(values) - statistics.mean(base)) / n
            summary["per_sub"][f"{sfu}/{kind}/{n}"] = per_sub
            rate = statistics.mean(pps[(sfu, kind, n)])
            summary["us_per_packet"][f"{sfu}/{kind}/{n}"] = 1e6 * per_sub / rate
    for key, value in summary["per_sub"].items():
        sfu, kind, n = key.split("/")
        dragoman = summary["per_sub"].get(f"dragoman/{kind}/{n}")
        if sfu != "dragoman" and dragoman:
            summary["ratio"][f"{sfu}/dragoman {kind} N={n}"] = value / dragoman
    return summary


def print_summary(summary: dict[str, Any], out: Any) -> None:
    print(
        "\n| kind | N | SFU | runs | server CPU-s/s | (cpu(N)-cpu(0))/N ms/s "
        "| us per forwarded packet |",
        file=out,
    )
    print("|---|---|---|---|---|---|---|", file=out)
    rows = sorted(
        summary["cpu"].items(), key=lambda x: (x[0].split("/")[1], int(x[0].split("/")[2]))
    )
    for key, mean in rows:
        sfu, kind, n = key.split("/")
        runs = summary["runs_used"][key]
        per_sub = summary["per_sub"].get(key)
        ms = "-" if per_sub is None else f"{1000 * per_sub:.3f}"
        us = summary["us_per_packet"].get(key)
        print(
            f"| {kind} | {n} | {sfu} | {runs} | {mean:.4f} | {ms} | "
            f"{'-' if us is None else f'{us:.1f}'} |",
            file=out,
        )
    for key, ratio in summary["ratio"].items():
        print(f"{key}: Janus spends {ratio:.2f}x what Dragoman spends per subscriber", file=out)
    for run in summary["rejected_runs"]:
        print(f"left out (packets not all delivered, machine overloaded): {run}", file=out)


if __name__ == "__main__":
    main()
