"""``edge-agent-convert train-series DATA --out DIR``: CSV recordings → full-int8 series model,
manifest and model card.

1. scan the folder and split it by SOURCE (:mod:`.series_data`), before TensorFlow loads;
2. resample and window every recording through the agent's own front end
   (:mod:`edge_agent.preprocess.series`), fit per-channel scaling on the training sources only;
3. train a small 1D-CNN, LSTM, GRU, DNN or autoencoder (:mod:`.series_models`);
4. convert at a fixed batch of 1 to float32 and to full int8 (int8 in and out), calibrated on
   training windows; refuse float operators (:func:`~.quantize.check_int8`);
5. measure float and int8 on the held-out test sources through the agent's own engine and
   :meth:`~edge_agent.agents.series_model.SeriesModel.infer`: top-1 for classes; ROC AUC for
   anomaly models, whose threshold is the int8 model's ``--quantile`` (p99) of the reconstruction
   error on normal VALIDATION windows;
6. write ``DIR/<name>.tflite``, ``<name>.json`` (manifest) and ``<name>.md`` (the card, with the
   op report and the command that made it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Final

import numpy as np

from ... import __version__
from ...agents import series_model
from ...errors import ConfigError, ModelError
from ...manifest import Manifest, manifest_path_for, sha256_file, write
from ...preprocess import series
from .. import _tf, graph, report
from ..quantize import _utc_now, check_int8
from . import card as series_card
from . import data as series_data
from . import models as series_models

logger = logging.getLogger(__name__)

CALIBRATION_WINDOWS: Final = 300


@dataclasses.dataclass
class Options:
    data: Path
    out: Path  # a folder
    name: str | None = None
    task: str = "custom"
    arch: str = "cnn"
    rate_hz: float = 25.0
    window: int = 50
    stride: int = 25
    max_gap_ms: float = series.DEFAULT_MAX_GAP_MS
    features: str = "raw"
    units: str = ""  # "ax=m/s²,ay=m/s²"
    hidden: int = 16
    epochs: int = 30
    patience: int = 10
    batch_size: int = 32
    learning_rate: float = 3e-3
    seed: int = 0
    val_split: float = 0.2
    test_split: float = 0.2
    quantile: float = 99.0
    allow_float_fallback: bool = False
    command: str = ""


def _units(text: str, channels: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, unit = part.partition("=")
        if not sep or name not in channels:
            raise ConfigError(f"--units '{part}': expected CHANNEL=UNIT with a channel among {', '.join(channels)}")
        out[name] = unit
    return out


def _check(o: Options) -> None:
    if o.arch not in series_models.ARCHS:
        raise ConfigError(f"--arch {o.arch}: choose one of {', '.join(series_models.ARCHS)}")
    if o.features not in series.FEATURES:
        raise ConfigError(f"--features {o.features}: choose raw or summary")
    if o.features == "summary" and o.arch in ("cnn", "lstm", "gru"):
        raise ConfigError(f"--arch {o.arch} reads a sequence; summary features suit --arch dnn or autoencoder")
    if not 50.0 <= o.quantile < 100.0:
        raise ConfigError(f"--quantile {o.quantile}: from 50 to 100")


def _predict(path: Path, manifest: Manifest, raw: np.ndarray) -> np.ndarray:
    """Every window through the agent's own loader, engine and front end."""
    model = series_model.load(path, manifest, threads=2)
    return np.stack([model.infer(w) for w in raw]) if len(raw) else np.zeros((0, 1), np.float32)


def _convert(tf: Any, keras_model: Any, calib: np.ndarray | None) -> bytes:
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conv = tf.lite.TFLiteConverter.from_keras_model(keras_model)
        if calib is not None:
            def gen() -> Any:
                for x in calib:
                    yield [x[None].astype(np.float32)]

            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = gen
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        try:
            return bytes(conv.convert())
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"TFLite conversion failed ({first})") from None


def empty_float_intermediates(model: bytes) -> int:
    """Float32 tensors that are only an operator's empty ``intermediates`` (the integer LSTM
    kernel's gate-scale holders: shape [0], no data flows through them)."""
    schema = graph._schema()
    m = schema.ModelT.InitFromPackedBuf(model, 0)
    sub = m.subgraphs[0]
    inter = {int(i) for op in sub.operators or [] for i in (op.intermediates if op.intermediates is not None else ())}
    float32 = schema.TensorType.FLOAT32
    return sum(1 for i, t in enumerate(sub.tensors or []) if i in inter and t.type == float32
               and (t.shape is None or len(t.shape) == 0 or int(np.prod(t.shape)) == 0))


def run(o: Options) -> dict[str, Any]:
    _check(o)
    ds = series_data.scan(o.data)
    split = series_data.split_sources(ds.sources, o.seed, o.val_split, o.test_split)
    units = _units(o.units, ds.channels)
    try:
        spec = series.SeriesSpec(tuple(series.Channel(c, units.get(c, "")) for c in ds.channels), o.rate_hz,
                                 o.window, o.stride, o.max_gap_ms, o.features,
                                 "anomaly" if ds.anomaly else "classes")
    except ValueError as e:
        raise ConfigError(f"train-series: {e}") from None
    if ds.anomaly and o.arch != "autoencoder":
        raise ConfigError(f"data {o.data} is anomaly data (normal/ and anomaly/): use --arch autoencoder")
    if not ds.anomaly and o.arch == "autoencoder":
        raise ConfigError(f"data {o.data} has classes; --arch autoencoder needs normal/ (and anomaly/) folders")
    # recordings of faults (anomaly/) are never trained on: all of them count in the held-out figures,
    # whichever part the split put their source in
    def part_of(r: series_data.Recording) -> str:
        return "test" if ds.anomaly and r.label == series_data.ANOMALY else split.of(r.source)

    parts = {p: [r for r in ds.recordings if part_of(r) == p] for p in ("train", "val", "test")}
    train_recs = [r for r in parts["train"] if not ds.anomaly or r.label == series_data.NORMAL]
    mean, std = series.fit_scaling([r.x for r in train_recs])
    spec = spec.with_scaling(mean, std)
    w = {p: series_data.windows_of(recs, spec, ds.classes, ds.anomaly) for p, recs in parts.items()}
    if ds.anomaly:  # only healthy windows are trained on; validation normals calibrate the threshold
        keep = w["train"].y == 0
        w["train"] = series_data.Windows(w["train"].raw[keep], w["train"].y[keep],
                                         [s for s, k in zip(w["train"].sources, keep, strict=True) if k])
    for p in ("train", "val", "test"):
        if not len(w[p].raw):
            raise ConfigError(f"data {o.data}: no {p} windows (sources {getattr(split, p)}); "
                              f"recordings shorter than the {o.window}-sample window?")
    x_train = series.features(w["train"].raw, spec)
    x_val = series.features(w["val"].raw, spec)
    logger.info("windows: train %d, val %d, test %d", len(x_train), len(x_val), len(w["test"].raw))

    tf = _tf.tf()
    lib, recurrent = series_models.library(o.arch)
    shape = spec.shape
    labels = series_model.ANOMALY_LABELS if ds.anomaly else ds.classes
    model = series_models.build(o.arch, lib, shape, len(labels), o.hidden, o.seed)
    stop = lib.callbacks.EarlyStopping(patience=o.patience, restore_best_weights=True)
    if ds.anomaly:
        model.compile(optimizer=lib.optimizers.Adam(o.learning_rate), loss="mse")
        target_train, target_val = x_train.reshape(len(x_train), -1), x_val[w["val"].y == 0].reshape(-1, x_val[0].size)
        model.fit(x_train, target_train, validation_data=(x_val[w["val"].y == 0], target_val), epochs=o.epochs,
                  batch_size=o.batch_size, verbose=0, callbacks=[stop], shuffle=True)
    else:
        counts = np.bincount(w["train"].y, minlength=len(labels)).astype(np.float64)
        weights = {i: float(counts.sum() / (len(labels) * c)) if c else 1.0 for i, c in enumerate(counts)}
        model.compile(optimizer=lib.optimizers.Adam(o.learning_rate), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(x_train, w["train"].y, validation_data=(x_val, w["val"].y), epochs=o.epochs,
                  batch_size=o.batch_size, verbose=0, callbacks=[stop], class_weight=weights, shuffle=True)
    fixed = series_models.fixed_batch(lib, model, shape)
    calib = x_train[np.random.default_rng([o.seed, 7]).permutation(len(x_train))[:CALIBRATION_WINDOWS]]
    float_bytes = graph.strip_names(_convert(tf, fixed, None))
    int8_bytes = graph.strip_names(_convert(tf, fixed, calib))
    g = graph.read(int8_bytes)
    float_ops = check_int8(g, o.allow_float_fallback)
    gf = graph.read(float_bytes)
    summary = g.summary()
    empty = empty_float_intermediates(int8_bytes)
    summary["empty_float_intermediates"] = empty
    # full int8 = every operator integer; the integer LSTM's empty float "intermediates" carry no data
    summary["full_int8"] = not float_ops and summary["float_tensors"] == empty

    name = o.name or o.data.name
    o.out.mkdir(parents=True, exist_ok=True)
    out = o.out / f"{name}.tflite"
    out.write_bytes(int8_bytes)
    provenance = {
        "tool": "edge-agent-convert", "tool_version": __version__, "tensorflow": str(tf.__version__),
        "keras": f"{lib.__name__} {lib.__version__}", "created": _utc_now(), "command": o.command,
        "dataset": str(o.data), "synthetic": (o.data / "README.txt").is_file() and
        "SYNTHETIC" in (o.data / "README.txt").read_text(errors="replace"),
        "data_seed": _data_seed(o.data), "seed": o.seed, "split_by": "source",
        "split": {"train": list(split.train), "val": list(split.val), "test": list(split.test),
                  "windows": {p: len(w[p].raw) for p in w}},
        "arch": o.arch, "hidden": o.hidden, "recurrent_lowering": recurrent, "io_type": "int8",
        "float_fallback_ops": float_ops,
    }
    extra: dict[str, Any] = {}
    metrics: dict[str, Any] = {"float_tflite_bytes": len(float_bytes), "int8_tflite_bytes": len(int8_bytes),
                               "params": int(model.count_params()),
                               "macs": g.macs() + (series_models.recurrent_macs(o.arch, shape, o.hidden)
                                                   if "UNIDIRECTIONAL_SEQUENCE_LSTM" in g.op_counts() else 0),
                               "calibration_windows": len(calib)}
    # a provisional manifest (threshold 1.0) so the agent's own loader can measure the two models
    anomaly_stub = {"anomaly": {"threshold": 1.0}} if ds.anomaly else {}

    def manifest_for(path: Path, ext: dict[str, Any]) -> Manifest:
        return Manifest(name=name, task=o.task, labels=tuple(labels), sha256=sha256_file(path), model_file=path.name,
                        series={k: v for k, v in spec.to_json().items() if k != "kind"}, provenance=provenance,
                        metrics=metrics, extra=ext)

    with tempfile.TemporaryDirectory() as tmp:
        fpath = Path(tmp) / "float.tflite"
        fpath.write_bytes(float_bytes)
        results = {}
        for kind, path in (("float", fpath), ("int8", out)):
            man = manifest_for(path, anomaly_stub)
            results[kind] = {p: _predict(path, man, w[p].raw) for p in ("val", "test")}
    y_test = w["test"].y
    if ds.anomaly:
        for kind in ("float", "int8"):
            val_normal = results[kind]["val"][:, 0][w["val"].y == 0]
            thr = float(np.percentile(val_normal, o.quantile))
            s = results[kind]["test"][:, 0]
            flagged = s > thr
            metrics[kind] = {"roc_auc": _round(series_data.roc_auc(s, y_test)), "threshold": thr,
                             "n": len(s), "anomalous": int(y_test.sum()),
                             "recall": _round(float(flagged[y_test == 1].mean()) if y_test.sum() else None),
                             "false_alarm_rate": _round(float(flagged[y_test == 0].mean()))}
        auc_f, auc_q = metrics["float"]["roc_auc"], metrics["int8"]["roc_auc"]
        metrics["roc_auc_drop"] = round(auc_f - auc_q, 4) if auc_f is not None and auc_q is not None else None
        extra["anomaly"] = series_model.AnomalySpec(
            round(metrics["int8"]["threshold"], 6), calibration=f"p{o.quantile:g} of the int8 model's "
            f"reconstruction error on {int((w['val'].y == 0).sum())} normal validation windows "
            f"(sources {', '.join(split.val)})").to_json()
    else:
        for kind in ("float", "int8"):
            metrics[kind] = report.metrics(y_test, results[kind]["test"].argmax(axis=1), labels)
        metrics["top1_drop_points"] = round(100 * (metrics["int8"]["top1"] - metrics["float"]["top1"]), 2)
    manifest = manifest_for(out, extra)
    manifest_file = manifest_path_for(out)
    write(manifest, manifest_file)
    result = {"name": name, "model_file": str(out), "manifest_file": str(manifest_file), "labels": list(labels),
              "input": spec.to_json(), "graph": summary, "float_graph": {"ops": gf.op_counts(),
                                                                           "subgraphs": gf.subgraphs},
              "metrics": metrics, "provenance": provenance, "anomaly": extra.get("anomaly")}
    card = o.out / f"{name}.md"
    card.write_text(series_card.markdown(result), encoding="utf-8")
    result["card_file"] = str(card)
    return result


def _data_seed(folder: Path) -> int | None:
    """The generator's seed, from the README.txt tools/gen_sensor_data.py leaves in the folder."""
    readme = folder / "README.txt"
    text = readme.read_text(errors="replace") if readme.is_file() else ""
    _, sep, rest = text.partition("(seed ")
    digits = rest.split(")", 1)[0] if sep else ""
    return int(digits) if digits.isdigit() else None


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def format_text(result: dict[str, Any]) -> str:
    m = result["metrics"]
    lines = [f"wrote {result['model_file']} ({m['int8_tflite_bytes'] / 1024:.1f} KiB int8, float "
             f"{m['float_tflite_bytes'] / 1024:.1f} KiB), {result['manifest_file']}, {result['card_file']}",
             f"  full int8: {'yes' if result['graph']['full_int8'] else 'no'}; ops "
             + ", ".join(f"{k} x{v}" for k, v in sorted(result["graph"]["ops"].items()))]
    if "top1_drop_points" in m:
        lines.append(f"  test top-1: float {100 * m['float']['top1']:.1f} %  int8 {100 * m['int8']['top1']:.1f} %  "
                     f"({m['top1_drop_points']:+.2f} points, {m['int8']['n']} windows)")
    else:
        lines.append(f"  test ROC AUC: float {m['float']['roc_auc']}  int8 {m['int8']['roc_auc']}  "
                     f"(threshold {m['int8']['threshold']:.4g}, recall {m['int8']['recall']}, "
                     f"false alarms {m['int8']['false_alarm_rate']})")
    return "\n".join(lines)
