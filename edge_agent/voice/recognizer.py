"""Posteriors every hop → keyword events: one spoken word, one event.

The model sees the last second of audio every hop (:data:`STRIDE_MS`), so a word is visible in
several consecutive windows and a single noisy window can spike. As TensorFlow's
``RecognizeCommands`` (tensorflow/examples/speech_commands/recognize_commands.py) does, the
posteriors are averaged over a short window; a command is announced when

* the averaged top label is a command (``_silence_`` and ``_unknown_`` are never announced),
* its averaged score reaches ``threshold`` (or that command's own entry in ``thresholds``: a
  command that sounds like common words, "stop" and "stuff", can ask for more certainty than the rest),
* at least ``min_count`` results are in the averaging window (no decision on a cold start),
* ``suppression_ms`` have passed since the last announcement, and
* the recognizer is *re-armed*: after an announcement the averaged score of that command must
  fall below the threshold once, so a long or slow word is never announced twice.

Pure computation on timestamps in milliseconds of *stream* time: the same events come out for a
file processed 50x faster than real time as for a live microphone, which is what makes the
latency and false-accept figures in ``tools/eval_voice.py`` honest.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

STRIDE_MS: Final = 50  # the model runs every 50 ms of audio: 20 inferences per second
AVERAGE_WINDOW_MS: Final = 300  # posteriors averaged over the last 300 ms (6 results)
THRESHOLD: Final = 0.7  # averaged score a command needs
MIN_COUNT: Final = 3  # results in the averaging window before any decision
SUPPRESSION_MS: Final = 1000  # no second command within a second of the last
SILENCE: Final = "_silence_"
UNKNOWN: Final = "_unknown_"
NOT_COMMANDS: Final = frozenset({SILENCE, UNKNOWN})


@dataclasses.dataclass(frozen=True)
class RecognizerSettings:
    """Tuned per model by ``tools/eval_voice.py`` and stored in the manifest's ``recognizer``."""

    stride_ms: int = STRIDE_MS
    average_window_ms: int = AVERAGE_WINDOW_MS
    threshold: float = THRESHOLD
    min_count: int = MIN_COUNT
    suppression_ms: int = SUPPRESSION_MS
    thresholds: Mapping[str, float] = dataclasses.field(default_factory=dict)  # per command, overrides threshold

    def __post_init__(self) -> None:
        if self.stride_ms <= 0 or self.average_window_ms < self.stride_ms:
            raise ValueError("stride_ms must be positive and average_window_ms at least one stride")
        if not 0.0 <= self.threshold <= 1.0 or self.min_count < 1 or self.suppression_ms < 0:
            raise ValueError("threshold must be in [0, 1], min_count at least 1, suppression_ms not negative")
        for label, value in self.thresholds.items():
            if not isinstance(label, str) or isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0.0 <= value <= 1.0:
                raise ValueError(f"thresholds must map command names to numbers in [0, 1] (got {label!r}: {value!r})")

    def threshold_for(self, label: str) -> float:
        return float(self.thresholds.get(label, self.threshold))

    def with_threshold(self, threshold: float) -> RecognizerSettings:
        """One threshold for every command: what a user who sets ``--threshold`` (or sends one over
        MQTT) means, so the model's per-command ones are dropped."""
        return dataclasses.replace(self, threshold=threshold, thresholds={})

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["thresholds"] = dict(self.thresholds)
        if not out["thresholds"]:
            del out["thresholds"]  # manifests without per-command thresholds stay as they were
        return out

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> RecognizerSettings:
        """Known keys from a manifest's ``recognizer`` mapping; the defaults for the rest."""
        data = data or {}
        d = cls()
        thresholds = data.get("thresholds", {})
        if not isinstance(thresholds, Mapping):
            raise ValueError(f"thresholds must be a mapping of command to threshold, not {thresholds!r}")
        return cls(
            stride_ms=int(data.get("stride_ms", d.stride_ms)),
            average_window_ms=int(data.get("average_window_ms", d.average_window_ms)),
            threshold=float(data.get("threshold", d.threshold)),
            min_count=int(data.get("min_count", d.min_count)),
            suppression_ms=int(data.get("suppression_ms", d.suppression_ms)),
            thresholds=dict(thresholds),
        )


@dataclasses.dataclass(frozen=True)
class Command:
    """An announced keyword: its label, averaged score, and the stream time (ms) of the end of
    the audio window that decided it."""

    label: str
    score: float
    time_ms: float


class Recognizer:
    """Feed one posterior vector per hop with :meth:`update`; it returns a :class:`Command` or None."""

    def __init__(self, labels: Sequence[str], settings: RecognizerSettings | None = None) -> None:
        self.labels = tuple(labels)
        self.settings = settings or RecognizerSettings()
        self._results: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        self._last_time = -float("inf")
        self._last_label: str | None = None
        self._armed = True

    def reset(self) -> None:
        self._results.clear()
        self._last_time = -float("inf")
        self._last_label = None
        self._armed = True

    def average(self) -> np.ndarray:
        return np.mean([r for _, r in self._results], axis=0) if self._results else np.zeros(len(self.labels))

    def update(self, scores: np.ndarray, time_ms: float) -> Command | None:
        """``scores``: the model's posteriors for the window ending at ``time_ms`` (stream time)."""
        s = self.settings
        if self._results and time_ms < self._results[-1][0]:
            raise ValueError(f"results must come in time order ({time_ms} after {self._results[-1][0]})")
        self._results.append((time_ms, np.asarray(scores, np.float32)))
        while self._results and self._results[0][0] <= time_ms - s.average_window_ms:
            self._results.popleft()
        avg = self.average()
        top = int(np.argmax(avg))
        label, score = self.labels[top], float(avg[top])
        if not self._armed and self._last_label is not None:
            last_score = float(avg[self.labels.index(self._last_label)])
            if last_score < s.threshold_for(self._last_label):
                self._armed = True
        if (
            label in NOT_COMMANDS
            or score < s.threshold_for(label)
            or len(self._results) < s.min_count
            or time_ms - self._last_time < s.suppression_ms
            or (not self._armed and label == self._last_label)
        ):
            return None
        self._last_time, self._last_label, self._armed = time_ms, label, False
        return Command(label, score, time_ms)
