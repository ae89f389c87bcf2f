"""Prometheus metrics for one node, rendered in the text exposition format.

A deliberately small registry (counters, gauges, and gauges read at scrape time
from a callback) so every part of the node can publish numbers without a
dependency: the HTTP layer counts requests and registrations, the live service
and the streamer can add their own through `MetricsRegistry.gauge_callback`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LabelValues = tuple[str, ...]
Sample = tuple[Mapping[str, str], float]


class MetricsError(ValueError):
    """A metric was declared or used in a way the exposition format cannot express."""


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _format_labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape_label_value(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


@dataclass
class _Family:
    name: str
    help: str
    kind: str
    label_names: tuple[str, ...]
    values: dict[LabelValues, float] = field(default_factory=dict)

    def _key(self, labels: Mapping[str, str]) -> LabelValues:
        if set(labels) != set(self.label_names):
            raise MetricsError(
                f"{self.name} takes labels {list(self.label_names)}, got {sorted(labels)}"
            )
        return tuple(str(labels[n]) for n in self.label_names)

    def samples(self) -> Iterable[Sample]:
        for key, value in sorted(self.values.items()):
            yield dict(zip(self.label_names, key, strict=True)), value


class Counter(_Family):
    """A number that only goes up (requests served, registrations made)."""

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise MetricsError(f"{self.name} is a counter: it cannot decrease")
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self.values.get(self._key(labels), 0.0)


class Gauge(_Family):
    """A number that goes up and down (connected clients, open peer connections)."""

    def set(self, value: float, **labels: str) -> None:
        self.values[self._key(labels)] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)

    def value(self, **labels: str) -> float:
        return self.values.get(self._key(labels), 0.0)


@dataclass
class _CallbackGauge:
    name: str
    help: str
    read: Callable[[], float | Iterable[Sample]]
    kind: str = "gauge"

    def samples(self) -> Iterable[Sample]:
        result = self.read()
        if isinstance(result, int | float):
            return [({}, float(result))]
        return list(result)


class MetricsRegistry:
    """Every metric family of one node; `render()` is what /metrics serves."""

    def __init__(self) -> None:
        self._families: dict[str, _Family | _CallbackGauge] = {}

    def _check_new(self, name: str, label_names: Iterable[str]) -> tuple[str, ...]:
        if not _NAME.match(name):
            raise MetricsError(f"{name!r} is not a valid Prometheus metric name")
        if name in self._families:
            raise MetricsError(f"metric {name!r} is already registered")
        names = tuple(label_names)
        for label in names:
            if not _LABEL.match(label) or label.startswith("__"):
                raise MetricsError(f"{label!r} is not a valid Prometheus label name")
        return names

    def counter(self, name: str, help: str, labels: Iterable[str] = ()) -> Counter:
        metric = Counter(name, help, "counter", self._check_new(name, labels))
        self._families[name] = metric
        return metric

    def gauge(self, name: str, help: str, labels: Iterable[str] = ()) -> Gauge:
        metric = Gauge(name, help, "gauge", self._check_new(name, labels))
        self._families[name] = metric
        return metric

    def gauge_callback(
        self, name: str, help: str, read: Callable[[], float | Iterable[Sample]]
    ) -> None:
        """Register a gauge computed at scrape time.

        `read` returns a number, or an iterable of `(labels, value)` pairs for a
        labelled family; it must be cheap and must not block (it runs on the
        event loop while /metrics is served).
        """
        self._check_new(name, ())
        self._families[name] = _CallbackGauge(name, help, read)

    def counter_callback(
        self, name: str, help: str, read: Callable[[], float | Iterable[Sample]]
    ) -> None:
        """Like `gauge_callback`, for numbers that only grow (counters kept elsewhere,
        such as the streamer's packet counts)."""
        self._check_new(name, ())
        self._families[name] = _CallbackGauge(name, help, read, kind="counter")

    def get(self, name: str) -> _Family | _CallbackGauge:
        return self._families[name]

    def render(self) -> str:
        lines: list[str] = []
        for name in sorted(self._families):
            family = self._families[name]
            kind = family.kind
            lines.append(f"# HELP {name} {_escape_help(family.help)}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(
                f"{name}{_format_labels(labels)} {_format_value(value)}"
                for labels, value in family.samples()
            )
        return "\n".join(lines) + "\n"


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
