"""Scores → prediction → publish or not. Pure functions and two tiny stateful helpers.

The policy mirrors what Home Assistant users expect of a sensor: a confident label, smoothed so
one odd frame does not flap the state, published either at a bounded rate or only when it changes.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class Scored(NamedTuple):
    label: str
    score: float


class Prediction(NamedTuple):
    """The best label after smoothing, and the top-k behind it."""

    label: str
    score: float
    class_index: int
    top: tuple[Scored, ...]


def top_k(scores: np.ndarray, labels: Sequence[str], k: int) -> tuple[Scored, ...]:
    """The k best (label, score) pairs, best first; ties keep the label order."""
    k = max(1, min(k, len(scores)))
    order = np.argsort(-scores, kind="stable")[:k]
    return tuple(Scored(labels[i] if i < len(labels) else str(i), round(float(scores[i]), 4)) for i in order)


def predict(scores: np.ndarray, labels: Sequence[str], k: int) -> Prediction:
    top = top_k(scores, labels, k)
    index = int(np.argmax(scores))
    return Prediction(top[0].label, top[0].score, index, top)


class Smoother:
    """Mean of the last ``window`` score vectors (window 1 = no smoothing), O(classes) per frame."""

    def __init__(self, window: int) -> None:
        self.window = max(1, window)
        self._history: collections.deque[np.ndarray] = collections.deque()
        self._sum: np.ndarray | None = None

    def update(self, scores: np.ndarray) -> np.ndarray:
        if self.window == 1:
            return scores
        scores = scores.astype(np.float64)
        if self._sum is None or self._sum.shape != scores.shape:
            self._sum = np.zeros_like(scores)
            self._history.clear()
        self._history.append(scores)
        self._sum += scores
        if len(self._history) > self.window:
            self._sum -= self._history.popleft()
        return (self._sum / len(self._history)).astype(np.float32)

    def reset(self) -> None:
        self._history.clear()
        self._sum = None


@dataclasses.dataclass
class PublishPolicy:
    """Decides whether a prediction is published.

    - below ``threshold``: never published (the hub keeps its last state);
    - ``on_change``: only when the label changes; a new label must reach ``threshold +
      hysteresis`` to replace the current one, so two close scores do not flap;
    - ``max_rate`` > 0: at most that many messages per second (the first is always sent).
    """

    threshold: float = 0.5
    max_rate: float = 0.0
    on_change: bool = False
    hysteresis: float = 0.1
    _last_label: str | None = None
    _last_time: float | None = None

    def decide(self, prediction: Prediction, now: float) -> bool:
        if prediction.score < self.threshold:
            return False
        if self.on_change:
            if prediction.label == self._last_label:
                return False
            if self._last_label is not None and prediction.score < self.threshold + self.hysteresis:
                return False
        if self.max_rate > 0 and self._last_time is not None and now - self._last_time < 1.0 / self.max_rate:
            return False
        self._last_label = prediction.label
        self._last_time = now
        return True
