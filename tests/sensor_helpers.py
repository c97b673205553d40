"""Real parts for the sensor tests: tiny series models made by the real converter (fixed random
weights, no training), recordings written as a user would, and an agent driven the way the
runtime's loop drives it."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent import manifest as manifest_mod
from edge_agent.agents import sensor
from edge_agent.config import Config
from edge_agent.manifest import Manifest
from edge_agent.preprocess import series

IMU = series.SeriesSpec(
    channels=(series.Channel("ax", "m/s²", 0.0, 3.0), series.Channel("ay", "m/s²", 9.0, 3.0),
              series.Channel("az", "m/s²", 1.0, 3.0)),
    rate_hz=25.0, window=50, stride=25, max_gap_ms=500.0)
IMU_LABELS = ("walking", "jogging", "upstairs", "downstairs", "sitting", "standing")
MACHINE = series.SeriesSpec(
    channels=(series.Channel("vib", "g", 0.0, 1.0), series.Channel("temp", "°C", 30.0, 3.0)),
    rate_hz=100.0, window=100, stride=50, max_gap_ms=200.0, features="summary", output="anomaly")


def build_model(folder: Path, name: str, spec: series.SeriesSpec, labels: tuple[str, ...] = IMU_LABELS,
                seed: int = 0, threshold: float = 0.5, arch: str | None = None) -> Path:
    """A tiny classifier (``arch``: a CNN by default; lstm, gru, dnn) or dense autoencoder (anomaly),
    random weights, converted to full int8 by edge_agent.convert.series.train with calibration windows
    from ``spec``; the recurrent ones through the same Keras the trainer uses (one fused op)."""
    from edge_agent.convert import _tf
    from edge_agent.convert.series import models as series_models
    from edge_agent.convert.series.train import _convert

    tf = _tf.tf()
    anomaly = spec.output == "anomaly"
    arch = arch or ("autoencoder" if anomaly else "cnn")
    keras, _ = series_models.library(arch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = series_models.build(arch, keras, spec.shape, len(labels), 8, seed)
        if arch == "lstm":  # random weights, and a forget gate that keeps the state: the state matters
            rng = np.random.default_rng(seed)
            weights = [rng.normal(0, 0.4, w.shape).astype(np.float32) for w in model.get_weights()]
            bias = next(i for i, w in enumerate(weights) if w.ndim == 1 and w.shape[0] == 4 * 8)
            weights[bias][8:16] = 8.0  # Keras' gate order i, f, c, o: f ≈ 1
            model.set_weights(weights)
        fixed = series_models.fixed_batch(keras, model, spec.shape)
        calib = series.features(sample_windows(spec, 128, seed), spec)
        data = _convert(tf, fixed, calib)
        float_data = _convert(tf, fixed, None)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.tflite"
    path.write_bytes(data)
    (folder / f"{name}.float.tflite").write_bytes(float_data)
    extra = {"anomaly": {"threshold": threshold, "score": "reconstruction_mse"}} if anomaly else {}
    m = Manifest(name=name, task=name, labels=("normal", "anomaly") if anomaly else labels,
                 sha256=manifest_mod.sha256_file(path), model_file=path.name,
                 series={k: v for k, v in spec.to_json().items() if k != "kind"},
                 provenance={"made_by": "tests/sensor_helpers.py"}, extra=extra)
    manifest_mod.write(m, path.with_suffix(".json"))
    return path


def sample_windows(spec: series.SeriesSpec, n: int, seed: int) -> np.ndarray:
    """``n`` raw windows around each channel's mean: sinusoids and noise of varied size."""
    rng = np.random.default_rng([seed, 5])
    k = np.arange(spec.window)[None, :, None]
    amp = rng.uniform(0.2, 2.0, (n, 1, len(spec.channels))) * spec.std
    freq = rng.uniform(0.02, 0.3, (n, 1, len(spec.channels)))
    x = spec.mean + amp * np.sin(2 * np.pi * freq * k) + rng.normal(0, 0.3, (n, spec.window, len(spec.channels))) * amp
    return x.astype(np.float32)


def walk(seconds: float, rate_hz: float = 50.0, t0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A walking-like accelerometer signal: (t, (N, 3))."""
    t = t0 + np.arange(int(seconds * rate_hz)) / rate_hz
    x = np.stack([0.5 * np.sin(2 * np.pi * 1.9 * t), 9.81 + 2.5 * np.sin(2 * np.pi * 1.9 * t),
                  np.cos(2 * np.pi * 1.9 * t)], axis=1)
    return t, x


def write_csv(path: Path, t: np.ndarray, x: np.ndarray, names: tuple[str, ...] = ("ax", "ay", "az")) -> Path:
    rows = [f"{ti:.4f}," + ",".join(f"{v:.4f}" for v in row) for ti, row in zip(t, x, strict=True)]
    lines = ["t," + ",".join(names), *rows]
    path.write_text("\n".join(lines) + "\n")
    return path


class Collect:
    """A publisher that keeps what it is given (the Publisher protocol)."""

    fatal = None

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def start(self) -> None:
        pass

    def publish(self, subtopic: str, payload: dict[str, Any]) -> None:
        self.messages.append((subtopic, payload))

    def flush(self, timeout: float) -> bool:
        return True

    def stop(self) -> None:
        pass

    def healthy(self) -> bool:
        return True

    state = "collecting"


def make_agent(model_path: Path, configure: Callable[[Config], None], publisher: Any = None,
               source: Any = None) -> sensor.SensorAgent:
    cfg = Config(task=model_path.stem if model_path.stem in ("activity", "machine") else "custom",
                 device_id="bench")
    cfg.postprocess.threshold = 0.0
    cfg.postprocess.on_change, cfg.postprocess.max_rate = False, 0.0  # every window (the default: on change)
    configure(cfg)
    man = manifest_mod.load(model_path.with_suffix(".json"))
    model = sensor.load(model_path, man, cfg)
    return sensor.SensorAgent(cfg, model, publisher or Collect(), source=source)


def drive(agent: sensor.SensorAgent, until: Callable[[], bool] | None = None, timeout_s: float = 30.0,
          read_timeout: float = 0.05) -> None:
    """What the runtime's loop does: start, read → process until ended (or ``until``), stop."""
    stop = threading.Event()
    agent.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not agent.ended and time.monotonic() < deadline and not (until and until()):
            item = agent.read(read_timeout, stop)
            if item is not None:
                agent.process(item)
    finally:
        agent.stop()


_BUILT: dict[str, Path] = {}


def tiny_models() -> dict[str, Path]:
    """The two tiny models, built once per test process: 'activity' (classes) and 'machine' (anomaly)."""
    if not _BUILT:
        import tempfile

        d = Path(tempfile.mkdtemp(prefix="edge-agent-series-"))
        _BUILT["activity"] = build_model(d, "activity", IMU)
        _BUILT["machine"] = build_model(d, "machine", MACHINE, threshold=0.5)
    return _BUILT
