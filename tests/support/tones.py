"""Test tones: sine-wave audio tracks and WAVs, and telling which tone was heard.

A publisher sends a `ToneTrack` (say 1000 Hz); a subscriber's decoded audio
goes into a `ToneRecorder`; `dominant_frequency` says what it heard. Also a
small `PatternVideoTrack` for video tests (a tiny frame keeps encoding cheap).
"""

from __future__ import annotations

import asyncio
import math
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame

from signaling.demo.media import PacedTrack, audio_frame

SAMPLE_RATE = 48000
FRAME_SECONDS = 0.02
FRAME_SAMPLES = int(SAMPLE_RATE * FRAME_SECONDS)


def sine(frequency: float, samples: int, start: int = 0, amplitude: float = 0.5) -> np.ndarray:
    """`samples` int16 samples of a sine wave, continuing from sample `start`."""
    n = np.arange(start, start + samples)
    return (amplitude * 32767 * np.sin(2 * math.pi * frequency * n / SAMPLE_RATE)).astype(np.int16)


def write_tone_wav(path: Path, frequency: float, seconds: float, amplitude: float = 0.5) -> Path:
    """A mono 48 kHz 16-bit WAV of a sine tone (for browsers' fake audio capture);
    amplitude 0 makes a microphone that hears nothing."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(sine(frequency, int(seconds * SAMPLE_RATE), 0, amplitude).tobytes())
    return path


def dominant_frequency(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """The frequency (Hz) with the most energy in a mono signal."""
    signal = samples.astype(np.float64)
    signal -= signal.mean()
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    spectrum[0] = 0.0
    return float(np.fft.rfftfreq(len(signal), 1.0 / sample_rate)[int(np.argmax(spectrum))])


class ToneTrack(PacedTrack):
    """Live audio: a continuous sine tone, paced in real time, 20 ms frames."""

    kind = "audio"

    def __init__(self, frequency: float, amplitude: float = 0.5) -> None:
        super().__init__(SAMPLE_RATE / FRAME_SAMPLES)
        self.frequency = frequency
        #: May be changed while the track plays (0: the interpreter has gone silent).
        self.amplitude = amplitude

    async def recv(self) -> AudioFrame:
        index = await self.next_frame()
        return audio_frame(
            sine(self.frequency, FRAME_SAMPLES, index * FRAME_SAMPLES, self.amplitude), index
        )


class PatternVideoTrack(VideoStreamTrack):
    """Live video: small frames whose brightness changes each frame, 30 fps."""

    def __init__(self, width: int = 160, height: int = 120) -> None:
        super().__init__()
        self.width = width
        self.height = height
        self._count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        self._count += 1
        image = np.full((self.height, self.width, 3), (self._count * 7) % 256, dtype=np.uint8)
        image[:, : self.width // 2, 1] = 200
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = pts
        frame.time_base = time_base
        return frame


class ToneRecorder:
    """Reads a received audio track and keeps its decoded samples (mono, 48 kHz)."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self._chunks: list[np.ndarray] = []
        self.frames = 0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                data = frame.to_ndarray()
                # Packed stereo s16 arrives as one row of interleaved samples.
                if frame.format.is_planar:
                    mono = data[0]
                else:
                    mono = data.reshape(-1, len(frame.layout.channels))[:, 0]
                self._chunks.append(mono.astype(np.int16))
                self.frames += 1
        except MediaStreamError:
            pass

    def clear(self) -> None:
        self._chunks.clear()

    def samples(self) -> np.ndarray:
        if not self._chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._chunks)

    def dominant_frequency(self) -> float:
        return dominant_frequency(self.samples())

    async def wait_for_samples(self, seconds: float, within: float = 10.0) -> np.ndarray:
        """Clear, then wait until `seconds` of fresh audio were received."""
        self.clear()
        deadline = time.monotonic() + within
        while len(self.samples()) < seconds * SAMPLE_RATE:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {len(self.samples()) / SAMPLE_RATE:.2f} s of audio received "
                    f"in {within} s"
                )
            await asyncio.sleep(0.05)
        return self.samples()

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@pytest.fixture
def tone_wav(tmp_path: Path):
    """Factory: `tone_wav(frequency, seconds=10)` -> path of a fresh tone WAV."""

    def make(frequency: float, seconds: float = 10.0) -> Path:
        return write_tone_wav(tmp_path / f"tone-{frequency:g}.wav", frequency, seconds)

    return make
