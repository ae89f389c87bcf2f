"""A real Dragoman server for tests: the aiohttp application on a free loopback port.

Fixtures:
- `server`: a running server on the seed program, SQLite store and secret in a temp
  data directory. `server.url`, `server.settings`, `server.app`, `server.event`,
  `server.store`, `server.signer`.
- `start_server`: a factory, `await start_server(**options)`, for servers with other
  settings (`redis_url=...`, `event_file=...`; `tls_cert=`/`tls_key=` serve HTTPS and
  make `url` https), a store of your own (`store=`),
  registration limits (`registration_limits=`) or extensions (`extensions=[install]`,
  e.g. the live service). Every server started is stopped at teardown.
- `http`: an aiohttp `ClientSession` closed at teardown.
- `serve_process`: a factory starting `dragoman serve` as a separate process
  (`await serve_process(data_dir, *extra_args)`), for what only a real process shows
  (restarts, signals, what is printed). Stopped with SIGTERM at teardown.

Plain coroutine: `await dragoman(*args)` runs any other `dragoman` command as a process
and returns its exit status and output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from signaling.app import (
    EVENT_KEY,
    SIGNER_KEY,
    STORE_KEY,
    Extension,
    create_app,
    make_runner,
)
from signaling.program import Event
from signaling.registration import RegistrationLimits
from signaling.settings import Settings, load_settings
from signaling.store import Store
from signaling.tls import server_ssl_context
from signaling.tokens import TokenSigner

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30.0


#: Where test nodes gather their media candidates: the test peers and Chromium join them there.
LOOPBACK_MEDIA = ("127.0.0.1",)


SEED_PROGRAM = REPO_ROOT / "config" / "events" / "shared-historical-memory.yaml"


def program_with(tmp_path: Path, *, booths: Sequence[dict[str, Any]] = ()) -> Path:
    """The seed program with more booths (e.g. a sign booth), written under `tmp_path`."""
    data = yaml.safe_load(SEED_PROGRAM.read_text(encoding="utf-8"))
    data["booths"].extend(booths)
    path = tmp_path / "program.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for processes that must be told a port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    """A server started by `start_server`; `url` has no trailing slash."""

    url: str
    settings: Settings
    app: web.Application
    runner: web.AppRunner

    @property
    def event(self) -> Event:
        return self.app[EVENT_KEY]

    @property
    def store(self) -> Store:
        return self.app[STORE_KEY]

    @property
    def signer(self) -> TokenSigner:
        return self.app[SIGNER_KEY]

    async def stop(self) -> None:
        await self.runner.cleanup()


async def _start(
    data_dir: Path,
    *,
    event: Event | None = None,
    store: Store | None = None,
    registration_limits: RegistrationLimits | None = None,
    extensions: Sequence[Extension] | None = None,
    **settings: Any,
) -> RunningServer:
    # Bound before the settings are made so the public URL names the real port, and
    # handed to aiohttp as it is: no window in which another process could take it.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    settings.setdefault("data_dir", data_dir)
    # Test media stays on loopback (the node alone would gather on every other interface).
    settings.setdefault("rtc_addresses", list(LOOPBACK_MEDIA))
    resolved = load_settings(host="127.0.0.1", port=port, **settings)
    app = create_app(
        resolved,
        event=event,
        store=store,
        registration_limits=registration_limits,
        extensions=extensions,
    )
    ssl_context = server_ssl_context(resolved)
    runner = make_runner(app)
    await runner.setup()
    site = web.SockSite(runner, sock, ssl_context=ssl_context)
    await site.start()
    scheme = "https" if ssl_context is not None else "http"
    return RunningServer(
        url=f"{scheme}://127.0.0.1:{port}", settings=resolved, app=app, runner=runner
    )


StartServer = Callable[..., Awaitable[RunningServer]]


@contextlib.asynccontextmanager
async def servers_in(directory: Path) -> AsyncIterator[StartServer]:
    """`start_server`'s factory, its data directories under `directory`; every server
    started is stopped at the end."""
    started: list[RunningServer] = []
    counter = 0

    async def start(**options: Any) -> RunningServer:
        nonlocal counter
        counter += 1
        running = await _start(directory / f"server-{counter}", **options)
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in reversed(started):
            await running.stop()


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    async with servers_in(tmp_path) as start:
        yield start


@pytest.fixture
async def server(start_server: StartServer) -> RunningServer:
    return await start_server()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass
class ServeProcess:
    """`dragoman serve` (or `demo`) running as its own process."""

    data_dir: Path
    port: int
    args: tuple[str, ...]
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    stdout_lines: list[str] = field(default_factory=list)
    #: The command run: `serve`, or `demo` (which serves too, with simulated people).
    subcommand: str = "serve"
    startup_timeout_s: float = STARTUP_TIMEOUT_S
    stderr_path: Path | None = None
    _stderr: Any = None

    @property
    def url(self) -> str:
        tls = "--tls-cert" in self.args or "DRAGOMAN_TLS_CERT" in self.env
        return f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "signaling.cli",
            self.subcommand,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]

    async def start(self) -> None:
        """Start and return once the server answers /healthz; fails with its output if not."""
        self.stderr_path = self.data_dir.parent / f"serve-{self.port}.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.process = await asyncio.create_subprocess_exec(
            *self.command(),
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
            env=self.env,
            cwd=self.data_dir.parent,
        )
        try:
            await asyncio.wait_for(self._wait_ready(), self.startup_timeout_s)
        except (TimeoutError, RuntimeError) as exc:
            await self.stop()
            pytest.fail(f"dragoman {self.subcommand} did not start: {exc}\n{self.output()}")

    async def _wait_ready(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while True:
            line = await self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"exited with status {await self.process.wait()}")
            self.stdout_lines.append(line.decode("utf-8", "replace"))
            if line.startswith(b"Press Ctrl+C"):
                break
        # Tests serve TLS with self-signed certificates: readiness is not about trust.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session:
            async with session.get(f"{self.url}/healthz") as response:
                if response.status != 200:
                    raise RuntimeError(f"/healthz answered {response.status}")

    def output(self) -> str:
        stderr = self.stderr_path.read_text("utf-8", "replace") if self.stderr_path else ""
        return "stdout:\n" + "".join(self.stdout_lines) + "\nstderr:\n" + stderr

    async def stop(self) -> int | None:
        """SIGTERM, then wait for the process; returns its exit status."""
        status = None
        if self.process is not None:
            if self.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(signal.SIGTERM)
                try:
                    status = await asyncio.wait_for(self.process.wait(), 15)
                except TimeoutError:
                    self.process.kill()
                    status = await self.process.wait()
            else:
                status = self.process.returncode
            if self.process.stdout is not None:
                rest = await self.process.stdout.read()
                self.stdout_lines.append(rest.decode("utf-8", "replace"))
            self.process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return status


def dragoman_env(**extra: str) -> dict[str, str]:
    """The environment for a `dragoman` subprocess: this one without DRAGOMAN_* settings
    (the test says what it wants) but media on loopback, and the checkout importable."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DRAGOMAN_")}
    env["DRAGOMAN_RTC_ADDRESSES"] = ",".join(LOOPBACK_MEDIA)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if part
    )
    env.update(extra)
    return env


@dataclass
class CommandResult:
    """What a `dragoman` command run as a process printed, and its exit status."""

    status: int
    stdout: str
    stderr: str


async def dragoman(*args: str | Path, env: dict[str, str] | None = None) -> CommandResult:
    """Run `dragoman ARGS` as an organizer would, in its own process."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "signaling.cli",
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or dragoman_env(),
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return CommandResult(process.returncode, stdout.decode(), stderr.decode())


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


StartServeProcess = Callable[..., Awaitable[ServeProcess]]


@pytest.fixture
async def serve_process() -> AsyncIterator[StartServeProcess]:
    started: list[ServeProcess] = []

    async def start(
        data_dir: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None
    ) -> ServeProcess:
        _make_dir(data_dir)
        process = ServeProcess(
            data_dir=data_dir,
            port=port or free_port(),
            args=tuple(args),
            env=env or dragoman_env(),
        )
        started.append(process)
        await process.start()
        return process

    yield start
    # Together: each waits for its own graceful shutdown, which needs nothing of the others.
    # Every one is stopped before a failure to stop one is raised.
    stopped = await asyncio.gather(
        *(process.stop() for process in reversed(started)), return_exceptions=True
    )
    for outcome in stopped:
        if isinstance(outcome, BaseException):
            raise outcome
