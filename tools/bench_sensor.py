"""Windows per second and time per stage of a sensor model, through the sensor agent itself.

Samples are pushed through the agent's own front end (``Resampler`` → ``Windower``, in pushes of
``--chunk`` samples, as a serial line or MQTT delivers them), then each window through
``SensorAgent.process`` with a stage hook (``infer``: scaling, quantization and the interpreter;
``done``: latency from the sample that completed the window to its publish decision, including
the wait behind the other windows of the same push). No broker: a publisher that keeps
nothing. The machine's load is printed with the figures; on a shared machine they are a floor.

    python tools/bench_sensor.py [--tasks activity,machine] [--windows 2000] [--chunk 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_agent import manifest
from edge_agent.agents import sensor
from edge_agent.config import Config
from edge_agent.sources.series import Samples
from edge_agent.tasks import TASKS, default_model


class Nothing:
    fatal = None

    def start(self) -> None:
        pass

    def publish(self, subtopic: str, payload: dict[str, Any]) -> None:
        pass

    def flush(self, timeout: float) -> bool:
        return True

    def stop(self) -> None:
        pass


class Pushed:
    """A live source that hands out pre-made samples ``chunk`` at a time (no I/O in the timing)."""

    live = True
    name = "bench"
    overflows = 0
    error = None
    ended = False
    bad_records = 0

    def __init__(self, t: np.ndarray, x: np.ndarray, chunk: int) -> None:
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


def bench(task: str, windows: int, chunk: int, threads: int) -> dict[str, float]:
    path = default_model(task)
    assert path is not None
    cfg = Config(task=task, device_id="bench")
    cfg.model.threads = threads
    cfg.postprocess.threshold = 0.0
    model = sensor.load(path, manifest.load(path.with_suffix(".json")), cfg)
    spec = model.spec
    n = spec.stride * windows + spec.window
    rate = spec.rate_hz or 1.0
    rng = np.random.default_rng(0)
    t = np.arange(n) / rate
    x = spec.mean + spec.std * rng.normal(0, 1, (n, len(spec.channels)))
    hook = Hook()
    agent = sensor.SensorAgent(cfg, model, Nothing(), source=Pushed(t, x, chunk), hook=hook)
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
    return {"windows": done, "windows_per_s": done / wall, "front_end_ms": 1000 * front / max(done, 1),
            "infer_ms_p50": statistics.median(hook.infer), "window_ms_p50": statistics.median(hook.total)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Windows per second and time per stage of the sensor models.")
    p.add_argument("--tasks", default=",".join(k for k, v in TASKS.items() if v.kind == "series"))
    p.add_argument("--windows", type=int, default=2000)
    p.add_argument("--chunk", type=int, default=10, help="samples per push (a serial line or MQTT message)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores; {a.chunk}-sample pushes; {a.threads} thread(s)")
    print("| model | windows/s | front end per window (ms) | infer p50 (ms) | latency p50 (ms) |")
    print("|---|---:|---:|---:|---:|")
    for task in a.tasks.split(","):
        r = bench(task, a.windows, a.chunk, a.threads)
        print(f"| {task} | {r['windows_per_s']:,.0f} | {r['front_end_ms']:.3f} | {r['infer_ms_p50']:.3f} | "
              f"{r['window_ms_p50']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
