"""Reading recorded files back in tests: decoded sound, tones over time, video frames."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from tests.support.tones import SAMPLE_RATE, dominant_frequency


@dataclass
class DecodedAudio:
    """The first channel of a file's audio, 48 kHz, placed by the frames' timestamps."""

    samples: np.ndarray

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def window(self, start_s: float, end_s: float) -> np.ndarray:
        return self.samples[int(start_s * SAMPLE_RATE) : int(end_s * SAMPLE_RATE)]

    def tone(self, start_s: float, end_s: float) -> float:
        return dominant_frequency(self.window(start_s, end_s))

    def level(self, start_s: float, end_s: float) -> float:
        """RMS of the window, 0..1 of full scale."""
        window = self.window(start_s, end_s).astype(np.float64)
        return float(np.sqrt(np.mean(window**2)) / 32768) if len(window) else 0.0


def decode_audio(path: Path) -> DecodedAudio:
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(audio=0):
            for mono in resampler.resample(frame):
                chunks.append(mono.to_ndarray().reshape(-1))
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    return DecodedAudio(samples)


def video_frames(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return [frame for frame in container.decode(video=0)]


@contextlib.contextmanager
def small_filesystem(mount_point: Path, size: str = "24k") -> Iterator[Path]:
    """A real file system of `size` (tmpfs) at `mount_point`: a few seconds of Opus fill
    it and the kernel answers "No space left on device". Needs the right to mount."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
