"""Would batching a packet's copies into one system call make them cheaper to send?

The lever named for the per-subscriber cost (issue 7): put every subscriber on one UDP
socket (ICE multiplexed by address, a "single port" mode) so that all copies of a packet
leave in one `sendmmsg`. This measures the kernel side of that before anyone builds it:
N copies of one datagram, to N receiving sockets asleep in another process (as
subscribers are), sent three ways:

- `connected send`: a socket per subscriber, `connect()`ed, one `send` each: what
  Dragoman does (streamer/aiortc_internals.py, `SenderLink.send`);
- `one socket, sendto`: one socket, the address with each copy: what an SFU with one
  port per node does without batching (and what libnice does per socket);
- `one socket, sendmmsg`: one socket, every copy in one `sendmmsg` call (through
  ctypes: Python's socket module has no `sendmmsg`), the batched variant.

Each round sends one packet's copies and, with `--cold`, sweeps the CPU caches before
(bench/copy_cost.py explains why a server's copies run with cold caches). CPU is this
thread's time around the sends only; the median of `--rounds` rounds is printed per copy,
with each variant's ratio to `connected send` measured in the same run.

    python -m bench.send_batching                      # 50 receivers, cold caches
    python -m bench.send_batching --n 100 --size 100   # audio-sized datagrams
    python -m bench.send_batching --warm --json
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench.copy_cost import PAUSE_S, CacheSweep, receivers_asleep

VARIANTS = ("connected send", "one socket, sendto", "one socket, sendmmsg")


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


class _SockaddrIn(ctypes.Structure):
    _fields_ = [
        ("sin_family", ctypes.c_ushort),
        ("sin_port", ctypes.c_uint16),
        ("sin_addr", ctypes.c_uint32),
        ("sin_zero", ctypes.c_char * 8),
    ]


class BatchedSend:
    """One datagram to many IPv4 addresses from one socket, in `sendmmsg` calls."""

    def __init__(self, sock: socket.socket, addresses: list[tuple[str, int]]) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._sendmmsg = libc.sendmmsg
        self._fd = sock.fileno()
        self._count = len(addresses)
        self._names = (_SockaddrIn * self._count)()
        self._iovecs = (_Iovec * self._count)()
        self._messages = (_Mmsghdr * self._count)()
        self._buffer = ctypes.create_string_buffer(0)
        for i, (host, port) in enumerate(addresses):
            name = self._names[i]
            name.sin_family = socket.AF_INET
            name.sin_port = socket.htons(port)
            name.sin_addr = int.from_bytes(socket.inet_aton(host), "little")
            header = self._messages[i].msg_hdr
            header.msg_name = ctypes.addressof(name)
            header.msg_namelen = ctypes.sizeof(_SockaddrIn)
            header.msg_iov = ctypes.pointer(self._iovecs[i])
            header.msg_iovlen = 1

    def load(self, data: bytes) -> None:
        """The datagram every following `send` sends to every address."""
        self._buffer = ctypes.create_string_buffer(data, len(data))
        for iovec in self._iovecs:
            iovec.iov_base = ctypes.addressof(self._buffer)
            iovec.iov_len = len(data)

    def send(self) -> None:
        done = 0
        while done < self._count:
            offset = ctypes.byref(self._messages, done * ctypes.sizeof(_Mmsghdr))
            sent = self._sendmmsg(self._fd, offset, self._count - done, 0)
            if sent < 0:
                error = ctypes.get_errno()
                raise OSError(error, os.strerror(error))
            done += sent


@dataclass
class Bench:
    n: int
    size: int
    rounds: int
    #: MiB swept before each round (0: warm caches).
    sweep_mib: int


@contextmanager
def _receivers(n: int) -> Iterator[list[tuple[str, int]]]:
    """N receiving sockets drained by child processes; their addresses."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
        with receivers_asleep(sockets):
            yield [sock.getsockname() for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _senders(addresses: list[tuple[str, int]], data: bytes) -> dict[str, Callable[[], None]]:
    connected = []
    for address in addresses:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(address)
        connected.append(sock.send)
    one = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    one.bind(("127.0.0.1", 0))
    batched = BatchedSend(one, addresses)
    batched.load(data)

    def connected_send() -> None:
        for send in connected:
            send(data)

    def one_socket_sendto() -> None:
        for address in addresses:
            one.sendto(data, address)

    return dict(zip(VARIANTS, (connected_send, one_socket_sendto, batched.send), strict=True))


def run(bench: Bench) -> dict[str, object]:
    data = os.urandom(bench.size)
    sweep = CacheSweep(bench.sweep_mib) if bench.sweep_mib else None
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with _receivers(bench.n) as addresses:
        senders = _senders(addresses, data)
        for send in senders.values():
            send()  # warm-up: first use of each socket
        time.sleep(0.2)
        # Interleaved, so that the machine's moods fall on every variant alike.
        for _ in range(bench.rounds):
            for name, send in senders.items():
                if sweep is not None:
                    sweep.run()
                time.sleep(PAUSE_S)
                start = time.thread_time()
                send()
                samples[name].append((time.thread_time() - start) / bench.n * 1e6)
    per_copy = {name: round(statistics.median(values), 2) for name, values in samples.items()}
    base = per_copy["connected send"]
    return {
        "receivers": bench.n,
        "datagram_bytes": bench.size,
        "rounds": bench.rounds,
        "sweep_mib": bench.sweep_mib,
        "per_copy_us": per_copy,
        "vs_connected_send": {
            name: round(value / base, 2) if base else None for name, value in per_copy.items()
        },
    }


def table(result: dict[str, object]) -> str:
    per_copy = result["per_copy_us"]
    ratios = result["vs_connected_send"]
    assert isinstance(per_copy, dict) and isinstance(ratios, dict)
    caches = (
        f"caches swept ({result['sweep_mib']} MiB) before each round"
        if result["sweep_mib"]
        else "warm caches"
    )
    lines = [
        f"{result['receivers']} receivers asleep, {result['datagram_bytes']}-byte datagrams, "
        f"{caches}, median of {result['rounds']} rounds",
        "",
        "| variant | CPU us per copy | vs connected send |",
        "|---|---|---|",
    ]
    for name, value in per_copy.items():
        lines.append(f"| {name} | {value:.2f} | {ratios[name]:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50, help="receivers")
    parser.add_argument("--size", type=int, default=1116, help="datagram bytes (1116: video)")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--warm", action="store_true", help="no cache sweep between rounds")
    parser.add_argument("--sweep-mib", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    for name in ("n", "size", "rounds", "sweep_mib"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} is at least 1, not {getattr(args, name)}")
    if args.size > 65507:
        parser.error(f"--size is at most 65507 (a UDP datagram), not {args.size}")
    sweep_mib = 0 if args.warm else args.sweep_mib
    result = run(Bench(args.n, args.size, args.rounds, sweep_mib))
    print(json.dumps(result) if args.json else table(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
