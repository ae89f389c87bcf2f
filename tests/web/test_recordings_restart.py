"""Recordings across a crash: a node killed mid-session keeps what it wrote up to its
last second, starts a new part when it is back, and `dragoman recordings` lists the
parts in order (as a table, or as JSON for scripts)."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signaling.secret import load_or_create_secret
from signaling.settings import load_settings
from signaling.tokens import Role, TokenSigner
from tests.signaling.conftest import WsClient
from tests.signaling.media_peers import RUSSIAN_SPEAKER, SPEAKER_HZ, publish
from tests.support.recordings import decode_audio
from tests.support.server import StartServeProcess, dragoman
from tests.support.tones import PatternVideoTrack, ToneTrack


async def client(http: aiohttp.ClientSession, url: str, token: str) -> WsClient:
    ws = WsClient(await http.ws_connect(f"{url}/ws"))
    await ws.send("auth", v=1, token=token)
    ws.welcome = await ws.next("welcome")
    await ws.next("state")
    return ws


async def test_a_crash_mid_session_keeps_the_recording_and_starts_a_new_part(
    serve_process: StartServeProcess, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    data_dir = tmp_path / "data"
    node = await serve_process(data_dir)
    signer = TokenSigner(load_or_create_secret(load_settings(data_dir=data_dir)))

    def issue(role: Role, subject: str, **scope: Any) -> str:
        return signer.issue(role, subject=subject, ttl=timedelta(hours=1), **scope)

    opened: list[Any] = []
    try:
        moderator = await client(http, node.url, issue(Role.MODERATOR, "moderator"))
        speaker = await client(
            http, node.url, issue(Role.SPEAKER, RUSSIAN_SPEAKER, speaker=RUSSIAN_SPEAKER)
        )
        opened += [moderator, speaker]
        opened.append(await publish(speaker, ToneTrack(SPEAKER_HZ), PatternVideoTrack()))
        await moderator.state_where(lambda s: RUSSIAN_SPEAKER in s["publishers"]["speakers"])
        await moderator.send("start_session", session_id="plenary")
        await moderator.send("put_on_air", speaker_id=RUSSIAN_SPEAKER)
        await moderator.state_where(lambda s: s["session"] == "plenary")
        await asyncio.sleep(4.0)
        assert node.process is not None
        node.process.send_signal(signal.SIGKILL)  # no cleanup, no trailer
        await node.process.wait()
    finally:
        for item in reversed(opened):
            await item.close()

    again = await serve_process(data_dir, port=node.port)
    await asyncio.sleep(2.0)
    assert await again.stop() == 0

    # Three listings that only read the data directory: run together.
    listed, table, unknown = await asyncio.gather(
        dragoman("recordings", "--json", "--data-dir", data_dir),
        dragoman("recordings", "--session", "plenary", "--data-dir", data_dir),
        dragoman("recordings", "--session", "closing", "--data-dir", data_dir),
    )
    assert listed.status == 0, listed.stderr
    rows = json.loads(listed.stdout)
    order = [(row["part"], row["channel"]) for row in rows]
    assert order == [
        (1, "program"),
        (1, "original"),
        (1, "fr"),
        (1, "ru"),
        (2, "program"),
        (2, "original"),
        (2, "fr"),
        (2, "ru"),
    ]
    for row in rows:
        assert set(row) >= {"session", "channel", "path", "started_at", "duration_s", "bytes"}
        assert row["session"] == "plenary"
        assert (data_dir / row["path"]).stat().st_size == row["bytes"]
    first = {row["channel"]: row for row in rows if row["part"] == 1}
    second = {row["channel"]: row for row in rows if row["part"] == 2}
    # At most the last second or so of the 4 s before the crash is lost.
    assert first["original"]["duration_s"] > 2.5, first["original"]
    assert second["original"]["started_at"] >= first["original"]["started_at"]
    assert second["original"]["duration_s"] == pytest.approx(2.0, abs=1.0)
    sound = decode_audio(data_dir / first["original"]["path"])
    assert sound.tone(0.5, 2.0) == pytest.approx(SPEAKER_HZ, abs=25)

    assert table.status == 0
    assert "recordings/plenary/original.002.webm" in table.stdout
    assert unknown.status == 1
    assert "no recordings of session 'closing' (recorded: plenary)" in unknown.stderr
