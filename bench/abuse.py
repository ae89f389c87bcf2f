"""What one abusive client does to everyone else: the outside probe's attacks (issue 12)
replayed against a real `dragoman serve` while a well-behaved attendee measures.

A node (bench/audience.py's `Server`, one process, SQLite), the staff on air (a Russian
speaker and the RU<>FR interpreter publishing tones), and a *probe*: an attendee who
listens to the French channel on a light aiortc peer (RTP packets counted) and, twice a
second, measures

- state latency: the probe's moderator changes the floor language (between the
  program's and Russian: nothing audible changes) and the time until the probe
  attendee's page receives the state that shows it;
- ping: the attendee's `ping` -> `pong` round trip;

and counts his audio packets per second and every message the node sends him.

Then, one at a time, each attack runs for `--window` seconds in its own process (so its
client work does not slow the probe's loop), from another loopback address (127.0.0.3:
per-address limits, once the node has them, must not catch the probe), with its own
attendee link:

- `ws_fuzz`: malformed frames on /ws before and after auth (not JSON, nesting 50 000 deep,
  a 5 000-digit number, a lone surrogate in `id`, wrong types), reconnecting whenever
  the node closes;
- `select_flood`: `select_channel` about 1 000 times a second on one socket;
- `subscribe_churn`: `subscribe`, wait for the offer (or the refusal), again;
- `many_connections`: as many authenticated sockets as it can open with one link;
- `unanswered_offers`: sockets that each ask for a subscription and never answer;
- `idle_http`: TCP connections that send nothing, or half a request header, and wait;
- `http_abuse`: the API fed nested and huge JSON, lone surrogates, garbage, unknown
  paths, long URLs, bad methods, as fast as it answers.

Each attack is robust to being refused: refusals, error codes and closes (by WebSocket
close code) are counted, not fatal, so the same bench measures the node before and
after it is hardened. Between attacks the node rests (`--rest` seconds) and the probe's
baseline is measured first (no attack) and again at the end (recovery).

Printed per phase: the probe's state latency (median, p95) and ping (median) with their
ratio to the baseline, timeouts (no answer within 5 s), the audio packet rate and its
ratio, the messages per second the probe receives; the server's CPU-s/s, descriptors,
UDP sockets, event-loop tasks (`dragoman_asyncio_tasks` on /metrics), resident memory,
log bytes per second, each at the end of the phase; and what the attack saw.

    python -m bench.abuse                       # 10 s per attack, about 2.5 minutes
    python -m bench.abuse --window 20 --json
    python -m bench.abuse --attacks select_flood,ws_fuzz --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCSessionDescription

from bench.audience import CHANNEL, LightListener, Server, Staff, cpu_between, issue, log
from bench.footprint import footprint
from bench.peers import receive
from signaling.tokens import Role

#: Where the attacks come from: another loopback address than the probe and the staff.
ATTACK_SOURCE = "127.0.0.3"
#: A probe sample not answered within this is a timeout (and counted at this value).
SAMPLE_TIMEOUT_S = 5.0
SAMPLE_EVERY_S = 0.5
PACKETS_PER_S = 50.0

ATTACKS = (
    "ws_fuzz",
    "select_flood",
    "subscribe_churn",
    "many_connections",
    "unanswered_offers",
    "idle_http",
    "http_abuse",
)

#: Sizes of the attacks as the probe found them, and tiny ones for the smoke test.
#: `http_depth`: nesting that fits the API's 16 KB body limit (deeper is refused as too
#: large before any parsing).
FULL = {
    "connections": 1000,
    "offers": 200,
    "idle": 500,
    "parallel": 8,
    "depth": 50_000,
    "http_depth": 5_000,
}
SMOKE = {
    "connections": 20,
    "offers": 10,
    "idle": 20,
    "parallel": 2,
    "depth": 5_000,
    "http_depth": 2_000,
}


# -- the attacks (each in its own process) ------------------------------------------------


@dataclass
class Tally:
    """What an attack saw: counts by outcome."""

    counts: collections.Counter[str] = field(default_factory=collections.Counter)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def frame(self, msg: aiohttp.WSMessage) -> dict[str, Any] | None:
        """Count one received frame; the message if it is a text one."""
        if msg.type == aiohttp.WSMsgType.TEXT:
            try:
                message = json.loads(msg.data)
            except ValueError:
                self.add("reply:not_json")
                return None
            kind = message.get("type")
            self.add(f"error:{message.get('code')}" if kind == "error" else f"reply:{kind}")
            return message
        return None

    def closed(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.add(f"closed:{ws.close_code}")


class Attack:
    """Shared parts of the attacks: the node, the link, the address they come from."""

    def __init__(self, cfg: dict[str, Any], tally: Tally) -> None:
        self.url: str = cfg["url"]
        self.token: str = cfg["token"]
        self.sizes: dict[str, int] = cfg["sizes"]
        self.until = time.monotonic() + cfg["seconds"]
        self.tally = tally
        self.host, port = self.url.rsplit("//", 1)[1].split(":")
        self.port = int(port)

    def running(self) -> bool:
        return time.monotonic() < self.until

    def session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=0, local_addr=(ATTACK_SOURCE, 0))
        return aiohttp.ClientSession(connector=connector)

    async def ws(
        self, session: aiohttp.ClientSession, *, auth: bool
    ) -> aiohttp.ClientWebSocketResponse | None:
        """A socket to /ws (authenticated with the attack's link); None when refused."""
        try:
            ws = await session.ws_connect(
                f"{self.url}/ws", heartbeat=None, max_msg_size=0, timeout=10
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # A refused upgrade by its HTTP status (429: the address's connection rate).
            why = exc.status if isinstance(exc, aiohttp.WSServerHandshakeError) else None
            self.tally.add(f"connect_refused:{why or type(exc).__name__}")
            await asyncio.sleep(0.05)
            return None
        self.tally.add("connected")
        if not auth:
            return ws
        await ws.send_str(json.dumps({"type": "auth", "v": 1, "id": 1, "token": self.token}))
        async with asyncio.timeout(10):
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    self.tally.closed(ws)
                    return None
                message = self.tally.frame(msg) or {}
                if message.get("type") == "state":
                    return ws
                if message.get("type") == "error":
                    await ws.close()
                    return None

    def drain(self, ws: aiohttp.ClientWebSocketResponse) -> asyncio.Task[None]:
        """Read and count whatever the node sends on `ws`, until it closes."""

        async def read() -> None:
            async for msg in ws:
                self.tally.frame(msg)
            self.tally.closed(ws)

        return asyncio.ensure_future(read())


def fuzz_frames(depth: int) -> list[tuple[str, str]]:
    nested = "[" * depth + "]" * depth
    return [
        ("not_json", "{this is not json"),
        ("deep_nesting", nested),
        ("deep_in_field", '{"type":"select_channel","id":2,"language":' + nested + "}"),
        ("huge_number", '{"type":"ping","id":' + "9" * 5000 + "}"),
        ("lone_surrogate_id", '{"type":"ping","id":"\\ud800"}'),
        ("lone_surrogate_field", '{"type":"select_channel","id":3,"language":"\\udfff"}'),
        ("wrong_types", '{"type":["ping"],"id":{"a":1}}'),
        ("unknown_type", '{"type":"format_disk","id":4}'),
        ("binary", "\x00\x01\x02"),
    ]


async def ws_fuzz(attack: Attack) -> None:
    frames = fuzz_frames(attack.sizes["depth"])

    async def one(worker: int) -> None:
        async with attack.session() as session:
            n = worker
            while attack.running():
                name, payload = frames[n % len(frames)]
                before_auth = (n // len(frames)) % 2 == 0
                n += 1
                ws = await attack.ws(session, auth=not before_auth)
                if ws is None:
                    continue
                phase = "pre_auth" if before_auth else "post_auth"
                try:
                    for _ in range(20):
                        if not attack.running():
                            break
                        await ws.send_str(payload)
                        attack.tally.add(f"sent:{phase}:{name}")
                        msg = await ws.receive(timeout=5)
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            attack.tally.add(f"closed:{phase}:{name}:{ws.close_code}")
                            break
                        reply = attack.tally.frame(msg) or {}
                        attack.tally.add(f"answered:{phase}:{name}:{reply.get('code')}")
                except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                    attack.tally.add(f"broken:{phase}:{name}:{type(exc).__name__}")
                finally:
                    await ws.close()

    await asyncio.gather(*(one(w) for w in range(attack.sizes["parallel"])))


async def select_flood(attack: Attack) -> None:
    async with attack.session() as session:
        while attack.running():
            ws = await attack.ws(session, auth=True)
            if ws is None:
                continue
            reader = attack.drain(ws)
            n = 0
            try:
                while attack.running() and not ws.closed:
                    for _ in range(10):
                        n += 1
                        language = "fr" if n % 2 else "ru"
                        await ws.send_str(
                            json.dumps({"type": "select_channel", "id": n, "language": language})
                        )
                        attack.tally.add("sent")
                    await asyncio.sleep(0.01)  # about 1 000 a second
            except (aiohttp.ClientError, ConnectionError) as exc:
                attack.tally.add(f"broken:{type(exc).__name__}")
            finally:
                await ws.close()
                reader.cancel()


async def subscribe_churn(attack: Attack) -> None:
    async with attack.session() as session:
        while attack.running():
            ws = await attack.ws(session, auth=True)
            if ws is None:
                continue
            n = 0
            try:
                while attack.running():
                    n += 1
                    await ws.send_str(json.dumps({"type": "subscribe", "id": n}))
                    attack.tally.add("sent")
                    while True:
                        msg = await ws.receive(timeout=10)
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            attack.tally.closed(ws)
                            raise ConnectionError("closed")
                        reply = attack.tally.frame(msg) or {}
                        if reply.get("type") in ("offer", "error"):
                            break
            except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                attack.tally.add(f"broken:{type(exc).__name__}")
            finally:
                await ws.close()


async def _hold(attack: Attack, count: int, then: Callable[[Any], Awaitable[None]]) -> None:
    """Open `count` authenticated sockets (as fast as the node lets), do `then` on each,
    hold them until the end of the attack; note how many are still open then."""
    async with attack.session() as session:
        held: list[aiohttp.ClientWebSocketResponse] = []
        readers: list[asyncio.Task[None]] = []

        async def open_one() -> None:
            ws = await attack.ws(session, auth=True)
            if ws is None:
                return
            held.append(ws)
            await then(ws)
            readers.append(attack.drain(ws))

        pending = count
        while pending and attack.running():
            batch = min(pending, 20)
            pending -= batch
            results = await asyncio.gather(
                *(open_one() for _ in range(batch)), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    attack.tally.add(f"broken:{type(result).__name__}")
        await asyncio.sleep(max(0.0, attack.until - time.monotonic()))
        attack.tally.add("open_at_end", sum(not ws.closed for ws in held))
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*(ws.close() for ws in held), return_exceptions=True)


async def many_connections(attack: Attack) -> None:
    async def nothing(ws: Any) -> None:
        return None

    await _hold(attack, attack.sizes["connections"], nothing)


async def unanswered_offers(attack: Attack) -> None:
    async def ask(ws: aiohttp.ClientWebSocketResponse) -> None:
        await ws.send_str(json.dumps({"type": "subscribe", "id": 2}))
        attack.tally.add("sent")
        msg = await ws.receive(timeout=10)
        attack.tally.frame(msg)

    await _hold(attack, attack.sizes["offers"], ask)


async def idle_http(attack: Attack) -> None:
    writers: list[asyncio.StreamWriter] = []
    readers: list[asyncio.StreamReader] = []
    for n in range(attack.sizes["idle"]):
        if not attack.running():
            break
        try:
            reader, writer = await asyncio.open_connection(
                attack.host, attack.port, local_addr=(ATTACK_SOURCE, 0)
            )
        except OSError as exc:
            attack.tally.add(f"connect_refused:{type(exc).__name__}")
            continue
        if n % 2:
            writer.write(b"GET / HTTP/1.1\r\nHost: " + attack.host.encode() + b"\r\nX-Half: ")
            attack.tally.add("half_header")
        else:
            attack.tally.add("silent")
        writers.append(writer)
        readers.append(reader)
    await asyncio.sleep(max(0.0, attack.until - time.monotonic()))
    # A connection the node closed reads its end (or a 408) at once.
    for reader in readers:
        try:
            data = await asyncio.wait_for(reader.read(1024), 0.01)
            attack.tally.add("closed_by_node" if not data else "answered_by_node")
        except TimeoutError:
            attack.tally.add("open_at_end")
        except OSError:
            attack.tally.add("closed_by_node")
    for writer in writers:
        writer.close()


def abusive_requests(depth: int) -> list[tuple[str, str, str, bytes, dict[str, str]]]:
    nested = ("[" * depth + "]" * depth).encode()
    json_type = {"Content-Type": "application/json"}
    return [
        ("nested_body", "POST", "/api/registrations", nested, json_type),
        ("nested_field", "POST", "/api/registrations", b'{"name":' + nested + b"}", json_type),
        ("huge_number", "POST", "/api/registrations", b'{"name":' + b"9" * 5000 + b"}", json_type),
        (
            "lone_surrogate",
            "POST",
            "/api/registrations",
            b'{"name":"\\ud800","email":"a\\udfff@example.org","language":"fr"}',
            json_type,
        ),
        ("garbage", "POST", "/api/registrations", b"\xff\xfe{{{", json_type),
        ("lookup_nested", "POST", "/api/registrations/lookup", nested, json_type),
        ("unknown_api", "GET", "/api/../../etc/passwd", b"", {}),
        ("unknown_page", "GET", "/wp-login.php", b"", {}),
        ("long_url", "GET", "/watch?token=" + "A" * 7000, b"", {}),
        ("bad_method", "DELETE", "/api/registrations", b"", {}),
        ("forged_token", "GET", "/watch?token=eyJhbGciOiJub25lIn0.e30.", b"", {}),
    ]


async def http_abuse(attack: Attack) -> None:
    requests = abusive_requests(attack.sizes["http_depth"])

    async def one(worker: int) -> None:
        async with attack.session() as session:
            n = worker
            while attack.running():
                name, method, path, body, headers = requests[n % len(requests)]
                n += 1
                try:
                    async with session.request(
                        method, f"{attack.url}{path}", data=body, headers=headers, timeout=10
                    ) as response:
                        await response.read()
                        attack.tally.add(f"{name}:{response.status}")
                        if response.status >= 500:
                            attack.tally.add(f"server_error:{response.status}")
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    attack.tally.add(f"{name}:broken:{type(exc).__name__}")

    await asyncio.gather(*(one(w) for w in range(attack.sizes["parallel"])))


ATTACK_RUNS: dict[str, Callable[[Attack], Awaitable[None]]] = {
    "ws_fuzz": ws_fuzz,
    "select_flood": select_flood,
    "subscribe_churn": subscribe_churn,
    "many_connections": many_connections,
    "unanswered_offers": unanswered_offers,
    "idle_http": idle_http,
    "http_abuse": http_abuse,
}


async def _attack_main(conn: Connection, cfg: dict[str, Any]) -> None:
    tally = Tally()
    try:
        await ATTACK_RUNS[cfg["attack"]](Attack(cfg, tally))
    except Exception as exc:  # an attack that breaks reports what it saw, and why
        tally.add(f"attack_failed:{type(exc).__name__}: {exc}"[:120])
    conn.send(dict(tally.counts))


def attack_process(conn: Connection, cfg: dict[str, Any]) -> None:
    asyncio.run(_attack_main(conn, cfg))


# -- the probe ----------------------------------------------------------------------------


class ProbePage:
    """A WebSocket read all the time: states and pongs noted as they arrive."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames = 0
        self.floor: Any = "unknown"
        self.changed = asyncio.Event()
        self.pongs: dict[int, asyncio.Future[float]] = {}
        self.offer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.errors: collections.Counter[str] = collections.Counter()
        self._counter = 100
        self._reader: asyncio.Task[None] | None = None

    async def send(self, type_: str, **fields: Any) -> int:
        self._counter += 1
        await self.ws.send_str(json.dumps({"type": type_, "id": self._counter, **fields}))
        return self._counter

    async def open(self, token: str) -> None:
        await self.send("auth", v=1, token=token)
        while True:
            msg = await self.ws.receive(timeout=30)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"probe socket {msg.type.name} while authenticating")
            message = json.loads(msg.data)
            if message["type"] == "error":
                raise RuntimeError(f"probe refused: {message}")
            if message["type"] == "state":
                self.floor = message.get("floor_language")
                break
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            self.frames += 1
            message = json.loads(msg.data)
            kind = message["type"]
            if kind == "state":
                if message.get("floor_language") != self.floor:
                    self.floor = message.get("floor_language")
                    self.changed.set()
            elif kind == "pong":
                future = self.pongs.pop(message.get("ref"), None)
                if future is not None and not future.done():
                    future.set_result(time.monotonic())
            elif kind == "offer" and not self.offer.done():
                self.offer.set_result(message)
            elif kind == "error":
                self.errors[str(message.get("code"))] += 1

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.ws.close()


class Probe:
    """The well-behaved attendee (and the moderator whose changes he is timed on)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = aiohttp.ClientSession()
        self.attendee: ProbePage | None = None
        self.moderator: ProbePage | None = None
        self.listener: LightListener | None = None
        self.reconnects = 0

    async def _page(self, token: str) -> ProbePage:
        ws = await self.session.ws_connect(f"{self.url}/ws", heartbeat=None, max_msg_size=0)
        page = ProbePage(ws)
        await page.open(token)
        return page

    async def start(self) -> None:
        self.moderator = await self._page(issue(Role.MODERATOR, "probe-moderator"))
        await self.join()

    async def join(self) -> None:
        """The attendee's page: open, French, audio only, subscribe, answer."""
        if self.listener is not None:
            await self.listener.close()
        if self.attendee is not None:
            await self.attendee.close()
        page = self.attendee = await self._page(issue(Role.ATTENDEE, "probe-attendee"))
        await page.send("select_channel", language=CHANNEL)
        await page.send("set_audio_only", on=True)
        await page.send("subscribe")
        offer = await asyncio.wait_for(page.offer, 30)
        listener = self.listener = LightListener()
        await listener.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await listener.pc.setLocalDescription(await listener.pc.createAnswer())
        await page.send("answer", purpose="subscribe", sdp=listener.pc.localDescription.sdp)
        async with asyncio.timeout(30):
            while listener.first_packet_at is None:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.01)

    async def state_latency(self) -> float | None:
        """Moderator's change -> the attendee's page shows it; None: not within the bound."""
        assert self.moderator is not None and self.attendee is not None
        target = "ru" if self.attendee.floor is None else None
        self.attendee.changed.clear()
        started = time.monotonic()
        await self.moderator.send("set_floor_language", language=target)
        try:
            async with asyncio.timeout(SAMPLE_TIMEOUT_S):
                while self.attendee.floor != target:
                    await self.attendee.changed.wait()
                    self.attendee.changed.clear()
        except TimeoutError:
            return None
        return time.monotonic() - started

    async def ping(self) -> float | None:
        assert self.attendee is not None
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        started = time.monotonic()
        self.attendee._counter += 1
        ref = self.attendee._counter
        self.attendee.pongs[ref] = future
        await self.attendee.ws.send_str(json.dumps({"type": "ping", "id": ref}))
        try:
            return await asyncio.wait_for(future, SAMPLE_TIMEOUT_S) - started
        except TimeoutError:
            self.attendee.pongs.pop(ref, None)
            return None

    async def measure(self, seconds: float) -> dict[str, Any]:
        """Sample for `seconds`: latencies, pings, packets and messages received."""
        assert self.attendee is not None and self.listener is not None
        latencies: list[float] = []
        pings: list[float] = []
        timeouts = 0
        assert self.moderator is not None
        packets0, frames0, t0 = self.listener.packets, self.attendee.frames, time.monotonic()
        staff0 = self.moderator.frames
        n = 0
        while time.monotonic() - t0 < seconds:
            n += 1
            try:
                sample = await (self.state_latency() if n % 2 else self.ping())
            except (aiohttp.ClientError, ConnectionError) as exc:
                log(f"probe: {type(exc).__name__}: {exc}; joining again")
                self.reconnects += 1
                await self.join()
                continue
            if sample is None:
                timeouts += 1
                (latencies if n % 2 else pings).append(SAMPLE_TIMEOUT_S)
            else:
                (latencies if n % 2 else pings).append(sample)
            await asyncio.sleep(max(0.0, SAMPLE_EVERY_S - (sample or 0.0)))
        wall = time.monotonic() - t0
        if self.attendee.ws.closed:
            self.reconnects += 1
            await self.join()
        return {
            "state_ms_p50": 1000 * statistics.median(latencies) if latencies else None,
            "state_ms_p95": 1000 * _p95(latencies) if latencies else None,
            "ping_ms_p50": 1000 * statistics.median(pings) if pings else None,
            "timeouts": timeouts,
            "samples": len(latencies) + len(pings),
            "pps": (self.listener.packets - packets0) / wall,
            "messages_per_s": (self.attendee.frames - frames0) / wall,
            "moderator_messages_per_s": (self.moderator.frames - staff0) / wall,
        }

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()
        for page in (self.attendee, self.moderator):
            if page is not None:
                await page.close()
        await self.session.close()


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


# -- the run ------------------------------------------------------------------------------


async def phase(
    name: str,
    server: Server,
    probe: Probe,
    http: aiohttp.ClientSession,
    options: argparse.Namespace,
    sizes: dict[str, int],
) -> dict[str, Any]:
    """The probe's figures and the server's over one window, with `name` attacking
    (or nobody: `baseline`, `recovery`)."""
    assert server.process is not None and server.log_path is not None
    attacker = None
    conn = None
    if name in ATTACK_RUNS:
        mine, conn = mp.get_context("spawn").Pipe()
        cfg = {
            "attack": name,
            "url": server.url,
            "token": issue(Role.ATTENDEE, f"attacker-{name}"),
            "seconds": options.window + options.ramp,
            "sizes": sizes,
        }
        attacker = mp.get_context("spawn").Process(
            target=attack_process, args=(conn, cfg), daemon=True
        )
        attacker.start()
        conn = mine
        await asyncio.sleep(options.ramp)
    cpu0, log0 = server.cpu(), server.log_path.stat().st_size
    t0 = time.monotonic()
    figures = await probe.measure(options.window)
    wall = time.monotonic() - t0
    cpu1, log1 = server.cpu(), server.log_path.stat().st_size
    held = await footprint(http, server.url, server.process.pid)
    seen: dict[str, int] = {}
    if attacker is not None and conn is not None:
        async with asyncio.timeout(options.window + options.ramp + 60):
            seen = await receive(conn)
        attacker.join(10)
        if attacker.is_alive():
            attacker.kill()
    row = {
        "phase": name,
        **figures,
        "server_cpu": cpu_between(cpu0, cpu1) / wall,
        "server_log_bytes_per_s": (log1 - log0) / wall,
        **held.as_dict(),
        "attack": dict(sorted(seen.items())),
    }
    log(
        f"{name}: state p50 {row['state_ms_p50'] or 0:.0f} ms, ping {row['ping_ms_p50'] or 0:.0f}"
        f" ms, timeouts {row['timeouts']}, {row['pps']:.1f} pkt/s, cpu {row['server_cpu']:.2f}, "
        f"fds {held.fds}, udp {held.udp_sockets}, tasks {held.tasks}"
    )
    # The node rests before the next attack (sockets the attack left time out, etc.).
    await asyncio.sleep(options.rest)
    return row


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base


async def run(options: argparse.Namespace) -> dict[str, Any]:
    sizes = dict(SMOKE if options.smoke else FULL)
    with tempfile.TemporaryDirectory(prefix="dragoman-abuse-") as tmp:
        # The node's own per-address caps: the attacks come from another address than the
        # probe's, as they would from the Internet.
        server = Server(
            1, Path(tmp) / "data", log_path=Path(tmp) / "server.log", loopback_audience=False
        )
        await server.start()
        staff = Staff()
        probe = Probe(server.url)
        rows: list[dict[str, Any]] = []
        try:
            async with aiohttp.ClientSession() as http:
                await staff.on_air(server.url)
                await probe.start()
                for name in ["baseline", *options.attacks, "recovery"]:
                    rows.append(await phase(name, server, probe, http, options, sizes))
        finally:
            await probe.close()
            await staff.close()
            await server.stop()
    base = rows[0]
    for row in rows:
        row["state_ratio"] = ratio(row["state_ms_p50"], base["state_ms_p50"])
        row["ping_ratio"] = ratio(row["ping_ms_p50"], base["ping_ms_p50"])
        row["pps_ratio"] = ratio(row["pps"], base["pps"])
    return {
        "options": {"window": options.window, "attacks": options.attacks, "sizes": sizes},
        "rows": rows,
        "probe_reconnects": probe.reconnects,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


#: Outcomes that say how the node took an attack, listed before the plain counts.
TELLING = ("server_error", "closed", "broken", "connect_refused", "attack_failed", "open_at")


def summary_of(attack: dict[str, int]) -> str:
    """The attack's counts: how the node refused or broke first, then the largest."""
    telling = [(k, v) for k, v in attack.items() if k.startswith(TELLING)]
    errors = sorted(
        ((k, v) for k, v in attack.items() if k.startswith("error:")), key=lambda kv: -kv[1]
    )
    rest = sorted(
        ((k, v) for k, v in attack.items() if (k, v) not in telling and not k.startswith("error:")),
        key=lambda kv: -kv[1],
    )
    shown = sorted(telling) + errors + rest[:4]
    return ", ".join(f"{k}={v}" for k, v in shown)


def print_table(result: dict[str, Any]) -> None:
    header = (
        f"{'phase':<18}{'state p50':>10}{'p95':>7}{'x base':>7}{'ping':>7}{'x base':>7}"
        f"{'t/o':>5}{'pkt/s':>7}{'x base':>7}{'msg/s':>7}{'cpu':>6}{'fds':>6}{'udp':>5}"
        f"{'tasks':>6}{'rss MB':>7}{'log kB/s':>9}{'mod msg/s':>10}"
    )
    print(header)
    for row in result["rows"]:
        print(
            f"{row['phase']:<18}{_fmt(row['state_ms_p50'], '.0f'):>10}"
            f"{_fmt(row['state_ms_p95'], '.0f'):>7}{_fmt(row['state_ratio'], '.2f'):>7}"
            f"{_fmt(row['ping_ms_p50'], '.1f'):>7}{_fmt(row['ping_ratio'], '.2f'):>7}"
            f"{row['timeouts']:>5}{row['pps']:>7.1f}{_fmt(row['pps_ratio'], '.2f'):>7}"
            f"{row['messages_per_s']:>7.1f}{row['server_cpu']:>6.2f}{row['fds']:>6}"
            f"{row['udp_sockets']:>5}{_fmt(row['tasks'], 'd'):>6}{row['rss_mb']:>7.0f}"
            f"{row['server_log_bytes_per_s'] / 1000:>9.1f}"
            f"{row['moderator_messages_per_s']:>10.1f}"
        )
    print("\nwhat each attack saw:")
    for row in result["rows"]:
        if row["attack"]:
            print(f"  {row['phase']}: {summary_of(row['attack'])}")
    print(f"\nprobe rejoined {result['probe_reconnects']} times")


def attack_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ATTACKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of attacks among {', '.join(ATTACKS)}"
        )
    return names


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.abuse", description=__doc__)
    parser.add_argument("--window", type=seconds, default=10.0, help="seconds per phase")
    parser.add_argument("--ramp", type=seconds, default=2.0, help="attack runs before measuring")
    parser.add_argument("--rest", type=float, default=3.0, help="seconds between phases")
    parser.add_argument("--attacks", type=attack_list, default=list(ATTACKS))
    parser.add_argument(
        "--smoke", action="store_true", help="tiny attacks (connections, depth), for the tests"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    options = parser.parse_args(argv)
    result = asyncio.run(run(options))
    if options.json:
        json.dump(result, sys.stdout)
        print()
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
