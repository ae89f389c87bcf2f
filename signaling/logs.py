"""Logging for a Dragoman node: structured when collected, readable when watched.

One JSON object per line when stderr is not a terminal (a container, a service
manager, a log shipper), a short human format on a terminal. Tokens and secrets
never reach a log line: every message and every access log line passes through
`redact`, which masks `token=` values, bearer credentials and anything that
looks like a signed token.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from signaling.client_address import client_address

_TOKEN_QUERY = re.compile(r"(?i)((?:^|[?&;\s\"'])(?:token|secret|password)=)[^&\s\"';]+")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_SECRET_FIELD = re.compile(r"(?i)(\"(?:token|secret|password)\"\s*:\s*\")[^\"]*")
REDACTED = "[redacted]"

# Attributes every LogRecord has; anything else was passed with `extra=` and
# belongs in the JSON object.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def redact(text: str) -> str:
    """Mask credentials in a log message or a request line."""
    text = _TOKEN_QUERY.sub(rf"\1{REDACTED}", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    return _SECRET_FIELD.sub(rf"\1{REDACTED}", text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = _redact_value(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`HH:MM:SS level logger: message key=value…` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        time = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extras = " ".join(
            f"{key}={_redact_value(value)}"
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRS and not key.startswith("_")
        )
        line = f"{time} {record.levelname.lower():7} {record.name}: {redact(record.getMessage())}"
        if extras:
            line = f"{line} {extras}"
        if record.exc_info:
            line = f"{line}\n{redact(self.formatException(record.exc_info))}"
        return line


_OTHER_KINDS = ("other kinds",)


@dataclass
class _Window:
    started: float
    passed: int = 0
    suppressed: int = 0
    level: int = logging.WARNING
    logger: str = ""
    template: str = ""


class RepeatLimit(logging.Filter):
    """Lets the first `burst` records of a kind through per `interval_s`, then counts the
    rest and says so in one line ("532 similar messages suppressed in the last 10 s: …").

    A kind is a logger, a level and a message template (its text before the arguments
    are put in, so "refused a malformed request from %s" is one kind whatever the
    address), and for the access log the status. What a client can make the node write
    as often as it likes is limited: every warning and error (a refused request, a
    failed command, a traceback), and access log lines of refused requests (status 400
    and above). Access log lines of served requests are all kept.

    The count of a window is reported when a later record arrives after the window
    ended (any record: a node logs its requests), so no task or timer is needed.
    Every record suppressed is also counted in `suppressed_total` (the process's, for
    /metrics: a flood shows there at once, not when its window ends).
    """

    #: Records suppressed by every limiter of this process since it started.
    suppressed_total = 0

    def __init__(
        self,
        emit: Callable[[logging.LogRecord], object],
        *,
        burst: int = 10,
        interval_s: float = 10.0,
        max_kinds: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._emit = emit
        self.burst = burst
        self.interval_s = interval_s
        self._max_kinds = max_kinds
        self._clock = clock
        self._windows: dict[tuple[object, ...], _Window] = {}
        self._next_sweep = 0.0
        # Records come from the event loop and from the store's worker thread.
        self._lock = threading.Lock()

    @staticmethod
    def _kind(record: logging.LogRecord) -> tuple[object, ...] | None:
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        if record.levelno >= logging.WARNING:
            return (record.name, record.levelno, template)
        status = getattr(record, "status", None)
        if record.name == "aiohttp.access" and isinstance(status, int) and status >= 400:
            return (record.name, record.levelno, template, status)
        return None

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_repeat_summary", False):
            return True
        kind = self._kind(record)
        now = self._clock()
        summaries: list[logging.LogRecord] = []
        with self._lock:
            if now >= self._next_sweep:
                self._next_sweep = now + 1.0
                summaries = self._sweep(now)
            allowed = kind is None or self._count(kind, record, now, summaries)
        for summary in summaries:
            self._emit(summary)
        return allowed

    def _count(
        self,
        kind: tuple[object, ...],
        record: logging.LogRecord,
        now: float,
        summaries: list[logging.LogRecord],
    ) -> bool:
        template = redact(str(record.msg))[:200]
        if kind not in self._windows and len(self._windows) >= self._max_kinds:
            # Bounded memory whatever the variety of messages: the rest share one count.
            kind = _OTHER_KINDS
            template = "messages of other kinds"
        window = self._windows.get(kind)
        if window is None or now - window.started >= self.interval_s:
            if window is not None and window.suppressed:
                summaries.append(self._summary(window))
            window = _Window(
                started=now,
                level=record.levelno,
                logger=record.name,
                template=template,
            )
            self._windows[kind] = window
        return self._pass(window)

    def _pass(self, window: _Window) -> bool:
        if window.passed < self.burst:
            window.passed += 1
            return True
        window.suppressed += 1
        RepeatLimit.suppressed_total += 1
        return False

    def _sweep(self, now: float) -> list[logging.LogRecord]:
        summaries = []
        for kind, window in list(self._windows.items()):
            if now - window.started >= self.interval_s:
                if window.suppressed:
                    summaries.append(self._summary(window))
                del self._windows[kind]
        return summaries

    def _summary(self, window: _Window) -> logging.LogRecord:
        record = logging.LogRecord(
            window.logger,
            max(window.level, logging.WARNING),
            __file__,
            0,
            "%d similar messages suppressed in the last %g s: %s",
            (window.suppressed, self.interval_s, window.template),
            None,
        )
        record._repeat_summary = True
        record.suppressed = window.suppressed
        return record


def suppressed_lines() -> int:
    """Log records this process has suppressed so far (`RepeatLimit`)."""
    return RepeatLimit.suppressed_total


def configure_logging(
    log_format: str = "auto",
    level: int | str = logging.INFO,
    stream: TextIO | None = None,
    *,
    repeat_interval_s: float = 10.0,
) -> None:
    """Install the node's single log handler on the root logger.

    `log_format` is "json", "text" or "auto" (JSON unless `stream` is a terminal). What
    clients can trigger at will is limited by `RepeatLimit`, per `repeat_interval_s`.
    """
    stream = stream if stream is not None else sys.stderr
    fmt = (log_format or "auto").lower()
    if fmt not in ("auto", "json", "text"):
        raise ValueError(f"log format must be auto, json or text, not {log_format!r}")
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RepeatLimit(handler.handle, interval_s=repeat_interval_s))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # aioice writes each ICE check's state change at INFO: several lines for every
    # attendee joining, a flood in a join wave. A connection lost is logged by the
    # streamer (publisher/subscriber "lost its connection"); aioice's warnings stay,
    # and at DEBUG it says everything again.
    quiet = root.level > logging.DEBUG
    logging.getLogger("aioice").setLevel(logging.WARNING if quiet else logging.NOTSET)


class AccessLogger(AbstractAccessLogger):
    """aiohttp access log with the query string's credentials masked, and the client
    address a trusted proxy forwarded (`signaling.client_address`)."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s",
            request.method,
            redact(request.path_qs),
            response.status,
            extra={
                "remote": client_address(request),
                "status": response.status,
                "duration_ms": round(time * 1000, 1),
            },
        )
