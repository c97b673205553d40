"""How fast is a model here, and how much does the agent waste around the interpreter?

People pick models, thread counts, CPU or Coral by these numbers, so each one is measured the
way the question is asked, in one process, back to back, and reported as a ratio within the run
(absolute milliseconds on a shared or thermally throttled board drift by more than the effects
we care about)::

    python tools/bench.py invoke   --model M [--threads N] [--edgetpu] [--runs N] [--warmup N]
    python tools/bench.py pipeline --model M --source FILE [--mqtt-host H --mqtt-port P]
    python tools/bench.py baseline --model M --source FILE
    python tools/bench.py startup  --model M --source FILE
    python tools/bench.py compare  --model A --model B [--threads 1,2] [--edgetpu]
    python tools/bench.py all      --model M [--threads 1,2] [--rounds 3] --json OUT --plot OUT.png

Modes (an explicit table, :data:`MODES`; the voice work adds ``audio`` there):

- ``invoke``: the bare interpreter on a fixed random input, like TFLite's ``benchmark_model``:
  load and first invoke reported apart (on a Coral the first invoke uploads the model), then
  min / mean / p50 / p90 / p99 / max and FPS over ``--runs``.
- ``pipeline``: the agent's own objects (``service.Pipeline``, ``FrameReader``, the real source
  and publisher) on a video or image folder, timed per stage by thin wrappers around them:
  capture/decode (reader thread), wait (main thread idle for a frame), preprocess, invoke,
  postprocess, publish; end-to-end FPS and capture → publish latency. With ``--mqtt-host`` the
  predictions go through a real broker and a subscriber measures capture → delivery too.
- ``baseline``: the loop the tutorials teach — read, convert, resize, normalise with numpy,
  ``set_tensor``, invoke, JSON, publish — in one thread on the same input, to show what
  overlapping capture with inference and writing into the input tensor buy.
- ``startup``: ``python -m edge_agent ... --sink stdout --max-frames N`` as a subprocess:
  seconds from process start to the first prediction line, and peak RSS (``wait4``).
- ``compare``: invoke for several models × thread counts × backends side by side, with speed
  ratios against the first and int8-vs-float pairs ("int8 is 2.8× faster, costs 0.4 points"
  where the manifests carry accuracy).
- ``all``: invoke, pipeline, baseline and startup for each ``--threads`` value, ``--rounds``
  times interleaved, and the issue's targets evaluated as ratios (median and spread of rounds).

Every report records the machine (CPU, cores, board, governor, temperature, throttling, load),
the interpreter package and version, and the model (bytes, parameters and multiply-adds counted
from the .tflite itself). ``--json``, ``--csv`` and ``--plot`` write the results.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime
import io
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np

REPO: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_agent import manifest as manifest_mod  # noqa: E402
from edge_agent import service  # noqa: E402
from edge_agent.config import Config  # noqa: E402
from edge_agent.engine import Backend, check_model_file, find_backend, load_edgetpu_delegate  # noqa: E402
from edge_agent.errors import EdgeAgentError  # noqa: E402
from edge_agent.manifest import ImageInput, Manifest  # noqa: E402
from edge_agent.publish.base import Publisher  # noqa: E402
from edge_agent.sources.base import Frame, Source  # noqa: E402
from edge_agent.sources.factory import make_source  # noqa: E402
from edge_agent.sources.reader import FrameReader  # noqa: E402

logger = logging.getLogger("bench")

SCHEMA: Final = "edge-agent/bench@1"
CACHE: Final = REPO / ".cache" / "bench"
DEFAULT_VIDEO_SIZE: Final = (640, 480)  # a USB camera's usual mode
DEFAULT_VIDEO_FRAMES: Final = 300  # 10 s @ 30 fps; the pipeline loops it when it needs more
DEFAULT_VIDEO_FPS: Final = 30
DEFAULT_RUNS: Final = 200
DEFAULT_WARMUP: Final = 20
DEFAULT_CAMERA_FPS: Final = 30.0  # all: the latency run paces the video like a 30 fps camera
STARTUP_FRAMES: Final = 5  # the agent exits after this many predictions
STARTUP_REPEATS: Final = 3  # the first run pays for a cold page cache; report all of them
PERCENTILES: Final = (50, 90, 99)
MQTT_CONNECT_TIMEOUT_S: Final = 10.0
BUSY_LOAD_PER_CORE: Final = 0.5  # 1-min load average per core above which we warn about noise

# The targets; evaluated as ratios within one run, never as timed tests.
TARGET_PIPELINE_VS_INVOKE: Final = 0.95  # pipeline FPS / bare invoke FPS, same threads
TARGET_AGENT_VS_BASELINE: Final = 1.3  # pipeline FPS / tutorial loop FPS
TARGET_LATENCY_FACTOR: Final = 2.0  # capture → publish p99 <= 2 × invoke p50 + slack
TARGET_LATENCY_SLACK_MS: Final = 5.0
TARGET_STARTUP_S: Final = 2.0
TARGET_PEAK_RSS_MB: Final = 150.0


# -- statistics -------------------------------------------------------------------------------
def summarize(samples_ms: Sequence[float]) -> dict[str, float]:
    """n, min, mean, std, p50, p90, p99, max of a list of milliseconds (linear percentiles, so
    min ≤ p50 ≤ p90 ≤ p99 ≤ max always holds)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {"n": 0, "min": 0.0, "mean": 0.0, "std": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    p = np.percentile(a, PERCENTILES)
    out = {"n": int(a.size), "min": float(a.min()), "mean": float(a.mean()), "std": float(a.std())}
    out.update({f"p{q}": float(v) for q, v in zip(PERCENTILES, p, strict=True)})
    out["max"] = float(a.max())
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of one figure over rounds: how noisy the machine was."""
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "rounds": len(values)}


# -- machine and model ------------------------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def cpu_model() -> str:
    info = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", info, re.MULTILINE)
        if m:
            return m.group(1).strip()
    return platform.processor() or platform.machine()


def governors() -> list[str]:
    found = {_read(str(p)) for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor")}
    return sorted(g for g in found if g)


def temperatures() -> dict[str, float]:
    temps: dict[str, float] = {}
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        raw, kind = _read(str(zone / "temp")), _read(str(zone / "type"))
        if raw and raw.lstrip("-").isdigit():
            temps[kind or zone.name] = int(raw) / 1000.0
    return temps


def throttling() -> str | None:
    """Raspberry Pi firmware's throttle flags (0x0 = never throttled), where vcgencmd exists."""
    tool = shutil.which("vcgencmd")
    if tool is None:
        return None
    try:
        out = subprocess.run([tool, "get_throttled"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.strip().partition("=")[2] or None


def machine_info(backend: Backend) -> dict[str, Any]:
    """What the numbers depend on: CPU, board, governor, heat, load and software versions."""
    gov = governors()
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count() or 1,
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "board": _read("/proc/device-tree/model"),
        "governor": ",".join(gov) if gov else None,
        "temperature_c": temperatures(),
        "throttled": throttling(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "interpreter": {"package": backend.name, "version": backend.version},
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }


def machine_warnings(machine: dict[str, Any]) -> list[str]:
    warnings: list[str] = []
    gov = machine.get("governor")
    if gov is None:
        warnings.append("CPU governor unknown (no cpufreq in this VM or container): clocks may vary")
    elif gov != "performance":
        warnings.append(f"CPU governor is '{gov}', not 'performance': clocks ramp up and down during the run "
                        "(sudo sh -c 'echo performance > /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor')")
    if machine.get("throttled") not in (None, "0x0"):
        warnings.append(f"the board reports throttling ({machine['throttled']}): cool it or use a better supply")
    load, cores = machine["load_avg"][0], machine["cores"]
    if load > BUSY_LOAD_PER_CORE * cores:
        warnings.append(f"load average {load} on {cores} cores: other processes share the CPU, figures are noisy")
    return warnings


def graph_figures(path: Path) -> dict[str, Any]:
    """Parameters and multiply-adds counted from the .tflite (edge_agent.convert.graph reads the
    flatbuffer without TensorFlow); None where that module is not installed."""
    try:
        from edge_agent.convert import graph
    except ImportError:
        return {"params": None, "macs": None, "float_tensors": None, "ops": None}
    try:
        info = graph.read(path)
    except EdgeAgentError as e:
        logger.warning("cannot count parameters of %s: %s", path, e)
        return {"params": None, "macs": None, "float_tensors": None, "ops": None}
    return {"params": info.stored_values(), "macs": info.macs(), "float_tensors": len(info.float_tensors()),
            "ops": len(info.ops)}


def load_manifest(path: Path) -> Manifest | None:
    mpath = manifest_mod.manifest_path_for(path)
    return manifest_mod.load(mpath) if mpath.exists() else None


def accuracy(manifest: Manifest | None) -> dict[str, Any]:
    """top-1 figures the conversion tool stored in the manifest (``metrics.int8.top1`` …)."""
    if manifest is None or not manifest.metrics:
        return {}
    m = manifest.metrics
    out: dict[str, Any] = {}
    for precision in ("float", "int8"):
        if isinstance(m.get(precision), dict) and m[precision].get("top1") is not None:
            out[f"{precision}_top1"] = m[precision]["top1"]
    if m.get("top1") is not None:
        out["top1"] = m["top1"]
    if m.get("top1_drop_points") is not None:
        out["top1_drop_points"] = m["top1_drop_points"]
    return out


def model_info(path: Path, interp: Any) -> dict[str, Any]:
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    dtype = np.dtype(inp["dtype"]).name
    figures = graph_figures(path)
    manifest = load_manifest(path)
    # int8 = no float tensor anywhere (int32 biases and shape tensors are part of int8 kernels)
    if figures["float_tensors"] is not None and dtype != "float32":
        precision = "int8" if figures["float_tensors"] == 0 else "mixed"
    else:
        precision = "float" if dtype == "float32" else "int8"
    return {
        "path": str(path),
        "name": manifest.name if manifest else path.stem,
        "bytes": path.stat().st_size,
        "sha256": manifest_mod.sha256_file(path)[:12],
        "input": {"shape": [int(x) for x in inp["shape"]], "dtype": dtype},
        "outputs": int(np.prod(out["shape"])),
        "precision": precision,
        **figures,
        "accuracy": accuracy(manifest),
    }


# -- inputs -----------------------------------------------------------------------------------
def make_video(path: Path, frames: int = DEFAULT_VIDEO_FRAMES, size: tuple[int, int] = DEFAULT_VIDEO_SIZE,
               fps: int = DEFAULT_VIDEO_FPS) -> Path:
    """A synthetic mp4 with moving shapes, gradients and sensor-like noise, so decoding costs
    roughly what a real scene does (a flat colour would decode for free)."""
    rng = np.random.default_rng(0)
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    yy, xx = np.mgrid[0:h, 0:w]
    noise = rng.integers(0, 24, (8, h, w, 3), dtype=np.uint8)
    for i in range(frames):
        img = np.empty((h, w, 3), np.uint8)
        img[..., 0] = (xx + 3 * i) % 256
        img[..., 1] = (yy + 2 * i) % 256
        img[..., 2] = ((xx + yy) // 2 + i) % 256
        cv2.circle(img, ((40 + 7 * i) % w, h // 2), 60, (255, 255, 255), -1)
        cv2.rectangle(img, (w // 3, (20 + 5 * i) % h), (w // 3 + 120, (20 + 5 * i) % h + 80), (20, 40, 200), -1)
        writer.write(cv2.add(img, noise[i % len(noise)]))
    writer.release()
    return path


def default_source() -> Path:
    path = CACHE / f"synthetic-{DEFAULT_VIDEO_SIZE[0]}x{DEFAULT_VIDEO_SIZE[1]}.mp4"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        make_video(path)
    return path


def source_info(path: Path) -> dict[str, Any]:
    if path.is_dir():
        return {"path": str(path), "kind": "folder"}
    cap = cv2.VideoCapture(str(path))
    try:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode(errors="replace").strip("\x00")
        return {"path": str(path), "kind": "video", "size": [w, h], "codec": fourcc,
                "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT))}
    finally:
        cap.release()


# -- context ----------------------------------------------------------------------------------
@dataclasses.dataclass
class Context:
    """Everything a mode needs: parsed arguments, the interpreter package, scratch space."""

    args: argparse.Namespace
    backend: Backend
    workdir: Path
    warnings: list[str] = dataclasses.field(default_factory=list)
    models: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def model(self) -> Path:
        return Path(self.args.model[0])

    @property
    def source(self) -> Path:
        return Path(self.args.source) if self.args.source else default_source()

    def labels_for(self, model: Path, outputs: int) -> Path | None:
        """A placeholder labels file for a model without a manifest (the agent needs labels)."""
        if manifest_mod.manifest_path_for(model).exists():
            return None
        path = self.workdir / f"{model.stem}.labels.txt"
        path.write_text("\n".join(f"class_{i}" for i in range(outputs)) + "\n")
        return path


def make_interpreter(ctx: Context, model: Path, threads: int, edgetpu: str | None) -> Any:
    check_model_file(model)
    delegates = [load_edgetpu_delegate(ctx.backend, edgetpu)] if edgetpu is not None else None
    return ctx.backend.interpreter(model_path=str(model), num_threads=threads, experimental_delegates=delegates)


# -- invoke -----------------------------------------------------------------------------------
def bench_invoke(ctx: Context, model: Path, threads: int, edgetpu: str | None = None) -> dict[str, Any]:
    """benchmark_model's protocol: fixed random input, first invoke apart, warm-up, timed runs."""
    a = ctx.args
    t0 = time.perf_counter()
    interp = make_interpreter(ctx, model, threads, edgetpu)
    interp.allocate_tensors()
    load_ms = (time.perf_counter() - t0) * 1000
    info = model_info(model, interp)
    ctx.models.setdefault(str(model), info)
    inp = interp.get_input_details()[0]
    dtype = np.dtype(inp["dtype"])
    rng = np.random.default_rng(0)
    if dtype == np.float32:
        data = rng.uniform(-1, 1, inp["shape"]).astype(np.float32)
    else:
        lim = np.iinfo(dtype)
        data = rng.integers(lim.min, lim.max + 1, inp["shape"]).astype(dtype)
    interp.set_tensor(inp["index"], data)
    t0 = time.perf_counter()
    interp.invoke()
    first_ms = (time.perf_counter() - t0) * 1000
    for _ in range(a.warmup):
        interp.invoke()
    samples = []
    clock = time.perf_counter
    for _ in range(a.runs):
        t0 = clock()
        interp.invoke()
        samples.append((clock() - t0) * 1000)
    stats = summarize(samples)
    return {
        "model": info["name"], "precision": info["precision"], "threads": threads,
        "delegate": f"edgetpu:{edgetpu or 'any'}" if edgetpu is not None else "cpu",
        "load_ms": round(load_ms, 3), "first_ms": round(first_ms, 3), "warmup": a.warmup,
        "latency_ms": stats, "fps": round(1000.0 / stats["mean"], 3) if stats["mean"] else 0.0,
    }


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


class TimedPublisher:
    """A Publisher that times ``publish()`` (serialisation and hand-off to the sink)."""

    def __init__(self, inner: Publisher, rec: Recorder) -> None:
        self.inner, self.rec = inner, rec

    @property
    def fatal(self) -> str | None:
        return self.inner.fatal

    def start(self) -> None:
        self.inner.start()

    def publish(self, subtopic: str, payload: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        self.inner.publish(subtopic, payload)
        self.rec.add("publish", (time.perf_counter() - t0) * 1000)

    def flush(self, timeout: float) -> bool:
        return self.inner.flush(timeout)

    def stop(self) -> None:
        self.inner.stop()


class TimedInterpreter:
    """Delegates everything to the interpreter and times ``invoke()``."""

    def __init__(self, inner: Any, rec: Recorder) -> None:
        self._inner, self._rec = inner, rec

    def invoke(self) -> None:
        t0 = time.perf_counter()
        self._inner.invoke()
        self._rec.add("invoke", (time.perf_counter() - t0) * 1000)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _timed(rec: Recorder, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            rec.add(stage, (time.perf_counter() - t0) * 1000)

    return wrapper


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
    else:
        cfg.sink = "stdout"
    return cfg


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


def bench_pipeline(ctx: Context, model: Path, threads: int, camera_fps: float = 0.0) -> dict[str, Any]:
    """Run ``service.Pipeline.run`` as the agent does, on ``--runs`` frames after ``--warmup``;
    with ``camera_fps`` the file is paced like a camera (see :class:`TimedSource`)."""
    a = ctx.args
    source = ctx.source
    rec = Recorder()
    probe_outputs = make_interpreter(ctx, model, 1, None)
    probe_outputs.allocate_tensors()
    labels = ctx.labels_for(model, int(np.prod(probe_outputs.get_output_details()[0]["shape"])))
    del probe_outputs
    cfg = agent_config(ctx, model, threads, source, labels)
    loaded = service.load_model(cfg)
    engine = loaded.engine
    engine.interpreter = TimedInterpreter(engine.interpreter, rec)
    engine.scores = _timed(rec, "scores", engine.scores)  # type: ignore[method-assign]
    reader = FrameReader(TimedSource(make_source(cfg), rec, camera_fps))
    reader.start()
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed in the finally below
    probe: DeliveryProbe | None = None
    try:
        if cfg.sink == "mqtt":
            inner: Publisher = service.make_publisher(cfg)
            probe = DeliveryProbe(a.mqtt_host, a.mqtt_port, f"{cfg.mqtt.topic_prefix}/{cfg.device_id}/#")
        else:
            from edge_agent.publish.stdout import StdoutPublisher

            inner = StdoutPublisher(devnull)
        publisher = TimedPublisher(inner, rec)
        publisher.start()
        if cfg.sink == "mqtt" and not getattr(inner, "wait_connected", lambda t: True)(MQTT_CONNECT_TIMEOUT_S):
            raise RuntimeError(f"the agent could not connect to {a.mqtt_host}:{a.mqtt_port}")
        pipeline = service.Pipeline(cfg, loaded, reader, publisher)
        step, infer, get, prepare = pipeline.step, pipeline.infer, reader.get, reader.prepare
        if prepare is not None:
            def timed_prepare(image: np.ndarray) -> tuple[object, np.ndarray]:
                t0 = time.perf_counter()
                out = prepare(image)
                rec.resize.append((time.perf_counter() - t0) * 1000)
                return out

            reader.prepare = timed_prepare
        marks: list[float] = []

        def timed_step(frame: Frame) -> Any:
            t0 = time.perf_counter()
            out = step(frame)
            t1 = time.perf_counter()
            rec.add("step", (t1 - t0) * 1000)
            rec.cur["latency"] = (time.monotonic() - frame.mono) * 1000
            rec.frames.append(rec.cur)
            rec.cur = {}
            marks.append(t1)
            return out

        pipeline.step = timed_step  # type: ignore[method-assign]
        pipeline.infer = _timed(rec, "infer", infer)  # type: ignore[method-assign]
        reader.get = _timed(rec, "wait", get)  # type: ignore[method-assign]
        started = time.perf_counter()
        pipeline.run(service.Controls(max_frames=a.warmup + a.runs))
        if not publisher.flush(service.END_FLUSH_S):
            ctx.warnings.append("pipeline: the broker did not acknowledge every prediction")
        publisher.stop()
    finally:
        reader.stop()
        devnull.close()
        if probe is not None:
            time.sleep(0.2)
            probe.close()
    frames = rec.frames[a.warmup:]
    t_begin = marks[a.warmup - 1] if a.warmup > 0 and len(marks) > a.warmup else started
    elapsed = marks[-1] - t_begin if marks else 0.0

    def stage(name: str, fn: Callable[[dict[str, float]], float]) -> dict[str, float]:
        return summarize([fn(f) for f in frames])

    stages = {
        "capture": summarize(rec.capture[a.warmup:]),
        "resize": summarize(rec.resize[a.warmup:]),
        "wait": stage("wait", lambda f: f.get("wait", 0.0)),
        "preprocess": stage("preprocess", lambda f: f["infer"] - f.get("invoke", 0.0) - f.get("scores", 0.0)),
        "invoke": stage("invoke", lambda f: f.get("invoke", 0.0)),
        "postprocess": stage("postprocess", lambda f: f["step"] - f["infer"] - f.get("publish", 0.0)
                             + f.get("scores", 0.0)),
        "publish": stage("publish", lambda f: f.get("publish", 0.0)),
    }
    result: dict[str, Any] = {
        "threads": threads, "camera_fps": camera_fps, "source": source_info(source),
        "sink": cfg.sink if cfg.sink == "stdout" else f"mqtt {a.mqtt_host}:{a.mqtt_port} qos 1",
        "frames": len(frames), "warmup": a.warmup,
        "fps": round(len(frames) / elapsed, 3) if elapsed > 0 else 0.0,
        "stages": stages, "latency_ms": stage("latency", lambda f: f["latency"]),
        "dropped": reader.dropped, "published": pipeline.stats.published,
    }
    if probe is not None:
        result["delivered_ms"] = summarize(probe.latencies[a.warmup:])
        result["delivered"] = probe.received
    return result


# -- baseline: the tutorial loop --------------------------------------------------------------
def _frames(source: Path) -> Generator[np.ndarray, None, None]:
    """Frames forever, as a tutorial reads them: VideoCapture for a video (rewound at the end),
    imread for a folder."""
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
        while True:
            for f in files:
                img = cv2.imread(str(f))
                if img is not None:
                    yield img
    cap = cv2.VideoCapture(str(source))
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            yield frame
    finally:
        cap.release()


class _TutorialSink:
    """Where the tutorial loop publishes: the same kind of sink the pipeline used."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.client: Any = None
        self.stream: io.TextIOBase | None = None
        if args.mqtt_host:
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion

            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-baseline-{os.getpid()}")
            self.client.connect(args.mqtt_host, args.mqtt_port)
            self.client.loop_start()
        else:
            self.stream = open(os.devnull, "w")  # noqa: SIM115 - closed in close()

    def publish(self, text: str) -> None:
        if self.client is not None:
            self.client.publish("edge-agent/bench-baseline/custom/prediction", text, qos=1)
        elif self.stream is not None:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()
        if self.stream is not None:
            self.stream.close()


def bench_baseline(ctx: Context, model: Path, threads: int) -> dict[str, Any]:
    """The single-threaded read → resize → normalise → invoke → publish loop from the usual
    Raspberry Pi examples, timed per stage on the same source and model."""
    a = ctx.args
    manifest = load_manifest(model)
    interp = make_interpreter(ctx, model, threads, a.edgetpu)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    _, h, w, _ = (int(x) for x in inp["shape"])
    dtype = np.dtype(inp["dtype"])
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    spec = manifest.input if manifest and manifest.input else ImageInput(w, h)
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    labels = manifest.labels if manifest else tuple(f"class_{i}" for i in range(int(np.prod(out["shape"]))))
    sink = _TutorialSink(a)
    clock = time.perf_counter
    rows: list[dict[str, float]] = []
    frames = _frames(ctx.source)
    try:
        started = clock()
        for i in range(a.warmup + a.runs):
            if i == a.warmup:
                started = clock()
            t0 = clock()
            frame = next(frames)
            captured = time.monotonic()
            t1 = clock()
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            img = cv2.resize(rgb, (w, h))
            x = (img.astype(np.float32) - mean) / std
            if dtype != np.float32:
                x = np.clip(np.round(x / in_scale + in_zero), np.iinfo(dtype).min, np.iinfo(dtype).max)
            interp.set_tensor(inp["index"], np.expand_dims(x.astype(dtype), 0))
            t2 = clock()
            interp.invoke()
            t3 = clock()
            raw = interp.get_tensor(out["index"])[0]
            scores = (raw.astype(np.float32) - out_zero) * out_scale if out_scale else raw.astype(np.float32)
            top = np.argsort(-scores)[:3]
            text = json.dumps({"label": labels[top[0]], "score": float(scores[top[0]]),
                               "top": [{"label": labels[j], "score": float(scores[j])} for j in top],
                               "ts": time.time()})
            t4 = clock()
            sink.publish(text)
            t5 = clock()
            if i >= a.warmup:
                rows.append({"capture": t1 - t0, "preprocess": t2 - t1, "invoke": t3 - t2, "postprocess": t4 - t3,
                             "publish": t5 - t4, "latency": time.monotonic() - captured})
        elapsed = clock() - started
    finally:
        frames.close()
        sink.close()
    stages = {k: summarize([r[k] * 1000 for r in rows])
              for k in ("capture", "preprocess", "invoke", "postprocess", "publish")}
    return {"threads": threads, "source": source_info(ctx.source), "frames": len(rows), "warmup": a.warmup,
            "fps": round(len(rows) / elapsed, 3) if elapsed > 0 else 0.0, "stages": stages,
            "latency_ms": summarize([r["latency"] * 1000 for r in rows])}


# -- start-up and memory ----------------------------------------------------------------------
# Why a launcher: Linux carries the parent's peak RSS into a child's ru_maxrss across fork/vfork
# and exec, so wait4() on a child of this (large) bench process reports the bench's own peak. A
# tiny interpreter that forks and execs the agent brings that floor down to ~10 MB; it adds one
# bare Python start (~15 ms) to the measured start-up, so the figure errs on the slow side.
LAUNCHER: Final = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "sys.stderr.write('\\nBENCH-MAXRSS-KB %d\\n' % usage.ru_maxrss)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)
def bench_startup(ctx: Context, model: Path, threads: int) -> dict[str, Any]:
    """Process start → first prediction line, and peak RSS, of ``python -m edge_agent``."""
    a = ctx.args
    interp = make_interpreter(ctx, model, 1, None)
    interp.allocate_tensors()
    labels = ctx.labels_for(model, int(np.prod(interp.get_output_details()[0]["shape"])))
    del interp
    cmd = ["-m", "edge_agent", "--model", str(model), "--source", str(ctx.source),
           "--sink", "stdout", "--task", "custom", "--threshold", "0", "--no-on-change", "--max-rate", "0",
           "--threads", str(threads),
           "--max-frames", str(STARTUP_FRAMES), "--log-level", "warning"]
    if labels:
        cmd += ["--labels", str(labels)]
    if a.edgetpu is not None:
        cmd += ["--edgetpu", a.edgetpu] if a.edgetpu else ["--edgetpu"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
    samples: list[dict[str, float]] = []
    for _ in range(a.startup_repeats):
        t0 = time.monotonic()
        with subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, *cmd], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=REPO) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            first = proc.stdout.readline()
            first_s = time.monotonic() - t0
            # Not communicate(): it reads the raw pipe and would lose lines readline() already
            # buffered (a busy machine delivers two predictions in one read). stderr stays small.
            rest = proc.stdout.read()
            err = proc.stderr.read()
        found = re.search(r"^BENCH-MAXRSS-KB (\d+)$", err, re.MULTILINE)
        if proc.returncode != 0 or not first or not found:
            raise RuntimeError(f"the agent failed (exit {proc.returncode}): {err.strip()[-500:]}")
        samples.append({"first_prediction_s": first_s, "total_s": time.monotonic() - t0,
                        "peak_rss_mb": int(found.group(1)) / 1024.0, "predictions": 1 + rest.count("\n")})
    return {"threads": threads, "command": "python " + " ".join(cmd), "runs": len(samples),
            "first_prediction_s": spread([s["first_prediction_s"] for s in samples]),
            "peak_rss_mb": spread([s["peak_rss_mb"] for s in samples]),
            "samples": [{k: round(v, 4) for k, v in s.items()} for s in samples]}


# -- modes ------------------------------------------------------------------------------------
def thread_counts(ctx: Context) -> list[int]:
    return [int(t) for t in str(ctx.args.threads).split(",") if t.strip()]


def mode_invoke(ctx: Context) -> dict[str, Any]:
    return {"invoke": [bench_invoke(ctx, ctx.model, t, ctx.args.edgetpu) for t in thread_counts(ctx)]}


def mode_pipeline(ctx: Context) -> dict[str, Any]:
    key = "pipeline_camera" if ctx.args.camera_fps else "pipeline"
    return {key: [bench_pipeline(ctx, ctx.model, t, ctx.args.camera_fps) for t in thread_counts(ctx)]}


def mode_baseline(ctx: Context) -> dict[str, Any]:
    return {"baseline": [bench_baseline(ctx, ctx.model, t) for t in thread_counts(ctx)]}


def mode_startup(ctx: Context) -> dict[str, Any]:
    return {"startup": [bench_startup(ctx, ctx.model, t) for t in thread_counts(ctx)]}


def _stem(name: str) -> str:
    return re.sub(r"[_-]?(float32|float|fp32|f32|int8|uint8|quant|q)$", "", name)


def int8_pairs(rows: list[dict[str, Any]], models: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Float and int8 variants of the same model (same name apart from the precision suffix, or
    the only two models given), at the same threads and delegate: speedup and accuracy cost."""
    by_key: dict[tuple[str, int, str], dict[str, dict[str, Any]]] = {}
    names = {r["model"] for r in rows}
    for r in rows:
        key = _stem(r["model"]) if len(names) > 2 else "models"
        by_key.setdefault((key, r["threads"], r["delegate"]), {})[r["precision"]] = r
    pairs = []
    for (_, threads, delegate), got in by_key.items():
        if "float" not in got or "int8" not in got:
            continue
        f, q = got["float"], got["int8"]
        speedup = f["latency_ms"]["mean"] / q["latency_ms"]["mean"]
        acc_f = models[f["path"]]["accuracy"]
        acc_q = models[q["path"]]["accuracy"]
        cost = acc_q.get("top1_drop_points")
        if cost is None and acc_f.get("top1", acc_f.get("float_top1")) is not None and \
                acc_q.get("top1", acc_q.get("int8_top1")) is not None:
            cost = round(100 * (acc_q.get("top1", acc_q.get("int8_top1")) - acc_f.get("top1", acc_f.get("float_top1"))),
                         2)
        text = f"{q['model']} (int8) is {speedup:.2f}× faster than {f['model']} (float) at {threads} thread(s) " \
               f"on {delegate}"
        text += f", top-1 {cost:+.2f} points" if cost is not None else ", accuracy cost unknown (no manifest metrics)"
        pairs.append({"float": f["model"], "int8": q["model"], "threads": threads, "delegate": delegate,
                      "speedup": round(speedup, 3), "top1_change_points": cost, "summary": text})
    return pairs


def mode_compare(ctx: Context) -> dict[str, Any]:
    """Invoke for every model × threads × backend, with ratios to the first and int8/float pairs."""
    delegates: list[str | None] = [None] + ([ctx.args.edgetpu] if ctx.args.edgetpu is not None else [])
    rows = []
    for model in ctx.args.model:
        for delegate in delegates:
            for t in thread_counts(ctx):
                row = bench_invoke(ctx, Path(model), t, delegate)
                row["path"] = str(Path(model))
                rows.append(row)
                logger.info("%s %s %d thread(s): %.2f ms mean", row["model"], row["delegate"], t,
                            row["latency_ms"]["mean"])
    ref = rows[0]["latency_ms"]["mean"]
    for r in rows:
        r["speed_vs_first"] = round(ref / r["latency_ms"]["mean"], 3)
    return {"compare": {"rows": rows, "int8_vs_float": int8_pairs(rows, ctx.models)}}


def mode_all(ctx: Context) -> dict[str, Any]:
    """invoke, pipeline, baseline, startup per thread count, in interleaved rounds, plus targets."""
    results: dict[str, Any] = {"invoke": [], "pipeline": [], "pipeline_camera": [], "baseline": [], "startup": [],
                               "rounds": []}
    camera_fps = ctx.args.camera_fps or DEFAULT_CAMERA_FPS
    for r in range(ctx.args.rounds):
        for t in thread_counts(ctx):
            logger.info("round %d, %d thread(s): invoke, pipeline, baseline", r + 1, t)
            inv = bench_invoke(ctx, ctx.model, t, ctx.args.edgetpu)
            pipe = bench_pipeline(ctx, ctx.model, t)
            base = bench_baseline(ctx, ctx.model, t)
            live = bench_pipeline(ctx, ctx.model, t, camera_fps)
            results["invoke"].append(inv)
            results["pipeline"].append(pipe)
            results["baseline"].append(base)
            results["pipeline_camera"].append(live)
            results["rounds"].append({
                "round": r + 1, "threads": t, "invoke_fps": inv["fps"], "pipeline_fps": pipe["fps"],
                # the latency bound uses the invoke p50 of the same (camera-paced) run: on a shared
                # machine the bare-invoke run a few seconds earlier may have seen another load
                "baseline_fps": base["fps"], "invoke_p50_ms": live["stages"]["invoke"]["p50"],
                "latency_p99_ms": live["latency_ms"]["p99"], "saturated_latency_p99_ms": pipe["latency_ms"]["p99"],
                "pipeline_vs_invoke": round(pipe["fps"] / inv["fps"], 6),
                "agent_vs_baseline": round(pipe["fps"] / base["fps"], 6),
            })
    if not ctx.args.skip_startup:
        logger.info("start-up and peak memory of the agent process")
        results["startup"] = [bench_startup(ctx, ctx.model, thread_counts(ctx)[-1])]
    return results


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, as ratios measured within this run (median over rounds, with spread)."""
    out: list[dict[str, Any]] = []
    rounds = results.get("rounds") or []
    for t in sorted({r["threads"] for r in rounds}):
        mine = [r for r in rounds if r["threads"] == t]
        pv = spread([r["pipeline_vs_invoke"] for r in mine])
        ab = spread([r["agent_vs_baseline"] for r in mine])
        lat = spread([r["latency_p99_ms"] / (TARGET_LATENCY_FACTOR * r["invoke_p50_ms"] + TARGET_LATENCY_SLACK_MS)
                      for r in mine])
        out += [
            {"name": "pipeline FPS / bare invoke FPS", "threads": t, "value": pv["median"],
             "target": f">= {TARGET_PIPELINE_VS_INVOKE}", "met": pv["median"] >= TARGET_PIPELINE_VS_INVOKE,
             "spread": pv},
            {"name": "agent FPS / tutorial loop FPS", "threads": t, "value": ab["median"],
             "target": f">= {TARGET_AGENT_VS_BASELINE}", "met": ab["median"] >= TARGET_AGENT_VS_BASELINE,
             "spread": ab},
            {"name": "camera capture→publish p99 / (2 × invoke p50 + 5 ms)", "threads": t, "value": lat["median"],
             "target": "<= 1", "met": lat["median"] <= 1.0, "spread": lat},
        ]
    for s in results.get("startup") or []:
        first, rss = s["first_prediction_s"]["median"], s["peak_rss_mb"]["max"]
        out += [
            {"name": "start-up to first prediction (s)", "threads": s["threads"], "value": first,
             "target": f"<= {TARGET_STARTUP_S}", "met": first <= TARGET_STARTUP_S, "spread": s["first_prediction_s"]},
            {"name": "peak RSS (MB)", "threads": s["threads"], "value": round(rss, 1),
             "target": f"<= {TARGET_PEAK_RSS_MB}", "met": rss <= TARGET_PEAK_RSS_MB, "spread": s["peak_rss_mb"]},
        ]
    return out


ModeFn = Callable[[Context], dict[str, Any]]
# Explicit table of modes. The voice work registers "audio" here: a function (Context) → results
# section, using ctx.args.source for the WAV file and the same summarize()/machine_info() helpers.
MODES: Final[dict[str, ModeFn]] = {
    "invoke": mode_invoke,
    "pipeline": mode_pipeline,
    "baseline": mode_baseline,
    "startup": mode_startup,
    "compare": mode_compare,
    "all": mode_all,
}


# -- output -----------------------------------------------------------------------------------
def csv_rows(node: Any, path: str = "") -> Iterator[dict[str, Any]]:
    """Flatten a report: one row per statistics block or number, named by its JSON path."""
    if isinstance(node, dict):
        if "p50" in node and "max" in node:
            yield {"path": path, **{k: node[k] for k in ("n", "min", "mean", "p50", "p90", "p99", "max")}}
            return
        for k, v in node.items():
            yield from csv_rows(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from csv_rows(v, f"{path}[{i}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield {"path": path, "value": node}


def write_csv(report: dict[str, Any], path: Path) -> None:
    fields = ["path", "value", "n", "min", "mean", "p50", "p90", "p99", "max"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in csv_rows(report["results"], "results"):
            writer.writerow(row)


def write_plot(report: dict[str, Any], path: Path) -> None:
    """FPS side by side (bare invoke, agent, tutorial loop) and where a frame's time goes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None
    res = report["results"]
    panels: list[Callable[[Any], None]] = []

    def fps_panel(ax: Any) -> None:
        kinds = [k for k in ("invoke", "pipeline", "baseline") if res.get(k)]
        threads = sorted({r["threads"] for k in kinds for r in res[k]})
        width = 0.8 / max(1, len(kinds))
        names = {"invoke": "bare invoke", "pipeline": "edge-agent pipeline", "baseline": "tutorial loop"}
        for i, k in enumerate(kinds):
            vals = [statistics.median([r["fps"] for r in res[k] if r["threads"] == t] or [0]) for t in threads]
            bars = ax.bar([j + i * width for j in range(len(threads))], vals, width, label=names[k])
            ax.bar_label(bars, fmt="%.0f", fontsize=8)
        ax.set_xticks([j + width * (len(kinds) - 1) / 2 for j in range(len(threads))],
                      [f"{t} thread{'s' if t > 1 else ''}" for t in threads])
        ax.set_ylabel("frames per second (median of rounds)")
        ax.set_title("Throughput")
        ax.legend(fontsize=8)

    def stage_panel(ax: Any) -> None:
        stages = ("capture", "resize", "preprocess", "invoke", "postprocess", "publish")
        bars = []
        for k, label in (("pipeline", "agent"), ("baseline", "tutorial")):
            for t in sorted({r["threads"] for r in res.get(k) or []}):
                rows = [r for r in res[k] if r["threads"] == t]
                bars.append((f"{label}\n{t}T", {s: statistics.median([r["stages"].get(s, {}).get("mean", 0.0)
                                                                        for r in rows]) for s in stages}))
        bottom = np.zeros(len(bars))
        for s in stages:
            vals = np.array([b[1][s] for b in bars])
            ax.bar([b[0] for b in bars], vals, bottom=bottom, label=s)
            bottom += vals
        ax.set_ylabel("ms per frame (mean; the agent's capture and resize run in its reader thread)")
        ax.set_title("Where the time goes")
        ax.legend(fontsize=8)

    def compare_panel(ax: Any) -> None:
        rows = res["compare"]["rows"]
        labels = [f"{r['model']}\n{r['delegate']} {r['threads']}T" for r in rows]
        vals = [r["latency_ms"]["mean"] for r in rows]
        bars = ax.barh(labels, vals)
        ax.bar_label(bars, labels=[f"{v:.1f} ms ({r['speed_vs_first']:.2f}×)" for v, r in zip(vals, rows,
                                                                                              strict=True)],
                     fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("mean invoke latency, ms (× = speed relative to the first row)")
        ax.set_title("Models, precisions and threads")

    if any(res.get(k) for k in ("invoke", "pipeline", "baseline")):
        panels.append(fps_panel)
    if res.get("pipeline") or res.get("baseline"):
        panels.append(stage_panel)
    if res.get("compare"):
        panels.append(compare_panel)
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for panel, ax in zip(panels, axes[0], strict=True):
        panel(ax)
    fig.suptitle(f"{report['title']} — {report['machine']['cpu']} ({report['machine']['cores']} cores)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_summary(report: dict[str, Any], out: Any = sys.stdout) -> None:
    res = report["results"]
    w = out.write
    m = report["machine"]
    w(f"machine: {m['cpu']}, {m['cores']} cores, board {m['board'] or '-'}, governor {m['governor'] or '-'}, "
      f"load {m['load_avg'][0]}, {m['interpreter']['package']} {m['interpreter']['version']}\n")
    for info in report["models"].values():
        macs = f"{info['macs'] / 1e6:.1f} M MACs" if info.get("macs") else "MACs n/a"
        params = f"{info['params'] / 1e6:.2f} M params" if info.get("params") else "params n/a"
        w(f"model: {info['name']} ({info['precision']}, {info['bytes'] / 1e6:.2f} MB, {params}, {macs})\n")
    for r in res.get("invoke") or []:
        s = r["latency_ms"]
        w(f"invoke   {r['threads']}T {r['delegate']}: first {r['first_ms']:.1f} ms, min {s['min']:.2f} mean "
          f"{s['mean']:.2f} p50 {s['p50']:.2f} p90 {s['p90']:.2f} p99 {s['p99']:.2f} max {s['max']:.2f} ms, "
          f"{r['fps']:.1f} FPS\n")
    for kind in ("pipeline", "pipeline_camera", "baseline"):
        for r in res.get(kind) or []:
            st = " ".join(f"{k} {v['p50']:.2f}" for k, v in r["stages"].items())
            w(f"{kind:8} {r['threads']}T: {r['fps']:.1f} FPS; p50 ms: {st}; capture→publish p50 "
              f"{r['latency_ms']['p50']:.1f} p99 {r['latency_ms']['p99']:.1f} ms\n")
    for r in res.get("startup") or []:
        w(f"startup  {r['threads']}T: first prediction {r['first_prediction_s']['median']:.2f} s (median of "
          f"{r['runs']}), peak RSS {r['peak_rss_mb']['max']:.1f} MB\n")
    if res.get("compare"):
        for r in res["compare"]["rows"]:
            w(f"compare  {r['model']} {r['delegate']} {r['threads']}T: mean {r['latency_ms']['mean']:.2f} ms, "
              f"{r['fps']:.1f} FPS, {r['speed_vs_first']:.2f}× the first\n")
        for p in res["compare"]["int8_vs_float"]:
            w(f"         {p['summary']}\n")
    for t in report["targets"]:
        sp = t["spread"]
        w(f"target   {t['name']} ({t['threads']}T): {t['value']} (target {t['target']}, rounds {sp['min']}–"
          f"{sp['max']}) {'MET' if t['met'] else 'MISSED'}\n")
    for warning in report["warnings"]:
        w(f"warning: {warning}\n")


# -- entry point ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench.py", description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", nargs="?", default="invoke", choices=sorted(MODES), help="what to measure (default invoke)")
    p.add_argument("--model", action="append", required=True, help=".tflite file (repeat for compare)")
    p.add_argument("--threads", default="1", help="interpreter threads; a list like 1,2 runs each (default 1)")
    p.add_argument("--edgetpu", nargs="?", const="", default=None, metavar="usb|pci|usb:N",
                   help="run on a Coral Edge TPU (compare: as well as the CPU)")
    p.add_argument("--source", help="video file or image folder (default: a synthetic 640x480 mp4)")
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=f"timed invokes or frames (default {DEFAULT_RUNS})")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help=f"untimed first ones (default {DEFAULT_WARMUP})")
    p.add_argument("--camera-fps", type=float, default=0.0,
                   help="pipeline: pace the video like a camera at this rate (latency as a user sees it)")
    p.add_argument("--rounds", type=int, default=1, help="all: repeat the set this many times, interleaved")
    p.add_argument("--startup-repeats", type=int, default=STARTUP_REPEATS, help="start-up measurements")
    p.add_argument("--skip-startup", action="store_true", help="all: leave out the start-up measurement")
    p.add_argument("--mqtt-host", help="publish through this broker (pipeline and baseline)")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--title", default="", help="plot and report title")
    p.add_argument("--json", type=Path, help="write the full report here")
    p.add_argument("--csv", type=Path, help="write one row per figure here")
    p.add_argument("--plot", type=Path, help="write a PNG chart here (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no summary on stdout")
    return p


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse, measure, write; returns the report (the tests call this)."""
    args = build_parser().parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.rounds < 1 or args.startup_repeats < 1:
        raise SystemExit("bench.py: --runs, --rounds and --startup-repeats must be >= 1, --warmup >= 0")
    for m in args.model:
        if not Path(m).is_file():
            raise SystemExit(f"bench.py: model {m}: file not found")
    backend = find_backend()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        ctx = Context(args, backend, Path(tmp))
        machine = machine_info(backend)
        ctx.warnings += machine_warnings(machine)
        started = time.time()
        results = MODES[args.mode](ctx)
        after = machine_info(backend)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": args.mode,
        "title": args.title or f"bench {args.mode}: {', '.join(Path(m).name for m in args.model)}",
        "created": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "command": "python tools/bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine,
        "machine_after": {k: after[k] for k in ("temperature_c", "throttled", "load_avg")},
        "models": ctx.models,
        "settings": {"threads": thread_counts(ctx), "runs": args.runs, "warmup": args.warmup, "rounds": args.rounds,
                     "edgetpu": args.edgetpu, "source": str(ctx.source) if args.mode != "invoke" else None,
                     "mqtt": f"{args.mqtt_host}:{args.mqtt_port}" if args.mqtt_host else None},
        "results": results,
        "targets": targets(results),
        "warnings": ctx.warnings,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        write_csv(report, args.csv)
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        write_plot(report, args.plot)
    if not args.quiet:
        print_summary(report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        run(argv)
    except EdgeAgentError as e:
        print(f"bench.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
