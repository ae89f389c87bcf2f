"""Prometheus metrics of one node, through `prometheus_client`.

Every application has its own `CollectorRegistry` (several nodes may run in one
process: workers, tests), with the process metrics (CPU, memory, open files, garbage
collection) in it. Parts of the node add their families to it: plain counters and
gauges kept as things happen (`prometheus_client.Counter`, `Gauge`), or `Readings`
(`registry.register(Readings(...))`),
numbers read at scrape time from counts another part already keeps. A reading must cost
the same whatever the number of attendees or registrations: it reads a kept number,
never walks a table or the list of connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# One series per counter, as before: `_created` timestamps would double every family.
prometheus_client.disable_created_metrics()

#: `generate_latest` writes the classic text format; every name here is plain ASCII, so
#: the newer version's escaping never applies.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[Mapping[str, str], float]
Read = Callable[[], float | Iterable[Sample]]


def node_registry() -> CollectorRegistry:
    """A registry for one node, with the process metrics already in it."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(
        Readings(
            "dragoman_asyncio_tasks",
            "Tasks of the node's event loop (pending or running).",
            _loop_tasks,
        )
    )
    return registry


def _loop_tasks() -> float:
    # The one reading that walks a collection: a task that outlives its owner is a leak
    # nothing else shows, and counting the loop's weak set of tasks costs microseconds a
    # thousand tasks, once a scrape.
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # read outside the node's loop: nothing to count
        return 0.0


class Readings(Collector):
    """A family read at scrape time: `read()` returns a number, or `(labels, value)`
    pairs with exactly `labels` as label names."""

    def __init__(
        self,
        name: str,
        documentation: str,
        read: Read,
        *,
        kind: str = "gauge",
        labels: Sequence[str] = (),
    ) -> None:
        if kind not in ("gauge", "counter"):
            raise ValueError(f"a reading is a gauge or a counter, not {kind!r}")
        self.name = name
        self.documentation = documentation
        self.read = read
        self.kind = kind
        self.labels = tuple(labels)

    def _family(self) -> GaugeMetricFamily | CounterMetricFamily:
        make = GaugeMetricFamily if self.kind == "gauge" else CounterMetricFamily
        return make(self.name, self.documentation, labels=self.labels)

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        result = self.read()
        if isinstance(result, int | float):
            family.add_metric([], float(result))
        else:
            for labels, value in result:
                if set(labels) != set(self.labels):
                    raise ValueError(
                        f"{self.name} takes labels {list(self.labels)}, got {sorted(labels)}"
                    )
                family.add_metric([str(labels[name]) for name in self.labels], float(value))
        yield family


def render(registry: CollectorRegistry) -> bytes:
    """What /metrics serves: the text exposition format."""
    return generate_latest(registry)
