"""Scores → prediction → publish or not. Pure functions and two tiny stateful helpers.

The policy mirrors what Home Assistant users expect of a sensor: a confident label, smoothed so
one odd frame does not flap the state, published when it changes (plus a heartbeat), at a bounded rate.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

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


DEFAULT_MAX_RATE: Final = 2.0  # messages a second at most, however the label flaps (0: no ceiling)
DEFAULT_HEARTBEAT_S: Final = 60.0  # a steady scene still says it is alive this often (0: never)


@dataclasses.dataclass
class PublishPolicy:
    """Decides whether a prediction is published.

    - below ``threshold``: never published (the hub keeps its last state);
    - ``on_change`` (the default): only when the label changes; a new label must reach ``threshold +
      hysteresis`` to replace the current one, so two close scores do not flap;
    - ``heartbeat_s`` > 0: with ``on_change``, the current label is published again when nothing was
      published for that long (the default 60 s: a hub sees the agent alive; ~1440 messages a day);
    - ``max_rate`` > 0: at most that many messages per second (the first is always sent); the
      default ceiling is :data:`DEFAULT_MAX_RATE`.

    The defaults are what a Home Assistant user wants: a steady scene costs one message a minute
    (one recorder row), a change is published at once. ``on_change = false, max_rate = 0`` publishes
    every confident frame (30 a second from a 30 fps camera).

    ``now`` is the caller's clock, never the wall clock: a live source's monotonic time (a Pi's
    clock steps at boot when NTP catches up), a recorded source's media time (frame or sample
    timestamps), so a file decoded at 200 fps publishes what a camera watching that scene would.

    A confident change the rate ceiling held back is kept as :attr:`withheld` until a later
    prediction is published or the scene returns to the published label: the agent publishes it
    at stop (:meth:`take_withheld`), so a run never ends with a newer label unsaid.
    """

    threshold: float = 0.5
    max_rate: float = DEFAULT_MAX_RATE
    on_change: bool = True
    hysteresis: float = 0.1
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    _last_label: str | None = None
    _last_time: float | None = None
    withheld: Prediction | None = None

    @classmethod
    def from_config(cls, pp: Any) -> PublishPolicy:
        """From a :class:`~edge_agent.config.PostprocessConfig`."""
        return cls(pp.threshold, pp.max_rate, pp.on_change, pp.hysteresis, pp.heartbeat_s)

    def decide(self, prediction: Prediction, now: float) -> bool:
        if prediction.score < self.threshold:
            return False
        if prediction.label == self._last_label and self.on_change:
            self.withheld = None  # the scene is back to what the hub already holds
        heartbeat = (self.on_change and self.heartbeat_s > 0 and self._last_time is not None
                     and now - self._last_time >= self.heartbeat_s)
        if self.on_change and not heartbeat:
            if prediction.label == self._last_label:
                return False
            if self._last_label is not None and prediction.score < self.threshold + self.hysteresis:
                return False
        if self.max_rate > 0 and self._last_time is not None and 0 <= now - self._last_time < 1.0 / self.max_rate:
            self.withheld = prediction
            return False
        self._mark(prediction, now)
        return True

    def take_withheld(self, now: float) -> Prediction | None:
        """The change still unpublished, marked as published now (the agent sends it at stop)."""
        prediction = self.withheld
        if prediction is not None:
            self._mark(prediction, now)
        return prediction

    def _mark(self, prediction: Prediction, now: float) -> None:
        self._last_label = prediction.label
        self._last_time = now
        self.withheld = None
