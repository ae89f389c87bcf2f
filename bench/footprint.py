"""What a server process holds, read from outside it: for bench/abuse.py and bench/soak.py.

- resident memory (`VmRSS` of /proc/PID/status), open descriptors (/proc/PID/fd), of
  which UDP sockets (the descriptor's socket inode found in /proc/net/udp and udp6), and
  CPU-seconds (utime+stime of /proc/PID/stat);
- from the node's own `/metrics`: the tasks of its event loop (`dragoman_asyncio_tasks`;
  None when the node does not expose it), its publishers and subscribers, and the RTP
  packets forwarded into the French channel so far (is the media still flowing?), and the
  collections it ran to free departed peers and the time they took.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from bench.node_link import proc_cpu

_TASKS = re.compile(r"^dragoman_asyncio_tasks (\S+)$", re.MULTILINE)
_PUBLISHERS = re.compile(r"^dragoman_streamer_publishers (\S+)$", re.MULTILINE)
_SUBSCRIBERS = re.compile(r"^dragoman_streamer_subscribers (\S+)$", re.MULTILINE)
_COLLECTIONS = re.compile(r"^dragoman_streamer_departed_collections_total (\S+)$", re.MULTILINE)
_COLLECTION_S = re.compile(
    r"^dragoman_streamer_departed_collection_seconds_total (\S+)$", re.MULTILINE
)
_CHANNEL_PACKETS = re.compile(
    r'^dragoman_streamer_output_packets_total\{kind="audio",output="channel:fr"\} (\S+)$',
    re.MULTILINE,
)


@dataclass
class Footprint:
    rss_mb: float
    fds: int
    udp_sockets: int
    tasks: int | None
    cpu_s: float
    publishers: int | None = None
    subscribers: int | None = None
    channel_packets: int | None = None
    #: Collections the node ran to free departed peers, and the seconds they took.
    collections: int | None = None
    collection_s: float | None = None

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


async def node_metrics(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """What the node's /metrics says of its tasks and media; None for what it does not say."""
    try:
        async with session.get(f"{url}/metrics", timeout=aiohttp.ClientTimeout(total=10)) as r:
            text = await r.text()
    except (aiohttp.ClientError, TimeoutError):
        text = ""
    found: dict[str, Any] = {}
    for name, pattern in (
        ("tasks", _TASKS),
        ("publishers", _PUBLISHERS),
        ("subscribers", _SUBSCRIBERS),
        ("channel_packets", _CHANNEL_PACKETS),
        ("collections", _COLLECTIONS),
    ):
        match = pattern.search(text)
        found[name] = int(float(match.group(1))) if match else None
    match = _COLLECTION_S.search(text)
    found["collection_s"] = float(match.group(1)) if match else None
    return found


async def footprint(session: aiohttp.ClientSession, url: str, pid: int) -> Footprint:
    fds, udp = descriptors(pid)
    return Footprint(
        rss_mb=rss_mb(pid),
        fds=fds,
        udp_sockets=udp,
        cpu_s=proc_cpu(pid),
        **await node_metrics(session, url),
    )
