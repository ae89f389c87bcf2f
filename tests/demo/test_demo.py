"""`dragoman demo`, run as a newcomer runs it: what an attendee gets from its link.

The demo is started as its own process (the command, its printed links); the test then
is an attendee: it opens the printed link's WebSocket, receives media over WebRTC,
chooses French, and tells *whose* voice the French channel carries by the rhythm of
the sound (the envelope of a voice is its own: syllables, words, pauses), compared
with the voices the demo's script gives the interpreter and the speaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from signaling.demo import Script
from signaling.demo.media import SAMPLE_RATE, Voice
from signaling.program import load_program
from tests.signaling.conftest import WsClient
from tests.signaling.media_peers import Subscription
from tests.support.server import REPO_ROOT, SEED_PROGRAM, dragoman, dragoman_env, free_port

STARTUP_S = 90.0
LISTEN_S = 3.0
#: Envelope windows: 10 ms, finer than a syllable, coarser than a codec's delay.
WINDOW = SAMPLE_RATE // 100

pytestmark = pytest.mark.timeout(240)


def envelope(samples: np.ndarray) -> np.ndarray:
    usable = len(samples) // WINDOW * WINDOW
    frames = samples[:usable].astype(np.float64).reshape(-1, WINDOW)
    return np.sqrt((frames**2).mean(axis=1))


def likeness(heard: np.ndarray, voice: Voice) -> float:
    """How well what was heard matches the voice at its best alignment (Pearson r of
    the envelopes; the voice loops, so every offset of the loop is tried)."""
    probe = envelope(heard)
    loop = envelope(voice.samples)
    looped = np.concatenate([loop, loop[: len(probe)]])
    probe = (probe - probe.mean()) / (probe.std() or 1.0)
    best = -1.0
    for offset in range(len(loop)):
        segment = looped[offset : offset + len(probe)]
        spread = segment.std()
        if spread == 0:
            continue
        best = max(best, float(np.mean(probe * (segment - segment.mean()) / spread)))
    return best


class DemoProcess:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.lines: list[str] = []
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> str:
        """Start `dragoman demo`; the attendee link it prints."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "signaling.cli",
            "demo",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--turn-seconds",
            "40",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dragoman_env(),
            cwd=REPO_ROOT,
        )
        assert self.process.stdout is not None
        link = None
        async with asyncio.timeout(STARTUP_S):
            while True:
                line = (await self.process.stdout.readline()).decode("utf-8", "replace")
                if not line:
                    pytest.fail("dragoman demo exited:\n" + "".join(self.lines))
                self.lines.append(line)
                if "/watch?token=" in line and link is None:
                    link = line.strip()
                if line.startswith("Press Ctrl+C"):
                    break
        assert link is not None, "".join(self.lines)
        self._drain = asyncio.get_running_loop().create_task(self._read_rest())
        return link

    async def _read_rest(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(line.decode("utf-8", "replace"))

    async def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
        try:
            status = await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            status = await self.process.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._drain, 5)
        return status


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[DemoProcess]:
    process = DemoProcess(tmp_path / "demo-data")
    yield process
    await process.stop()


async def test_the_french_channel_carries_the_interpreter_while_a_russian_speaker_is_on_air(
    demo: DemoProcess,
) -> None:
    link = await demo.start()
    assert re.match(rf"http://127\.0\.0\.1:{demo.port}/watch\?token=\S+$", link), link
    printed = "".join(demo.lines)
    assert "/studio?token=" in printed and "/booth?token=" in printed, printed

    script = Script.of(load_program(SEED_PROGRAM))
    russian = next(s for s in script.turns if s.language == "ru")
    interpreter = await script.interpreter_voice(0, russian, "fr")
    speaker = await script.speaker_voice(russian)

    token = link.split("token=", 1)[1]
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"ws://127.0.0.1:{demo.port}/ws")
        attendee = WsClient(ws)
        await attendee.send("auth", v=1, token=token)
        await attendee.next("welcome")
        subscription = await Subscription.open(attendee)
        try:
            await attendee.send("select_channel", language="fr")

            def interpreted(state: dict) -> bool:
                booth = state["booths"][0]
                return (
                    (state["on_air"] or {}).get("speaker") == russian.id
                    and state["channels"]["fr"]["kind"] == "interpreter"
                    and not booth["coughing"]
                    and state["you"]["channel"] == "fr"
                )

            # A window counts when the state said the same before and after it (the
            # demo's cough silences the channel for a few seconds of the turn).
            heard = None
            for _ in range(8):
                await attendee.state_where(interpreted, within=60)
                samples = await subscription.audio["channel"].wait_for_samples(LISTEN_S, within=30)
                if interpreted(attendee.state or {}):
                    heard = samples
                    break
            assert heard is not None, "the French channel never carried the interpreter"
            assert envelope(heard).max() > 300, "the French channel is silent"
            as_interpreter = likeness(heard, interpreter)
            as_speaker = likeness(heard, speaker)
            assert as_interpreter > 0.6, (as_interpreter, as_speaker)
            assert as_interpreter > as_speaker + 0.25, (as_interpreter, as_speaker)
        finally:
            await subscription.close()
            await ws.close()
    assert await demo.stop() == 0, "".join(demo.lines)


async def test_a_turn_too_short_for_a_cough_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    result = await dragoman("demo", "--turn-seconds", "2", "--data-dir", tmp_path / "d")
    assert result.status == 1
    assert "--turn-seconds must be at least 6" in result.stderr
