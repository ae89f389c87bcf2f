"""The durable live state of an event: which session runs and who is on air.

This is what must survive a restart of a node and be shared by every node: the current
session, the speaker on air, the language the moderator says he speaks when it is not the
program's, the interpreter on air in each booth and any direction an interpreter forced on
a bidirectional booth. Transient things (a cough in progress, who is
connected) are not here.

The state travels as JSON. Keys this version does not know are kept in `extra` and written
back unchanged, so a node running an older version never erases what a newer one added.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

# Fields added to LiveState must be added here too, or they would be read back twice.
_KNOWN = (
    "session_id",
    "on_air_speaker",
    "floor_language",
    "on_air_interpreter",
    "direction_override",
    "updated_at",
)


class LiveStateError(ValueError):
    """A serialised live state cannot be read back."""


@dataclass(slots=True)
class LiveState:
    """Who is on air for one event.

    `floor_language` is the language the speaker on air speaks when the moderator says it
    is not the one in the program (None: as in the program). `on_air_interpreter` maps a
    booth id to the id of the interpreter on air in it;
    `direction_override` maps a booth id to the language code the booth is forced to work
    into. `updated_at` is set by the store when the state is written (UTC).
    """

    session_id: str | None = None
    on_air_speaker: str | None = None
    floor_language: str | None = None
    on_air_interpreter: dict[str, str] = field(default_factory=dict)
    direction_override: dict[str, str] = field(default_factory=dict)
    updated_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def stamped(self, now: datetime | None = None) -> LiveState:
        """A copy with `updated_at` set to `now` (default: the current time, UTC)."""
        return replace(self, updated_at=(now or datetime.now(UTC)).astimezone(UTC))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.extra)
        data.update(
            session_id=self.session_id,
            on_air_speaker=self.on_air_speaker,
            floor_language=self.floor_language,
            on_air_interpreter=dict(self.on_air_interpreter),
            direction_override=dict(self.direction_override),
            updated_at=self.updated_at.isoformat() if self.updated_at else None,
        )
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> LiveState:
        """Read a state from its dict form; raises `LiveStateError` naming what is wrong."""
        if not isinstance(data, dict):
            raise LiveStateError(f"expected a JSON object, found {type(data).__name__}")
        return cls(
            session_id=_optional_str(data, "session_id"),
            on_air_speaker=_optional_str(data, "on_air_speaker"),
            floor_language=_optional_str(data, "floor_language"),
            on_air_interpreter=_str_map(data, "on_air_interpreter"),
            direction_override=_str_map(data, "direction_override"),
            updated_at=_optional_time(data, "updated_at"),
            extra={k: v for k, v in data.items() if k not in _KNOWN},
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> LiveState:
        """Read a state from JSON; raises `LiveStateError` naming what is wrong."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise LiveStateError(f"not valid JSON ({exc})") from None
        return cls.from_dict(data)


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise LiveStateError(f"{key}: expected text or null, found {type(value).__name__}")
    return value


def _str_map(data: dict[str, Any], key: str) -> dict[str, str]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise LiveStateError(f"{key}: expected an object mapping booth ids to text")
    return dict(value)


def _optional_time(data: dict[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise LiveStateError(f"{key}: expected an ISO 8601 time, found {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise LiveStateError(f"{key}: {value[:40]!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
