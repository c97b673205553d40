"""WAV files: reading and writing PCM with the standard library, and a WAV audio source.

The source hands out the file in blocks of one recognizer hop, resampled to the model's rate,
either as fast as the recognizer takes them (tests, evaluation: a minute of audio in a second)
or paced at the file's own rate (``--realtime``: behaves like a microphone, for demos and for
measuring latency as a user would feel it).
"""

from __future__ import annotations

import logging
import time
import wave
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np

from ..errors import SourceError
from ..preprocess.audio import Resampler, to_float

logger = logging.getLogger(__name__)

PCM16_MAX: Final = 32767
READ_FRAMES: Final = 4096  # frames read from the file per call; any size works with the resampler


class AudioBlock(NamedTuple):
    """``samples``: float32 mono at the model's rate; ``end_mono``: time.monotonic() when the
    last of them was captured (read, for a file): the start of the latency the hub sees."""

    samples: np.ndarray
    end_mono: float


def _decode(raw: bytes, width: int, channels: int) -> np.ndarray:
    if width == 1:  # 8-bit WAV is unsigned
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        data = to_float(np.frombuffer(raw, "<i2"))
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        data = (np.where(v >= 1 << 23, v - (1 << 24), v) / float(1 << 23)).astype(np.float32)
    elif width == 4:
        data = (np.frombuffer(raw, "<i4") / float(1 << 31)).astype(np.float32)
    else:
        raise ValueError(f"{8 * width}-bit samples")
    if channels > 1:  # mono by averaging: a stereo USB mic carries the same voice on both
        data = data.reshape(-1, channels).mean(axis=1).astype(np.float32)
    return data


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A whole PCM WAV file → (float32 mono samples in [-1, 1], sample rate)."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            raw = w.readframes(w.getnframes())
    except FileNotFoundError:
        raise SourceError(f"WAV {path}: file not found") from None
    except (wave.Error, EOFError, OSError) as e:
        raise SourceError(f"WAV {path}: not a PCM WAV file ({e})") from None
    try:
        return _decode(raw, width, channels), rate
    except ValueError as e:
        raise SourceError(f"WAV {path}: unsupported format ({e})") from None


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """float samples in [-1, 1] → 16-bit mono PCM WAV (clipped, not wrapped)."""
    pcm = np.clip(np.round(np.asarray(samples, np.float32) * PCM16_MAX), -PCM16_MAX - 1, PCM16_MAX).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


class WavSource:
    """A WAV file as an audio stream at ``rate``: blocks of ``block`` samples, the last one dropped
    when incomplete (a recognizer hop needs a whole block)."""

    live = False

    def __init__(self, path: Path, rate: int, realtime: bool = False) -> None:
        self.path = path
        self.rate = rate
        self.realtime = realtime
        self.name = f"WAV {path}"
        self.overflows = 0  # a file never overflows; the attribute keeps the sources alike
        self._wave: wave.Wave_read | None = None
        self._resampler: Resampler | None = None
        self._pending = np.zeros(0, np.float32)
        self._eof = False
        self._done = False
        self._emitted = 0
        self._t0 = 0.0

    def open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"WAV {self.path}: file not found")
        try:
            w = wave.open(str(self.path), "rb")  # noqa: SIM115 - held open across read() calls, closed in close()
        except (wave.Error, EOFError, OSError) as e:
            raise SourceError(f"WAV {self.path}: not a PCM WAV file ({e})") from None
        if w.getsampwidth() not in (1, 2, 3, 4):
            w.close()
            raise SourceError(f"WAV {self.path}: unsupported format ({8 * w.getsampwidth()}-bit samples)")
        self._wave = w
        self._resampler = Resampler(w.getframerate(), self.rate)
        if not self._resampler.identity:
            logger.info("%s: resampling %d Hz to %d Hz", self.name, w.getframerate(), self.rate)
        self._pending = np.zeros(0, np.float32)
        self._eof = False
        self._done = False
        self._emitted = 0
        self._t0 = time.monotonic()

    @property
    def ended(self) -> bool:
        """The file is exhausted: :meth:`read` returned None for want of samples."""
        return self._done

    def _fill(self, need: int) -> None:
        assert self._wave is not None and self._resampler is not None
        parts = [self._pending]
        have = len(self._pending)
        while have < need and not self._eof:
            raw = self._wave.readframes(READ_FRAMES)
            if raw:
                chunk = self._resampler.process(_decode(raw, self._wave.getsampwidth(), self._wave.getnchannels()))
            else:
                chunk = self._resampler.flush()
                self._eof = True
            parts.append(chunk)
            have += len(chunk)
        self._pending = np.concatenate(parts)

    def read(self, count: int, timeout: float) -> AudioBlock | None:
        """The next ``count`` samples, or None at the end of the file. With ``realtime`` this
        waits until the block's last sample would have been spoken (at most ``timeout`` per call)."""
        if self._wave is None:
            raise SourceError(f"{self.name}: not open")
        self._fill(count)
        if len(self._pending) < count:
            self._done = True
            return None
        if self.realtime:
            due = self._t0 + (self._emitted + count) / self.rate
            wait = due - time.monotonic()
            if wait > timeout:
                time.sleep(timeout)
                return None
            if wait > 0:
                time.sleep(wait)
        block, self._pending = self._pending[:count], self._pending[count:]
        self._emitted += count
        return AudioBlock(block, time.monotonic())

    def close(self) -> None:
        if self._wave is not None:
            self._wave.close()
            self._wave = None
