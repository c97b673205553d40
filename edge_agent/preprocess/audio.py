"""Audio samples → the model's input, in ONE module for the trainer and the agent.

The conversion tool trains on :func:`features` of each 1 s clip and calibrates int8 quantization
on them; the agent computes the very same :func:`features` of the last second of audio every hop.
Any difference between the two (window, mel scale, log offset, normalisation) would silently cost
accuracy, so every parameter lives in :class:`AudioSpec`, which is written to and read from the
model manifest (``input`` with ``kind: "audio"``).

The log-mel spectrogram follows TensorFlow's ``tf.signal`` definitions (periodic Hann window,
``stft`` without padding, HTK mel scale, ``linear_to_mel_weight_matrix``), so the tests can check
it against TensorFlow as an independent implementation. numpy only: no TensorFlow on the device.

:class:`Resampler` converts a stream (a microphone that only offers 44.1 or 48 kHz, espeak-ng's
22.05 kHz) to the model's rate with a Kaiser-windowed sinc, exactly in integer sample positions
so a long stream never drifts.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from ..errors import ModelError

SAMPLE_RATE_HZ: Final = 16_000
CLIP_MS: Final = 1000  # one keyword fits in a 1 s window (Speech Commands' clip length)
WINDOW_MS: Final = 30  # STFT frame: long enough for pitch harmonics, short enough for plosives
HOP_MS: Final = 20  # STFT step between frames
FFT_LENGTH: Final = 512  # next power of two above the 480-sample window
MEL_BINS: Final = 40
FMIN_HZ: Final = 20.0
FMAX_HZ: Final = 7600.0  # below Nyquist (8 kHz): the top bins of a 16 kHz stream hold little speech
LOG_OFFSET: Final = 1e-6  # log(mel + offset): digital silence maps to ≈ -13.8, not -inf
MEL_BREAK_HZ: Final = 700.0  # HTK mel scale: mel = 1127 ln(1 + f / 700)
MEL_HIGH_Q: Final = 1127.0


def samples_for(ms: float, rate: int) -> int:
    """Milliseconds → whole samples at ``rate`` (rounded, never silently truncated to 0)."""
    n = round(ms * rate / 1000)
    if n < 1:
        raise ValueError(f"{ms} ms is less than one sample at {rate} Hz")
    return n


@dataclasses.dataclass(frozen=True)
class AudioSpec:
    """Every front-end parameter, with units; the manifest's ``input`` for an audio model.

    ``mean`` and ``std`` normalise the log-mel values (one scalar each, measured on the training
    set), so the int8 input quantization sees values of order one."""

    sample_rate: int = SAMPLE_RATE_HZ
    clip_ms: int = CLIP_MS
    window_ms: int = WINDOW_MS
    hop_ms: int = HOP_MS
    fft_length: int = FFT_LENGTH
    mel_bins: int = MEL_BINS
    fmin_hz: float = FMIN_HZ
    fmax_hz: float = FMAX_HZ
    log_offset: float = LOG_OFFSET
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        check_rate(self.sample_rate)
        if self.fmax_hz > self.sample_rate / 2 or not 0 <= self.fmin_hz < self.fmax_hz:
            raise ValueError(f"mel range {self.fmin_hz}..{self.fmax_hz} Hz does not fit {self.sample_rate} Hz audio")
        if self.fft_length < self.window_samples:
            raise ValueError(f"fft_length {self.fft_length} is shorter than the {self.window_samples}-sample window")
        if self.clip_samples < self.window_samples or self.std <= 0:
            raise ValueError("the clip must hold at least one window, and std must be positive")

    @property
    def clip_samples(self) -> int:
        return samples_for(self.clip_ms, self.sample_rate)

    @property
    def window_samples(self) -> int:
        return samples_for(self.window_ms, self.sample_rate)

    @property
    def hop_samples(self) -> int:
        return samples_for(self.hop_ms, self.sample_rate)

    @property
    def frames(self) -> int:
        """STFT frames in one clip (no padding): 1 + (16000 - 480) // 320 = 49."""
        return 1 + (self.clip_samples - self.window_samples) // self.hop_samples

    @property
    def shape(self) -> tuple[int, int]:
        """(frames, mel bins): the model's input is (1, frames, mel_bins, 1)."""
        return self.frames, self.mel_bins

    def to_json(self) -> dict[str, Any]:
        return {"kind": "audio", **dataclasses.asdict(self)}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str) -> AudioSpec:
        """Parse a manifest's audio ``input``; a wrong or missing field names itself."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                raise ModelError(f"{where}: missing field 'input.{f.name}' of the audio front end")
            value = data[f.name]
            kind = int if f.type in (int, "int") else float
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
                raise ModelError(f"{where}: field 'input.{f.name}' must be a number (got {value!r})")
            kwargs[f.name] = kind(value)
        try:
            return cls(**kwargs)
        except ValueError as e:
            raise ModelError(f"{where}: audio input: {e}") from None


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return MEL_HIGH_Q * np.log1p(np.asarray(hz, np.float64) / MEL_BREAK_HZ)


@functools.lru_cache(maxsize=8)
def mel_matrix(spec: AudioSpec) -> np.ndarray:
    """(fft_length // 2 + 1, mel_bins) triangular filters, as ``tf.signal.linear_to_mel_weight_matrix``:
    triangles in the mel domain, the DC bin left out (its row is zero)."""
    bins = spec.fft_length // 2 + 1
    linear_mel = hz_to_mel(np.linspace(0.0, spec.sample_rate / 2, bins)[1:])[:, None]
    edges = np.linspace(float(hz_to_mel(spec.fmin_hz)), float(hz_to_mel(spec.fmax_hz)), spec.mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    lower_slope = (linear_mel - lower) / (center - lower)
    upper_slope = (upper - linear_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(lower_slope, upper_slope))
    out = np.vstack([np.zeros((1, spec.mel_bins)), weights]).astype(np.float32)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=8)
def hann_window(length: int) -> np.ndarray:
    """Periodic Hann (as ``tf.signal.hann_window`` and scipy's ``sym=False``): overlapping frames sum flat."""
    w = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)).astype(np.float32)
    w.flags.writeable = False
    return w


def log_mel(samples: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """float samples in [-1, 1] → (frames, mel_bins) float32 log-mel energies (not normalised)."""
    x = np.asarray(samples, np.float32)
    if x.ndim != 1 or len(x) < spec.window_samples:
        raise ValueError(f"need a 1-D signal of at least {spec.window_samples} samples, got shape {x.shape}")
    n = 1 + (len(x) - spec.window_samples) // spec.hop_samples
    frames = np.lib.stride_tricks.sliding_window_view(x, spec.window_samples)[:: spec.hop_samples][:n]
    power = np.abs(np.fft.rfft(frames * hann_window(spec.window_samples), n=spec.fft_length)) ** 2
    mel = power.astype(np.float32) @ mel_matrix(spec)
    return np.log(mel + np.float32(spec.log_offset)).astype(np.float32)


def features(samples: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """One clip → the normalised (frames, mel_bins) float32 the model was trained on.

    A clip shorter than ``clip_samples`` is zero-padded at the end and a longer one is cut, so the
    trainer can hand over any WAV and the agent its ring buffer."""
    x = np.asarray(samples, np.float32)
    if len(x) < spec.clip_samples:
        x = np.pad(x, (0, spec.clip_samples - len(x)))
    out = (log_mel(x[: spec.clip_samples], spec) - np.float32(spec.mean)) / np.float32(spec.std)
    return out.astype(np.float32)


def make_fill(spec: AudioSpec, dtype: np.dtype, scale: float, zero: int) -> Any:
    """``fill(samples, view)`` writes the quantized features straight into the input tensor view."""
    if dtype == np.float32:

        def fill_float(samples: np.ndarray, view: np.ndarray) -> None:
            view[...] = features(samples, spec).reshape(view.shape)

        return fill_float
    info = np.iinfo(dtype)

    def fill_quantized(samples: np.ndarray, view: np.ndarray) -> None:
        q = np.round(features(samples, spec) / scale + zero)
        view[...] = np.clip(q, info.min, info.max).astype(dtype).reshape(view.shape)

    return fill_quantized


def to_float(pcm: np.ndarray) -> np.ndarray:
    """int16 PCM (or float already) → float32 in [-1, 1]."""
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / np.float32(32768.0)
    return pcm.astype(np.float32)


# --- resampling -----------------------------------------------------------------------------------

RESAMPLE_ZERO_CROSSINGS: Final = 16  # sinc lobes each side: stop band ≳ 60 dB with the Kaiser window
RESAMPLE_KAISER_BETA: Final = 8.6
RESAMPLE_ROLLOFF: Final = 0.92  # pass band edge as a fraction of the lower Nyquist: 7.36 kHz at 16 kHz
# The sample rates a stream may have. Outside them a file header is damaged, not exotic: 0 Hz
# divides by zero, and at 2^31 Hz the resampler's kernel would be millions of taps per sample.
MIN_RATE_HZ: Final = 1_000
MAX_RATE_HZ: Final = 768_000  # the highest rate sound cards and WAV tools use


def check_rate(rate: int) -> None:
    """Raise ValueError naming ``rate`` when no real audio stream has it."""
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise ValueError(f"sample rate {rate} Hz, outside {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz")


class Resampler:
    """Streaming band-limited resampler: feed chunks of any size, get every output sample once.

    Output sample k sits at input position k * from / to, kept as an exact fraction (integer
    arithmetic), so hours of microphone audio never drift. Each output is a Kaiser-windowed sinc
    over the input around it; the cut-off is below the lower of the two Nyquist frequencies, so
    48 kHz speech is low-passed before it is decimated instead of aliasing."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        check_rate(from_rate)
        check_rate(to_rate)
        g = math.gcd(from_rate, to_rate)
        self.up, self.down = to_rate // g, from_rate // g  # output k at input k * down / up
        self.cutoff = RESAMPLE_ROLLOFF * min(1.0, to_rate / from_rate)  # fraction of the input Nyquist
        self.half = math.ceil(RESAMPLE_ZERO_CROSSINGS / self.cutoff)  # kernel half-width, input samples
        self._buf = np.zeros(self.half, np.float32)  # history; index 0 is input position _start
        self._start = -self.half
        self._next = 0  # next output index

    @property
    def identity(self) -> bool:
        return self.up == self.down

    def _kernel(self, offsets: np.ndarray) -> np.ndarray:
        window = np.kaiser(2 * self.half + 1, RESAMPLE_KAISER_BETA)
        taper = np.interp(offsets, np.arange(-self.half, self.half + 1), window, left=0.0, right=0.0)
        return (self.cutoff * np.sinc(self.cutoff * offsets) * taper).astype(np.float32)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Resample the next chunk; output lags the input by the kernel's half-width."""
        x = np.asarray(chunk, np.float32).reshape(-1)
        if self.identity:
            return x.copy()
        self._buf = np.concatenate([self._buf, x])
        end = self._start + len(self._buf)  # one past the last input position held
        # output k needs inputs up to floor(k * down / up) + half < end
        last = ((end - self.half) * self.up - 1) // self.down
        if last < self._next:
            return np.zeros(0, np.float32)
        k = np.arange(self._next, last + 1, dtype=np.int64)
        base = (k * self.down) // self.up
        frac = (k * self.down - base * self.up) / self.up
        taps = np.arange(-self.half + 1, self.half + 1, dtype=np.int64)
        idx = base[:, None] + taps[None, :] - self._start
        weights = self._kernel(taps[None, :] - frac[:, None])
        out = np.einsum("ij,ij->i", self._buf[idx], weights).astype(np.float32)
        self._next = int(last) + 1
        keep_from = (self._next * self.down) // self.up - self.half + 1  # first input the next output needs
        drop = max(0, keep_from - self._start)
        self._buf = self._buf[drop:]
        self._start += drop
        return out

    def flush(self) -> np.ndarray:
        """The outputs still held back at the end of a finite stream (zeros stand in for the future)."""
        if self.identity:
            return np.zeros(0, np.float32)
        total_in = self._start + len(self._buf)
        wanted = (total_in * self.up + self.down - 1) // self.down  # ceil(total_in * up / down)
        tail = self.process(np.zeros(self.half + 1, np.float32))
        return tail[: max(0, wanted - (self._next - len(tail)))]


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """A whole signal at once: ``round(len * to / from)`` samples at ``to_rate``."""
    r = Resampler(from_rate, to_rate)
    if r.identity:
        return np.asarray(samples, np.float32).copy()
    return np.concatenate([r.process(samples), r.flush()])
