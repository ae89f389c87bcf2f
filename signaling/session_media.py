"""What a node makes of a session besides the live streams: its recordings.

`install_session_media(app)` is the application extension (after `install_live`): it
makes the `SessionRecordings` follow the session the moderator starts and ends, adds
its alarm to the studio's, and serves the moderator the list of recordings
(``GET /api/recordings``) and the files (``GET /recordings/<session>/<file>``), both
with the moderator's token in ``?token=``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from signaling.appkeys import EVENT_KEY, SETTINGS_KEY, SIGNER_KEY
from signaling.http_api import ApiError, json_response
from signaling.live.outputs import PROGRAM_VIDEO, channel_output
from signaling.recordings import (
    RecordingError,
    SessionRecordings,
    channel_outputs,
    list_recordings,
    recording_path,
)
from signaling.routing_rule import FLOOR
from signaling.tokens import Role, TokenError
from signaling.websocket import LIVE_KEY, SFU_KEY

log = logging.getLogger(__name__)

RECORDINGS_KEY = web.AppKey("session_recordings", SessionRecordings)


def install_session_media(app: web.Application) -> None:
    if LIVE_KEY not in app:
        return
    settings = app[SETTINGS_KEY]
    live = app[LIVE_KEY]
    recordings = SessionRecordings(
        app[SFU_KEY],
        settings.data_dir,
        channel_outputs(app[EVENT_KEY], FLOOR, PROGRAM_VIDEO, channel_output),
    )
    app[RECORDINGS_KEY] = recordings
    live.session_hooks.append(recordings.follow)
    live.alarm_sources.append(recordings.alarms)
    app.cleanup_ctx.append(_recordings_context)
    app.router.add_get("/api/recordings", get_recordings, name="api-recordings")
    app.router.add_get("/recordings/{session}/{file}", get_recording_file, name="recording-file")


async def _recordings_context(app: web.Application) -> AsyncIterator[None]:
    yield
    # Before the streamer closes: files get their trailer; a new part starts next time.
    app[RECORDINGS_KEY].stop()


async def _moderator(request: web.Request) -> None:
    token = request.query.get("token")
    try:
        claims = request.app[SIGNER_KEY].verify(token)
    except TokenError as exc:
        raise ApiError(401, "bad_token", str(exc)) from None
    if claims.role is not Role.MODERATOR:
        raise ApiError(403, "moderator_only", "only the moderator's link opens the recordings")
    # A revoked studio link opens nothing, here as on the live connection.
    withdrawn = await request.app[LIVE_KEY].links.refusal(claims)
    if withdrawn is not None:
        raise ApiError(401, withdrawn.code, str(withdrawn))


async def get_recordings(request: web.Request) -> web.Response:
    await _moderator(request)
    session = request.query.get("session")
    data_dir = request.app[SETTINGS_KEY].data_dir
    try:
        # Durations are read from the files' packets (PyAV blocks): off the event loop.
        found = await asyncio.to_thread(list_recordings, data_dir, session)
    except RecordingError as exc:
        raise ApiError(404, "no_recordings", str(exc), field="session") from None
    return json_response({"recordings": [info.as_dict() for info in found]})


async def get_recording_file(request: web.Request) -> web.StreamResponse:
    try:
        await _moderator(request)
    except ApiError as exc:
        raise web.HTTPForbidden(text=exc.text) from None
    session = request.match_info["session"]
    name = request.match_info["file"]
    try:
        path = recording_path(request.app[SETTINGS_KEY].data_dir, session, name)
    except RecordingError as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    headers = {
        "Content-Disposition": f'attachment; filename="{session}-{name}"',
        "Cache-Control": "private, no-store",
    }
    if path.suffix == ".mkv":
        # An H.264 program; not every system's MIME table knows Matroska.
        headers["Content-Type"] = "video/x-matroska"
    return web.FileResponse(path, headers=headers)
