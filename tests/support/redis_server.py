"""A real redis-server for the tests, on a free loopback port, in a temporary directory.

Fixtures:
  redis_server  (session) the running server: `.host`, `.port`, `.url(db=0)`, `.flushall()`
  redis_url     (function) the URL of a server emptied for this test

The server keeps nothing on disk (no snapshots, no append-only file) and is stopped at the
end of the session.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

START_TIMEOUT_S = 15.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server process owned by the test session."""

    def __init__(self, executable: str, directory: Path, *, durable: bool = False) -> None:
        self.executable = executable
        self.directory = directory
        #: Durable: every write in the append-only file before it is acknowledged, as an
        #: organizer runs Redis for several nodes (docker-compose.yml).
        self.durable = durable
        self.host = "127.0.0.1"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log = directory / "redis.log"

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def start(self, *, same_port: bool = False) -> None:
        """Start; ``same_port``: again on the port it had (a restart clients reconnect to)."""
        # Another process may take the port between our probe and the server's bind: retry.
        last_error = ""
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else [
            "--appendonly", "no"
        ]  # fmt: skip
        for _ in range(1 if same_port else 5):
            if not same_port:
                self.port = _free_port()
            self._process = subprocess.Popen(
                [
                    self.executable,
                    "--port", str(self.port),
                    "--bind", self.host,
                    "--dir", str(self.directory),
                    "--save", "",
                    *persistence,
                    "--daemonize", "no",
                    "--logfile", str(self._log),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            if self._wait_until_ready():
                return
            last_error = self._log.read_text(errors="replace")[-2000:] if self._log.exists() else ""
            self.stop()
        raise RuntimeError(f"redis-server did not start; its log ends with:\n{last_error}")

    def _wait_until_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def flushall(self) -> None:
        client = redis.Redis(host=self.host, port=self.port)
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail("redis-server is not installed (the README's test command installs it)")
    with tempfile.TemporaryDirectory(prefix="dragoman-redis-") as directory:
        server = RedisServer(executable, Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the session's Redis server, emptied before this test."""
    redis_server.flushall()
    return redis_server.url()
