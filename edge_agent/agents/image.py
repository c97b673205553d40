"""The image agent: frames from a camera, stream, file or folder → scores → predictions.

The frame reader decodes (and, when there is spare time, resizes) in its own thread; this agent
writes the resized frame through the model's lookup table straight into the interpreter's input
tensor, invokes, smooths, and publishes what the publish policy lets through on
``{task}/prediction``. The run loop (:mod:`edge_agent.runtime`) drives it.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Final

import numpy as np

from .. import contract
from .. import manifest as manifest_mod
from ..config import Config, effective_threads, effective_workers
from ..engine import Engine
from ..errors import ModelError
from ..hub import Command, percentile
from ..manifest import ImageInput, Manifest
from ..observe import Observer
from ..postprocess import Prediction, PublishPolicy, Smoother, predict
from ..preprocess import image as image_pre
from ..preprocess.gate import ChangeGate
from ..publish.base import Publisher
from ..sources.base import Frame, Source
from ..sources.factory import make_source
from ..sources.reader import FrameReader
from .base import StageHook
from .workers import InferencePool

logger = logging.getLogger(__name__)

LATENCY_WINDOW: Final = 512  # recent capture → publish latencies kept for the metrics percentiles


@dataclasses.dataclass
class ImageModel:
    engine: Engine
    labels: tuple[str, ...]
    spec: ImageInput
    name: str
    sha256: str
    manifest: Manifest | None


def load(path: Path, manifest: Manifest | None, config: Config) -> ImageModel:
    """Check an image model against its manifest (or ``--labels``), then build the interpreter once."""
    labels = manifest_mod.read_labels(Path(config.model.labels)) if config.model.labels else ()
    if manifest is not None and not labels:
        labels = manifest.labels
    engine = load_engine(path, manifest, config)
    _, h, w, c = engine.input_shape
    if manifest is not None and manifest.input is not None:
        spec = manifest.input
        if (spec.height, spec.width, spec.channels) != (h, w, c):
            raise ModelError(f"manifest {manifest_mod.manifest_path_for(path)}: input {spec.width}x{spec.height}x"
                             f"{spec.channels} does not match the model's {w}x{h}x{c}")
    else:
        spec = ImageInput(width=w, height=h, channels=c, color_order="RGB" if c == 3 else "GRAY")
    if engine.num_classes != len(labels):
        raise ModelError(f"model {path}: {engine.num_classes} outputs but {len(labels)} labels")
    sha = manifest.sha256 if manifest else manifest_mod.sha256_file(path)
    name = manifest.name if manifest else path.stem
    logger.info("model %s (%s, %s, %d threads, %s)", path, engine.backend.name, engine.delegate,
                engine.threads, f"{spec.width}x{spec.height} {engine.input_dtype}")
    return ImageModel(engine, labels, spec, name, sha, manifest)


def load_engine(path: Path, manifest: Manifest | None, config: Config) -> Engine:
    """One interpreter for this model (each worker of a pool gets its own)."""
    return Engine.load(
        path,
        threads=effective_threads(config),
        edgetpu=config.model.edgetpu,
        edgetpu_fallback=config.model.edgetpu_fallback,
        expected_sha256=manifest.sha256 if manifest else None,
        logits=manifest is not None and manifest.logits,
    )


def make_pool(model: ImageModel, config: Config) -> InferencePool | None:
    """``model.workers`` interpreters in parallel, or None for one (the loop infers inline)."""
    workers = effective_workers(config)
    if workers <= 1:
        return None
    extra = [dataclasses.replace(model, engine=load_engine(model.engine.path, model.manifest, config))
             for _ in range(workers - 1)]
    logger.info("%d inference workers, %d threads each", workers, model.engine.threads)
    return InferencePool([ImageInference(m) for m in (model, *extra)])


class ImageInference:
    """Frame → scores: resize into the model's size and colour order, write through the lookup
    table straight into the interpreter's input tensor, invoke, dequantize."""

    def __init__(self, model: ImageModel) -> None:
        self.model = model
        self._fill = image_pre.make_fill(model.engine.table_for(model.spec))

    def prepare(self, image: np.ndarray) -> tuple[object, np.ndarray]:
        """The resize, tagged with this model's input spec: the reader thread runs it for the next
        frame while this one is inferred (see :class:`FrameReader`)."""
        return self.model.spec, image_pre.resize(image, self.model.spec)

    def resized(self, frame: Frame) -> np.ndarray:
        prepared = frame.prepared
        if prepared is not None and prepared[0] is self.model.spec:
            return prepared[1]
        return image_pre.resize(frame.image, self.model.spec)  # not prepared, or prepared before a reload

    def __call__(self, frame: Frame) -> np.ndarray:
        small = self.resized(frame)
        return self.model.engine.run(lambda view: self._fill(small, view))

    def timed(self, frame: Frame, hook: StageHook) -> np.ndarray:
        """The same steps, each reported to the bench's hook (resize, fill, invoke, scores)."""
        engine = self.model.engine
        t0 = time.perf_counter()
        small = self.resized(frame)
        t1 = time.perf_counter()
        engine.fill(lambda view: self._fill(small, view))
        t2 = time.perf_counter()
        engine.invoke()
        t3 = time.perf_counter()
        scores = engine.scores()
        t4 = time.perf_counter()
        hook.stage("resize", (t1 - t0) * 1000)
        hook.stage("fill", (t2 - t1) * 1000)
        hook.stage("invoke", (t3 - t2) * 1000)
        hook.stage("scores", (t4 - t3) * 1000)
        return scores


@dataclasses.dataclass
class Stats:
    frames: int = 0
    published: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    last_label: str | None = None
    latencies_ms: collections.deque[float] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))

    def fps(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.frames / elapsed if elapsed > 0 else 0.0

    def as_metrics(self, frames_dropped: int, frames_gated: int = 0) -> dict[str, Any]:
        lat = list(self.latencies_ms)
        return {"fps": round(self.fps(), 2), "frames": self.frames, "published": self.published,
                "frames_dropped": frames_dropped, "frames_gated": frames_gated, "last_label": self.last_label,
                "latency_ms": {"p50": round(percentile(lat, 50), 2), "p95": round(percentile(lat, 95), 2)}}


class ImageAgent:
    """One image model, one frame source, one publisher. :meth:`reconfigure` swaps model and
    settings (and the source, when the config names another), keeping seq and the publisher."""

    observer: Observer | None = None  # the live page and HA snapshot (edge_agent.observe); None: nobody

    def __init__(self, config: Config, model: ImageModel, publisher: Publisher,
                 hook: StageHook | None = None, source: Source | None = None) -> None:
        self.publisher = publisher
        self.hook = hook  # the bench's stage timings; None in service
        self.run_id = secrets.token_hex(4)
        self.seq = 0
        self.stats = Stats()
        # the config's source, or one the bench wraps to time capture; opened by start()
        self.reader = FrameReader(source if source is not None else make_source(config))
        self.config = config
        self.pool: InferencePool | None = None
        self._last_raw: np.ndarray | None = None  # the last inferred scores: what a gated frame reuses
        self.reconfigure(config, model)

    # -- the Agent protocol --------------------------------------------------------------------
    @property
    def inferences(self) -> int:
        return self.stats.frames

    @property
    def ended(self) -> bool:
        return self.reader.ended and not (self.pool and self.pool.pending)

    @property
    def waiting(self) -> bool:
        return self.reader.waiting

    @property
    def error(self) -> str | None:
        return self.reader.error

    def start(self) -> None:
        self.reader.start()  # a wrong camera or file fails here, before we announce ourselves online

    def read(self, timeout: float, stop: threading.Event) -> Frame | None:
        frame = self.reader.get(timeout)
        if frame is None and self.pool is not None and self.reader.ended:
            self._finish_all()  # the file ended: what the workers still hold goes out, in order
        return frame

    def process(self, item: Any) -> None:
        frame: Frame = item
        # the gate and the last scores are reset together (start, reload): a first frame is always inferred
        if not self.gate.changed(frame.image) and self._last_raw is not None:
            if self.pool is not None:
                self._finish_all()  # frames before this one first: seq order
            self.finish(frame, self._last_raw)
            return
        if self.pool is None:
            self.step(frame)
            return
        self.pool.submit(frame)
        for done, raw in self.pool.ready():
            self.finish(done, raw)

    def apply(self, command: Command) -> None:
        if command.threshold is not None:
            self.policy.threshold = command.threshold
        if command.max_rate is not None:
            self.policy.max_rate = command.max_rate
        if command.on_change is not None:
            self.policy.on_change = command.on_change

    def reconfigure(self, config: Config, model: Any) -> None:
        if self.pool is not None:  # frames already given to the old model's workers go out first
            self._finish_all()
            self.pool.close()
            self.pool = None
        if config.source != self.config.source:
            reader = FrameReader(make_source(config))
            reader.start()  # fails before anything is swapped: the old source keeps running
            self.reader.stop()
            self.reader = reader
        self.config = config
        self.model: ImageModel = model
        pp = config.postprocess
        self.smoother = Smoother(pp.smoothing)
        self.policy = PublishPolicy.from_config(pp)
        self.subtopic = contract.prediction_subtopic(config.task)
        self._inference = ImageInference(model)
        self.reader.prepare = self._inference.prepare  # the resize runs in the reader thread, overlapped
        self.pool = make_pool(model, config)
        self.gate = ChangeGate(config.source.change_gate)
        self._last_raw = None  # a new model: the next frame is inferred whatever the gate says
        self._withheld_frame: Frame | None = None  # the frame of the policy's withheld change

    def metrics(self) -> dict[str, Any]:
        return self.stats.as_metrics(self.reader.dropped, self.gate.skipped)

    def status(self) -> str:
        return f"{self.stats.fps():.1f} fps, last label {self.stats.last_label}"

    def summary(self) -> str:
        s = self.stats
        gated = f", {self.gate.skipped} not inferred (no change)" if self.gate.threshold > 0 else ""
        return (f"done: {s.frames} frames, {s.published} published, {s.fps():.1f} fps, "
                f"{self.reader.dropped} dropped by the camera{gated}")

    def stop(self) -> None:
        self.reader.stop()
        if self.pool is not None:  # --max-frames or a stop: frames in flight are still published
            try:
                self._finish_all()
            finally:
                self.pool.close()
        self._flush_withheld()

    def _flush_withheld(self) -> None:
        """A run never ends with a newer label unsaid: the change the rate ceiling held back goes out
        before the agent says offline (the hub would otherwise keep a label no longer true)."""
        frame = self._withheld_frame
        self._withheld_frame = None
        prediction = self.policy.take_withheld(frame.clock) if frame is not None else None
        if frame is not None and prediction is not None:
            if self.observer is not None:
                self.observer.image(frame, prediction, True)
            self._publish(prediction, frame, time.perf_counter())

    def _finish_all(self) -> None:
        assert self.pool is not None
        for frame, raw in self.pool.drain():
            self.finish(frame, raw)

    # -- one frame -----------------------------------------------------------------------------
    def step(self, frame: Frame) -> dict[str, Any] | None:
        """Infer and finish one frame inline (one worker)."""
        hook = self.hook
        raw = self._inference(frame) if hook is None else self._inference.timed(frame, hook)
        return self.finish(frame, raw)

    def finish(self, frame: Frame, raw: np.ndarray) -> dict[str, Any] | None:
        """Scores → smoothing, prediction, publish policy, publish: always in seq order."""
        self._last_raw = raw
        hook = self.hook
        t0 = time.perf_counter()
        scores = self.smoother.update(raw)
        prediction = predict(scores, self.model.labels, self.config.postprocess.top_k)
        self.stats.frames += 1
        self.stats.last_label = prediction.label
        now_mono = time.monotonic()
        published = self.policy.decide(prediction, frame.clock)
        if self.observer is not None:
            self.observer.image(frame, prediction, published)
        if not published:
            if self.policy.withheld is prediction:
                self._withheld_frame = frame  # a change the rate ceiling held back: sent at stop if still new
            if hook is not None:
                hook.stage("postprocess", (time.perf_counter() - t0) * 1000)
                hook.done((now_mono - frame.mono) * 1000)
            return None
        return self._publish(prediction, frame, t0)

    def _publish(self, prediction: Prediction, frame: Frame, t0: float) -> dict[str, Any]:
        hook = self.hook
        now_mono = time.monotonic()
        latency_ms = (now_mono - frame.mono) * 1000.0
        self.stats.latencies_ms.append(latency_ms)
        payload = contract.prediction_payload(
            task=self.config.task,
            prediction=prediction,
            seq=self.seq,
            run=self.run_id,
            frame_ts=frame.ts,
            now=time.time(),
            latency_ms=latency_ms,
            model_name=self.model.name,
            model_sha256=self.model.sha256,
            device_id=self.config.device_id,
        )
        t1 = time.perf_counter()
        self.publisher.publish(self.subtopic, payload)
        self.seq += 1
        self.stats.published += 1
        if hook is not None:
            t2 = time.perf_counter()
            hook.stage("postprocess", (t1 - t0) * 1000)
            hook.stage("publish", (t2 - t1) * 1000)
            hook.done((time.monotonic() - frame.mono) * 1000)
        return payload
