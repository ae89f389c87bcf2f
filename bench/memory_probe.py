"""Where a benchmarked node's memory is, asked from outside: `dragoman serve` started through
this module answers SIGUSR1 by appending one JSON line to the file named by
`SOAK_MEMORY_PROBE` (for bench/soak.py's `--memory-probe`).

    python -m bench.memory_probe serve --port ...      # the same arguments as signaling.cli

Each line says, besides the time:

- `heap_in_use_mb`, `heap_free_mb`, `mmapped_mb`: glibc's `mallinfo2()` (every arena):
  bytes malloc has handed out and not got back, bytes it holds free inside its heaps, and
  bytes in blocks mapped on their own. Resident memory that grows while the first stays flat
  and the second grows is the allocator holding freed memory (fragmentation), not a leak;
  both flat with resident memory growing is native memory outside malloc;
- `arenas`: how many malloc arenas exist (one per thread that allocated, up to
  `MALLOC_ARENA_MAX`), read from `malloc_info()`;
- `python_traced_mb`: Python's own allocations when tracemalloc runs (`PYTHONTRACEMALLOC=1`
  in the node's environment), else null; with tracemalloc, `top_growth` lists the source
  lines whose allocations grew most since the first probe;
- `objects`: the count of gc-tracked objects, and `types`, the twenty types with most.

Nothing here is imported by the node itself: the probe lives in the bench, the node runs
unchanged.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import gc
import json
import os
import re
import signal
import sys
import tempfile
import time
import tracemalloc
from types import FrameType
from typing import Any

PROBE_ENV = "SOAK_MEMORY_PROBE"
#: Set (to anything): each probe also collects garbage and trims malloc's heaps, and says
#: what resident memory was after each (an experiment: it changes what it measures).
TRIM_ENV = "SOAK_MEMORY_PROBE_TRIM"
#: Set: each probe also lists what the cycle collector finds (unreachable objects that
#: reference counting could not free), by type, and frees it (changes what it measures).
GARBAGE_ENV = "SOAK_MEMORY_PROBE_GARBAGE"
MB = 1024 * 1024


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


_LIBC = _libc()


def malloc_figures() -> dict[str, Any]:
    """glibc's view of the heap; empty when this is not glibc."""
    if _LIBC is None or not hasattr(_LIBC, "mallinfo2"):
        return {}
    _LIBC.mallinfo2.restype = _Mallinfo2
    info = _LIBC.mallinfo2()
    figures: dict[str, Any] = {
        "heap_in_use_mb": round(info.uordblks / MB, 2),
        "heap_free_mb": round(info.fordblks / MB, 2),
        "heap_top_free_mb": round(info.keepcost / MB, 2),
        "mmapped_mb": round(info.hblkhd / MB, 2),
    }
    if hasattr(_LIBC, "malloc_info") and hasattr(_LIBC, "fopen"):
        # malloc_info writes XML to a FILE*: one <heap nr=...> per arena.
        with tempfile.NamedTemporaryFile("r", suffix=".xml") as out:
            _LIBC.fopen.restype = ctypes.c_void_p
            _LIBC.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
            _LIBC.fclose.argtypes = [ctypes.c_void_p]
            _LIBC.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
            stream = _LIBC.fopen(out.name.encode(), b"w")
            if stream:
                _LIBC.malloc_info(0, stream)
                _LIBC.fclose(stream)
                figures["arenas"] = len(re.findall(r"<heap nr=", out.read()))
    return figures


def pymalloc_figures() -> dict[str, Any]:
    """Python's small-object allocator (its 256 kB arenas are mapped apart from malloc's
    heap): arenas held, and bytes in the blocks in use, from `sys._debugmallocstats`."""
    with tempfile.TemporaryFile("w+") as out:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read()
    figures: dict[str, Any] = {}
    for key, pattern in (
        ("pymalloc_arenas", r"# arenas allocated current\s*=\s*([\d,]+)"),
        ("pymalloc_used_mb", r"# bytes in allocated blocks\s*=\s*([\d,]+)"),
    ):
        match = re.search(pattern, text)
        if match:
            value = int(match.group(1).replace(",", ""))
            figures[key] = value if key.endswith("arenas") else round(value / MB, 2)
    size = re.search(r"arenas \* ([\d,]+) bytes/arena", text)
    if "pymalloc_arenas" in figures and size:
        arena = int(size.group(1).replace(",", ""))
        figures["pymalloc_arenas_mb"] = round(figures["pymalloc_arenas"] * arena / MB, 2)
    return figures


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Probe:
    def __init__(self, path: str) -> None:
        self.path = path
        self.first: tracemalloc.Snapshot | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
        line: dict[str, Any] = {
            "at": time.monotonic(),
            "rss_mb": round(rss_mb(), 1),
            **malloc_figures(),
            **pymalloc_figures(),
            "python_traced_mb": None,
            "objects": sum(counts.values()),
            "types": dict(counts.most_common(20)),
            "threads": len(os.listdir("/proc/self/task")),
        }
        if tracemalloc.is_tracing():
            line["python_traced_mb"] = round(tracemalloc.get_traced_memory()[0] / MB, 2)
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            if self.first is None:
                self.first = snapshot
            else:
                line["top_growth"] = [
                    f"{stat.traceback[0].filename}:{stat.traceback[0].lineno} "
                    f"{stat.size_diff / 1024:+.0f} kB {stat.count_diff:+d}"
                    for stat in snapshot.compare_to(self.first, "lineno")[:15]
                ]
        if os.environ.get(GARBAGE_ENV):
            # What only the cycle collector would free: kept aside, counted, let go.
            gc.set_debug(gc.DEBUG_SAVEALL)
            started = time.perf_counter()
            gc.collect()
            line["collect_ms"] = round(1000 * (time.perf_counter() - started), 1)
            garbage = collections.Counter(
                f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
            )
            # Saved objects keep their cycles: once let go, a collection without
            # DEBUG_SAVEALL frees them for good.
            gc.set_debug(0)
            gc.garbage.clear()
            gc.collect()
            line["garbage_objects"] = sum(garbage.values())
            line["garbage_types"] = dict(garbage.most_common(60))
        if os.environ.get(TRIM_ENV) and _LIBC is not None:
            # What could be given back: collect the cycles, then hand malloc's free pages
            # back to the system, and read the resident memory again.
            gc.collect()
            line["rss_after_collect_mb"] = round(rss_mb(), 1)
            _LIBC.malloc_trim(0)
            line["rss_after_trim_mb"] = round(rss_mb(), 1)
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")


def main() -> int:
    path = os.environ.get(PROBE_ENV)
    if path:
        signal.signal(signal.SIGUSR1, Probe(path))
    from signaling.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
