"""HLS delivery: the session's outputs for audiences of any size, behind any HTTP cache.

While a session is in progress the node publishes an HLS presentation:

- ``GET /hls/index.m3u8``: the master playlist. The program video is the variant; each
  event language is an ``EXT-X-MEDIA:TYPE=AUDIO`` rendition (``LANGUAGE="fr"``,
  ``NAME="Français"``), and so is the original (the floor), the ``DEFAULT`` one: what
  the room hears. Every rendition is ``AUTOSELECT`` (a player may pick its user's
  language).
- ``GET /hls/<run>/<file>``: media playlists, init segments, fMP4 segments and their
  parts of one packaging run (a run per session start: names never come back with
  other content, so segments and parts are immutable).

Low-latency HLS: media playlists list ~0.5 s parts and a preload hint for the next one,
and can block. A playlist request with ``_HLS_msn=M`` (and ``_HLS_part=P``) is held
until the playlist holds segment M (part P of it), at most three target durations
(then 503); a number more than two past the last complete segment is 400 at once, as
the specification asks. A request for the hinted part waits for it the same way. Audio
playlists end with rendition reports of the other languages.
Waiting requests are counted: past `MAX_WAITING` the node answers 503 at once rather
than hold more.

Packaging (streamer/hls.py: AAC once per audio output; the video's H.264 remuxed, or
VP8 encoded once)
starts with the first request of a session and stops when nobody has asked for
`IDLE_S` seconds or the session ends: a node whose audience all uses WebRTC spends
nothing on it.

Access: the attendee's token (``?token=``, any valid link) is required and carried into
every URI of the playlists, unless ``DRAGOMAN_HLS_PUBLIC`` is set: then nothing is
asked and the cache headers let a CDN keep segments for good and playlists for a
second.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from signaling.appkeys import EVENT_KEY, SETTINGS_KEY, SIGNER_KEY
from signaling.data_files import private_directory
from signaling.live.outputs import PROGRAM_VIDEO, channel_output
from signaling.program import Event
from signaling.routing_rule import FLOOR
from signaling.tokens import TokenError
from signaling.websocket import LIVE_KEY, SFU_KEY
from streamer import HlsPackager, Sfu

log = logging.getLogger(__name__)

HLS_DIR = "hls"
SEGMENT_S = 2.0
#: Packaging stops after this long without a request.
IDLE_S = 60.0
#: How long the first request of a run waits for the first segments.
READY_WITHIN_S = 8.0
PROGRAM = "program"
ORIGINAL = "original"
ORIGINAL_NAME = "Original"
AAC_CODEC = "mp4a.40.2"
AAC_BANDWIDTH = 70_000
VIDEO_BANDWIDTH = 900_000

_RUN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
#: A blocking request waits at most this many target durations (the specification's).
BLOCK_TARGETS = 3
#: Requests held waiting at once, the node over: past it, 503 at once.
MAX_WAITING = 2000

_FILE = re.compile(
    r"^(?P<name>[A-Za-z0-9-]+)(?P<kind>\.m3u8|_init\.mp4|"
    r"_(?P<msn>\d{5,})(?:\.(?P<part>\d+))?\.m4s)$"
)
_COUNT = re.compile(r"^\d{1,9}$")
_CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    "_init.mp4": "video/mp4",
    ".m4s": "video/iso.segment",
}


class NotLive(Exception):
    """No session is in progress: there is nothing to watch."""


class TooManyWaiting(Exception):
    """So many requests are held already that one more is refused."""


class HlsDelivery:
    """The HLS presentation of the session in progress, packaged while it is watched."""

    def __init__(
        self,
        sfu: Sfu,
        event: Event,
        data_dir: Path,
        *,
        segment_s: float = SEGMENT_S,
        idle_s: float = IDLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sfu = sfu
        self.event = event
        self.root = Path(data_dir) / HLS_DIR
        self.segment_s = segment_s
        self.idle_s = idle_s
        self.clock = clock
        self.session: str | None = None
        self.run: str | None = None
        self.packager: HlsPackager | None = None
        self.last_request = 0.0
        #: The longest a blocking request is held, and how many may be at once.
        self.block_s = BLOCK_TARGETS * max(1, math.ceil(segment_s))
        self.max_waiting = MAX_WAITING
        self.waiting = 0
        self._starting: asyncio.Lock = asyncio.Lock()
        self._runs = 0
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the session -----------------------------------------------------------------

    def follow(self, session_id: str | None) -> None:
        """The session in progress is `session_id` (None: none)."""
        if session_id != self.session:
            self.session = session_id
            self._stop()

    def _stop(self) -> None:
        packager, self.packager = self.packager, None
        if packager is not None:
            packager.close()  # the worker finishes the playlists by itself
            log.info("HLS packaging stopped", extra={"run": self.run})

    async def presentation(self) -> tuple[str, HlsPackager]:
        """The run being packaged now, started if need be; NotLive without a session."""
        self.last_request = self.clock()
        if self.session is None:
            raise NotLive("nothing is live now: the stream starts with the next session")
        async with self._starting:
            if self.packager is None or self.packager.problem is not None:
                self._start(self.session)
            assert self.packager is not None and self.run is not None
            packager, run = self.packager, self.run
            deadline = self.clock() + READY_WITHIN_S
            # The segments are files another thread writes: looked at, not awaited.
            while not packager.ready() and self.clock() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        # The wait for the first segments is no time without viewers.
        self.last_request = self.clock()
        return run, packager

    def _start(self, session: str) -> None:
        self._stop()
        self._runs += 1
        run = f"{session}-{int(time.time())}-{self._runs}"
        directory = self.root / run
        languages = self.event.language_codes
        self._loop = asyncio.get_running_loop()
        self.packager = self.sfu.package_hls(
            directory,
            (PROGRAM, PROGRAM_VIDEO),
            [(ORIGINAL, FLOOR), *((code, channel_output(code)) for code in languages)],
            segment_s=self.segment_s,
        )
        self.packager.on_publish = self._published
        self.run = run
        log.info("HLS packaging started", extra={"run": run})
        for old in self.root.iterdir():
            if old.is_dir() and old.name != run:
                shutil.rmtree(old, ignore_errors=True)

    # -- blocking requests ---------------------------------------------------------------

    def _published(self, name: str) -> None:
        # Called from the packager's thread.
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def until(self, ready: Callable[[], bool], within: float) -> bool:
        """Wait, at most `within` seconds, for a playlist to show what `ready` wants;
        TooManyWaiting when `max_waiting` requests wait already."""
        if ready():
            return True
        if self.waiting >= self.max_waiting:
            raise TooManyWaiting("too many viewers are waiting for the next part: retry")
        self.waiting += 1
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + within
            while not ready():
                left = deadline - loop.time()
                if left <= 0:
                    return False
                changed = self._changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), left)
            return True
        finally:
            self.waiting -= 1

    def _passed(self, packager: HlsPackager, name: str, msn: int, part: int | None) -> bool:
        """Whether playlist `name` holds segment `msn` (part `part` of it, when given), or
        will hold nothing more."""
        if packager is not self.packager:
            return True  # stopped: its playlists are final
        progress = packager.progress(name)
        if progress is None:
            return False
        current, parts = progress
        return msn < current or (part is not None and msn == current and part < parts)

    async def block_playlist(self, run: str, name: str, msn: int, part: int | None) -> None:
        """Hold a playlist request until it can be answered (LL-HLS blocking reload)."""
        packager = self.packager
        if run != self.run or packager is None:
            return  # a finished run: its playlists hold all there will be
        progress = packager.progress(name)
        if progress is None:
            return  # no such playlist: answered as one
        if msn > progress[0] + 1:
            raise web.HTTPBadRequest(
                text=f"_HLS_msn={msn} is too far ahead: the playlist is at segment "
                f"{progress[0]}, and a request may only wait for the next",
                headers={"Cache-Control": "no-store"},
            )
        ready = functools.partial(self._passed, packager, name, msn, part)
        if not await self.until(ready, self.block_s):
            raise web.HTTPServiceUnavailable(
                text=f"segment {msn} of {name} did not come in time",
                headers={"Cache-Control": "no-store", "Retry-After": "1"},
            )

    async def block_part(self, run: str, name: str, msn: int, part: int) -> None:
        """Hold a request for the part a preload hint names until it is written."""
        packager = self.packager
        if run != self.run or packager is None:
            return
        progress = packager.progress(name)
        if progress is None or (msn, part) not in (progress, (progress[0] + 1, 0)):
            return  # not the next part: there or not, it is answered at once
        ready = functools.partial(self._passed, packager, name, msn, part)
        await self.until(ready, self.block_s)

    def with_rendition_reports(self, name: str, playlist: str) -> str:
        """An audio playlist, with where each other audio rendition is (its last part):
        a player switching language at the live edge asks for the right part at once."""
        packager = self.packager
        audio = [ORIGINAL, *self.event.language_codes]
        if packager is None or name not in audio or "#EXT-X-ENDLIST" in playlist:
            return playlist
        reports = []
        for other in audio:
            last = packager.last_part(other) if other != name else None
            if last is not None:
                reports.append(
                    f'#EXT-X-RENDITION-REPORT:URI="{other}.m3u8",'
                    f"LAST-MSN={last[0]},LAST-PART={last[1]}"
                )
        return playlist.rstrip("\n") + "\n" + "".join(r + "\n" for r in reports)

    async def watch_idle(self) -> None:
        """Stop packaging when nobody has asked for it lately (the owner cancels this)."""
        while True:
            await asyncio.sleep(min(5.0, self.idle_s / 2))
            idle = self.clock() - self.last_request > self.idle_s
            if self.packager is not None and idle and not self._starting.locked():
                self._stop()

    async def close(self) -> None:
        """Stop packaging and wait for the playlists to be finished."""
        packager = self.packager
        self._stop()
        if packager is not None:
            await asyncio.to_thread(packager.join, 10)

    # -- playlists ---------------------------------------------------------------------

    def master(self, run: str, packager: HlsPackager, token: str | None) -> str:
        """The master playlist of `run`, every URI carrying `token` when given."""
        query = f"?token={quote(token, safe='')}" if token else ""
        # No EXT-X-INDEPENDENT-SEGMENTS here: in a master playlist it would speak for every
        # media playlist, and a video playlist whose source sent no keyframe in time drops
        # it (streamer/cmaf.py); each media playlist says it for itself.
        lines = ["#EXTM3U", "#EXT-X-VERSION:7"]
        renditions = [(ORIGINAL, None, ORIGINAL_NAME, True)] + [
            (language.code, language.code, language.name, False)
            for language in self.event.languages
        ]
        for name, language, label, default in renditions:
            attributes = [
                "TYPE=AUDIO",
                'GROUP-ID="audio"',
                *([f'LANGUAGE="{language}"'] if language else []),
                f'NAME="{_quoted(label)}"',
                f"DEFAULT={'YES' if default else 'NO'}",
                "AUTOSELECT=YES",
                'CHANNELS="1"',
                f'URI="{run}/{name}.m3u8{query}"',
            ]
            lines.append("#EXT-X-MEDIA:" + ",".join(attributes))
        video_codec = packager.video_codec or "avc1.42c01f"
        size = packager.size
        stream = [
            f"BANDWIDTH={VIDEO_BANDWIDTH + AAC_BANDWIDTH}",
            f'CODECS="{video_codec},{AAC_CODEC}"',
            *([f"RESOLUTION={size[0]}x{size[1]}"] if size else []),
            'AUDIO="audio"',
        ]
        lines.append("#EXT-X-STREAM-INF:" + ",".join(stream))
        lines.append(f"{run}/{PROGRAM}.m3u8{query}")
        return "\n".join(lines) + "\n"


HLS_KEY = web.AppKey("hls_delivery", HlsDelivery)


def _quoted(text: str) -> str:
    # A quoted-string in a playlist may hold neither a double quote nor a line break.
    return text.replace('"', "'").replace("\n", " ").replace("\r", " ")


#: Tags whose URI attribute names a file of the run.
_URI_TAGS = ("#EXT-X-MAP:", "#EXT-X-PART:", "#EXT-X-PRELOAD-HINT:", "#EXT-X-RENDITION-REPORT:")


def with_token(playlist: str, token: str) -> str:
    """A media playlist whose segment, part, hint and init URIs carry the viewer's token."""
    query = f"?token={quote(token, safe='')}"
    out = []
    for line in playlist.splitlines():
        if line and not line.startswith("#"):
            line += query
        elif line.startswith(_URI_TAGS):
            line = re.sub(r'URI="([^"]+)"', lambda m: f'URI="{m[1]}{query}"', line)
        out.append(line)
    return "\n".join(out) + "\n"


# --- HTTP -------------------------------------------------------------------------------


def _cache_control(public: bool, playlist: bool) -> str:
    if not public:
        # The URL carries the viewer's token: nothing of it is stored, not even privately.
        return "no-store"
    if playlist:
        # Half a segment: a cache absorbs the polling of every viewer, nobody lags.
        return "public, max-age=1"
    return "public, max-age=31536000, immutable"


def _token(request: web.Request) -> str | None:
    """The viewer's token, checked (None when HLS is public); 401/403 otherwise."""
    if request.app[SETTINGS_KEY].hls_public:
        return None
    token = request.query.get("token")
    if not token:
        raise web.HTTPUnauthorized(
            text="this stream needs your personal link's token (?token=...)",
            headers={"Cache-Control": "no-store"},
        )
    try:
        request.app[SIGNER_KEY].verify(token)
    except TokenError as exc:
        raise web.HTTPForbidden(text=str(exc), headers={"Cache-Control": "no-store"}) from None
    return token


def _count(request: web.Request, key: str) -> int | None:
    value = request.query.get(key)
    if value is None:
        return None
    if not _COUNT.match(value):
        raise web.HTTPBadRequest(
            text=f"{key} must be a whole number, not {value[:20]!r}",
            headers={"Cache-Control": "no-store"},
        )
    return int(value)


def _not_found(text: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=text, headers={"Cache-Control": "no-store"})


async def get_master(request: web.Request) -> web.Response:
    token = _token(request)
    delivery = request.app[HLS_KEY]
    try:
        run, packager = await delivery.presentation()
    except NotLive as exc:
        raise _not_found(str(exc)) from None
    public = request.app[SETTINGS_KEY].hls_public
    return web.Response(
        text=delivery.master(run, packager, token),
        content_type="application/vnd.apple.mpegurl",
        headers={
            "Cache-Control": _cache_control(public, playlist=True),
            **({"Access-Control-Allow-Origin": "*"} if public else {}),
        },
    )


async def get_file(request: web.Request) -> web.StreamResponse:
    token = _token(request)
    delivery = request.app[HLS_KEY]
    run = request.match_info["run"]
    name = request.match_info["file"]
    match = _FILE.match(name)
    if not _RUN.match(run) or match is None:
        raise _not_found(f"no HLS file {run}/{name}")
    path = delivery.root / run / name
    playlist = match["kind"] == ".m3u8"
    if playlist and run == delivery.run:
        delivery.last_request = delivery.clock()
    public = request.app[SETTINGS_KEY].hls_public
    headers = {
        "Cache-Control": _cache_control(public, playlist=playlist),
        **({"Access-Control-Allow-Origin": "*"} if public else {}),
    }
    kind = next(suffix for suffix in _CONTENT_TYPES if match["kind"].endswith(suffix))
    try:
        if playlist:
            msn, part = _count(request, "_HLS_msn"), _count(request, "_HLS_part")
            if part is not None and msn is None:
                raise web.HTTPBadRequest(
                    text="_HLS_part needs _HLS_msn", headers={"Cache-Control": "no-store"}
                )
            if msn is not None:
                await delivery.block_playlist(run, match["name"], msn, part)
        elif match["part"] is not None and not path.is_file():
            await delivery.block_part(run, match["name"], int(match["msn"]), int(match["part"]))
    except TooManyWaiting as exc:
        raise web.HTTPServiceUnavailable(
            text=str(exc), headers={"Cache-Control": "no-store", "Retry-After": "1"}
        ) from None
    if playlist:
        try:
            text = await asyncio.to_thread(path.read_text, "utf-8")
        except OSError:
            raise _not_found(f"no HLS playlist {run}/{name}") from None
        if run == delivery.run:
            text = delivery.with_rendition_reports(match["name"], text)
        return web.Response(
            text=with_token(text, token) if token else text,
            content_type=_CONTENT_TYPES[kind],
            headers=headers,
        )
    if not path.is_file():
        raise _not_found(f"no HLS segment {run}/{name} (it may have left the playlist)")
    return web.FileResponse(path, headers={**headers, "Content-Type": _CONTENT_TYPES[kind]})


async def get_delivery(request: web.Request) -> web.Response:
    """How /watch should receive the event (``DRAGOMAN_DELIVERY``), where HLS is, and how
    long WebRTC has to connect before the page falls back to it."""
    settings = request.app[SETTINGS_KEY]
    return web.json_response(
        {
            "delivery": settings.delivery,
            "hls": "/hls/index.m3u8",
            "hls_public": settings.hls_public,
            "webrtc_fallback_s": settings.webrtc_fallback_s,
        }
    )


def install_hls(app: web.Application) -> None:
    """The HLS routes and the delivery following the session (after `install_live`)."""
    if LIVE_KEY not in app:
        return
    settings = app[SETTINGS_KEY]
    delivery = HlsDelivery(app[SFU_KEY], app[EVENT_KEY], settings.data_dir)
    app[HLS_KEY] = delivery
    app[LIVE_KEY].session_hooks.append(delivery.follow)
    app.cleanup_ctx.append(_hls_context)
    app.router.add_get("/hls/index.m3u8", get_master, name="hls-master")
    app.router.add_get("/hls/{run}/{file}", get_file, name="hls-file")
    app.router.add_get("/api/delivery", get_delivery, name="api-delivery")


async def _hls_context(app: web.Application) -> AsyncIterator[None]:
    delivery = app[HLS_KEY]
    # What an earlier run of the node left is of no use to anyone.
    await asyncio.to_thread(shutil.rmtree, delivery.root, True)
    private_directory(delivery.root.parent)  # the data directory, if this made it first
    delivery.root.mkdir(parents=True, exist_ok=True)
    idle = asyncio.get_running_loop().create_task(delivery.watch_idle())
    try:
        yield
    finally:
        idle.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await idle
        await delivery.close()
