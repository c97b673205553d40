"""``sensor``: windows per second and time per stage of a sensor model, through the sensor agent.

Samples are pushed through the agent's own front end (``Resampler`` → ``Windower``, in pushes of
``--chunk`` samples, as a serial line or MQTT delivers them), then each window through
``SensorAgent.process`` with the stage hook (``infer``: scaling, quantization and the interpreter;
``done``: latency from the sample that completed the window to its publish decision, including
the wait behind the other windows of the same push). No broker: a publisher that keeps nothing.

    python tools/bench.py sensor --model models/activity.tflite [--model models/machine.tflite] [--runs 2000]
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import manifest
from ..agents import sensor
from ..config import Config
from ..service import NullPublisher
from ..sources.series import Samples
from ..tasks import TASKS
from .common import Context, summarize, thread_counts


class Pushed:
    """A live source that hands out pre-made samples ``chunk`` at a time (no I/O in the timing)."""

    live = True
    name = "bench"
    overflows = 0
    ended = False
    bad_records = 0

    def __init__(self, t: np.ndarray, x: np.ndarray, chunk: int) -> None:
        self.error: str | None = None
        self.t, self.x, self.chunk, self.i = t, x, chunk, 0

    def open(self) -> None:
        pass

    def read(self, timeout: float) -> Samples | None:
        if self.i >= len(self.t):
            self.ended = True
            return None
        j = self.i + self.chunk
        out = Samples(self.t[self.i:j], self.x[self.i:j])
        self.i = j
        return out

    def close(self) -> None:
        pass


class Hook:
    def __init__(self) -> None:
        self.infer: list[float] = []
        self.total: list[float] = []

    def stage(self, name: str, ms: float) -> None:
        self.infer.append(ms)

    def done(self, latency_ms: float) -> None:
        self.total.append(latency_ms)


def bench_series(path: Path, windows: int, chunk: int, threads: int) -> dict[str, Any]:
    """``windows`` windows of synthetic samples (the manifest's own scaling: realistic ranges) in
    pushes of ``chunk`` samples, through the sensor agent's front end and ``process``."""
    m = manifest.load(path.with_suffix(".json"))
    cfg = Config(task=m.task if m.task in TASKS else "custom", device_id="bench")
    cfg.model.threads = threads
    cfg.postprocess.threshold = 0.0
    model = sensor.load(path, m, cfg)
    spec = model.spec
    n = spec.stride * windows + spec.window
    rate = spec.rate_hz or 1.0
    rng = np.random.default_rng(0)
    t = np.arange(n) / rate
    x = spec.mean + spec.std * rng.normal(0, 1, (n, len(spec.channels)))
    hook = Hook()
    agent = sensor.SensorAgent(cfg, model, NullPublisher(), source=Pushed(t, x, chunk), hook=hook)
    stop = threading.Event()
    agent.start()
    front = 0.0
    start = time.perf_counter()
    while not agent.ended:
        t0 = time.perf_counter()
        item = agent.read(0.0, stop)
        front += time.perf_counter() - t0
        if item is not None:
            agent.process(item)
    wall = time.perf_counter() - start
    agent.stop()
    done = agent.inferences
    return {"model": m.name, "threads": threads, "chunk": chunk, "windows": done,
            "windows_per_s": round(done / wall, 3) if wall > 0 else 0.0,
            "front_end_ms": round(1000 * front / max(done, 1), 4),
            "stages": {"infer": summarize(hook.infer)}, "latency_ms": summarize(hook.total)}


def mode_sensor(ctx: Context) -> dict[str, Any]:
    """Every ``--model`` (sensor models) at every ``--threads``, ``--runs`` windows each."""
    a = ctx.args
    return {"sensor": [bench_series(Path(m), a.runs, a.chunk, t) for m in a.model for t in thread_counts(ctx)]}


