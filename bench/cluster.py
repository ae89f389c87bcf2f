"""How fast the nodes of one event agree: a live change made on one node, seen on another.

Two nodes (in this process, each with its own streamer, on loopback) share the event
through a real redis-server (started here, in a temporary directory) or through the
embedded hub of ``--workers``. A moderator on node A alternately starts and ends a
session; an observer on node A (the baseline: the node's own push) and one on node B
time the state that shows it. The difference is what the bus adds.

    python -m bench.cluster                  # both buses, 40 changes each
    python -m bench.cluster --changes 100 --json

Prints per bus: median and p95 from sending the command to the observer's state, on the
same node and on the other, and their ratio. The product's target: every change on every
node within 100 ms.

``--recovery N``: `dragoman serve --workers 3` as a process; an interpreter (440 Hz) and
an attendee on the French channel; then N times: kill -9 the attendee's worker and time,
from the kill, until the attendee (reconnecting as his page does: at once, then every
0.5 s) hears audio again; the baseline is a first join on a live worker. The product's
target: back within 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiortc import RTCSessionDescription

from bench.audience import LOOPBACK_AUDIENCE, loopback_audience_env
from bench.network import Client, free_port
from bench.peers import ToneTrack, new_peer
from signaling.app import SIGNER_KEY, create_app, make_runner
from signaling.live.hub import HubBus, LiveHub
from signaling.settings import load_settings
from signaling.tokens import Role, TokenSigner
from signaling.websocket import install_live

SECRET = "bench-cluster-" + "s" * 24


async def _start_redis(directory: Path) -> tuple[asyncio.subprocess.Process, str]:
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        executable, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--save", "", "--appendonly", "no",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            await asyncio.sleep(0.05)
    process.kill()
    sys.exit("redis-server did not start")


async def _node(directory: Path, name: str, **options: Any) -> tuple[web.AppRunner, str, Any]:
    port = free_port()
    settings = load_settings(
        host="127.0.0.1",
        port=port,
        data_dir=directory / name,
        secret=SECRET,
        rtc_addresses=["127.0.0.1"],
        redis_url=options.get("redis_url"),
        **LOOPBACK_AUDIENCE,
    )
    extensions = [partial(install_live, bus=options["bus"])] if "bus" in options else None
    app = create_app(settings, extensions=extensions)
    runner = make_runner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}", app[SIGNER_KEY]


async def _connect(
    http: aiohttp.ClientSession, base: str, signer: Any, role: Role, subject: str, **scope: str
) -> tuple[Client, str]:
    """An authenticated client of the live protocol, and the node it landed on."""
    client = Client(await http.ws_connect(f"{base}/ws"))
    token = signer.issue(role, subject=subject, ttl=timedelta(hours=1), **scope)
    await client.send("auth", v=1, token=token)
    return client, (await client.next("welcome"))["node"]


async def _seen(client: Client, session: str | None, started: float) -> float:
    # Polled every half millisecond: the client's reader keeps the newest state.
    while client.state is None or client.state["session"] != session:  # noqa: ASYNC110
        await asyncio.sleep(0.0005)
    return (time.perf_counter() - started) * 1000


@contextlib.asynccontextmanager
async def two_nodes(kind: str, directory: Path) -> AsyncIterator[tuple[str, str, Any]]:
    """Nodes a and b of one event on `kind` ("redis": a redis-server started for them, or
    "hub"): their base URLs and the event's signer; everything stopped on leaving."""
    redis: asyncio.subprocess.Process | None = None
    hub: LiveHub | None = None
    runners = []
    try:
        if kind == "redis":
            redis, url = await _start_redis(directory)
            nodes = [await _node(directory, n, redis_url=url) for n in ("a", "b")]
        else:
            hub = LiveHub(directory / "hub.sock")
            await hub.start()
            nodes = [await _node(directory, n, bus=HubBus(hub.path)) for n in ("a", "b")]
        runners = [runner for runner, _, _ in nodes]
        (_, base_a, signer), (_, base_b, _) = nodes
        yield base_a, base_b, signer
    finally:
        for runner in runners:
            await runner.cleanup()
        if hub is not None:
            await hub.stop()
        if redis is not None:
            redis.terminate()
            await redis.wait()


async def measure(kind: str, changes: int, directory: Path) -> dict[str, Any]:
    async with two_nodes(kind, directory) as (base_a, base_b, signer):
        local, remote = [], []
        async with aiohttp.ClientSession() as http:
            moderator, _ = await _connect(http, base_a, signer, Role.MODERATOR, "mod")
            same, _ = await _connect(http, base_a, signer, Role.MODERATOR, "same-node")
            other, _ = await _connect(http, base_b, signer, Role.MODERATOR, "other-node")
            await asyncio.sleep(0.5)
            for n in range(changes):
                session = "plenary" if n % 2 == 0 else None
                started = time.perf_counter()
                if session:
                    await moderator.send("start_session", session_id=session)
                else:
                    await moderator.send("end_session")
                here, there = await asyncio.gather(
                    _seen(same, session, started), _seen(other, session, started)
                )
                local.append(here)
                remote.append(there)
                await asyncio.sleep(0.05)
            for client in (moderator, same, other):
                await client.close()
        return {"bus": kind, "same_node": _summary(local), "other_node": _summary(remote)}


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
        "max_ms": round(ordered[-1], 2),
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for kind in args.bus:
        with tempfile.TemporaryDirectory(prefix="dragoman-cluster-") as tmp:
            results.append(await measure(kind, args.changes, Path(tmp)))
    return results


async def _listener(http: aiohttp.ClientSession, base: str, signer: Any) -> tuple[Any, Client, str]:
    """An attendee on the French channel, until his first audio frame."""
    client, node = await _connect(http, base, signer, Role.ATTENDEE, "reg-recovery")
    await client.send("select_channel", language="fr")
    await client.send("subscribe")
    offer = await client.next("offer")
    pc = new_peer()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
    slots = {slot["mid"]: slot["name"] for slot in offer["slots"]}
    channel = next(t for t in pc.getTransceivers() if slots.get(t.mid) == "channel")
    await pc.setLocalDescription(await pc.createAnswer())
    await client.send("answer", purpose="subscribe", sdp=pc.localDescription.sdp)
    await asyncio.wait_for(channel.receiver.track.recv(), 20)
    return pc, client, node


async def recovery(rounds: int, directory: Path) -> dict[str, Any]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DRAGOMAN_")},
        "DRAGOMAN_SECRET": SECRET,
        "DRAGOMAN_RTC_ADDRESSES": "127.0.0.1",
        **loopback_audience_env(),
    }
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signaling.cli", "serve", "--workers", "3",
        "--port", str(port), "--data-dir", str(directory / "data"),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert server.stdout is not None
    while not (await server.stdout.readline()).startswith(b"Press Ctrl+C"):
        pass
    base = f"http://127.0.0.1:{port}"
    signer = TokenSigner(SECRET.encode())
    first_join, back = [], []
    peers: list[Any] = []
    clients: list[Client] = []
    try:
        async with aiohttp.ClientSession() as http:

            async def publisher(role: Role, subject: str, hz: float, **scope: str) -> str:
                client, node = await _connect(http, base, signer, role, subject, **scope)
                clients.append(client)
                pc = new_peer()
                pc.addTransceiver(ToneTrack(hz), direction="sendonly")
                await pc.setLocalDescription(await pc.createOffer())
                await client.send("offer", purpose="publish", sdp=pc.localDescription.sdp)
                answer = await client.next("answer")
                await pc.setRemoteDescription(
                    RTCSessionDescription(sdp=answer["sdp"], type="answer")
                )
                peers.append(pc)
                if role is Role.INTERPRETER:
                    await client.send("mic", on=True)
                return str(node)

            speaker_id = "alexander-tokovinin"
            staff_nodes = {
                await publisher(Role.SPEAKER, speaker_id, 1000.0, speaker=speaker_id),
                await publisher(Role.INTERPRETER, "anna", 440.0, booth="ru-fr"),
            }
            moderator, _ = await _connect(http, base, signer, Role.MODERATOR, "mod")
            clients.append(moderator)
            await asyncio.sleep(1.0)  # the workers hear of each other's publishers
            await moderator.send("start_session", session_id="plenary")
            await moderator.send("put_on_air", speaker_id=speaker_id)
            for _ in range(rounds):
                # A listener on the worker that does not hold the interpreter.
                while True:
                    started = time.perf_counter()
                    listener_pc, listener, node = await _listener(http, base, signer)
                    if node not in staff_nodes:
                        break
                    await listener.close()
                    await listener_pc.close()
                first_join.append((time.perf_counter() - started) * 1000)
                os.kill(int(node.rsplit("-", 1)[1]), signal.SIGKILL)
                killed = time.perf_counter()
                await listener.close()
                await listener_pc.close()
                while True:
                    try:
                        listener_pc, listener, _ = await _listener(http, base, signer)
                        break
                    except (aiohttp.ClientError, ConnectionError, RuntimeError, TimeoutError):
                        await asyncio.sleep(0.5)
                back.append((time.perf_counter() - killed) * 1000)
                await listener.close()
                await listener_pc.close()
                await asyncio.sleep(3)  # the killed worker is started again
            for client in clients:
                await client.close()
    finally:
        for peer in peers:
            await peer.close()
        server.terminate()
        await server.wait()
    return {"first_join": _summary(first_join), "back_after_kill": _summary(back)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--recovery", type=int, default=0, metavar="N")
    parser.add_argument("--bus", nargs="+", choices=["redis", "hub"], default=["redis", "hub"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.recovery:
        with tempfile.TemporaryDirectory(prefix="dragoman-recovery-") as tmp:
            figures = asyncio.run(recovery(args.recovery, Path(tmp)))
        first, back = figures["first_join"], figures["back_after_kill"]
        print(
            json.dumps(figures)
            if args.json
            else f"first join (baseline): median {first['median_ms']} ms, "
            f"p95 {first['p95_ms']} ms\nheard again after kill -9 of his worker: median "
            f"{back['median_ms']} ms, p95 {back['p95_ms']} ms, max {back['max_ms']} ms"
        )
        return
    results = asyncio.run(run(args))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'bus':<6} {'same node (ms)':>22} {'other node (ms)':>22} {'other/same':>11}")
    for r in results:
        same, other = r["same_node"], r["other_node"]
        print(
            f"{r['bus']:<6} {same['median_ms']:>10} p95 {same['p95_ms']:>7}"
            f" {other['median_ms']:>10} p95 {other['p95_ms']:>7}"
            f" {other['median_ms'] / max(same['median_ms'], 0.001):>10.2f}x"
        )


if __name__ == "__main__":
    main()
