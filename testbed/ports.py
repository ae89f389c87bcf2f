"""UDP port ranges for tests and benchmarks that give a node (or a TURN server) a range of
its own."""

from __future__ import annotations

import random
import socket

# Below Linux's ephemeral ports (32768-60999), which port-0 binds anywhere on the
# machine take: a range there is only contended by tests choosing ranges too.
_LOW, _HIGH = 20000, 32000


def free_udp_range(size: int, addresses: tuple[str, ...] = ("127.0.0.1",)) -> tuple[int, int]:
    """`size` consecutive UDP ports, free on every one of `addresses` right now."""
    for _ in range(100):
        first = random.randrange(_LOW, _HIGH - size)
        held: list[socket.socket] = []
        try:
            for port in range(first, first + size):
                for address in addresses:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    held.append(sock)
                    sock.bind((address, port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return first, first + size - 1
    raise RuntimeError(f"no {size} consecutive free UDP ports found between {_LOW} and {_HIGH}")
