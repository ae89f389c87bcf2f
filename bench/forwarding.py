"""What the server spends per subscriber: Dragoman's RTP forwarding beside aiortc's MediaRelay.

In one run, for each SFU (``dragoman``: `streamer.Sfu` forwarding RTP; ``relay``: the stock
`MediaRelay`, decoding once and re-encoding per subscriber) and each kind (audio: Opus
tone, 20 ms packets; video: VP8 640x360 at 30 fps), it starts the SFU's bench server
(bench/sfu_server.py) alone in a process, publishes from another process, then adds
subscribers in further processes step by step (N = 0, 10, 50, ...). At each step, after a
warm-up, it reads the server's utime+stime from /proc/PID/stat over a window and checks that
every subscriber got its packets (the decoding subscribers must hear the 440 Hz tone, or
decode 640x360 frames).

Per-subscriber cost is the least-squares slope of server CPU-seconds per wall-second over N.
For Dragoman it also measures, inside the server process, the switch latency (re-point call
to the first packet of the new source leaving the server) and the latency the server adds
to a packet (arrival to each copy leaving), see bench/latency_probe.py.

    python -m bench.forwarding                      # table
    python -m bench.forwarding --json               # one JSON object on stdout
    python -m bench.forwarding --audio-n 0,10,50,100,200 --video-n 0,10,50 --profile 10
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.peers import listener_process, publisher_process

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PER_WORKER = {"audio": 50, "video": 10}
TARGETS = {
    "audio_cpu_per_sub": 0.0014,
    "video_cpu_per_sub": 0.0016,
    "ratio_vs_relay": 30.0,
    "switch_ms_median": 10.0,
    "added_ms_median": 2.0,
}


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> tuple[float, float]:
    """utime and stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def machine_busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v), v[3] + v[4]


def call(url: str, body: dict[str, Any] | None = None, timeout: float = 120) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{url}: {exc.code} {exc.read().decode(errors='replace')}") from None


def ask(conn: Connection, msg: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    conn.send(msg)
    if not conn.poll(timeout):
        raise TimeoutError(f"a client process did not answer {msg['cmd']!r} in {timeout:.0f} s")
    return conn.recv()


def lsq_slope(points: list[tuple[int, float]]) -> float | None:
    if len({n for n, _ in points}) < 2:
        return None
    mx = statistics.mean(n for n, _ in points)
    my = statistics.mean(c for _, c in points)
    num = sum((n - mx) * (c - my) for n, c in points)
    return num / sum((n - mx) ** 2 for n, _ in points)


@dataclass
class Step:
    sfu: str
    kind: str
    n: int
    ready: int
    server_cpu: float
    server_user: float
    server_sys: float
    client_cpu: float
    machine_busy: float
    sub_pps: list[float] = field(default_factory=list)
    lost: int = 0
    check: str = ""
    check_ok: bool = True
    pub_pps: list[float] = field(default_factory=list)
    added: dict[str, Any] | None = None


class Series:
    """One SFU server, its publishers, and listener processes added step by step."""

    def __init__(self, sfu: str, kind: str, args: argparse.Namespace) -> None:
        self.sfu, self.kind, self.args = sfu, kind, args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ctx = mp.get_context("spawn")
        self.procs: list[Any] = []
        self.listeners: list[tuple[Connection, int]] = []
        self.server: subprocess.Popen[bytes] | None = None
        self.pub: Connection | None = None
        self.ready = 0

    def start(self) -> None:
        self.server = subprocess.Popen(
            [sys.executable, "-m", "bench.sfu_server", "--sfu", self.sfu, "--port", str(self.port)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=None if self.args.verbose else subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                call(self.url + "/ready", timeout=2)
                break
            except (OSError, RuntimeError):
                if time.monotonic() > deadline or self.server.poll() is not None:
                    raise RuntimeError(f"{self.sfu} bench server did not start") from None
                time.sleep(0.2)
        if self.kind == "audio":
            outputs = {"floor": "tone-a/audio"}
            pubs = [{"id": "tone-a", "kind": "audio", "freq": 440}]
            if self.sfu == "dragoman":  # a second source to switch to
                outputs["channel-b"] = "tone-b/audio"
                pubs.append({"id": "tone-b", "kind": "audio", "freq": 1000})
        else:
            outputs = {"program-video": "camera/video"}
            pubs = [{"id": "camera", "kind": "video"}]
        self.outputs = outputs
        for name in outputs:
            call(self.url + "/output", {"name": name, "kind": self.kind})
        self.pub = self._spawn(
            publisher_process,
            {"url": self.url, "publishers": pubs, "adaptive": self.args.adaptive_bitrate},
        )
        states = self._wait(self.pub, 60)["states"]
        if any(s != "connected" for s in states):
            raise RuntimeError(f"publishers did not connect: {states}")
        for name, source in outputs.items():
            call(self.url + "/point", {"output": name, "source": source})
        time.sleep(1.0)

    def _spawn(self, target: Any, cfg: dict[str, Any]) -> Connection:
        mine, theirs = self.ctx.Pipe()
        proc = self.ctx.Process(target=target, args=(theirs, cfg), daemon=True)
        proc.start()
        theirs.close()
        self.procs.append(proc)
        return mine

    @staticmethod
    def _wait(conn: Connection, timeout: float) -> dict[str, Any]:
        if not conn.poll(timeout):
            raise TimeoutError("a client process did not report")
        return conn.recv()

    def grow(self, n: int) -> int:
        """Add listeners until there are n; returns how many of the new ones receive."""
        have = sum(k for _, k in self.listeners)
        cap = PER_WORKER[self.kind]
        slot = {"main": "floor" if self.kind == "audio" else "program-video"}
        plans: list[tuple[int, int]] = []  # (listener group index, count)
        if self.listeners and self.listeners[-1][1] < cap:
            plans.append((len(self.listeners) - 1, min(cap - self.listeners[-1][1], n - have)))
        left = n - have - sum(k for _, k in plans)
        while left > 0:
            k = min(cap, left)
            conn = self._spawn(
                listener_process,
                {"url": self.url, "kind": self.kind, "name": f"w{len(self.listeners)}"},
            )
            self.listeners.append((conn, 0))
            plans.append((len(self.listeners) - 1, k))
            left -= k
        full_default = 2 if self.kind == "audio" else 1
        for index, k in plans:
            conn, had = self.listeners[index]
            full = max(0, self.args.full if self.args.full is not None else full_default)
            full = full - had if index == 0 else 0
            conn.send({"cmd": "add", "n": k, "full": max(0, full), "slots": slot})
        ready = 0
        for index, k in plans:
            conn, had = self.listeners[index]
            reply = self._wait(conn, 90 + 0.5 * k)
            ready += reply["ready"]
            self.listeners[index] = (conn, had + k)
        self.ready += ready
        return self.ready

    def measure(self, n: int, ready: int) -> Step:
        assert self.server is not None and self.pub is not None
        time.sleep(self.args.warmup)
        conns = [self.pub] + [c for c, _ in self.listeners]
        for c in conns:
            ask(c, {"cmd": "mark"})
        j0, m0, t0 = proc_cpu(self.server.pid), machine_busy(), time.monotonic()
        time.sleep(self.args.window)
        j1, m1, t1 = proc_cpu(self.server.pid), machine_busy(), time.monotonic()
        wall = t1 - t0
        pub = ask(self.pub, {"cmd": "report"})
        reports = [ask(c, {"cmd": "report"}) for c, _ in self.listeners]
        rows = [r for rep in reports for r in rep["listeners"]]
        step = Step(
            sfu=self.sfu,
            kind=self.kind,
            n=n,
            ready=ready,
            server_user=(j1[0] - j0[0]) / wall,
            server_sys=(j1[1] - j0[1]) / wall,
            server_cpu=(j1[0] + j1[1] - j0[0] - j0[1]) / wall,
            client_cpu=pub["cpu"] + sum(rep["cpu"] for rep in reports),
            machine_busy=(os.cpu_count() or 1) * (1 - (m1[1] - m0[1]) / max(1, m1[0] - m0[0])),
            pub_pps=pub["pps"],
        )
        if rows:
            pps = sorted(r["pps"] for r in rows)
            step.sub_pps = [pps[0], statistics.median(pps), pps[-1]]
            step.lost = sum(r["lost"] for r in rows)
            step.check, step.check_ok = self._check(rows)
        if self.kind == "audio" and min(step.pub_pps) < 45:
            step.check_ok = False
            step.check += "; publishers starved (machine overloaded)"
        return step

    def _check(self, rows: list[dict[str, Any]]) -> tuple[str, bool]:
        full = [r for r in rows if r["full"]]
        receiving = sum(r["pps"] > 0.8 * (50 if self.kind == "audio" else 20) for r in rows)
        text = f"{receiving}/{len(rows)} receiving"
        ok = receiving == len(rows)
        if self.kind == "audio":
            tones = [r.get("freq") for r in full]
            good = sum(f is not None and abs(f - 440) < 5 for f in tones)
            text += f"; 440 Hz heard {good}/{len(full)}"
            ok = ok and good == len(full)
        else:
            keyed = sum((640, 360) in {tuple(k) for k in r["keyframes"]} for r in rows)
            fps = [round(r["fps_decoded"], 1) for r in full]
            sizes = {tuple(s) for r in full for s in r["sizes"]}
            text += f"; key frame 640x360 {keyed}/{len(rows)}; decoded fps {fps}"
            ok = ok and keyed == len(rows) and sizes <= {(640, 360)}
        return text, ok

    def tone_after(self, output: str, source: str, expect: float) -> str:
        """Point an output at a source, let it play, ask the decoding listeners what they hear."""
        call(self.url + "/point", {"output": output, "source": source})
        time.sleep(2.0)
        freqs = ask(self.listeners[0][0], {"cmd": "tone", "frames": 50})["freqs"]
        call(self.url + "/point", {"output": output, "source": self.outputs[output]})
        good = sum(f is not None and abs(f - expect) < 5 for f in freqs)
        return f"{good}/{len(freqs)} decoding listeners heard {expect:.0f} Hz"

    def stop(self) -> None:
        conns = ([self.pub] if self.pub else []) + [c for c, _ in self.listeners]
        for c in conns:
            try:
                ask(c, {"cmd": "stop"}, timeout=30)
            except (TimeoutError, EOFError, OSError):
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        if self.server is not None:
            self.server.terminate()
            try:
                self.server.wait(15)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()


def run_series(sfu: str, kind: str, ns: list[int], args: argparse.Namespace) -> dict[str, Any]:
    """Measure every N in turn; stop growing at the first N the machine cannot carry."""
    series = Series(sfu, kind, args)
    steps: list[Step] = []
    extra: dict[str, Any] = {}
    probe_n = args.probe_n if args.probe_n in ns else max(ns)
    try:
        series.start()
        for n in sorted(ns):
            ready = series.grow(n) if n else 0
            step = series.measure(n, ready)
            if sfu == "dragoman" and n and not args.no_probes:
                step.added = call(series.url + "/probe/added", {"seconds": args.probe_seconds})
            steps.append(step)
            log(format_step(step))
            if n == probe_n and sfu == "dragoman":
                extra.update(probe(series, kind, args))
            if not step.check_ok:
                log(f"    N={n} is more than this machine carries now: stopping this series")
                break
        try:
            stats = call(series.url + "/stats", timeout=10)
            extra["server_stats"] = {k: v for k, v in stats.items() if k != "subscribers"}
        except (OSError, RuntimeError):
            pass
    except Exception as exc:  # keep what was measured; say what broke
        extra["error"] = f"{type(exc).__name__}: {exc}"
        log(f"    {sfu} {kind} failed: {extra['error']}")
    finally:
        series.stop()
    return {"steps": steps, **extra}


def probe(series: Series, kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Switch latency and a profile, at the current number of listeners."""
    out: dict[str, Any] = {}
    try:
        if kind == "audio" and series.listeners and not args.no_probes:
            out["switch_output"] = call(
                series.url + "/probe/switch",
                {
                    "mode": "output",
                    "output": "floor",
                    "sources": ["tone-a/audio", "tone-b/audio"],
                    "count": args.switches,
                },
            )
            out["switch_slot"] = call(
                series.url + "/probe/switch",
                {
                    "mode": "slot",
                    "id": "w0-0",
                    "slot": "main",
                    "outputs": ["floor", "channel-b"],
                    "count": args.switches,
                },
            )
            out["switch_n"] = series.ready
            out["switch_tone_check"] = series.tone_after("floor", "tone-b/audio", 1000)
        if args.profile and series.listeners:
            out["profile_n"] = series.ready
            out["profile"] = call(
                series.url + "/probe/profile",
                {"seconds": args.profile, "top": 35},
                timeout=args.profile + 60,
            )["profile"]
        if args.py_spy and series.server is not None:
            out["py_spy_n"] = series.ready
            out["py_spy"] = sample_with_py_spy(series.server.pid, args.py_spy)
    except Exception as exc:
        out["probe_error"] = f"{type(exc).__name__}: {exc}"
        log(f"    probe failed: {out['probe_error']}")
    return out


def function_of(frame: str) -> str:
    """`handle (/path/to/streamer/forwarder.py:63)` -> `handle (forwarder.py)`."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].split(':')[0]})" if where else name


def sample_with_py_spy(pid: int, seconds: float, top: int = 25) -> dict[str, Any]:
    """Sample the server with py-spy (no instrumentation overhead, unlike cProfile) and
    rank functions by the share of busy samples in which they are the innermost frame
    (own time), and by the share in which they are anywhere on the stack."""
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "stacks.txt"
        subprocess.run(
            ["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)),
             "--rate", "250", "--format", "raw", "--output", str(raw), "--nonblocking"],
            check=True, capture_output=True, timeout=seconds + 60,
        )  # fmt: skip
        own: dict[str, int] = defaultdict(int)
        anywhere: dict[str, int] = defaultdict(int)
        total = 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [function_of(frame) for frame in stack.split(";")]
            n = int(count)
            total += n
            own[frames[-1]] += n
            for frame in set(frames):
                anywhere[frame] += n

    def ranked(counts: dict[str, int]) -> list[tuple[str, float]]:
        best = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [(name, round(100 * n / max(total, 1), 1)) for name, n in best]

    return {"samples": total, "own_percent": ranked(own), "total_percent": ranked(anywhere)}


def format_step(s: Step) -> str:
    pps = "-".join(f"{x:.1f}" for x in s.sub_pps) if s.sub_pps else "-"
    return (
        f"{s.kind:5} {s.sfu:8} N={s.n:<4} ready={s.ready:<4} server {s.server_cpu:.4f} CPU-s/s "
        f"(usr {s.server_user:.3f} sys {s.server_sys:.3f})  pkts/s/sub {pps}  lost {s.lost}  "
        f"pub pps {s.pub_pps}  clients {s.client_cpu:.2f}  machine busy {s.machine_busy:.2f}"
        f"  {s.check}"
    )


def slope_of(steps: list[Step]) -> dict[str, Any]:
    points = [(s.n, s.server_cpu) for s in steps if s.check_ok]
    base = next((c for n, c in points if n == 0), None)
    return {
        "slope": lsq_slope(points),
        "per_n": {n: (c - base) / n for n, c in points if n and base is not None},
    }


def parse_ns(text: str) -> list[int]:
    return sorted({int(x) for x in text.split(",") if x.strip()})


def fmt(value: float | None, digits: int = 5) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--audio-n", type=parse_ns, default=parse_ns("0,10,50,100"))
    ap.add_argument("--video-n", type=parse_ns, default=parse_ns("0,10,25"))
    ap.add_argument("--baseline-audio-n", type=parse_ns, default=parse_ns("0,5,10"))
    ap.add_argument("--baseline-video-n", type=parse_ns, default=parse_ns("0,1,2"))
    ap.add_argument("--kinds", default="audio,video", help="audio,video or one of them")
    ap.add_argument("--sfus", default="dragoman,relay", help="dragoman,relay or one of them")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--window", type=float, default=8.0)
    ap.add_argument("--full", type=int, default=None, help="decoding listeners (audio 2, video 1)")
    ap.add_argument("--switches", type=int, default=40, help="switches timed per kind of switch")
    ap.add_argument("--probe-seconds", type=float, default=3.0)
    ap.add_argument(
        "--probe-n", type=int, default=100, help="N at which to time switches and profile"
    )
    ap.add_argument("--no-probes", action="store_true", help="skip switch/added probes")
    ap.add_argument(
        "--profile", type=float, default=0, help="cProfile Dragoman's server this many seconds"
    )
    ap.add_argument(
        "--adaptive-bitrate",
        action="store_true",
        help="let the video publisher follow the SFU's REMB (default: held at 500 kbps)",
    )
    ap.add_argument(
        "--py-spy", type=float, default=0, help="sample Dragoman's server with py-spy this long"
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--verbose", action="store_true", help="show the servers' stderr")
    args = ap.parse_args()

    kinds = [k for k in args.kinds.split(",") if k]
    sfus = [s for s in args.sfus.split(",") if s]
    started = time.time()
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for kind in kinds:
        for sfu in sfus:
            ns = {
                ("dragoman", "audio"): args.audio_n,
                ("dragoman", "video"): args.video_n,
                ("relay", "audio"): args.baseline_audio_n,
                ("relay", "video"): args.baseline_video_n,
            }[(sfu, kind)]
            log(f"--- {sfu} {kind}: N = {ns}")
            results[(sfu, kind)] = run_series(sfu, kind, ns, args)

    report: dict[str, Any] = {"points": [], "targets": TARGETS}
    for (sfu, kind), res in results.items():
        slope = slope_of(res["steps"])
        key = f"{kind}_cpu_per_sub" + ("" if sfu == "dragoman" else "_baseline")
        report[key] = slope["slope"]
        report[key + "_per_n"] = slope["per_n"]
        for s in res["steps"]:
            point = {k: v for k, v in vars(s).items() if k != "added"}
            report["points"].append(point)
            if s.added and s.check_ok:
                report.setdefault("added", {})[f"{kind}/{s.n}"] = s.added
        # The packet rate of the largest step that passed its check: a step marked as
        # failed (publishers starved, listeners short of packets) is left out of the
        # slope, so it must not divide it either.
        passed = [s for s in res["steps"] if s.check_ok and s.n and s.sub_pps]
        if passed and slope["slope"]:
            pps = passed[-1].sub_pps[1]
            report[key.replace("cpu_per_sub", "us_per_copy")] = 1e6 * slope["slope"] / pps
        for k in ("switch_output", "switch_slot", "switch_tone_check", "switch_n"):
            if k in res:
                report[k] = res[k]
        for k in ("error", "probe_error"):
            if k in res:
                report.setdefault("errors", []).append(f"{sfu} {kind}: {res[k]}")
        if "profile" in res:
            report[f"profile_{kind}"] = {"n": res["profile_n"], "top": res["profile"]}
        if "py_spy" in res:
            report[f"py_spy_{kind}"] = {"n": res["py_spy_n"], **res["py_spy"]}
        if "server_stats" in res:
            report.setdefault("server_stats", {})[f"{sfu}/{kind}"] = res["server_stats"]
    for kind in kinds:
        d, b = report.get(f"{kind}_cpu_per_sub"), report.get(f"{kind}_cpu_per_sub_baseline")
        report[f"{kind}_ratio"] = b / d if d and b else None
    if "switch_output" in report:
        report["switch_ms_median"] = report["switch_output"]["to_first_copy"]["median_ms"]
        report["switch_all_ms_median"] = report["switch_output"]["to_every_subscriber"]["median_ms"]
        report["slot_switch_ms_median"] = report["switch_slot"]["to_first_copy"]["median_ms"]
        # The server's own share: from the new source's first packet arriving to its copy leaving.
        own = report["switch_output"]["after_new_source_packet_arrived"]
        report["switch_own_ms_median"] = own["median_ms"]
    audio_added = {
        int(k.split("/")[1]): v for k, v in report.get("added", {}).items() if "audio" in k
    }
    if audio_added:
        # The largest fan-out measured: every copy waits behind the ones sent before it.
        n_ref = max(audio_added)
        report["added_ms_median_n"] = n_ref
        report["added_ms_median"] = audio_added[n_ref]["every_copy"]["median_ms"]
    report["seconds"] = round(time.time() - started, 1)
    report["args"] = {k: v for k, v in vars(args).items() if k != "json"}

    print_table(report, kinds, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(report, default=str))


def print_table(report: dict[str, Any], kinds: list[str], out: Any) -> None:
    def p(*parts: object) -> None:
        print(*parts, file=out)

    p("")
    p(
        "| kind | SFU | N | ready | server CPU-s/s | (cpu(N)-cpu(0))/N | pkts/s/sub min-med-max"
        " | lost | check | clients CPU-s/s | machine busy cores |"
    )
    p("|---|---|---|---|---|---|---|---|---|---|---|")
    per_n_all = {
        (k.split("_")[0], "relay" if "baseline" in k else "dragoman"): v
        for k, v in report.items()
        if k.endswith("_per_n")
    }
    for pt in report["points"]:
        per_n = per_n_all.get((pt["kind"], pt["sfu"]), {}).get(pt["n"])
        pps = "-".join(f"{x:.1f}" for x in pt["sub_pps"]) or "-"
        p(
            f"| {pt['kind']} | {pt['sfu']} | {pt['n']} | {pt['ready']} | {pt['server_cpu']:.4f} | "
            f"{fmt(per_n)} | {pps} | {pt['lost']} | {pt['check'] or '-'} | "
            f"{pt['client_cpu']:.2f} | {pt['machine_busy']:.2f} |"
        )
    p("")
    for kind in kinds:
        d = report.get(f"{kind}_cpu_per_sub")
        b = report.get(f"{kind}_cpu_per_sub_baseline")
        r = report.get(f"{kind}_ratio")
        target = TARGETS[f"{kind}_cpu_per_sub"]
        p(
            f"{kind}: per subscriber (least-squares slope) Dragoman {fmt(d)} CPU-s/s "
            f"(target <= {target}), MediaRelay {fmt(b)}; ratio relay/Dragoman "
            f"{'-' if r is None else f'{r:.1f}x'} (target >= {TARGETS['ratio_vs_relay']:.0f}x); "
            f"Dragoman {fmt(report.get(f'{kind}_us_per_copy'), 1)} us CPU per forwarded packet"
        )
    if "switch_output" in report:
        so, ss = report["switch_output"], report["switch_slot"]
        p(
            f"switch at N={report.get('switch_n')} (re-point an output -> first packet of the "
            f"new source leaves): median "
            f"{so['to_first_copy']['median_ms']} ms, p90 {so['to_first_copy']['p90_ms']} ms "
            f"over {so['to_first_copy']['n']} (missed {so['missed']}); to every subscriber "
            f"{so['to_every_subscriber']['median_ms']} ms; of which after the new source's "
            f"packet arrived {so['after_new_source_packet_arrived']['median_ms']} ms "
            f"(target < {TARGETS['switch_ms_median']} ms)"
        )
        p(
            f"switch (re-point one subscriber's slot): median "
            f"{ss['to_first_copy']['median_ms']} ms, p90 {ss['to_first_copy']['p90_ms']} ms; "
            f"after the packet arrived {ss['after_new_source_packet_arrived']['median_ms']} ms; "
            f"tone after an output switch: {report.get('switch_tone_check')}"
        )
    for key, a in report.get("added", {}).items():
        p(
            f"added latency, {key.replace('/', ' N=')} (arrival -> copy leaves): every copy median "
            f"{a['every_copy']['median_ms']} ms p90 {a['every_copy']['p90_ms']} ms; first copy "
            f"{a['first_copy']['median_ms']} ms; last copy {a['last_copy']['median_ms']} ms "
            f"({a['copies_per_packet']} copies/packet)"
        )
    for error in report.get("errors", []):
        p(f"error: {error}")
    for kind in kinds:
        spy = report.get(f"py_spy_{kind}")
        if spy:
            p(f"\npy-spy, Dragoman's server, {kind}, N={spy['n']}, {spy['samples']} busy samples:")
            p("  own time (innermost frame):")
            for name, pct in spy["own_percent"]:
                p(f"    {pct:5.1f}%  {name}")
            p("  on the stack:")
            for name, pct in spy["total_percent"]:
                p(f"    {pct:5.1f}%  {name}")
    for kind in kinds:
        if f"profile_{kind}" in report:
            prof = report[f"profile_{kind}"]
            p(f"\ncProfile of Dragoman's server, {kind}, N={prof['n']} (sorted by own time):")
            p(prof["top"])


if __name__ == "__main__":
    main()
