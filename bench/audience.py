"""An audience of light attendees on a real `dragoman serve` process, for bench/scale.py and
bench/join_wave.py.

- `Server`: `python -m signaling.cli serve --workers N` started as a process on loopback
  (embedded SQLite, the embedded hub between workers), stopped with SIGTERM; its CPU is the
  whole process tree's (the supervisor and its workers: utime+stime from /proc).
- `Staff`: a moderator, a Russian speaker (1000 Hz) and the RU<>FR interpreter (440 Hz)
  speaking the live protocol from the driver process, the speaker and the interpreter
  publishing aiortc tones, both on air: the French channel carries the interpreter.
- `audience_process`: a client process of attendees, each doing what a page does over the
  WebSocket (auth, `select_channel`, `set_audio_only`, `subscribe`, `answer`) and receiving
  its channel on a *light* aiortc peer (bench/peers.py's `Listener`: RTP packets counted, not
  decoded, receiver reports kept true), or staying on the WebSocket only (no media).

Clocks: every process stamps with `time.monotonic()` (Linux's CLOCK_MONOTONIC is one clock
for the whole machine), so the driver schedules joins and reads latencies across processes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCSessionDescription

from bench.node_link import proc_cpu
from bench.peers import Listener, ToneTrack, cpu_seconds, new_peer, receive
from signaling.tokens import Role, TokenSigner

#: A bench's whole audience comes from loopback: one address, thousands of listeners. The
#: caps a node sets per client address (against one abusive client) would refuse it.
LOOPBACK_AUDIENCE = {
    "ws_connections_per_address": 1_000_000,
    "ws_new_connection_burst": 1_000_000,
    "ws_auth_failure_burst": 1_000_000,
    "http_connections_per_address": 1_000_000,
}


def loopback_audience_env() -> dict[str, str]:
    """`LOOPBACK_AUDIENCE` as the environment of a `dragoman serve` process."""
    return {f"DRAGOMAN_{name.upper()}": str(value) for name, value in LOOPBACK_AUDIENCE.items()}


SECRET = "bench-audience-secret-" + "x" * 24
RUSSIAN_SPEAKER = "alexander-tokovinin"
BOOTH = "ru-fr"
SPEAKER_HZ, INTERPRETER_HZ = 1000.0, 440.0
#: The channel every attendee picks: the interpreter's while the Russian speaker is on air.
CHANNEL = "fr"
#: How long one attendee may take from opening its socket to its first packet.
JOIN_TIMEOUT_S = 60.0
#: Importable by the server process: this checkout, not an installed copy.
REPO_ROOT = str(Path(__file__).resolve().parent.parent)


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def issue(role: Role, subject: str, **scope: str) -> str:
    signer = TokenSigner(SECRET.encode())
    return signer.issue(role, subject=subject, ttl=timedelta(hours=2), **scope)


# -- the server ----------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """pid and every process below it (the supervisor's workers)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


@dataclass
class Server:
    """`dragoman serve` with `workers` workers on a free loopback port."""

    workers: int
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None
    #: Where its log (stderr) goes; None: nowhere.
    log_path: Path | None = None
    #: Lift the per-address caps for an audience that all comes from loopback
    #: (`LOOPBACK_AUDIENCE`); False keeps the node's own (bench.abuse measures them).
    loopback_audience: bool = True
    #: The module `python -m` runs: the node's CLI, or bench/memory_probe.py around it.
    module: str = "signaling.cli"
    #: More environment for the process (e.g. `MALLOC_ARENA_MAX`).
    extra_env: dict[str, str] = field(default_factory=dict)
    _drain: asyncio.Future[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGOMAN_")}
        env.update(
            DRAGOMAN_SECRET=SECRET,
            DRAGOMAN_RTC_ADDRESSES="127.0.0.1",
            **(loopback_audience_env() if self.loopback_audience else {}),
            PYTHONPATH=os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p),
        )
        env.update(self.extra_env)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        stderr: Any = asyncio.subprocess.DEVNULL
        if self.log_path is not None:
            stderr = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--data-dir", str(self.data_dir), "--workers", str(self.workers),
            stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env,
        )  # fmt: skip
        if self.log_path is not None:
            stderr.close()  # the process has its own copy
        assert self.process.stdout is not None
        async with asyncio.timeout(120):
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise RuntimeError(f"dragoman serve exited ({await self.process.wait()})")
                if line.startswith(b"Press Ctrl+C"):
                    break
        # Nobody reads it any more: a full pipe must not stop the server.
        self._drain = asyncio.ensure_future(self.process.stdout.read())

    def cpu(self) -> dict[int, float]:
        """CPU-seconds of every process of the server tree, by pid."""
        assert self.process is not None
        out = {}
        for pid in descendants(self.process.pid):
            with contextlib.suppress(OSError):
                out[pid] = proc_cpu(pid)
        return out

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._drain is not None:
            self._drain.cancel()
        self.process = None


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU-seconds the tree spent between two `Server.cpu()` readings (new pids from 0)."""
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


# -- the protocol --------------------------------------------------------------------------


class Page:
    """One WebSocket as a page holds it: sends messages, counts every frame received."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames = 0
        #: Messages received, by type.
        self.types: collections.Counter[str] = collections.Counter()
        self.welcome: dict[str, Any] = {}
        self._counter = 0
        self._drain: asyncio.Task[None] | None = None

    async def send(self, type_: str, **fields: Any) -> None:
        self._counter += 1
        await self.ws.send_str(json.dumps({"type": type_, "id": self._counter, **fields}))

    async def next(self, type_: str, where: Any = None) -> dict[str, Any]:
        while True:
            frame = await self.ws.receive()
            if frame.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"socket {frame.type.name} while waiting for {type_}")
            self.frames += 1
            message = json.loads(frame.data)
            self.types[message["type"]] += 1
            if message["type"] == "error":
                raise RuntimeError(f"{message.get('code')}: {message.get('message')}")
            if message["type"] == type_ and (where is None or where(message)):
                return message

    async def authenticate(self, token: str) -> None:
        await self.send("auth", v=1, token=token)
        self.welcome = await self.next("welcome")
        await self.next("state")

    def keep_reading(self) -> None:
        """Read (and count) whatever else comes, as an open page does."""

        async def drain() -> None:
            async for frame in self.ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self.frames += 1
                    self.types[json.loads(frame.data)["type"]] += 1

        self._drain = asyncio.ensure_future(drain())

    async def close(self) -> None:
        if self._drain is not None:
            self._drain.cancel()
        await self.ws.close()


async def open_page(session: aiohttp.ClientSession, url: str, token: str) -> Page:
    page = Page(await session.ws_connect(f"{url}/ws", heartbeat=None, max_msg_size=0))
    await page.authenticate(token)
    return page


async def publish(page: Page, *tracks: Any) -> Any:
    pc = new_peer()
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    await page.send("offer", purpose="publish", sdp=pc.localDescription.sdp)
    answer = await page.next("answer")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    return pc


class Staff:
    """Moderator, speaker and interpreter: the Russian speaker and the interpreter on air."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.pages: list[Page] = []
        self.peers: list[Any] = []

    async def on_air(self, url: str) -> None:
        self.session = aiohttp.ClientSession()
        moderator = await open_page(self.session, url, issue(Role.MODERATOR, "mod"))
        speaker = await open_page(
            self.session,
            url,
            issue(Role.SPEAKER, RUSSIAN_SPEAKER, speaker=RUSSIAN_SPEAKER),
        )
        interpreter = await open_page(
            self.session, url, issue(Role.INTERPRETER, "anna", booth=BOOTH)
        )
        self.pages = [moderator, speaker, interpreter]
        # Audio only: the attendees here are audio-only, and a VP8 encoder would take a
        # share of the two cores the measurement needs.
        self.peers.append(await publish(speaker, ToneTrack(SPEAKER_HZ)))
        self.peers.append(await publish(interpreter, ToneTrack(INTERPRETER_HZ)))
        await interpreter.send("mic", on=True)
        await moderator.next(
            "state",
            lambda s: (
                RUSSIAN_SPEAKER in s["publishers"]["speakers"]
                and "anna" in s["publishers"]["interpreters"].get(BOOTH, [])
            ),
        )
        await moderator.send("start_session", session_id="plenary")
        await moderator.send("put_on_air", speaker_id=RUSSIAN_SPEAKER)
        await moderator.next("state", lambda s: s.get("on_air") is not None)
        for page in self.pages:
            page.keep_reading()

    async def close(self) -> None:
        for pc in self.peers:
            await pc.close()
        for page in self.pages:
            await page.close()
        if self.session is not None:
            await self.session.close()


# -- the attendees -------------------------------------------------------------------------


class LightListener(Listener):
    """bench/peers.py's light listener, noting when its first RTP packet arrived."""

    def __init__(self) -> None:
        super().__init__("audio", full=False)
        self.first_packet_at: float | None = None

    def _count(self, packet: Any) -> None:
        if self.first_packet_at is None:
            self.first_packet_at = time.monotonic()
        super()._count(packet)


@dataclass
class Attendee:
    token: str
    media: bool
    page: Page | None = None
    listener: LightListener | None = None
    opened_at: float | None = None
    error: str | None = None
    #: Seconds from opening the socket to the first RTP packet (to `ready` without media).
    join_s: float | None = None
    #: Seconds from opening the socket to each step of the join.
    steps: dict[str, float] = field(default_factory=dict)


async def join(session: aiohttp.ClientSession, url: str, attendee: Attendee) -> None:
    """What a page does: open, authenticate, pick the channel, audio only, subscribe, answer."""
    attendee.opened_at = opened = time.monotonic()

    def mark(step: str) -> None:
        attendee.steps[step] = time.monotonic() - opened

    try:
        async with asyncio.timeout(JOIN_TIMEOUT_S):
            page = attendee.page = await open_page(session, url, attendee.token)
            mark("welcome")
            await page.send("select_channel", language=CHANNEL)
            await page.next("state", lambda s: s["you"]["channel"] == CHANNEL)
            mark("channel")
            if not attendee.media:
                attendee.join_s = time.monotonic() - attendee.opened_at
                page.keep_reading()
                return
            await page.send("set_audio_only", on=True)
            await page.next("state", lambda s: s["you"]["audio_only"])
            await page.send("subscribe")
            offer = await page.next("offer")
            mark("offer")
            listener = attendee.listener = LightListener()
            await listener.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            await listener.pc.setLocalDescription(await listener.pc.createAnswer())
            await page.send("answer", purpose="subscribe", sdp=listener.pc.localDescription.sdp)
            mark("answer")
            page.keep_reading()
            while listener.first_packet_at is None:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.005)
            attendee.join_s = listener.first_packet_at - attendee.opened_at
    except Exception as exc:  # every failure is counted, whatever it is
        attendee.error = f"{type(exc).__name__}: {exc}"[:200]


async def _audience(conn: Connection, cfg: dict[str, Any]) -> None:
    attendees: list[Attendee] = []
    marks: list[tuple[int, float]] = []
    c0 = 0.0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        while True:
            msg = await receive(conn)
            if msg["cmd"] == "join":
                # Each joins at its own moment of the shared clock.
                fresh = [Attendee(t, m) for t, m in zip(msg["tokens"], msg["media"], strict=True)]
                attendees += fresh

                async def at(moment: float, attendee: Attendee) -> None:
                    await asyncio.sleep(max(0.0, moment - time.monotonic()))
                    await join(session, cfg["url"], attendee)

                cpu0 = cpu_seconds()
                await asyncio.gather(*(at(m, a) for m, a in zip(msg["at"], fresh, strict=True)))
                conn.send(
                    {
                        "cpu_s": cpu_seconds() - cpu0,
                        "joins": [
                            {
                                "opened_at": a.opened_at,
                                "join_s": a.join_s,
                                "steps": a.steps,
                                "error": a.error,
                                "media": a.media,
                                "node": a.page.welcome.get("node") if a.page else None,
                            }
                            for a in fresh
                        ],
                    }
                )
            elif msg["cmd"] == "mark":
                marks = [
                    (a.listener.packets if a.listener else 0, time.monotonic()) for a in attendees
                ]
                c0 = cpu_seconds()
                conn.send({})
            elif msg["cmd"] == "report":
                now = time.monotonic()
                pps = [
                    ((a.listener.packets if a.listener else 0) - m[0]) / (now - m[1])
                    for a, m in zip(attendees, marks, strict=True)
                    if a.media
                ]
                conn.send(
                    {
                        "pps": pps,
                        "frames": sum(a.page.frames for a in attendees if a.page),
                        "cpu": (cpu_seconds() - c0) / (now - marks[0][1]) if marks else None,
                    }
                )
            elif msg["cmd"] == "frames":
                types: collections.Counter[str] = collections.Counter()
                for a in attendees:
                    if a.page:
                        types.update(a.page.types)
                conn.send({"frames": sum(types.values()), "types": dict(types)})
            elif msg["cmd"] == "stop":
                for a in attendees:
                    with contextlib.suppress(Exception):
                        if a.listener:
                            await a.listener.close()
                        if a.page:
                            await a.page.close()
                conn.send({})
                return


def audience_process(conn: Connection, cfg: dict[str, Any]) -> None:
    """Entry point: attendees of cfg["url"] joining on command, reporting their counters."""
    asyncio.run(_audience(conn, cfg))


class Audience:
    """Client processes of attendees, driven from an asyncio driver over pipes."""

    def __init__(self, url: str, processes: int) -> None:
        context = mp.get_context("spawn")
        self.conns: list[Connection] = []
        self.processes: list[Any] = []
        #: CPU-seconds the client processes spent in the last `join`.
        self.join_cpu_s = 0.0
        for _ in range(processes):
            mine, theirs = context.Pipe()
            process = context.Process(
                target=audience_process, args=(theirs, {"url": url}), daemon=True
            )
            process.start()
            self.conns.append(mine)
            self.processes.append(process)

    async def ask(self, index: int, msg: dict[str, Any]) -> dict[str, Any]:
        self.conns[index].send(msg)
        return await receive(self.conns[index])

    async def ask_all(self, msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return await asyncio.gather(*(self.ask(i, m) for i, m in enumerate(msgs)))

    async def join(self, tokens: list[str], at: list[float], media: list[bool]) -> list[dict]:
        """Attendee i in process i % n; returns every join, in the order given."""
        n = len(self.conns)
        msgs = [
            {"cmd": "join", "tokens": tokens[i::n], "at": at[i::n], "media": media[i::n]}
            for i in range(n)
        ]
        replies = await self.ask_all(msgs)
        self.join_cpu_s = sum(reply["cpu_s"] for reply in replies)
        joins: list[dict] = [{}] * len(tokens)
        for i, reply in enumerate(replies):
            for k, row in enumerate(reply["joins"]):
                joins[i + k * n] = row
        return joins

    async def messages(self) -> collections.Counter[str]:
        """Messages every attendee of every process received so far, by type."""
        types: collections.Counter[str] = collections.Counter()
        for reply in await self.ask_all([{"cmd": "frames"}] * len(self.conns)):
            types.update(reply["types"])
        return types

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(60):
                await self.ask_all([{"cmd": "stop"}] * len(self.conns))
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
