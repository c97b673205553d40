"""Sensor samples → the model's input, in ONE module for the trainer and the agent.

A series model reads a window of ``window`` samples of ``C`` named channels at ``rate_hz``
(``rate_hz = 0``: event data, e.g. one network flow per record, never resampled). Every
parameter lives in :class:`SeriesSpec`, written to and read from the manifest (``input`` with
``kind: "series"``), so the trainer and the agent cannot drift apart::

    timestamped samples ──▶ Resampler ──uniform samples──▶ Windower ──window (W, C)──▶ features ──▶ model
      drops NaN/inf,         linear interpolation,          every ``stride`` samples;      (x - mean) / std per
      out-of-order and       no bridging of gaps over       a gap restarts the window      channel; optionally
      duplicate samples      ``max_gap_ms`` (counted)                                      summary features

The trainer pushes each recording through the same :class:`Resampler` and :class:`Windower`
(:func:`recording_windows`) that the agent feeds sample by sample, so what the model saw in
training is what it sees on the device. Per-channel mean and std are fitted on the training
split only (:func:`fit_scaling`). numpy only: no TensorFlow on the device.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

import numpy as np

from ..errors import ModelError

FEATURES: Final = ("raw", "summary")
SUMMARY: Final = ("mean", "std", "min", "max", "rms")  # per channel, on scaled values
OUTPUTS: Final = ("classes", "anomaly")
MIN_STD: Final = 1e-6  # a constant channel is scaled by 1, not divided by zero
DEFAULT_MAX_GAP_MS: Final = 1000.0


@dataclasses.dataclass(frozen=True)
class Channel:
    """One input channel: its name (CSV column, JSON key), unit, and training-split scaling."""

    name: str
    unit: str = ""
    mean: float = 0.0
    std: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "mean": self.mean, "std": self.std}


@dataclasses.dataclass(frozen=True)
class SeriesSpec:
    """Every front-end parameter, with units; the manifest's ``input`` for a series model."""

    channels: tuple[Channel, ...]
    rate_hz: float  # samples per second the model was trained at; 0 = event data (no resampling)
    window: int  # samples per window
    stride: int  # samples between two windows
    max_gap_ms: float = DEFAULT_MAX_GAP_MS  # a longer silence restarts the window (no interpolation across it)
    features: str = "raw"  # "raw": the (window, C) scaled samples; "summary": SUMMARY per channel
    output: str = "classes"  # "classes" (label + scores) or "anomaly" (reconstruction score vs threshold)

    def __post_init__(self) -> None:
        if not self.channels:
            raise ValueError("a series model needs at least one channel")
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names repeat: {names}")
        if self.window < 1 or self.stride < 1:
            raise ValueError("window and stride must be at least one sample")
        if self.rate_hz < 0 or self.max_gap_ms <= 0:
            raise ValueError("rate_hz must be 0 (events) or more, max_gap_ms more than 0")
        if self.features not in FEATURES or self.output not in OUTPUTS:
            raise ValueError(f"features must be one of {FEATURES}, output one of {OUTPUTS}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)

    @property
    def shape(self) -> tuple[int, ...]:
        """The model input without the batch dimension."""
        if self.features == "summary":
            return (len(self.channels) * len(SUMMARY),)
        return (self.window, len(self.channels))

    @property
    def window_s(self) -> float:
        """How long one window lasts (0 for event data)."""
        return self.window / self.rate_hz if self.rate_hz else 0.0

    @property
    def mean(self) -> np.ndarray:
        return np.array([c.mean for c in self.channels], np.float64)

    @property
    def std(self) -> np.ndarray:
        return np.array([max(c.std, MIN_STD) for c in self.channels], np.float64)

    def with_scaling(self, mean: Sequence[float] | np.ndarray, std: Sequence[float] | np.ndarray) -> SeriesSpec:
        chans = tuple(dataclasses.replace(c, mean=round(float(m), 6), std=round(float(s), 6))
                      for c, m, s in zip(self.channels, mean, std, strict=True))
        return dataclasses.replace(self, channels=chans)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "series", "rate_hz": self.rate_hz, "window": self.window, "stride": self.stride,
                "max_gap_ms": self.max_gap_ms, "features": self.features, "output": self.output,
                "channels": [c.to_json() for c in self.channels]}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str) -> SeriesSpec:
        """Parse the manifest's ``input``; every error names the field."""
        def number(key: str, default: float | None = None) -> float:
            value = data.get(key, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ModelError(f"{where}: field 'input.{key}' must be a number (got {value!r})")
            return float(value)

        raw = data.get("channels")
        if not isinstance(raw, list) or not raw:
            raise ModelError(f"{where}: field 'input.channels' must be a non-empty list of channels")
        chans = []
        for i, c in enumerate(raw):
            if not isinstance(c, Mapping) or not isinstance(c.get("name"), str) or not c["name"]:
                raise ModelError(f"{where}: field 'input.channels[{i}].name' must be a channel name")
            try:
                chans.append(Channel(c["name"], str(c.get("unit", "")), float(c.get("mean", 0.0)),
                                     float(c.get("std", 1.0))))
            except (TypeError, ValueError):
                raise ModelError(f"{where}: field 'input.channels[{i}]': mean and std must be numbers") from None
        for key in ("window", "stride"):
            if not isinstance(data.get(key), int) or isinstance(data.get(key), bool):
                raise ModelError(f"{where}: field 'input.{key}' must be a whole number of samples")
        try:
            return cls(tuple(chans), number("rate_hz"), int(data["window"]), int(data["stride"]),
                       number("max_gap_ms", DEFAULT_MAX_GAP_MS), str(data.get("features", "raw")),
                       str(data.get("output", "classes")))
        except ValueError as e:
            raise ModelError(f"{where}: field 'input': {e}") from None


# --- batch functions (training and the agent) ----------------------------------------------------
def fit_scaling(recordings: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over the (already resampled) samples of the TRAINING recordings."""
    allx = np.concatenate([r for r in recordings if len(r)], axis=0).astype(np.float64)
    return allx.mean(axis=0), np.maximum(allx.std(axis=0), MIN_STD)


def summary(scaled: np.ndarray) -> np.ndarray:
    """(M, W, C) scaled windows → (M, C * len(SUMMARY)): per channel mean, std, min, max, rms."""
    feats = [scaled.mean(axis=1), scaled.std(axis=1), scaled.min(axis=1), scaled.max(axis=1),
             np.sqrt((scaled ** 2).mean(axis=1))]
    return np.stack(feats, axis=2).reshape(len(scaled), -1).astype(np.float32)


def features(windows: np.ndarray, spec: SeriesSpec) -> np.ndarray:
    """(M, W, C) raw windows (or one (W, C) window) → float32 model inputs (M, *spec.shape)."""
    single = windows.ndim == 2
    w = windows[None] if single else windows
    scaled = ((w - spec.mean) / spec.std).astype(np.float32)
    out = summary(scaled) if spec.features == "summary" else scaled
    return out[0] if single else out


def make_fill(spec: SeriesSpec, dtype: np.dtype, scale: float, zero: int) -> Any:
    """``fill(window, view)`` writes one window's quantized features straight into the input tensor."""
    if dtype == np.float32:
        def fill_float(window: np.ndarray, view: np.ndarray) -> None:
            view[...] = features(window, spec).reshape(view.shape)

        return fill_float
    info = np.iinfo(dtype)

    def fill_quantized(window: np.ndarray, view: np.ndarray) -> None:
        q = np.round(features(window, spec) / scale + zero)
        view[...] = np.clip(q, info.min, info.max).astype(dtype).reshape(view.shape)

    return fill_quantized


def quantize(x: np.ndarray, scale: float, zero: int, dtype: Any = np.int8) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero: int) -> np.ndarray:
    """int64 before subtracting the zero point (no wrap-around)."""
    return ((q.astype(np.int64) - zero) * scale).astype(np.float32)


def reconstruction_error(model_input: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """Anomaly score: mean squared error per window between what the model saw and what it rebuilt."""
    a = model_input.reshape(len(model_input), -1).astype(np.float64)
    b = reconstruction.reshape(len(reconstruction), -1).astype(np.float64)
    return ((a - b) ** 2).mean(axis=1)


# --- streaming (the same code for training and the agent) ----------------------------------------
@dataclasses.dataclass
class Counts:
    """What the front end did with the samples it was given; published in metrics."""

    received: int = 0
    non_finite: int = 0  # a NaN or inf in any channel: the whole sample is dropped
    out_of_order: int = 0  # older than a sample already seen
    duplicates: int = 0  # the same timestamp again
    gaps: int = 0  # silences longer than max_gap_ms (the window restarts after each)
    resampled: int = 0  # uniform samples made

    def dropped(self) -> int:
        return self.non_finite + self.out_of_order + self.duplicates


class Segment(NamedTuple):
    t: np.ndarray  # (N,) seconds
    x: np.ndarray  # (N, C)
    after_gap: bool  # the window must restart before these samples


class Resampler:
    """Timestamped samples (any rate, jittery, with holes) → uniform samples at ``rate_hz``.

    Linear interpolation between neighbouring good samples; the output grid is ``origin + k /
    rate`` with an integer ``k`` so a long stream never drifts. A hole longer than ``max_gap_ms``
    is not bridged: the grid restarts at the first sample after it."""

    def __init__(self, spec: SeriesSpec) -> None:
        self.rate = spec.rate_hz
        self.max_gap_s = spec.max_gap_ms / 1000.0
        self.channels = len(spec.channels)
        self.counts = Counts()
        self.reset()

    def reset(self) -> None:
        self._last_t: float | None = None
        self._last_x: np.ndarray | None = None
        self._origin = 0.0
        self._k = 0

    def push(self, t: np.ndarray, x: np.ndarray) -> list[Segment]:
        t = np.asarray(t, np.float64).reshape(-1)
        x = np.asarray(x, np.float64).reshape(len(t), self.channels)
        c = self.counts
        c.received += len(t)
        good = np.isfinite(x).all(axis=1) & np.isfinite(t)
        c.non_finite += int((~good).sum())
        t, x = t[good], x[good]
        if not len(t):
            return []
        prev = np.maximum.accumulate(np.concatenate([[self._last_t if self._last_t is not None else -np.inf], t]))
        before = prev[:-1]
        c.duplicates += int((t == before).sum())
        c.out_of_order += int((t < before).sum())
        keep = t > before
        t, x = t[keep], x[keep]
        if not len(t):
            return []
        if self.rate == 0:  # event data: every record is a sample
            self._last_t = float(t[-1])
            c.resampled += len(t)
            return [Segment(t, x.astype(np.float32), False)]
        dt = np.diff(np.concatenate([[self._last_t if self._last_t is not None else t[0]], t]))
        breaks = np.flatnonzero(dt > self.max_gap_s)
        c.gaps += len(breaks)
        segments = []
        for part_t, part_x, gap in self._split(t, x, breaks):
            seg = self._resample(part_t, part_x, gap)
            if seg is not None:
                segments.append(seg)
        return segments

    @staticmethod
    def _split(t: np.ndarray, x: np.ndarray, breaks: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, bool]]:
        edges = [0, *breaks.tolist(), len(t)]
        # a part after a break restarts (an empty first part means the break came before t[0])
        return [(t[a:b], x[a:b], i > 0) for i, (a, b) in enumerate(itertools.pairwise(edges)) if b > a]

    def _resample(self, t: np.ndarray, x: np.ndarray, gap: bool) -> Segment | None:
        restart = gap or self._last_t is None
        if restart:
            self._origin, self._k = float(t[0]), 0
            src_t, src_x = t, x
        else:
            assert self._last_x is not None
            src_t = np.concatenate([[self._last_t], t])
            src_x = np.concatenate([self._last_x[None], x])
        self._last_t, self._last_x = float(t[-1]), x[-1].copy()
        last_k = int(np.floor((t[-1] - self._origin) * self.rate + 1e-9))
        if last_k < self._k:
            return None
        ks = np.arange(self._k, last_k + 1)
        grid = self._origin + ks / self.rate
        self._k = last_k + 1
        out = np.stack([np.interp(grid, src_t, src_x[:, j]) for j in range(self.channels)], axis=1)
        self.counts.resampled += len(grid)
        return Segment(grid, out.astype(np.float32), gap)


class Windower:
    """Uniform samples → a window of the last ``window`` samples every ``stride`` samples."""

    def __init__(self, spec: SeriesSpec) -> None:
        self.window, self.stride, self.channels = spec.window, spec.stride, len(spec.channels)
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros((0, self.channels), np.float32)
        self._tbuf = np.zeros(0, np.float64)
        self._total = 0  # samples since the last reset

    def push(self, seg: Segment) -> list[tuple[np.ndarray, float]]:
        """The windows completed by these samples: (window (W, C), time of its last sample)."""
        if seg.after_gap:
            self.reset()
        n = len(seg.t)
        if not n:
            return []
        buf = np.concatenate([self._buf, seg.x])
        tbuf = np.concatenate([self._tbuf, seg.t])
        start_total = self._total - len(self._buf)  # sample number of buf[0]
        self._total += n
        out = []
        # window ends (exclusive sample counts) e with e >= window and (e - window) % stride == 0
        first = max(self.window, self._total - n + 1)
        rem = (first - self.window) % self.stride
        e = first if rem == 0 else first + self.stride - rem
        while e <= self._total:
            a = e - self.window - start_total
            out.append((buf[a:a + self.window].copy(), float(tbuf[a + self.window - 1])))
            e += self.stride
        keep = self.window - 1
        cut = max(0, len(buf) - keep)  # never a negative start: that would count from the end
        self._buf, self._tbuf = buf[cut:], tbuf[cut:]
        return out


def recording_windows(t: np.ndarray, x: np.ndarray, spec: SeriesSpec,
                      labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """One whole recording through the agent's own Resampler and Windower → (windows (M, W, C),
    end times (M,), the label of each window's last sample when ``labels`` (per raw sample) given)."""
    resampler, windower = Resampler(spec), Windower(spec)
    wins: list[np.ndarray] = []
    ends: list[float] = []
    for seg in resampler.push(t, x):
        for w, te in windower.push(seg):
            wins.append(w)
            ends.append(te)
    arr = np.stack(wins) if wins else np.zeros((0, spec.window, len(spec.channels)), np.float32)
    ends_arr = np.array(ends, np.float64)
    win_labels: list[Any] = []
    if labels is not None and len(ends_arr):
        idx = np.clip(np.searchsorted(np.asarray(t, np.float64), ends_arr, side="right") - 1, 0, len(labels) - 1)
        win_labels = [labels[i] for i in idx]
    return arr, ends_arr, win_labels
