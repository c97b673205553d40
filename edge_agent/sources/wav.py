"""WAV files: reading and writing PCM with the standard library, and a WAV audio source.

The source hands out the file in blocks of one recognizer hop, resampled to the model's rate,
either as fast as the recognizer takes them (tests, evaluation: a minute of audio in a second)
or paced at the file's own rate (``--realtime``: behaves like a microphone, for demos and for
measuring latency as a user would feel it).

**Damaged files.** The standard library's ``wave`` raises more than ``wave.Error`` on a damaged
header (``RuntimeError`` for a chunk size past the end, ``struct.error``, ``EOFError``); all of
them, and a sample rate no stream has (:func:`~..preprocess.audio.check_rate`), are one
:class:`~..errors.SourceError` naming the file. A file cut inside a sample frame (a recording
stopped by a power cut) is read up to its last whole frame, with one warning: the audio before
the cut is good, and a file cut on a frame boundary was always read that way.
"""

from __future__ import annotations

import logging
import struct
import time
import wave
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np

from ..errors import SourceError
from ..preprocess.audio import Resampler, check_rate, to_float

logger = logging.getLogger(__name__)

PCM16_MAX: Final = 32767
READ_FRAMES: Final = 4096  # frames read from the file per call; any size works with the resampler
READ_BYTES: Final = 1 << 20  # at most this much per read: a header's 65535 channels must not ask for a GB
# what ``wave`` raises on a damaged file, besides its own wave.Error
DAMAGED: Final = (wave.Error, EOFError, OSError, RuntimeError, ValueError, OverflowError, struct.error)


class AudioBlock(NamedTuple):
    """``samples``: float32 mono at the model's rate; ``end_mono``: time.monotonic() when the
    last of them was captured (read, for a file): the start of the latency the hub sees."""

    samples: np.ndarray
    end_mono: float


def _decode(raw: bytes, width: int, channels: int) -> np.ndarray:
    """PCM bytes (whole frames) → float32 mono."""
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


def _open(path: Path) -> wave.Wave_read:
    """The file opened by ``wave`` with a sample size and rate we can read, or one SourceError."""
    if not path.is_file():
        raise SourceError(f"WAV {path}: file not found")
    try:
        w = wave.open(str(path), "rb")  # noqa: SIM115 - the caller closes it
    except DAMAGED as e:
        raise SourceError(f"WAV {path}: not a PCM WAV file ({_why(e)})") from None
    try:
        if w.getsampwidth() not in (1, 2, 3, 4):
            raise ValueError(f"{8 * w.getsampwidth()}-bit samples")
        if w.getnchannels() < 1:
            raise ValueError("no channels")
        check_rate(w.getframerate())
    except ValueError as e:
        w.close()
        raise SourceError(f"WAV {path}: unsupported format ({e})") from None
    return w


def _why(e: BaseException) -> str:
    """What went wrong, for one line (``wave`` raises a bare RuntimeError or EOFError for a chunk
    that runs past the end of the file)."""
    text = str(e).splitlines()[0][:200] if str(e).strip() else ""
    return text or "the file is cut short or its header is damaged"


class _Frames:
    """Whole frames from an open file: a file cut inside a frame loses the partial frame, once, with
    one warning line."""

    def __init__(self, path: Path, w: wave.Wave_read) -> None:
        self.path = path
        self.w = w
        self.frame_bytes = w.getsampwidth() * w.getnchannels()
        self.cut = 0  # bytes of a partial last frame, ignored

    def read(self, frames: int) -> np.ndarray | None:
        """The next (at most) ``frames`` frames as float32 mono; None at the end of the file."""
        try:
            raw = self.w.readframes(max(1, min(frames, READ_BYTES // self.frame_bytes)))
        except DAMAGED as e:
            raise SourceError(f"WAV {self.path}: cannot read the samples ({_why(e)})") from None
        if not raw:
            return None
        whole = len(raw) - len(raw) % self.frame_bytes
        if whole < len(raw):
            self.cut += len(raw) - whole
            logger.warning("WAV %s: the file ends inside a sample frame (cut short?); the last %d bytes are "
                           "ignored", self.path, len(raw) - whole)
            raw = raw[:whole]
            if not raw:
                return None
        return _decode(raw, self.w.getsampwidth(), self.w.getnchannels())


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A whole PCM WAV file → (float32 mono samples in [-1, 1], sample rate)."""
    with _open(path) as w:
        frames = _Frames(path, w)
        parts = []
        while (part := frames.read(READ_BYTES)) is not None:
            parts.append(part)
        return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), w.getframerate()


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
        self._frames: _Frames | None = None
        self._resampler: Resampler | None = None
        self._pending = np.zeros(0, np.float32)
        self._eof = False
        self._done = False
        self._emitted = 0
        self._t0 = 0.0

    def open(self) -> None:
        w = _open(self.path)  # held open across read() calls, closed in close()
        self._wave = w
        self._frames = _Frames(self.path, w)
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
        assert self._frames is not None and self._resampler is not None
        parts = [self._pending]
        have = len(self._pending)
        while have < need and not self._eof:
            samples = self._frames.read(READ_FRAMES)
            if samples is not None:
                chunk = self._resampler.process(samples)
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
            self._frames = None
