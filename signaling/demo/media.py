"""What the demo's simulated people send: a video card and speech-like audio.

Everything is generated on this machine, nothing is downloaded: the card is drawn with
Pillow (a system font that has the speaker's script when one is found, else Pillow's
own), the voice is synthetic speech from `espeak-ng` in the speaker's language when it
is installed, else tones in the rhythm of spoken words (syllables, words, sentences)
so that a listener still hears who talks when.

A `Voice` is the samples of what one person says, looped; a `SpeechTrack` plays a
voice a `VoiceChoice` picks frame by frame (an interpreter's changes with the
speaker on air and the booth's direction), and can cough into its microphone.
"""

from __future__ import annotations

import asyncio
import fractions
import hashlib
import logging
import math
import shutil
import tempfile
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame
from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms, what browsers and Opus use
AUDIO_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
VIDEO_CLOCK = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
CARD_FPS = 15
CARD_SIZE = (640, 360)
#: Silence after each pass of a text: a speaker breathes between sentences.
PAUSE_S = 0.7
ESPEAK = "espeak-ng"
#: Places where Debian, Fedora and Alpine keep a font with Latin and Cyrillic letters.
_FONT_FILES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
)


@dataclass(frozen=True)
class Voice:
    """What one person says: mono int16 samples at 48 kHz, played in a loop."""

    samples: np.ndarray
    #: "speech" (espeak-ng) or "tones" (the fallback): the demo says which it uses.
    kind: str

    def frame(self, index: int) -> np.ndarray:
        """The `index`-th 20 ms frame of the loop."""
        total = len(self.samples)
        start = (index * FRAME_SAMPLES) % total
        end = start + FRAME_SAMPLES
        if end <= total:
            return self.samples[start:end]
        return np.concatenate([self.samples[start:], self.samples[: end - total]])


def speech_available() -> bool:
    return shutil.which(ESPEAK) is not None


async def make_voice(text: str, language: str, pitch: int) -> Voice:
    """`text` said in `language` (espeak-ng when installed and it knows the language,
    else tones with the text's rhythm); `pitch` 0-99 tells people apart."""
    if speech_available():
        try:
            samples = await _espeak(text, language, pitch)
        except VoiceError as exc:
            log.warning("espeak-ng cannot say this (%s): tones instead", exc)
        else:
            return Voice(_with_pause(samples), "speech")
    return Voice(_with_pause(spoken_rhythm(text, pitch)), "tones")


class VoiceError(Exception):
    """espeak-ng failed or knows no voice for the language."""


async def _espeak(text: str, language: str, pitch: int) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="dragoman-voice-") as folder:
        out = Path(folder) / "voice.wav"
        process = await asyncio.create_subprocess_exec(
            ESPEAK,
            "-v",
            language,
            "-p",
            str(pitch),
            "-s",
            "150",
            "-w",
            str(out),
            text,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, errors = await process.communicate()
        if process.returncode != 0 or not out.exists():
            raise VoiceError(
                errors.decode(errors="replace").strip() or f"exit {process.returncode}"
            )
        with wave.open(str(out), "rb") as wav:
            rate = wav.getframerate()
            raw = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
            if wav.getnchannels() > 1:
                raw = raw.reshape(-1, wav.getnchannels())[:, 0]
    if len(raw) == 0:
        raise VoiceError("no samples")
    return _resample(raw, rate)


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return samples.astype(np.int16)
    duration = len(samples) / rate
    target = np.arange(int(duration * SAMPLE_RATE)) / SAMPLE_RATE
    source = np.arange(len(samples)) / rate
    return np.interp(target, source, samples.astype(np.float64)).astype(np.int16)


def _with_pause(samples: np.ndarray) -> np.ndarray:
    return np.concatenate([samples, np.zeros(int(PAUSE_S * SAMPLE_RATE), dtype=np.int16)])


def spoken_rhythm(text: str, pitch: int) -> np.ndarray:
    """Tones in the rhythm of `text` said aloud: a voiced burst per syllable (vowel
    group), short gaps between syllables, longer ones between words and sentences, the
    melody falling towards each full stop. Deterministic for one text and pitch."""
    seed = int.from_bytes(hashlib.sha256(f"{pitch}:{text}".encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    base = 110.0 + 1.6 * pitch  # 110-270 Hz: the range of speaking voices
    pieces: list[np.ndarray] = []
    vowels = set("aeiouyàâéèêëîïôûùüœæаеёиоуыэюяäöå")
    for sentence in [s for s in text.replace("!", ".").replace("?", ".").split(".") if s.strip()]:
        words = sentence.split()
        for w, word in enumerate(words):
            syllables = max(
                1,
                sum(
                    1
                    for i, c in enumerate(word.lower())
                    if c in vowels and (i == 0 or word.lower()[i - 1] not in vowels)
                ),
            )
            for _ in range(syllables):
                fall = 1.0 - 0.25 * (w / max(1, len(words)))
                f0 = base * fall * float(rng.uniform(0.92, 1.12))
                pieces.append(_syllable(f0, float(rng.uniform(0.12, 0.24))))
                pieces.append(np.zeros(int(rng.uniform(0.03, 0.07) * SAMPLE_RATE), np.int16))
            pieces.append(np.zeros(int(rng.uniform(0.12, 0.22) * SAMPLE_RATE), np.int16))
        pieces.append(np.zeros(int(0.45 * SAMPLE_RATE), np.int16))
    if not pieces:
        pieces.append(_syllable(base, 0.2))
    return np.concatenate(pieces)


def _syllable(f0: float, seconds: float) -> np.ndarray:
    n = np.arange(int(seconds * SAMPLE_RATE))
    t = n / SAMPLE_RATE
    # A voice has harmonics; a rising and falling envelope makes it a syllable, not a beep.
    wave_ = sum((0.6**k) * np.sin(2 * math.pi * f0 * (k + 1) * t) for k in range(4))
    envelope = np.sin(math.pi * n / len(n)) ** 0.6
    return (0.3 * 32767 * wave_ * envelope / 2.0).astype(np.int16)


def cough(frame_index: int) -> np.ndarray:
    """A loud noise burst: what a cough sounds like in the microphone."""
    rng = np.random.default_rng(frame_index)
    return (rng.normal(0, 9000, FRAME_SAMPLES)).clip(-32767, 32767).astype(np.int16)


VoiceChoice = Callable[[], Voice | None]
"""Which voice a track plays now; None: the person is silent."""


class PacedTrack(MediaStreamTrack):
    """A live source: each `recv` returns when its frame is due in real time, as a
    microphone or a camera delivers them (a generated track would otherwise run ahead)."""

    def __init__(self, frames_per_second: float) -> None:
        super().__init__()
        self._period = 1.0 / frames_per_second
        self._frames = 0
        self._start: float | None = None

    async def next_frame(self) -> int:
        """Wait until the next frame is due; its index (0, 1, 2...)."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._frames * self._period - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        index = self._frames
        self._frames += 1
        return index


def audio_frame(samples: np.ndarray, index: int) -> AudioFrame:
    """The `index`-th 20 ms frame of a 48 kHz mono stream, from its int16 samples."""
    frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    frame.pts = index * FRAME_SAMPLES
    frame.time_base = AUDIO_TIME_BASE
    return frame


class SpeechTrack(PacedTrack):
    """A live microphone: 20 ms frames of the voice `choose` names, paced in real time.

    `coughing` set: the frames are a cough instead (the interpreter's cough button
    must keep it out of the channel).
    """

    kind = "audio"

    def __init__(self, choose: VoiceChoice) -> None:
        super().__init__(SAMPLE_RATE / FRAME_SAMPLES)
        self.choose = choose
        self.coughing = False

    async def recv(self) -> AudioFrame:
        index = await self.next_frame()
        voice = self.choose()
        if self.coughing:
            data = cough(index)
        elif voice is None:
            data = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        else:
            data = voice.frame(index)
        return audio_frame(data, index)


# --- the video card -------------------------------------------------------------------------


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in _FONT_FILES:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


def _has_font_file() -> bool:
    return any(Path(path).exists() for path in _FONT_FILES)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: object, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if draw.textlength(candidate, font=font) <= width or not line:  # type: ignore[arg-type]
            line = candidate
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


def card_image(
    name: str, name_native: str | None, affiliation: str, footer: str, hue: int
) -> Image.Image:
    """The card a speaker's camera shows: names, affiliation, the event below."""
    width, height = CARD_SIZE
    background = _colour(hue, 0.35)
    image = Image.new("RGB", CARD_SIZE, background)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 18, height), fill=_colour(hue, 0.8))
    y = 48
    big, medium, small = _font(40), _font(24), _font(18)
    # Pillow's own font has Latin letters only: the native name needs a system font.
    names = [name] + ([name_native] if name_native and _has_font_file() else [])
    for i, text in enumerate(names):
        draw.text((48, y), text, font=big if i == 0 else medium, fill=(255, 255, 255))
        y += 52 if i == 0 else 36
    y += 16
    for line in _wrap(draw, affiliation, medium, width - 96)[:4]:
        draw.text((48, y), line, font=medium, fill=(230, 230, 230))
        y += 32
    for i, line in enumerate(_wrap(draw, footer, small, width - 96)[:2]):
        draw.text((48, height - 70 + 24 * i), line, font=small, fill=(200, 200, 200))
    return image


def _colour(hue: int, lightness: float) -> tuple[int, int, int]:
    angle = 2 * math.pi * (hue % 360) / 360
    return tuple(  # type: ignore[return-value]
        int(255 * lightness * (0.55 + 0.45 * math.cos(angle + shift))) for shift in (0.0, 2.1, 4.2)
    )


class CardTrack(PacedTrack):
    """A live camera showing a card: the picture is drawn once, a bar moves under it
    (so a frozen picture shows), `CARD_FPS` frames a second."""

    kind = "video"

    def __init__(self, image: Image.Image) -> None:
        super().__init__(CARD_FPS)
        planes = VideoFrame.from_image(image).reformat(format="yuv420p")
        self._yuv = planes.to_ndarray()

    async def recv(self) -> VideoFrame:
        index = await self.next_frame()
        width, height = CARD_SIZE
        data = self._yuv.copy()
        bar = int((index % (4 * CARD_FPS)) / (4 * CARD_FPS) * (width - 40))
        data[height - 16 : height - 8, 20 : 20 + bar + 8] = 235  # luma: a white bar
        frame = VideoFrame.from_ndarray(data, format="yuv420p")
        frame.pts = int(index * VIDEO_CLOCK / CARD_FPS)
        frame.time_base = VIDEO_TIME_BASE
        return frame
