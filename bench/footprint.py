"""What a server process holds, read from outside it: for bench/abuse.py and bench/soak.py.

- resident memory (`VmRSS` of /proc/PID/status), open descriptors (/proc/PID/fd), of
  which UDP sockets (the descriptor's socket inode found in /proc/net/udp and udp6), and
  CPU-seconds (utime+stime of /proc/PID/stat);
- the tasks of its event loop, from the node's own `/metrics` (`dragoman_asyncio_tasks`;
  None when the node does not expose it).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from bench.node_link import proc_cpu

_TASKS = re.compile(r"^dragoman_asyncio_tasks (\S+)$", re.MULTILINE)


@dataclass
class Footprint:
    rss_mb: float
    fds: int
    udp_sockets: int
    tasks: int | None
    cpu_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _udp_inodes() -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if len(fields) > 9:
                        inodes.add(fields[9])
        except OSError:
            continue
    return inodes


def descriptors(pid: int) -> tuple[int, int]:
    """Open descriptors of `pid`, and how many of them are UDP sockets."""
    udp = _udp_inodes()
    total = udp_count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        total += 1
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in udp:
            udp_count += 1
    return total, udp_count


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def loop_tasks(session: aiohttp.ClientSession, url: str) -> int | None:
    """The node's event-loop tasks as its /metrics says; None if it does not say."""
    try:
        async with session.get(f"{url}/metrics", timeout=aiohttp.ClientTimeout(total=10)) as r:
            text = await r.text()
    except (aiohttp.ClientError, TimeoutError):
        return None
    match = _TASKS.search(text)
    return int(float(match.group(1))) if match else None


async def footprint(session: aiohttp.ClientSession, url: str, pid: int) -> Footprint:
    fds, udp = descriptors(pid)
    return Footprint(
        rss_mb=rss_mb(pid),
        fds=fds,
        udp_sockets=udp,
        tasks=await loop_tasks(session, url),
        cpu_s=proc_cpu(pid),
    )
