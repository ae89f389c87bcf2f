"""Session recordings: every output kept while a session is in progress, and the list of them.

While the moderator has a session started, the node records each output as attendees
receive it, one WebM file per channel (see `streamer.recorder` for how), or a Matroska
file (``.mkv``) for the program when its video is H.264, which WebM cannot hold:

- ``program``: the program video with the floor audio;
- ``original``: the floor alone;
- one per event language (its code): the language channel, interpretation, switches,
  coughs and fallbacks included.

Layout: ``DATA_DIR/recordings/<session id>/<channel>.<part>.webm`` (or ``.mkv``), parts
numbered from 001. A node that restarts (or crashes) in the middle of a session starts the
next part when it is back; the parts of a session sort in the order they were recorded.

A write that fails (a full disk) stops that recording: the log says so and the studio
shows a ``recording_stopped`` alarm until the session ends. The live event goes on.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import av

from signaling.alarms import Alarm
from signaling.data_files import private_directory
from signaling.program import Event
from streamer import Recording

log = logging.getLogger(__name__)

RECORDINGS_DIR = "recordings"
PROGRAM = "program"
ORIGINAL = "original"
EXTENSION = ".webm"
#: ``<channel>.<part>.webm`` (``.mkv``: H.264 video): the channel is ``program``,
#: ``original`` or a language code.
_FILE_NAME = re.compile(r"^(?P<channel>[A-Za-z0-9-]+)\.(?P<part>\d{3,})\.(?:webm|mkv)$")
_SESSION_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class Recorder(Protocol):
    """What the session recordings need from the streamer (`streamer.Sfu.record`)."""

    def record(
        self,
        path: str | Path,
        audio: str,
        video: str | None = None,
        *,
        metadata: dict[str, str] | None = None,
        on_failure: Callable[[Recording, str], None] | None = None,
    ) -> Recording: ...


@dataclass(frozen=True)
class ChannelOutputs:
    """Which streamer outputs make one recorded channel."""

    channel: str
    audio: str
    video: str | None = None


def channel_outputs(
    event: Event, floor: str, program_video: str, channel_output: Callable[[str], str]
) -> list[ChannelOutputs]:
    """The recorded channels of an event, given the live service's output names."""
    return [
        ChannelOutputs(PROGRAM, floor, program_video),
        ChannelOutputs(ORIGINAL, floor),
        *(ChannelOutputs(code, channel_output(code)) for code in event.language_codes),
    ]


class RecordingError(Exception):
    """A listing that cannot be made (an unknown session); the message says why."""


@dataclass(frozen=True)
class RecordingInfo:
    """One recorded file, as `dragoman recordings --json` prints it."""

    session: str
    channel: str
    part: int
    #: Relative to the data directory.
    path: str
    started_at: str | None
    duration_s: float
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SessionRecordings:
    """Records every channel of the session in progress (`follow` is told which one)."""

    def __init__(
        self,
        recorder: Recorder,
        data_dir: Path,
        channels: Iterable[ChannelOutputs],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.recorder = recorder
        self.root = Path(data_dir) / RECORDINGS_DIR
        self.channels = list(channels)
        self.clock = clock
        self.session: str | None = None
        self.recordings: dict[str, Recording] = {}
        #: Channel -> (when it stopped, why), for the session in progress.
        self.failures: dict[str, tuple[float, str]] = {}

    def follow(self, session_id: str | None) -> None:
        """The session in progress is now `session_id` (None: none): start or stop."""
        if session_id == self.session:
            return
        self.stop()
        if session_id is None:
            return
        if not _SESSION_ID.match(session_id):
            log.error("not recording session %r: not a session id", session_id)
            return
        self.session = session_id
        self._start(session_id)

    def _start(self, session_id: str) -> None:
        directory = self.root / session_id
        try:
            private_directory(self.root.parent)  # the data directory, if this made it first
            directory.mkdir(parents=True, exist_ok=True)
            part = next_part(directory)
        except OSError as exc:
            for channel in self.channels:
                self._failed(channel.channel, f"cannot create {directory}: {exc.strerror}")
            return
        started_at = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="seconds")
        for channel in self.channels:
            path = directory / f"{channel.channel}.{part:03d}{EXTENSION}"
            metadata = {
                "creation_time": started_at,
                "title": f"{session_id} {channel.channel} part {part}",
            }
            try:
                self.recordings[channel.channel] = self.recorder.record(
                    path,
                    channel.audio,
                    channel.video,
                    metadata=metadata,
                    on_failure=lambda _rec, why, name=channel.channel: self._failed(name, why),
                )
            except Exception as exc:  # the streamer refused: this channel only is lost
                self._failed(channel.channel, str(exc))
        log.info(
            "recording session",
            extra={"session": session_id, "part": part, "channels": list(self.recordings)},
        )

    def _failed(self, channel: str, why: str) -> None:
        self.recordings.pop(channel, None)
        self.failures.setdefault(channel, (self.clock(), why))
        log.error(
            "recording stopped: %s",
            why,
            extra={"session": self.session, "channel": channel},
        )

    def stop(self) -> None:
        """Finish every file of the session in progress."""
        recordings, self.recordings = self.recordings, {}
        for recording in recordings.values():
            recording.close()
        if recordings:
            log.info("recording finished", extra={"session": self.session})
        self.session = None
        self.failures = {}

    def alarms(self, now: float) -> list[Alarm]:
        """One ``recording_stopped`` alarm per channel whose recording failed."""
        return [
            Alarm("recording_stopped", since=since, channel=channel)
            for channel, (since, _why) in sorted(self.failures.items())
        ]


def next_part(directory: Path) -> int:
    """The part number after the highest one already in `directory` (1 when empty)."""
    parts = [
        int(match["part"])
        for entry in directory.iterdir()
        if (match := _FILE_NAME.match(entry.name)) is not None
    ]
    return max(parts, default=0) + 1


def list_recordings(data_dir: Path, session: str | None = None) -> list[RecordingInfo]:
    """The recorded files, by session, part and channel (program, original, languages)."""
    root = Path(data_dir) / RECORDINGS_DIR
    if session is not None and not _SESSION_ID.match(session):
        raise RecordingError(f"{session!r} is not a session id (lowercase letters, digits, '-')")
    if not root.is_dir():
        sessions: list[Path] = []
    elif session is not None:
        sessions = [root / session] if (root / session).is_dir() else []
    else:
        sessions = sorted(entry for entry in root.iterdir() if entry.is_dir())
    if session is not None and not sessions:
        known = sorted(entry.name for entry in root.iterdir()) if root.is_dir() else []
        raise RecordingError(
            f"no recordings of session {session!r}"
            + (f" (recorded: {', '.join(known)})" if known else " (nothing is recorded yet)")
        )
    found: list[RecordingInfo] = []
    for directory in sessions:
        for entry in directory.iterdir():
            match = _FILE_NAME.match(entry.name)
            if match is None or not entry.is_file():
                continue
            started_at, duration = read_file_times(entry)
            found.append(
                RecordingInfo(
                    session=directory.name,
                    channel=match["channel"],
                    part=int(match["part"]),
                    path=str(entry.relative_to(data_dir)),
                    started_at=started_at,
                    duration_s=round(duration, 2),
                    bytes=entry.stat().st_size,
                )
            )
    order = {PROGRAM: 0, ORIGINAL: 1}
    found.sort(key=lambda r: (r.session, r.part, order.get(r.channel, 2), r.channel))
    return found


def recording_path(data_dir: Path, session: str, name: str) -> Path:
    """The file `name` of `session`'s recordings; RecordingError if there is none such
    (names are checked: nothing outside the recordings can be asked for)."""
    if not _SESSION_ID.match(session) or not _FILE_NAME.match(name):
        raise RecordingError(f"no recording {session!r}/{name!r}")
    path = Path(data_dir) / RECORDINGS_DIR / session / name
    if not path.is_file():
        raise RecordingError(f"no recording {session}/{name}")
    return path


def read_file_times(path: Path) -> tuple[str | None, float]:
    """When a file's recording started (its metadata) and how long it lasts, read from
    its packets: a file cut short by a crash has no duration in its header."""
    try:
        with av.open(str(path)) as container:
            started = container.metadata.get("creation_time") or container.metadata.get(
                "CREATION_TIME"
            )
            first: float | None = None
            end = 0.0
            for packet in container.demux():
                if packet.pts is None or packet.time_base is None:
                    continue
                start = float(packet.pts * packet.time_base)
                first = start if first is None else min(first, start)
                end = max(end, start + float((packet.duration or 0) * packet.time_base))
    except (OSError, av.FFmpegError):
        return None, 0.0
    return _iso(started), max(0.0, end - (first or 0.0))


def _iso(value: str | None) -> str | None:
    """Matroska dates come back as ``2026-11-27T08:00:00.000000Z``: keep seconds, UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return parsed.astimezone(UTC).isoformat(timespec="seconds")
