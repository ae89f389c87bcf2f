"""`dragoman serve --workers N`: every core of one machine behind the one public port.

One Python process uses one core. With ``--workers N`` the process that is started
becomes a supervisor:

- it runs the embedded hub (`signaling.live.hub`), through which the workers share the
  live event, unless ``DRAGOMAN_REDIS_URL`` names a Redis (then they use it, as nodes on
  several machines do);
- it starts N workers, each a node of the event with its own streamer and its own slice
  of the RTC port range (``dragoman serve`` itself, told by hidden options where the hub
  and the hand-off socket are), and starts again any worker that dies;
- it listens on the public port and hands each accepted connection (its file
  descriptor, over a Unix socket) to the worker with the fewest clients, so new
  attendees go to the least loaded worker. A worker that dies takes its connections
  with it: the pages reconnect to the same address, and land on the others; its
  publishers publish again there.

Registrations and the durable live state stay in the store the workers share (the
SQLite file of the data directory, in WAL mode, or Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from signaling.live.hub import LiveHub

log = logging.getLogger(__name__)

#: How long the workers have to start before the supervisor gives up.
START_TIMEOUT_S = 60.0
#: How long a worker waits before it is started again after dying.
RESTART_AFTER_S = 1.0
#: How often a worker tells the supervisor how many clients it has.
LOAD_EVERY_S = 1.0
#: How long stopping workers have before they are killed.
STOP_TIMEOUT_S = 20.0
HANDOFF = "handoff.sock"
HUB = "hub.sock"


def port_slices(ports: tuple[int, int] | None, count: int) -> list[tuple[int, int] | None]:
    """The RTC port range shared out: each worker binds only its own ports."""
    if ports is None:
        return [None] * count
    low, high = ports
    size = (high - low + 1) // count
    if size < 2:
        raise ValueError(
            f"the RTC port range {low}-{high} is too small for {count} workers: "
            "give each at least 2 ports (widen DRAGOMAN_RTC_PORTS)"
        )
    return [(low + i * size, low + (i + 1) * size - 1) for i in range(count)]


@dataclass
class Worker:
    index: int
    ports: tuple[int, int] | None
    process: asyncio.subprocess.Process | None = None
    channel: socket.socket | None = None
    clients: int = 0
    #: Connections handed since its last report (so a burst spreads before it reports).
    handed: int = 0
    restarts: int = 0
    started_at: float = field(default_factory=time.monotonic)

    @property
    def load(self) -> int:
        return self.clients + self.handed


class Supervisor:
    """Starts the workers, hands them connections, starts again those that die."""

    def __init__(
        self,
        host: str,
        port: int,
        count: int,
        *,
        worker_args: Sequence[str],
        rtc_ports: tuple[int, int] | None,
        use_hub: bool,
    ) -> None:
        self.host = host
        self.port = port
        self.worker_args = list(worker_args)
        self.use_hub = use_hub
        self.workers = [Worker(i, ports) for i, ports in enumerate(port_slices(rtc_ports, count))]
        # Unix socket paths are short: a directory of their own under the system's temp.
        self.directory = Path(tempfile.mkdtemp(prefix="dragoman-"))
        self.hub: LiveHub | None = None
        self._listener: socket.socket | None = None
        self._handoff: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._all_ready = asyncio.Event()

    # --- life cycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Listen, start the hub and the workers; return when every worker is ready."""
        listener = socket.create_server((self.host, self.port), backlog=1024)
        listener.setblocking(False)
        self._listener = listener
        handoff = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        handoff.bind(str(self.directory / HANDOFF))
        handoff.listen(64)
        handoff.setblocking(False)
        self._handoff = handoff
        if self.use_hub:
            self.hub = LiveHub(self.directory / HUB)
            await self.hub.start()
        for worker in self.workers:
            await self._spawn(worker)
        self._run(self._accept_workers())
        async with asyncio.timeout(START_TIMEOUT_S):
            await self._all_ready.wait()
        self._run(self._accept_connections())

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            if worker.process is None:
                continue
            try:
                await asyncio.wait_for(worker.process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()
        for sock in (self._listener, self._handoff, *(w.channel for w in self.workers)):
            if sock is not None:
                sock.close()
        if self.hub is not None:
            await self.hub.stop()
        for path in self.directory.iterdir():
            path.unlink(missing_ok=True)
        self.directory.rmdir()

    def _run(self, coroutine: object) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- workers --------------------------------------------------------------------

    async def _spawn(self, worker: Worker) -> None:
        command = [
            sys.executable,
            "-m",
            "signaling.cli",
            "serve",
            *self.worker_args,
            "--worker-index",
            str(worker.index),
            "--handoff",
            str(self.directory / HANDOFF),
        ]
        if self.hub is not None:
            command += ["--hub", str(self.hub.path)]
        env = dict(os.environ, DRAGOMAN_WORKERS="1")
        if worker.ports is not None:
            env["DRAGOMAN_RTC_PORTS"] = f"{worker.ports[0]}-{worker.ports[1]}"
        worker.process = await asyncio.create_subprocess_exec(*command, env=env)
        worker.started_at = time.monotonic()
        self._run(self._watch(worker, worker.process))

    async def _watch(self, worker: Worker, process: asyncio.subprocess.Process) -> None:
        status = await process.wait()
        if self._stopping:
            return
        log.warning(
            "worker %d (pid %d) ended with status %d; starting it again",
            worker.index,
            process.pid,
            status,
        )
        if worker.channel is not None:
            worker.channel.close()
            worker.channel = None
        worker.clients = worker.handed = 0
        worker.restarts += 1
        await asyncio.sleep(RESTART_AFTER_S)
        if not self._stopping:
            await self._spawn(worker)

    async def _accept_workers(self) -> None:
        assert self._handoff is not None
        loop = asyncio.get_running_loop()
        while True:
            channel, _ = await loop.sock_accept(self._handoff)
            channel.setblocking(False)
            self._run(self._hear_worker(channel))

    async def _hear_worker(self, channel: socket.socket) -> None:
        """A worker's channel: its hello, then its load reports, until it closes."""
        loop = asyncio.get_running_loop()
        worker: Worker | None = None
        try:
            while data := await loop.sock_recv(channel, 4096):
                report = json.loads(data)
                if worker is None:
                    worker = self.workers[int(report["worker"])]
                    if worker.channel is not None:
                        worker.channel.close()
                    worker.channel = channel
                    if all(w.channel is not None for w in self.workers):
                        self._all_ready.set()
                worker.clients, worker.handed = int(report["clients"]), 0
        except (OSError, ValueError, KeyError, IndexError):
            pass
        finally:
            if worker is not None and worker.channel is channel:
                worker.channel = None
            channel.close()

    # --- connections ----------------------------------------------------------------

    async def _accept_connections(self) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        while True:
            connection, _ = await loop.sock_accept(self._listener)
            try:
                self._hand(connection)
            finally:
                connection.close()  # the worker holds its own copy now

    def _hand(self, connection: socket.socket) -> None:
        ready = [w for w in self.workers if w.channel is not None]
        for worker in sorted(ready, key=lambda w: (w.load, w.index)):
            assert worker.channel is not None
            try:
                socket.send_fds(worker.channel, [b"c"], [connection.fileno()])
            except OSError:
                continue  # dying: the next one takes it
            worker.handed += 1
            return
        log.warning("no worker is ready: a connection was closed (the page retries)")


class Handoff:
    """A worker's side of the hand-off socket: connections in, load reports out."""

    def __init__(self, path: Path, index: int) -> None:
        self.channel = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.channel.connect(str(path))
        self.channel.setblocking(False)
        self.index = index

    def report(self, clients: int) -> None:
        with contextlib.suppress(BlockingIOError):
            self.channel.send(json.dumps({"worker": self.index, "clients": clients}).encode())

    def receive(self) -> list[socket.socket] | None:
        """Connections handed over (None: the supervisor is gone)."""
        try:
            message, fds, _flags, _address = socket.recv_fds(self.channel, 16, 16)
        except BlockingIOError:
            return []
        except OSError:
            return None
        if not message and not fds:
            return None
        return [socket.socket(fileno=fd) for fd in fds]

    def close(self) -> None:
        self.channel.close()
