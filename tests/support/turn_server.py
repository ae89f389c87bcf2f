"""A real TURN server (Debian's coturn) for the tests, on loopback only.

Fixtures:
  turn_server  (session) the running server: `.urls`, `.port`, `.secret`, `.relay_ports`

It authenticates by the TURN REST API scheme (`use-auth-secret`) with a secret made
for this test session, reads no configuration file (`-n`), listens and relays on
127.0.0.1 only, allows loopback peers (the test nodes are there) and refuses every other
peer address, so nothing it relays can leave the machine. No TLS, DTLS or CLI
listener. Stopped at the end of the session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_udp_range

START_TIMEOUT_S = 15.0
REALM = "dragoman.test"
#: Every IPv4 peer outside 127.0.0.0/8. (No IPv6 range: coturn would match 127.0.0.1 in
#: "::-ffff:...", and with an IPv4 relay address only it cannot relay to IPv6 anyway.)
_DENIED_PEERS = ("0.0.0.0-126.255.255.255", "128.0.0.0-255.255.255.255")


def _stun_binding_answered(port: int) -> bool:
    """True if a STUN Binding request to 127.0.0.1:port gets a success response."""
    transaction = os.urandom(12)
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.sendto(request, ("127.0.0.1", port))
        try:
            response = sock.recv(2048)
        except OSError:
            return False
    return response[:2] == b"\x01\x01" and response[8:20] == transaction


def _free_tcp_and_udp_port() -> int:
    for _ in range(50):
        (port, _) = free_udp_range(1)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for both TCP and UDP on 127.0.0.1")


class TurnServer:
    """One coturn process owned by the test session."""

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.secret = secrets.token_urlsafe(32)
        self.port = 0
        self.relay_ports = (0, 0)
        self._process: subprocess.Popen[bytes] | None = None
        self._log = directory / "turnserver.log"

    def login(self, tag: str = "test", ttl_s: int = 600) -> tuple[str, str]:
        """A username and credential this server accepts (for tests of the media plane,
        which knows nothing of `signaling.turn_credentials`)."""
        username = f"{int(time.time()) + ttl_s}:{tag}"
        digest = hmac.new(self.secret.encode(), username.encode(), hashlib.sha1).digest()
        return username, base64.b64encode(digest).decode("ascii")

    @property
    def urls(self) -> list[str]:
        return [
            f"turn:127.0.0.1:{self.port}?transport=udp",
            f"turn:127.0.0.1:{self.port}?transport=tcp",
        ]

    def command(self) -> list[str]:
        return [
            self.executable,
            "-n",  # no configuration file: nothing from /etc
            f"--listening-port={self.port}",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--min-port={self.relay_ports[0]}",
            f"--max-port={self.relay_ports[1]}",
            "--allow-loopback-peers",
            *(f"--denied-peer-ip={peers}" for peers in _DENIED_PEERS),
            "--no-multicast-peers",
            "--no-tcp-relay",
            "--use-auth-secret",
            f"--static-auth-secret={self.secret}",
            f"--realm={REALM}",
            "--fingerprint",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--no-rfc5780",
            f"--userdb={self.directory / 'turndb'}",
            f"--pidfile={self.directory / 'turnserver.pid'}",
            f"--log-file={self._log}",
            "--simple-log",
            "--no-stdout-log",
        ]

    def start(self) -> None:
        # Another process may take a port between our probe and the server's bind: retry.
        for _ in range(5):
            self.port = _free_tcp_and_udp_port()
            self.relay_ports = free_udp_range(40)
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            if self._wait_until_ready():
                return
            self.stop()
        raise RuntimeError(f"turnserver did not start; its log ends with:\n{self.log()[-2000:]}")

    def log(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def _wait_until_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if _stun_binding_answered(self.port):
                return True
            time.sleep(0.05)
        return False

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
def turn_server() -> Iterator[TurnServer]:
    executable = shutil.which("turnserver")
    if executable is None:
        pytest.fail("turnserver is not installed (Debian package 'coturn')")
    with tempfile.TemporaryDirectory(prefix="dragoman-turn-") as directory:
        server = TurnServer(executable, Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()
