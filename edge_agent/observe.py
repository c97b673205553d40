"""What the pipeline shows to onlookers (the live page, the Home Assistant snapshot): one small
observer interface, called by an agent after each item, so data flows one way::

    agent.process(item) ──▶ observer.image / audio / window ──▶ live page, snapshot

An observer gets references (a frame, a window of samples) and must return at once: it never
blocks, encodes only for someone who is looking, and nothing it does reaches back into the
pipeline. An agent without an observer (the default) pays one ``is None`` test per item.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from .postprocess import Prediction
    from .sources.base import Frame
    from .voice.recognizer import Command, RecognizerSettings

logger = logging.getLogger(__name__)


class Observer(Protocol):
    """Called from the pipeline's thread after each item; each method must return quickly."""

    def image(self, frame: Frame, prediction: Prediction, published: bool) -> None:
        """An image task finished a frame: its prediction, and whether the publish policy sent it."""
        ...

    def audio(self, samples: np.ndarray, scores: np.ndarray | None, settings: RecognizerSettings,
              command: Command | None) -> None:
        """One hop of audio: its samples, the model's scores on the last clip (None until the
        first whole clip), the thresholds in force, and the command announced now (if any)."""
        ...

    def window(self, samples: np.ndarray, label: str | None, score: float | None, threshold: float | None,
               published: bool) -> None:
        """A sensor window (W, C): the label (or normal/anomaly), its score and the threshold it is held to."""
        ...


class Fanout:
    """Several observers as one. One that raises is logged once and dropped: an onlooker must
    never stop the pipeline it watches."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.observers = list(observers)

    def _each(self, method: str, *args: object) -> None:
        for observer in list(self.observers):
            try:
                getattr(observer, method)(*args)
            except Exception:
                logger.exception("%s failed and is switched off", type(observer).__name__)
                self.observers.remove(observer)

    def image(self, frame: Frame, prediction: Prediction, published: bool) -> None:
        self._each("image", frame, prediction, published)

    def audio(self, samples: np.ndarray, scores: np.ndarray | None, settings: RecognizerSettings,
              command: Command | None) -> None:
        self._each("audio", samples, scores, settings, command)

    def window(self, samples: np.ndarray, label: str | None, score: float | None, threshold: float | None,
               published: bool) -> None:
        self._each("window", samples, label, score, threshold, published)
