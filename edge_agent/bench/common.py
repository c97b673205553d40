"""What every bench mode shares: statistics, the machine and model facts, inputs, the context."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np

from edge_agent import board
from edge_agent import manifest as manifest_mod
from edge_agent.engine import Backend, check_model_file, load_edgetpu_delegate
from edge_agent.errors import EdgeAgentError
from edge_agent.manifest import Manifest

logger = logging.getLogger("bench")

SCHEMA: Final = "edge-agent/bench@1"
# generated inputs are kept between runs (a 640x480 video takes seconds to encode)
CACHE: Final = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-agent" / "bench"
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
def machine_info(backend: Backend) -> dict[str, Any]:
    """What the numbers depend on: CPU, board, governor, heat, load and software versions."""
    gov = board.governors()
    bits = board.throttled()
    return {
        "cpu": board.cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count() or 1,
        "cores_usable": board.usable_cores(),
        "board": board.board_model(),
        "governor": ",".join(gov) if gov else None,
        "temperature_c": board.temperatures_c(),
        "throttled": None if bits is None else f"0x{bits:x}",
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


def thread_counts(ctx: Context) -> list[int]:
    return [int(t) for t in str(ctx.args.threads).split(",") if t.strip()]
