"""What a node link costs the origin, what one hop adds, how fast a cut link comes back.

In one run, with every part in its own process (the origin node, the edge node, the
publisher, the origin's local listeners, the probe listeners and the impairing relay):

1. A tone publisher (Opus, 20 ms packets) on the origin; the origin declares N outputs
   `out-<i>` all pointing at it. Baseline: the origin's CPU-seconds per wall-second
   (utime+stime from /proc/PID/stat) over `--window` seconds.
2. *Pulled*: the edge pulls the N outputs over one node link; the origin's CPU again.
   Then the edge stops pulling.
3. *Local*: N WebRTC subscribers of the origin (aiortc peers that count packets without
   decoding, as bench/forwarding.py's light listeners), one per output; the origin's CPU
   again. Per pulled output and per local subscriber: (cpu - baseline) / N, and their ratio.
4. *One hop*: a listener on the origin and a listener on the edge receive the same output
   (the edge pulls it); the same packet (same payload) reaches the edge's listener later by
   what the hop adds: the edge's arrival minus the origin's, per packet (one clock: Linux's
   CLOCK_MONOTONIC is system-wide).
5. *Recovery*: the edge pulls another output through `testbed.impaired_network.UdpRelay`;
   the relay cuts both ways for a short outage (the origin keeps the edge) and for one longer
   than `EDGE_TIMEOUT_S` (the origin gives up on it), restores, and the probe measures the
   time from the restore to the next packet on the edge's listener.

    python -m bench.node_link                   # N = 20, 10 s windows
    python -m bench.node_link --n 50 --window 15 --json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import inspect
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

SECRET = b"bench node link secret, 32 bytes"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Not a whole number of cycles in any short run of 20 ms frames: Opus packets do not repeat.
TONE_HZ = 441.7


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# -- child processes -------------------------------------------------------------------


def node_process(conn: Connection) -> None:
    """An SFU with its link endpoint; runs `Sfu` methods named by the driver."""
    asyncio.run(_node(conn))


async def _node(conn: Connection) -> None:
    from bench.peers import LOOPBACK, receive
    from streamer import Sfu, SfuConfig

    sfu = Sfu(SfuConfig(ice_servers=[], host_addresses=LOOPBACK, link_secret=SECRET))
    while True:
        command, args = await receive(conn)
        if command == "stop":
            await sfu.close()
            conn.send(("ok", None))
            return
        try:
            result = getattr(sfu, command)(*args)
            if inspect.isawaitable(result):
                result = await result
            conn.send(("ok", result))
        except Exception as exc:
            conn.send(("error", repr(exc)))


def peers_process(conn: Connection) -> None:
    """aiortc publishers and listeners (and the relay), driven by the driver."""
    asyncio.run(_peers(conn))


async def _peers(conn: Connection) -> None:
    from aiortc import RTCSessionDescription

    from bench.peers import ToneTrack, new_peer, receive
    from streamer.aiortc_internals import observe_received_rtp
    from testbed.impaired_network import UdpRelay

    pcs: dict[str, Any] = {}
    arrivals: dict[str, list[tuple[float, bytes]]] = {}
    counts: dict[str, int] = {}
    relay: UdpRelay | None = None

    async def publish_offer(peer_id: str, freq: float) -> str:
        pc = pcs[peer_id] = new_peer()
        pc.addTrack(ToneTrack(freq))
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp

    async def publish_answer(peer_id: str, sdp: str) -> None:
        await pcs[peer_id].setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    async def listen(peer_id: str, offer: str, record: bool) -> str:
        pc = pcs[peer_id] = new_peer()
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        counts[peer_id] = 0
        times = arrivals[peer_id] = []

        def observe(packet: Any) -> None:
            counts[peer_id] += 1
            if record:
                times.append((time.monotonic(), hashlib.blake2b(packet.payload).digest()))

        for transceiver in pc.getTransceivers():
            observe_received_rtp(transceiver.receiver, observe, decode=False)
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    async def close(peer_id: str) -> None:
        await pcs.pop(peer_id).close()

    async def relay_start(port: int) -> None:
        nonlocal relay
        relay = await UdpRelay([port]).start()

    handlers = {
        "publish_offer": publish_offer,
        "publish_answer": publish_answer,
        "listen": listen,
        "close": close,
        "relay_start": relay_start,
    }
    while True:
        command, args = await receive(conn)
        try:
            if command == "stop":
                if relay is not None:
                    await relay.close()
                await asyncio.gather(*(pc.close() for pc in pcs.values()), return_exceptions=True)
                conn.send(("ok", None))
                return
            if command == "counts":
                result: Any = dict(counts)
            elif command == "arrivals":
                result = arrivals[args[0]][-args[1] :]
            elif command == "first_after":
                peer_id, since = args
                result = next((t for t, _ in arrivals[peer_id] if t > since), None)
            elif command == "cut":
                assert relay is not None
                relay.cut()
                result = time.monotonic()
            elif command == "restore":
                assert relay is not None
                relay.restore()
                result = time.monotonic()
            else:
                result = await handlers[command](*args)
            conn.send(("ok", result))
        except Exception as exc:
            conn.send(("error", repr(exc)))


# -- the driver ------------------------------------------------------------------------


class Remote:
    """A child process and its pipe."""

    def __init__(self, target: Any, name: str) -> None:
        context = mp.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=target, args=(child,), name=name, daemon=True)
        self.process.start()
        self.name = name

    def __call__(self, command: str, *args: Any, timeout: float = 60) -> Any:
        self.conn.send((command, args))
        if not self.conn.poll(timeout):
            raise RuntimeError(f"{self.name}: no answer to {command} in {timeout} s")
        status, result = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"{self.name}: {command} failed: {result}")
        return result

    def stop(self) -> None:
        try:
            self("stop", timeout=20)
        finally:
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()


def subscribe(node: Remote, peers: Remote, peer_id: str, output: str, record: bool) -> None:
    offer = node("subscribe", peer_id, {"voice": output})
    answer = peers("listen", peer_id, offer, record)
    node("accept_answer", peer_id, answer)


def wait_for(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def cpu_rate(pid: int, window: float) -> float:
    c0, t0 = proc_cpu(pid), time.monotonic()
    time.sleep(window)
    return (proc_cpu(pid) - c0) / (time.monotonic() - t0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    origin = Remote(node_process, "origin")
    edge = Remote(node_process, "edge")
    publisher = Remote(peers_process, "publisher")
    load = Remote(peers_process, "local-listeners")
    probe = Remote(peers_process, "probe")
    parts = [origin, edge, publisher, load, probe]
    try:
        origin_address = tuple(origin("open_links", "127.0.0.1"))
        edge("open_links", "127.0.0.1")
        offer = publisher("publish_offer", "speaker", TONE_HZ)
        publisher("publish_answer", "speaker", origin("publish", "speaker", offer))
        wait_for(lambda: "speaker/audio" in origin("sources"), 20, "the publisher")
        names = [f"out-{i}" for i in range(args.n)]
        for name in [*names, "probe", "probe-relayed"]:
            origin("declare_output", name, "audio")
            origin("point", name, "speaker/audio")
            edge("declare_output", name, "audio")
        time.sleep(args.warmup)
        pid = origin.process.pid
        assert pid is not None

        log(f"baseline: origin alone for {args.window} s")
        baseline = cpu_rate(pid, args.window)

        log(f"pulled: the edge pulls {args.n} outputs")
        for name in names:
            edge("pull", name, origin_address)

        def all_flowing() -> bool:
            sources = edge("stats")["sources"]
            return len(sources) == args.n and all(s["packets"] > 50 for s in sources.values())

        wait_for(all_flowing, 30, "every pulled output to flow")
        time.sleep(args.warmup)
        pulled = cpu_rate(pid, args.window)
        link_stats = edge("stats")["links"]
        for name in names:
            edge("stop_pulling", name)
        wait_for(lambda: not origin("stats")["links"]["edges"], 10, "the origin to stop")

        log(f"local: {args.n} WebRTC subscribers on the origin")
        for i, name in enumerate(names):
            subscribe(origin, load, f"local-{i}", name, record=False)
        wait_for(
            lambda: len(load("counts")) == args.n and min(load("counts").values()) > 50,
            60,
            "every local subscriber to receive",
        )
        time.sleep(args.warmup)
        local = cpu_rate(pid, args.window)
        for i in range(args.n):
            origin("close_subscriber", f"local-{i}")
            load("close", f"local-{i}")

        log("one hop: the same output on the origin and on the edge")
        edge("pull", "probe", origin_address)
        subscribe(origin, probe, "at-origin", "probe", record=True)
        subscribe(edge, probe, "at-edge", "probe", record=True)
        time.sleep(args.window)
        # The tone's phase drifts from frame to frame (TONE_HZ), so payloads seldom
        # repeat; should one, the origin's copy nearest in time is the same packet. Both
        # listeners share one process: a hop can read negative when that process handles
        # the edge's packet first.
        at_origin: dict[bytes, list[float]] = {}
        for t, h in probe("arrivals", "at-origin", 3000):
            at_origin.setdefault(h, []).append(t)
        hops = []
        for t, h in probe("arrivals", "at-edge", 2000):
            copies = at_origin.get(h)
            if copies:
                hops.append(1000 * (t - min(copies, key=lambda t0: abs(t - t0))))

        log("recovery: the edge pulls through a relay that cuts")
        port = origin_address[1]
        probe("relay_start", port)
        edge("pull", "probe-relayed", ("127.0.0.2", port))
        subscribe(edge, probe, "relayed", "probe-relayed", record=True)
        wait_for(lambda: probe("counts").get("relayed", 0) > 50, 30, "the relayed output")
        recoveries = []
        for outage in args.outages:
            probe("cut")
            time.sleep(outage)
            restored = probe("restore")
            wait_for(lambda at=restored: probe("first_after", "relayed", at), 15, "the link back")
            recoveries.append(
                (outage, 1000 * (probe("first_after", "relayed", restored) - restored))
            )
            time.sleep(2.0)
        rebuilds = edge("stats")["links"]["origins"][f"127.0.0.2:{port}"]["rebuilds"]
    finally:
        for part in parts:
            try:
                part.stop()
            except Exception as exc:
                log(f"{part.name}: {exc}")

    per_pull = (pulled - baseline) / args.n
    per_local = (local - baseline) / args.n
    (link,) = link_stats["origins"].values()
    return {
        "n": args.n,
        "window_s": args.window,
        "origin_cpu": {"baseline": baseline, "pulled": pulled, "local": local},
        "cpu_per_pulled_output": per_pull,
        "cpu_per_local_subscriber": per_local,
        "local_over_pulled": per_local / per_pull if per_pull > 0 else None,
        "link_packets_in": link["packets_in"],
        "hop_ms": {
            "packets": len(hops),
            "median": statistics.median(hops) if hops else None,
            "p95": sorted(hops)[int(0.95 * (len(hops) - 1))] if hops else None,
            "min": min(hops) if hops else None,
        },
        "recovery_ms": [{"outage_s": o, "first_packet_ms": ms} for o, ms in recoveries],
        "rebuilds": rebuilds,
    }


def print_report(report: dict[str, Any], out: Any) -> None:
    cpu = report["origin_cpu"]
    print(f"N = {report['n']} outputs, {report['window_s']} s windows", file=out)
    print(
        f"origin CPU-s/s: baseline {cpu['baseline']:.4f}, {report['n']} pulled outputs "
        f"{cpu['pulled']:.4f}, {report['n']} local subscribers {cpu['local']:.4f}",
        file=out,
    )
    print(
        f"per pulled output {report['cpu_per_pulled_output']:.5f} CPU-s/s, per local WebRTC "
        f"subscriber {report['cpu_per_local_subscriber']:.5f} CPU-s/s: a pulled output costs "
        + (
            f"{report['local_over_pulled']:.1f}x less"
            if report["local_over_pulled"]
            else "nothing measurable"
        ),
        file=out,
    )
    hop = report["hop_ms"]
    if hop["median"] is not None:
        print(
            f"one hop adds {hop['median']:.2f} ms median, {hop['p95']:.2f} ms p95, "
            f"{hop['min']:.2f} ms least ({hop['packets']} packets)",
            file=out,
        )
    for r in report["recovery_ms"]:
        print(
            f"after a {r['outage_s']:.1f} s cut: first packet on the edge's listener "
            f"{r['first_packet_ms']:.0f} ms after the path returned",
            file=out,
        )
    print(f"link rebuilds counted by the edge: {report['rebuilds']}", file=out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20, help="outputs pulled / local subscribers")
    parser.add_argument("--window", type=float, default=10.0, help="CPU window, seconds")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--outages", type=lambda s: [float(x) for x in s.split(",")], default=[1.5, 4.0]
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args)
    if args.json:
        print_report(report, sys.stderr)
        print(json.dumps(report))
    else:
        print_report(report, sys.stdout)


if __name__ == "__main__":
    main()
