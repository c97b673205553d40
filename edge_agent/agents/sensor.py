"""The sensor (series) agent: samples from a replay, serial line or MQTT topic → windows → a
full-int8 model → a class label or an anomaly verdict → the publisher.

It implements :class:`~edge_agent.agents.base.Agent` for the one run loop::

    source.read ──samples──▶ Resampler ──▶ Windower ──windows (bounded, newest kept)──▶ read() returns one
    process(window) ──▶ SeriesModel.infer ──▶ label + scores | score vs threshold ──▶ policy ──▶ publish

What a user sees when the input is bad: NaN/inf, out-of-order and duplicate samples are dropped
and counted (metrics ``samples``); a gap longer than ``max_gap_ms`` restarts the window; a sensor
that goes silent for ``sensor.stale_s`` is reported in :meth:`status` and its half-filled window
is thrown away, so no prediction is ever made from stale samples; input far slower than the
model's rate is warned about once and shown in status; a burst of samples makes windows faster
than they can be processed, so only the newest ``MAX_PENDING_WINDOWS`` are kept (counted).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np

from .. import series_contract
from ..config import Config
from ..errors import ModelError
from ..hub import Command, percentile
from ..manifest import Manifest
from ..observe import Observer
from ..postprocess import Prediction, PublishPolicy, Smoother, predict
from ..preprocess import series
from ..publish.base import Publisher
from ..sources.base import SourceLost, reopen_with_backoff
from ..sources.series import SeriesSource
from ..sources.series_factory import make_series_source
from . import series_model
from .base import StageHook
from .series_model import SeriesModel

logger = logging.getLogger(__name__)

MAX_PENDING_WINDOWS: Final = 32  # windows waiting for the model; older ones are dropped (counted)
MIN_STALE_S: Final = 2.0
STALE_WINDOWS: Final = 3.0  # default silence timeout: this many window lengths (at least MIN_STALE_S)
SLOW_INPUT_RATIO: Final = 0.5  # input slower than half the model's rate: warned, shown in status
EPOCH_AFTER_S: Final = 1e9  # sample times above this are Unix time (2001 on), not seconds since a start
RATE_EVERY_SAMPLES: Final = 32  # the input rate is measured over this many samples


def load(path: Path, manifest: Manifest | None, config: Config) -> SeriesModel:
    """The runtime's loader for ``kind == "series"``: checks naming the field, then the engine."""
    if manifest is None:
        raise ModelError(f"model {path}: no manifest {path.with_suffix('.json').name} beside it; a sensor model "
                         "needs one (it holds the channels, rate, window and scaling)")
    return series_model.load(path, manifest, config)


@dataclasses.dataclass(frozen=True)
class Window:
    """One window of raw samples, as the model will see it."""

    samples: np.ndarray  # (W, C)
    t_end: float  # the sample clock's time of its last sample (seconds)
    wall_end: float  # its wall-clock time: the sample's own time if on the epoch, else when it arrived
    mono_end: float  # time.monotonic() then: latency is measured from here


def stale_after_s(config: Config, spec: series.SeriesSpec) -> float:
    if config.sensor.stale_s > 0:
        return config.sensor.stale_s
    return max(MIN_STALE_S, STALE_WINDOWS * spec.window_s, 2 * spec.max_gap_ms / 1000.0)


class SensorAgent:
    """One series model, one sample source, one publisher."""

    observer: Observer | None = None  # the live page (edge_agent.observe); None: nobody

    def __init__(self, config: Config, model: SeriesModel, publisher: Publisher,
                 source: SeriesSource | None = None, hook: StageHook | None = None) -> None:
        self.config = config
        self.hook = hook
        self.publisher = publisher
        self.source = source or make_series_source(config, model.spec.names)
        self.run_id = secrets.token_hex(4)
        self.seq = 0
        self.published = 0
        self.windows_dropped = 0
        self.silences = 0
        self.reopens = 0
        self.last_label: str | None = None
        self.last_score: float | None = None
        self.latencies_ms: collections.deque[float] = collections.deque(maxlen=256)
        self._inferences = 0
        self._started = time.monotonic()
        self._last_sample_mono: float | None = None
        self._silent_since: float | None = None
        self._rate_mark: tuple[float, int] | None = None  # (first sample time, samples) since the last rate
        self.input_rate_hz: float | None = None
        self._slow_warned = False
        self._pending: collections.deque[Window] = collections.deque()
        self._use(config, model)

    def _use(self, config: Config, model: SeriesModel) -> None:
        """Config and model dependent state (also on SIGHUP)."""
        self.config = config
        old = getattr(self, "model", None)
        self.model = model
        if old is None or old.spec != model.spec:
            self.resampler = series.Resampler(model.spec)
            self.windower = series.Windower(model.spec)
            self._pending.clear()
        p = config.postprocess
        self.policy = dataclasses.replace(PublishPolicy.from_config(p),
                                          threshold=p.threshold if model.anomaly is None else 0.0)
        self.smoother = Smoother(p.smoothing)
        self._withheld: tuple[float, Callable[[], dict[str, Any]]] | None = None
        self.stale_s = stale_after_s(config, model.spec)

    # -- the Agent protocol ------------------------------------------------------------------------
    @property
    def inferences(self) -> int:
        return self._inferences

    @property
    def ended(self) -> bool:
        return (self.source.ended or self.source.error is not None) and not self._pending

    @property
    def waiting(self) -> bool:
        return False  # a silent sensor is said in the status line (stale), and gets no watchdog ping

    @property
    def error(self) -> str | None:
        return self.source.error

    def start(self) -> None:
        self.source.open()
        self._last_sample_mono = time.monotonic()  # the silence clock starts when the source opens

    def read(self, timeout: float, stop: threading.Event) -> Window | None:
        if self._pending:
            return self._pending.popleft()
        try:
            samples = self.source.read(timeout)
        except SourceLost as e:
            self._forget("the source was lost")
            if reopen_with_backoff(self.source, str(e), stop):
                self.reopens += 1
                self._last_sample_mono = time.monotonic()
            return None
        now = time.monotonic()
        if samples is not None and len(samples.t):
            self._take(samples, now)
        elif (self._silent_since is None and self._last_sample_mono is not None
              and now - self._last_sample_mono > self.stale_s):
            self._silent_since = self._last_sample_mono
            self.silences += 1
            logger.warning("sensor silent for %.1f s: no predictions until samples come again",
                           now - self._last_sample_mono)
            self._forget("silence")
        return self._pending.popleft() if self._pending else None

    def _forget(self, why: str) -> None:
        """Throw away half-filled windows: nothing predicted from before a silence or a loss."""
        self.resampler.reset()
        self.windower.reset()
        self._pending.clear()
        self._rate_mark = None
        self.smoother.reset()
        logger.debug("front end reset: %s", why)

    def _take(self, samples: Any, now: float) -> None:
        if self._silent_since is not None:
            logger.info("sensor samples again after %.1f s of silence", now - self._silent_since)
            self._silent_since = None
        self._last_sample_mono = now
        self._measure_rate(samples.t[np.isfinite(samples.t)])
        wall = time.time()
        for seg in self.resampler.push(samples.t, samples.x):
            for w, t_end in self.windower.push(seg):
                if self.source.live and len(self._pending) >= MAX_PENDING_WINDOWS:  # a file just waits
                    self._pending.popleft()
                    self.windows_dropped += 1
                # a sample clock on the epoch (an IMU's own timestamps) dates the window itself
                self._pending.append(Window(w, t_end, t_end if t_end > EPOCH_AFTER_S else wall, now))

    def _measure_rate(self, t: np.ndarray) -> None:
        """The input rate on the samples' own clock (not arrival times: a burst or a replay is
        measured right too), over at least RATE_EVERY_SAMPLES samples."""
        if not len(t):
            return
        if self._rate_mark is None:
            self._rate_mark = (float(t[0]), 0)
        t0, n = self._rate_mark
        n += len(t)
        span = float(t[-1]) - t0
        if n < RATE_EVERY_SAMPLES or span <= 0:
            self._rate_mark = (t0, n)
            return
        self.input_rate_hz = (n - 1) / span
        self._rate_mark = None
        rate = self.model.spec.rate_hz
        if rate and self.input_rate_hz < SLOW_INPUT_RATIO * rate and not self._slow_warned:
            self._slow_warned = True
            logger.warning("sensor input arrives at %.1f Hz but the model was trained at %g Hz: windows are "
                           "interpolated from too few samples; predictions will be poor", self.input_rate_hz, rate)

    def process(self, item: Window) -> None:
        hook = self.hook
        t0 = time.perf_counter()
        scores = self.model.infer(item.samples)
        self._inferences += 1
        if hook is not None:
            hook.stage("infer", (time.perf_counter() - t0) * 1000)
        payload = self._decide(scores, item)
        if payload is not None:
            self.publisher.publish(series_contract.prediction_subtopic(self.config.task), payload)
            self.published += 1
        if self.observer is not None:
            threshold = self.model.anomaly.threshold if self.model.anomaly is not None else self.policy.threshold
            self.observer.window(item.samples, self.last_label, self.last_score, threshold, payload is not None)
        if hook is not None:
            hook.done((time.monotonic() - item.mono_end) * 1000)

    def _decide(self, scores: np.ndarray, item: Window) -> dict[str, Any] | None:
        """The payload to publish for this window, or None when the publish policy says no."""
        model = self.model
        # the policy's clock: a recording's own sample clock (a replay at any speed publishes what the
        # sensor would have), a live source's monotonic time (a Pi's wall clock steps at boot)
        now = item.mono_end if self.source.live else item.t_end
        payload: Callable[[], dict[str, Any]]
        if model.anomaly is not None:
            score = float(scores[0])
            threshold = model.anomaly.threshold
            label = series_contract.ANOMALY_LABELS[int(score > threshold)]
            self.last_label, self.last_score = label, score
            prediction = Prediction(label, 1.0, int(score > threshold), ())
            task = self.config.task

            def payload() -> dict[str, Any]:
                return series_contract.anomaly_payload(task=task, score=score, threshold=threshold,
                                                       window_ts=item.wall_end, **self._envelope(item))
        else:
            prediction = predict(self.smoother.update(scores), model.labels, self.config.postprocess.top_k)
            self.last_label, self.last_score = prediction.label, prediction.score
            task, scored = self.config.task, prediction

            def payload() -> dict[str, Any]:
                return series_contract.class_payload(task=task, prediction=scored, window_ts=item.wall_end,
                                                     **self._envelope(item))
        if self.policy.decide(prediction, now):
            return payload()
        if self.policy.withheld is prediction:
            self._withheld = (now, payload)  # a change the rate ceiling held back: sent at stop if still new
        return None

    def _flush_withheld(self) -> None:
        """A run never ends with a newer label unsaid: the held-back change goes out before offline."""
        withheld, self._withheld = self._withheld, None
        if withheld is not None and self.policy.take_withheld(withheld[0]) is not None:
            self.publisher.publish(series_contract.prediction_subtopic(self.config.task), withheld[1]())
            self.published += 1

    def _envelope(self, item: Window) -> dict[str, Any]:
        self.seq += 1
        latency_ms = (time.monotonic() - item.mono_end) * 1000.0
        self.latencies_ms.append(latency_ms)
        return {"seq": self.seq, "run": self.run_id, "now": time.time(), "latency_ms": latency_ms,
                "model_name": self.model.name, "model_sha256": self.model.sha256, "device_id": self.config.device_id}

    def apply(self, command: Command) -> None:
        if command.threshold is not None:
            if self.model.anomaly is None:
                self.policy.threshold = command.threshold
            else:
                logger.info("remote control: an anomaly model keeps its calibrated threshold (%g)",
                            self.model.anomaly.threshold)
        if command.max_rate is not None:
            self.policy.max_rate = command.max_rate
        if command.on_change is not None:
            self.policy.on_change = command.on_change
        logger.info("remote control applied: %s", command)

    def reconfigure(self, config: Config, model: Any) -> None:
        self._use(config, model)

    @property
    def silent(self) -> bool:
        return self._silent_since is not None

    def counts(self) -> dict[str, int]:
        c = self.resampler.counts
        return {"received": c.received, "non_finite": c.non_finite, "out_of_order": c.out_of_order,
                "duplicates": c.duplicates, "gaps": c.gaps, "bad_records": self.source.bad_records,
                "buffer_overflows": self.source.overflows, "windows_dropped": self.windows_dropped}

    def metrics(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        lat = list(self.latencies_ms)
        counts = self.counts()
        return {"fps": round(self._inferences / elapsed, 2), "frames": self._inferences, "published": self.published,
                "frames_dropped": counts["windows_dropped"], "last_label": self.last_label,
                "latency_ms": {"p50": round(percentile(lat, 50), 2), "p95": round(percentile(lat, 95), 2)},
                "samples": counts, "silent": self.silent, "silences": self.silences,
                "input_rate_hz": round(self.input_rate_hz, 2) if self.input_rate_hz is not None else None,
                "model_rate_hz": self.model.spec.rate_hz}

    def status(self) -> str:
        if self._silent_since is not None:
            return (f"{self.config.task}: sensor silent for {time.monotonic() - self._silent_since:.0f} s "
                    f"({self.source.name}); no predictions")
        if self.source.error:
            return f"{self.config.task}: {self.source.error}"
        rate = self.model.spec.rate_hz
        slow = ""
        if rate and self.input_rate_hz is not None and self.input_rate_hz < SLOW_INPUT_RATIO * rate:
            slow = f"; input {self.input_rate_hz:.1f} Hz, model wants {rate:g} Hz"
        last = f"last {self.last_label} {self.last_score:.3g}" if self.last_label is not None else "no window yet"
        dropped = self.resampler.counts.dropped() + self.source.bad_records
        return f"{self.config.task}: {self._inferences} windows, {last}, {dropped} samples dropped{slow}"

    def summary(self) -> str:
        c = self.counts()
        return (f"{self.config.task}: {self._inferences} windows, {self.published} published from {c['received']} "
                f"samples ({self.source.name}); dropped: {c['non_finite']} NaN/inf, {c['out_of_order']} out of order, "
                f"{c['duplicates']} duplicates, {c['bad_records']} bad records, {c['windows_dropped']} windows; "
                f"{c['gaps']} gaps, {self.silences} silences")

    def stop(self) -> None:
        self.source.close()
        self._flush_withheld()
