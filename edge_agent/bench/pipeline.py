"""``pipeline``: the agent's own objects on a video, timed through its stage hook."""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np

from edge_agent import runtime, service
from edge_agent.agents.image import ImageAgent
from edge_agent.config import Config
from edge_agent.publish.base import Publisher
from edge_agent.sources.base import Source
from edge_agent.sources.factory import make_source

from .common import MQTT_CONNECT_TIMEOUT_S, Context, make_interpreter, source_info, summarize, thread_counts

logger = logging.getLogger("bench")

# -- pipeline (the agent's own objects, timed by thin wrappers) ---------------------------------
class Recorder:
    """Per-frame stage times. The main thread fills ``cur`` while one frame is in flight; the
    reader thread appends capture times on its own list (no lock needed: list.append is atomic)."""

    def __init__(self) -> None:
        self.cur: dict[str, float] = {}
        self.frames: list[dict[str, float]] = []
        self.capture: list[float] = []
        self.resize: list[float] = []  # the reader thread's prepare (resize), overlapped like capture

    def add(self, stage: str, ms: float) -> None:
        self.cur[stage] = self.cur.get(stage, 0.0) + ms


class TimedSource:
    """A Source that times ``read()`` (capture and decode) in the reader thread.

    With ``camera_fps`` it stands in for a camera: frames come at that rate, and it declares
    itself live so the reader keeps only the newest one, exactly as it does for a real camera.
    That is the setting in which capture → publish latency means what a user sees; a file read
    as fast as possible measures throughput instead."""

    def __init__(self, inner: Source, rec: Recorder, camera_fps: float = 0.0) -> None:
        self.inner, self.rec = inner, rec
        self.name = inner.name
        self.live = inner.live or camera_fps > 0
        self.period = 1.0 / camera_fps if camera_fps > 0 else 0.0
        self._next: float | None = None

    def open(self) -> None:
        self.inner.open()

    def _pace(self) -> None:
        now = time.monotonic()
        if self._next is None:
            self._next = now
        if now < self._next:
            time.sleep(self._next - now)
        self._next = max(self._next + self.period, time.monotonic() - self.period)  # no burst after a stall

    def read(self) -> np.ndarray | None:
        if self.period:
            self._pace()
        t0 = time.perf_counter()
        image = self.inner.read()
        if image is not None:
            self.rec.capture.append((time.perf_counter() - t0) * 1000)
        return image

    def close(self) -> None:
        self.inner.close()


def agent_config(ctx: Context, model: Path, threads: int, source: Path, labels: Path | None) -> Config:
    a = ctx.args
    cfg = Config(task="custom", device_id="bench", log_level="warning")
    cfg.model.path, cfg.model.threads, cfg.model.edgetpu = str(model), threads, a.edgetpu
    cfg.model.labels = str(labels) if labels else None
    cfg.source.source, cfg.source.loop = str(source), True
    cfg.postprocess.threshold = 0.0  # publish every frame: the publish stage is part of the cost
    cfg.postprocess.on_change, cfg.postprocess.max_rate = False, 0.0  # (the defaults publish on change)
    if a.mqtt_host:
        cfg.sink, cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.qos = "mqtt", a.mqtt_host, a.mqtt_port, 1
        # a spool of this run's own: one left by an earlier run would replay its messages into our count
        cfg.spool.path = str(ctx.workdir / f"spool-{threads}-{time.monotonic_ns()}.sqlite")
    else:
        cfg.sink = "stdout"
    return cfg


DELIVERY_WAIT_S: Final = 10.0  # the longest the probe waits for deliveries after the last acknowledgement


class DeliveryProbe:
    """A real MQTT subscriber: capture → delivered-to-subscriber latency from each payload's
    ``frame_ts`` (millisecond wall clock, so the figure has ~1 ms resolution)."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.latencies: list[float] = []
        self.received = 0
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-probe-{os.getpid()}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *args: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not ready.wait(MQTT_CONNECT_TIMEOUT_S):
            raise RuntimeError(f"no MQTT broker answered at {host}:{port}")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now = time.time()
        try:
            ts = json.loads(msg.payload)["frame_ts"]
            captured = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
        except (ValueError, KeyError):
            return
        self.received += 1
        self.latencies.append((now - captured.timestamp()) * 1000)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class BenchHook:
    """The agent's stage-timing hook (:class:`edge_agent.agents.base.StageHook`) filling a
    :class:`Recorder`: the agent reports each stage of a frame, then ``done`` closes the frame."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.marks: list[float] = []

    def stage(self, name: str, ms: float) -> None:
        self.rec.add(name, ms)

    def done(self, latency_ms: float) -> None:
        self.rec.cur["latency"] = latency_ms
        self.rec.frames.append(self.rec.cur)
        self.rec.cur = {}
        self.marks.append(time.perf_counter())


def bench_pipeline(ctx: Context, model: Path, threads: int, camera_fps: float = 0.0) -> dict[str, Any]:
    """Run the agent's own loop (``runtime.run_loop`` over an ``ImageAgent``) on ``--runs`` frames
    after ``--warmup``, timed through the agent's stage hook; with ``camera_fps`` the file is paced
    like a camera (see :class:`TimedSource`)."""
    a = ctx.args
    source = ctx.source
    rec = Recorder()
    probe_outputs = make_interpreter(ctx, model, 1, None)
    probe_outputs.allocate_tensors()
    labels = ctx.labels_for(model, int(np.prod(probe_outputs.get_output_details()[0]["shape"])))
    del probe_outputs
    cfg = agent_config(ctx, model, threads, source, labels)
    _, loaded = service.load_model(cfg)
    hook = BenchHook(rec)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed in the finally below
    probe: DeliveryProbe | None = None
    agent: ImageAgent | None = None
    try:
        if cfg.sink == "mqtt":
            publisher: Publisher = service.make_publisher(cfg)
            probe = DeliveryProbe(a.mqtt_host, a.mqtt_port, f"{cfg.mqtt.topic_prefix}/{cfg.device_id}/#")
        else:
            from edge_agent.publish.stdout import StdoutPublisher

            publisher = StdoutPublisher(devnull)
        agent = ImageAgent(cfg, loaded, publisher, hook=hook, source=TimedSource(make_source(cfg), rec, camera_fps))
        prepare = agent.reader.prepare
        if prepare is not None:
            def timed_prepare(image: np.ndarray) -> tuple[object, np.ndarray]:
                t0 = time.perf_counter()
                out = prepare(image)
                rec.resize.append((time.perf_counter() - t0) * 1000)
                return out

            agent.reader.prepare = timed_prepare  # the reader's public hand-off point, not a method
        agent.start()
        publisher.start()
        if cfg.sink == "mqtt" and not getattr(publisher, "wait_connected", lambda t: True)(MQTT_CONNECT_TIMEOUT_S):
            raise RuntimeError(f"the agent could not connect to {a.mqtt_host}:{a.mqtt_port}")
        started = time.perf_counter()
        runtime.run_loop(agent, publisher, runtime.Controls(max_frames=a.warmup + a.runs, hook=hook))
        if not publisher.flush(runtime.END_FLUSH_S):
            ctx.warnings.append("pipeline: the broker did not acknowledge every prediction")
        publisher.stop()
    finally:
        if agent is not None:
            agent.stop()
        devnull.close()
        if probe is not None:
            # the broker acknowledged every prediction; its deliveries to our subscriber may lag
            # behind on a loaded machine: wait for them (bounded) rather than a fixed moment
            published = agent.stats.published if agent is not None else 0
            deadline = time.monotonic() + DELIVERY_WAIT_S
            while probe.received < published and time.monotonic() < deadline:
                time.sleep(0.05)
            probe.close()
    marks = hook.marks
    frames = rec.frames[a.warmup:]
    t_begin = marks[a.warmup - 1] if a.warmup > 0 and len(marks) > a.warmup else started
    elapsed = marks[-1] - t_begin if marks else 0.0

    def stage(name: str, fn: Callable[[dict[str, float]], float]) -> dict[str, float]:
        return summarize([fn(f) for f in frames])

    stages = {
        "capture": summarize(rec.capture[a.warmup:]),
        "resize": summarize(rec.resize[a.warmup:]),
        "wait": stage("wait", lambda f: f.get("wait", 0.0)),
        "preprocess": stage("preprocess", lambda f: f.get("resize", 0.0) + f.get("fill", 0.0)),
        "invoke": stage("invoke", lambda f: f.get("invoke", 0.0)),
        "postprocess": stage("postprocess", lambda f: f.get("scores", 0.0) + f.get("postprocess", 0.0)),
        "publish": stage("publish", lambda f: f.get("publish", 0.0)),
    }
    result: dict[str, Any] = {
        "threads": threads, "camera_fps": camera_fps, "source": source_info(source),
        "sink": cfg.sink if cfg.sink == "stdout" else f"mqtt {a.mqtt_host}:{a.mqtt_port} qos 1",
        "frames": len(frames), "warmup": a.warmup,
        "fps": round(len(frames) / elapsed, 3) if elapsed > 0 else 0.0,
        "stages": stages, "latency_ms": stage("latency", lambda f: f["latency"]),
        "dropped": agent.reader.dropped, "published": agent.stats.published,
    }
    if probe is not None:
        result["delivered_ms"] = summarize(probe.latencies[a.warmup:])
        result["delivered"] = probe.received
    return result


def mode_pipeline(ctx: Context) -> dict[str, Any]:
    key = "pipeline_camera" if ctx.args.camera_fps else "pipeline"
    return {key: [bench_pipeline(ctx, ctx.model, t, ctx.args.camera_fps) for t in thread_counts(ctx)]}
