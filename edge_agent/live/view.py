"""The live page's state: fed by the pipeline (an :class:`~edge_agent.observe.Observer`), read by
the HTTP server's threads.

Cost rule: while nobody looks (:attr:`LiveView.watching` is false) an item costs a lock and a few
assignments — no frame is kept, no JPEG encoded, no signal history grown; only the last few
events (label changes, commands: a few KB) are kept so a page opened later has a timeline. With a
viewer the pipeline still only stores a reference to the newest frame: encoding happens in the
viewer's own HTTP thread, at most once per frame whoever asks (:meth:`LiveView.jpeg`).
"""

from __future__ import annotations

import collections
import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from . import jpeg

if TYPE_CHECKING:
    from ..postprocess import Prediction
    from ..sources.base import Frame
    from ..voice.recognizer import Command, RecognizerSettings

VIEWER_LEASE_S: Final = 5.0  # a page that asked for state or a frame this recently is looking
TIMELINE_EVENTS: Final = 30  # label changes and commands kept for the page's timeline
COMMANDS_KEPT: Final = 10
SIGNAL_HISTORY_S: Final = 8.0  # voice levels and scores, sensor scores: the last seconds the page plots
PLOT_POINTS: Final = 200  # a sensor window is thinned to this many points per channel for the plot
PAGE_MAX_WIDTH: Final = 480  # pixels: the page's frame is scaled down to this width
PAGE_JPEG_QUALITY: Final = 70
SILENCE_DB: Final = -100.0  # the level of digital silence (log of 0)


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level of float samples in [-1, 1], in dB below full scale."""
    if not len(samples):
        return SILENCE_DB
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(SILENCE_DB, 20 * math.log10(rms)) if rms > 0 else SILENCE_DB


class LiveView:
    """What the page shows, for one task; thread-safe."""

    def __init__(self, kind: str, task: str, labels: Sequence[str], channels: Sequence[str] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kind, self.task, self.labels, self.channels = kind, task, tuple(labels), tuple(channels)
        self._clock = clock
        self._lock = threading.Lock()
        self._new_frame = threading.Condition(self._lock)
        self._streams = 0
        self._seen = -math.inf
        self._frame: np.ndarray | None = None
        self._frame_index = -1
        self._version = 0
        self._jpeg: tuple[int, bytes] | None = None
        self._current: dict[str, Any] = {}
        self._last_label: str | None = None
        self._timeline: collections.deque[dict[str, Any]] = collections.deque(maxlen=TIMELINE_EVENTS)
        self._commands: collections.deque[dict[str, Any]] = collections.deque(maxlen=COMMANDS_KEPT)
        self._history: collections.deque[tuple[float, ...]] = collections.deque()
        self._history_labels: collections.deque[str] = collections.deque()
        self._window: np.ndarray | None = None
        self.items = 0  # items observed
        self.encoded = 0  # JPEGs encoded for the page (none while nobody looks)
        self.closed = False

    # -- who is looking ----------------------------------------------------------------------------
    @property
    def watching(self) -> bool:
        return self._streams > 0 or self._clock() - self._seen < VIEWER_LEASE_S

    @property
    def streams(self) -> int:
        """MJPEG streams open now."""
        return self._streams

    def seen(self) -> None:
        """A page asked for something: it counts as looking for :data:`VIEWER_LEASE_S`."""
        self._seen = self._clock()

    @contextlib.contextmanager
    def streaming(self) -> Iterator[None]:
        """An open MJPEG stream is a viewer for as long as it is open."""
        with self._lock:
            self._streams += 1
        try:
            yield
        finally:
            with self._lock:
                self._streams -= 1

    def close(self) -> None:
        """The agent stops: wake every stream so it can end cleanly."""
        with self._lock:
            self.closed = True
            self._new_frame.notify_all()

    # -- fed by the pipeline (edge_agent.observe.Observer) -----------------------------------------
    def _event(self, entry: dict[str, Any]) -> None:
        self._timeline.append({"ts": round(time.time(), 3), **entry})

    def image(self, frame: Frame, prediction: Prediction, published: bool) -> None:
        current = {"label": prediction.label, "score": prediction.score, "frame": frame.index,
                   "top": [{"label": s.label, "score": s.score} for s in prediction.top], "published": published}
        with self._lock:
            self.items += 1
            self._current = current
            if prediction.label != self._last_label or published:
                self._last_label = prediction.label
                self._event({"label": prediction.label, "score": prediction.score, "published": published})
            if self.watching:
                self._frame, self._frame_index = frame.image, frame.index
                self._version += 1
                self._new_frame.notify_all()
            elif self._frame is not None:  # the last viewer left: let the frame go
                self._frame, self._jpeg = None, None

    def audio(self, samples: np.ndarray, scores: np.ndarray | None, settings: RecognizerSettings,
              command: Command | None) -> None:
        with self._lock:
            self.items += 1
            if command is not None:
                entry = {"label": command.label, "score": round(command.score, 3), "published": True}
                self._commands.append({"ts": round(time.time(), 3), **entry})
                self._event(entry)
            if not self.watching:
                self._history.clear()
                self._history_labels.clear()
                return
            now = self._clock()
            label, score = self._top_command(scores)
            threshold = settings.threshold_for(label) if label else settings.threshold
            self._current = {"label": label, "score": round(score, 3), "threshold": threshold}
            self._remember(now, (now, round(level_dbfs(samples), 1), round(score, 3), threshold), label or "")

    def _top_command(self, scores: np.ndarray | None) -> tuple[str | None, float]:
        """The best-scoring command (labels starting with '_' are silence and unknown, not commands)."""
        if scores is None:
            return None, 0.0
        best, best_score = None, -1.0
        for label, score in zip(self.labels, scores.tolist(), strict=False):
            if not label.startswith("_") and score > best_score:
                best, best_score = label, float(score)
        return best, max(best_score, 0.0)

    def window(self, samples: np.ndarray, label: str | None, score: float | None, threshold: float | None,
               published: bool) -> None:
        with self._lock:
            self.items += 1
            self._current = {"label": label, "score": None if score is None else round(score, 4),
                             "threshold": threshold, "published": published}
            if label != self._last_label or published:
                self._last_label = label
                self._event({"label": label, "score": self._current["score"], "published": published})
            if not self.watching:
                self._window = None
                self._history.clear()
                self._history_labels.clear()
                return
            now = self._clock()
            self._window = samples
            self._remember(now, (now, self._current["score"] or 0.0, threshold or 0.0), label or "")

    def _remember(self, now: float, point: tuple[float, ...], label: str) -> None:
        self._history.append(point)
        self._history_labels.append(label)
        while self._history and now - self._history[0][0] > SIGNAL_HISTORY_S:
            self._history.popleft()
            self._history_labels.popleft()

    # -- read by the server ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything the page draws except the frame itself, JSON-ready."""
        with self._lock:
            now = self._clock()
            data: dict[str, Any] = {
                "kind": self.kind, "task": self.task, "items": self.items, "current": dict(self._current),
                "timeline": list(self._timeline)[::-1], "frame_version": self._version,
            }
            history = [(round(p[0] - now, 2), *p[1:]) for p in self._history]
            if self.kind == "audio":
                data["commands"] = list(self._commands)[::-1]
                data["history"] = [{"t": p[0], "level_db": p[1], "score": p[2], "threshold": p[3], "label": lab}
                                   for p, lab in zip(history, self._history_labels, strict=True)]
            elif self.kind == "series":
                data["channels"] = list(self.channels)
                data["window"] = _thin(self._window) if self._window is not None else []
                data["history"] = [{"t": p[0], "score": p[1], "threshold": p[2]} for p in history]
        return data

    def jpeg(self) -> tuple[int, bytes] | None:
        """The newest frame as JPEG (version, bytes), encoded once per frame whoever asks; None before one."""
        with self._lock:
            frame, version, cached = self._frame, self._version, self._jpeg
        if frame is None:
            return None
        if cached is not None and cached[0] == version:
            return cached
        data = jpeg.encode(frame, PAGE_MAX_WIDTH, PAGE_JPEG_QUALITY)
        with self._lock:
            self.encoded += 1
            if self._jpeg is None or self._jpeg[0] < version:
                self._jpeg = (version, data)
        return version, data

    def wait_frame(self, after: int, timeout: float) -> int:
        """Block (an HTTP thread, never the pipeline) until a frame newer than ``after`` or close."""
        with self._lock:
            self._new_frame.wait_for(lambda: self._version > after or self.closed, timeout)
            return self._version


def _thin(window: np.ndarray) -> list[list[float]]:
    """Channels × at most :data:`PLOT_POINTS` samples, for a small plot."""
    data = np.asarray(window, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    step = max(1, math.ceil(len(data) / PLOT_POINTS))
    return [[round(float(v), 4) for v in data[::step, c]] for c in range(data.shape[1])]
