"""A session on a node that prefers H.264 (DRAGOMAN_VIDEO_CODEC=h264): the speaker's
aiortc sends H.264, the program is recorded as Matroska (``program.001.mkv``, WebM
cannot hold H.264) from the forwarded access units, and it is listed, downloaded and
printed by ``dragoman recordings --json`` like any other part."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import av
import pytest

from signaling.recordings import list_recordings
from signaling.session_media import install_session_media
from signaling.tokens import Role
from signaling.websocket import install_live
from tests.signaling.conftest import Connect, token
from tests.signaling.media_peers import SPEAKER_HZ, on_air_setup
from tests.support.recordings import decode_audio
from tests.support.server import RunningServer, StartServer, dragoman


@pytest.fixture
async def live_server(start_server: StartServer) -> RunningServer:
    return await start_server(extensions=[install_live, install_session_media], video_codec="h264")


async def test_an_h264_program_is_recorded_as_matroska_and_listed(
    connect: Connect, peers: list[Any], live_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    moderator, _speaker, _interpreter = await on_air_setup(connect, peers)
    await asyncio.sleep(4.0)
    await moderator.send("end_session")
    await moderator.state_where(lambda s: s["session"] is None)

    data_dir = live_server.settings.data_dir
    found = {info.channel: info for info in list_recordings(data_dir, "plenary")}
    assert found["program"].path == "recordings/plenary/program.001.mkv"
    assert found["fr"].path == "recordings/plenary/fr.001.webm"  # sound only: WebM
    program = data_dir / found["program"].path
    with av.open(str(program)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        frames = list(container.decode(video=0))
    assert len(frames) > 30
    assert decode_audio(program).tone(1.0, 3.0) == pytest.approx(SPEAKER_HZ, abs=25)

    moderator_token = token(live_server, Role.MODERATOR)
    async with http.get(
        f"{live_server.url}/recordings/plenary/program.001.mkv", params={"token": moderator_token}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "video/x-matroska"
        assert await response.read() == program.read_bytes()

    listed = await dragoman("recordings", "--json", "--data-dir", data_dir)
    assert listed.status == 0, listed.stderr
    rows = {row["channel"]: row for row in json.loads(listed.stdout)}
    assert rows["program"]["path"] == "recordings/plenary/program.001.mkv"
    assert rows["program"]["duration_s"] > 3.0
