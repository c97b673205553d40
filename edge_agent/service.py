"""The composition root: config → model, source, publisher → a running pipeline.

Data flows one way — source → preprocess → engine → postprocess → publisher — and this module
only wires the stages and runs them in order: start the publisher (it connects in the
background), open the source (a wrong camera fails here, before anything else), then loop;
stop in reverse order, flushing what was accepted for publishing.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np

from . import __version__, contract
from . import manifest as manifest_mod
from .config import Config, effective_threads, spool_path
from .engine import Engine
from .errors import ConfigError, EdgeAgentError, ExitCode, ModelError, PublishError
from .hub import Command, Hub, drain, percentile
from .manifest import ImageInput, Manifest
from .postprocess import PublishPolicy, Smoother, predict
from .preprocess import image as image_pre
from .publish.base import Publisher
from .publish.mqtt import MqttPublisher
from .publish.spool import open_spool
from .publish.stdout import StdoutPublisher
from .sources.base import Frame
from .sources.factory import make_source
from .sources.reader import FrameReader
from .tasks import TASKS, default_model

logger = logging.getLogger(__name__)

FRAME_WAIT_S: Final = 0.5  # how long the loop waits for a frame before checking for stop
END_FLUSH_S: Final = 10.0  # at the end of a file, wait this long for the broker's acks
LATENCY_WINDOW: Final = 512  # recent capture → publish latencies kept for the metrics percentiles
STATUS_EVERY_S: Final = 5.0  # how often the service manager's status line is refreshed


@dataclasses.dataclass
class LoadedModel:
    engine: Engine
    labels: tuple[str, ...]
    spec: ImageInput
    name: str
    sha256: str
    manifest: Manifest | None


def resolve_model_path(config: Config) -> Path:
    if config.model.path:
        return Path(config.model.path)
    path = default_model(config.task)
    if path is None:
        raise ConfigError(f"{config.where('task')}: task '{config.task}' needs a model: give --model FILE")
    return path


def load_model(config: Config) -> LoadedModel:
    """Check the model and its manifest (or labels file), then build the interpreter once."""
    path = resolve_model_path(config)
    manifest_path = manifest_mod.manifest_path_for(path)
    manifest: Manifest | None = None
    if manifest_path.exists():
        manifest = manifest_mod.load(manifest_path)
    elif not config.model.labels:
        raise ModelError(f"model {path}: no manifest {manifest_path.name} beside it; give --labels labels.txt")
    labels = manifest_mod.read_labels(Path(config.model.labels)) if config.model.labels else ()
    if manifest is not None and not labels:
        labels = manifest.labels
    if manifest is not None and manifest.kind != "image" and TASKS[config.task].kind == "image":
        raise ModelError(f"model {path}: its manifest says it is an {manifest.kind} model, not an image model")
    engine = Engine.load(
        path,
        threads=effective_threads(config),
        edgetpu=config.model.edgetpu,
        edgetpu_fallback=config.model.edgetpu_fallback,
        expected_sha256=manifest.sha256 if manifest else None,
        logits=manifest is not None and manifest.logits,
    )
    if manifest is not None and manifest.input is not None:
        spec = manifest.input
        _, h, w, c = engine.input_shape
        if (spec.height, spec.width, spec.channels) != (h, w, c):
            raise ModelError(f"manifest {manifest_path}: input {spec.width}x{spec.height}x{spec.channels} does not "
                             f"match the model's {w}x{h}x{c}")
    else:
        _, h, w, c = engine.input_shape
        spec = ImageInput(width=w, height=h, channels=c, color_order="RGB" if c == 3 else "GRAY")
    if engine.num_classes != len(labels):
        raise ModelError(f"model {path}: {engine.num_classes} outputs but {len(labels)} labels")
    sha = manifest.sha256 if manifest else manifest_mod.sha256_file(path)
    name = manifest.name if manifest else path.stem
    logger.info("model %s (%s, %s, %d threads, %s)", path, engine.backend.name, engine.delegate,
                engine.threads, f"{spec.width}x{spec.height} {engine.input_dtype}")
    return LoadedModel(engine, labels, spec, name, sha, manifest)


def make_publisher(config: Config) -> Publisher:
    if config.sink == "stdout":
        return StdoutPublisher()
    spool = open_spool(spool_path(config), config.spool.max_messages, config.spool.max_age_s)
    return MqttPublisher(config.mqtt, config.device_id, config.task, spool)


class ImageInference:
    """Frame → scores: resize into the model's size and colour order, write through the lookup
    table straight into the interpreter's input tensor, invoke, dequantize."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self._fill = image_pre.make_fill(model.engine.table_for(model.spec))

    def prepare(self, image: np.ndarray) -> tuple[object, np.ndarray]:
        """The resize, tagged with this model's input spec: the reader thread runs it for the next
        frame while this one is inferred (see :class:`FrameReader`)."""
        return self.model.spec, image_pre.resize(image, self.model.spec)

    def __call__(self, frame: Frame) -> np.ndarray:
        prepared = frame.prepared
        if prepared is not None and prepared[0] is self.model.spec:
            small = prepared[1]
        else:  # not prepared, or prepared for the model before a reload
            small = image_pre.resize(frame.image, self.model.spec)
        return self.model.engine.run(lambda view: self._fill(small, view))


class Notifier(Protocol):
    """Progress reports for a service manager (systemd's sd_notify); every method is cheap."""

    def ready(self) -> None: ...

    def watchdog(self) -> None: ...

    def status(self, text: str) -> None: ...

    def reloading(self) -> None: ...

    def stopping(self) -> None: ...


class NullNotifier:
    def ready(self) -> None:
        pass

    def watchdog(self) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def reloading(self) -> None:
        pass

    def stopping(self) -> None:
        pass


@dataclasses.dataclass
class Controls:
    """How the outside world steers a running agent: stop, reload (SIGHUP), progress reports."""

    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    reload: threading.Event = dataclasses.field(default_factory=threading.Event)
    reload_config: Callable[[], Config] | None = None
    notifier: Notifier = dataclasses.field(default_factory=NullNotifier)
    max_frames: int = 0

    @property
    def interrupted(self) -> bool:
        return self.stop.is_set() or self.reload.is_set()


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

    def as_metrics(self, frames_dropped: int) -> dict[str, Any]:
        lat = list(self.latencies_ms)
        return {"fps": round(self.fps(), 2), "frames": self.frames, "published": self.published,
                "frames_dropped": frames_dropped, "last_label": self.last_label,
                "latency_ms": {"p50": round(percentile(lat, 50), 2), "p95": round(percentile(lat, 95), 2)}}


class Pipeline:
    """One model, one source, one publisher; :meth:`run` until the source ends, or stop or
    reload is asked for. :meth:`reconfigure` swaps model and settings, keeping seq and the
    publisher (so a SIGHUP does not drop the MQTT session)."""

    def __init__(self, config: Config, model: LoadedModel, reader: FrameReader, publisher: Publisher) -> None:
        self.publisher = publisher
        self.run_id = secrets.token_hex(4)
        self.seq = 0
        self.stats = Stats()
        self.commands: queue.Queue[Command] | None = None  # remote control, drained between frames
        self.paused = False
        self.reconfigure(config, model, reader)

    def reconfigure(self, config: Config, model: LoadedModel, reader: FrameReader) -> None:
        self.config = config
        self.model = model
        self.reader = reader
        pp = config.postprocess
        self.smoother = Smoother(pp.smoothing)
        self.policy = PublishPolicy(pp.threshold, pp.max_rate, pp.on_change, pp.hysteresis)
        self.subtopic = f"{config.task}/prediction"
        self._inference = ImageInference(model)
        reader.prepare = self._inference.prepare  # the resize runs in the reader thread, overlapped

    def infer(self, frame: Frame) -> np.ndarray:
        return self._inference(frame)

    def step(self, frame: Frame) -> dict[str, Any] | None:
        scores = self.smoother.update(self.infer(frame))
        prediction = predict(scores, self.model.labels, self.config.postprocess.top_k)
        self.stats.frames += 1
        self.stats.last_label = prediction.label
        now_mono = time.monotonic()
        if not self.policy.decide(prediction, now_mono):
            return None
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
        self.publisher.publish(self.subtopic, payload)
        self.seq += 1
        self.stats.published += 1
        return payload

    def run(self, controls: Controls) -> ExitCode:
        notifier = controls.notifier
        next_status = 0.0
        while not controls.interrupted:
            if self.publisher.fatal:
                raise PublishError(self.publisher.fatal)
            frame = self.reader.get(timeout=FRAME_WAIT_S)
            if frame is None:
                if self.reader.ended:
                    break
                continue  # no frame, no watchdog ping: a stuck camera gets us restarted
            self._apply_commands()
            if self.paused:
                notifier.watchdog()
                continue
            self.step(frame)
            if self.stats.frames == 1:
                notifier.ready()
            notifier.watchdog()
            now = time.monotonic()
            if now >= next_status:
                notifier.status(f"{self.stats.fps():.1f} fps, last label {self.stats.last_label}")
                next_status = now + STATUS_EVERY_S
            if controls.max_frames and self.stats.frames >= controls.max_frames:
                break
        if self.reader.error:
            logger.error("%s", self.reader.error)
            return ExitCode.FAILURE
        return ExitCode.OK

    def _apply_commands(self) -> None:
        for command in drain(self.commands):
            if command.threshold is not None:
                self.policy.threshold = command.threshold
            if command.max_rate is not None:
                self.policy.max_rate = command.max_rate
            if command.on_change is not None:
                self.policy.on_change = command.on_change
            if command.paused is not None:
                self.paused = command.paused
            logger.info("remote control applied: %s", command)


class RunningModel(Protocol):
    """What ``info`` needs of a loaded model, image or voice."""

    engine: Engine
    labels: tuple[str, ...]
    name: str
    sha256: str


def agent_info(config: Config, model: RunningModel) -> dict[str, Any]:
    """The retained ``info`` message: what runs here."""
    engine = model.engine
    return {"version": __version__, "task": config.task, "device": config.device_id,
            "model": {"name": model.name, "sha256": model.sha256[:12], "file": str(engine.path),
                      "labels": list(model.labels)},
            "backend": {"name": engine.backend.name, "version": engine.backend.version,
                        "delegate": engine.delegate, "threads": engine.threads},
            "started": contract.iso_utc(time.time())}


def _reload(pipeline: Pipeline, controls: Controls) -> None:
    """SIGHUP: read the config again and swap model and settings; on any error keep running as before."""
    controls.reload.clear()
    controls.notifier.reloading()
    if controls.reload_config is None:
        controls.notifier.ready()
        return
    old = pipeline.config
    try:
        new = controls.reload_config()
        model = load_model(new)
        reader = pipeline.reader
        if new.source != old.source:
            reader = FrameReader(make_source(new))
            reader.start()
            pipeline.reader.stop()
    except EdgeAgentError as e:
        logger.error("reload failed, still running the previous config: %s", e)
        controls.notifier.ready()
        return
    if new.mqtt != old.mqtt or new.sink != old.sink or new.device_id != old.device_id:
        logger.warning("reload: MQTT and sink settings take effect at the next restart")
    pipeline.reconfigure(new, model, reader)
    logger.info("reloaded config: model %s, threshold %s", model.name, new.postprocess.threshold)
    controls.notifier.ready()


def run(config: Config, controls: Controls | None = None) -> ExitCode:
    """Build everything in order, run, and tear down in reverse order."""
    controls = controls or Controls()
    if TASKS[config.task].kind == "audio" or config.source.mic is not None:
        from .voice.service import run_audio  # the audio path: its own front end and recognizer

        return run_audio(config, controls)
    model = load_model(config)
    reader = FrameReader(make_source(config))
    reader.start()  # a wrong camera or file fails here, before we announce ourselves online
    hub: Hub | None = None
    try:
        publisher = make_publisher(config)
        pipeline = Pipeline(config, model, reader, publisher)
        if isinstance(publisher, MqttPublisher):
            hub = Hub(config, publisher, model.labels, agent_info(config, model),
                      lambda: pipeline.stats.as_metrics(pipeline.reader.dropped))
            pipeline.commands = hub.commands
            hub.start()
        publisher.start()
    except BaseException:
        reader.stop()
        raise
    try:
        while True:
            code = pipeline.run(controls)
            if controls.reload.is_set() and not controls.stop.is_set():
                _reload(pipeline, controls)
                continue
            break
    finally:
        controls.notifier.stopping()
        pipeline.reader.stop()
        if hub is not None:
            hub.stop()
        if not publisher.flush(END_FLUSH_S if not controls.stop.is_set() else 3.0):
            logger.warning("stopping with predictions the broker has not acknowledged yet")
        publisher.stop()
    logger.info("done: %d frames, %d published, %.1f fps, %d dropped by the camera",
                pipeline.stats.frames, pipeline.stats.published, pipeline.stats.fps(), pipeline.reader.dropped)
    return code
