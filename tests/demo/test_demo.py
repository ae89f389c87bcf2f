"""`dragoman demo`, run as a newcomer runs it: what an attendee gets from its link.

The demo is started as its own process (the command, its printed links); the test then
is an attendee: it opens the printed link's WebSocket, receives media over WebRTC,
chooses French, and tells *whose* voice the French channel carries by the rhythm of
the sound (the envelope of a voice is its own: syllables, words, pauses), compared
with the voices the demo's script gives the interpreter and the speaker.
"""

from __future__ import annotations

import re
import socket
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
from tests.support.server import SEED_PROGRAM, ServeProcess, dragoman, dragoman_env, free_port

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


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[ServeProcess]:
    process = ServeProcess(
        data_dir=tmp_path / "demo-data",
        port=free_port(),
        args=("--turn-seconds", "40"),
        env=dragoman_env(),
        subcommand="demo",
        startup_timeout_s=STARTUP_S,
    )
    yield process
    await process.stop()


async def test_the_french_channel_carries_the_interpreter_while_a_russian_speaker_is_on_air(
    demo: ServeProcess,
) -> None:
    await demo.start()
    printed = "".join(demo.stdout_lines)
    links = re.findall(rf"http://127\.0\.0\.1:{demo.port}/(\w+)\?token=(\S+)", printed)
    assert [page for page, _ in links] == ["watch", "studio", "booth"], printed
    token = links[0][1]

    script = Script.of(load_program(SEED_PROGRAM))
    russian = next(s for s in script.turns if s.language == "ru")
    interpreter = await script.interpreter_voice(0, russian, "fr")
    speaker = await script.speaker_voice(russian)

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
    assert await demo.stop() == 0, demo.output()


async def test_a_turn_too_short_for_a_cough_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    result = await dragoman("demo", "--turn-seconds", "2", "--data-dir", tmp_path / "d")
    assert result.status == 1
    assert "--turn-seconds must be at least 6" in result.stderr


async def test_a_busy_port_is_refused_with_its_number(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await dragoman("demo", "--port", str(port), "--data-dir", tmp_path / "d")
    assert result.status == 1, result
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
