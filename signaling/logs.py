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


def configure_logging(
    log_format: str = "auto", level: int | str = logging.INFO, stream: TextIO | None = None
) -> None:
    """Install the node's single log handler on the root logger.

    `log_format` is "json", "text" or "auto" (JSON unless `stream` is a terminal).
    """
    stream = stream if stream is not None else sys.stderr
    fmt = (log_format or "auto").lower()
    if fmt not in ("auto", "json", "text"):
        raise ValueError(f"log format must be auto, json or text, not {log_format!r}")
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)


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
