"""Keras model + calibration images → full-integer ``.tflite`` + manifest + report.

Steps, each checked:
1. scan the data folder first (bad folders fail in a second, before TensorFlow loads);
2. load the model and fix its input at (1, H, W, C): a static shape is what the Edge TPU
   compiler and the agent's single-image engine want;
3. calibrate post-training int8 quantization on images from the *training* split, decoded,
   resized and normalised by the agent's own preprocessing module;
4. read the produced flatbuffer back and refuse it if any operator still runs in float
   (unless ``--allow-float-fallback``);
5. measure float32 and int8 ``.tflite`` on the held-out *test* split through the agent's engine;
6. write the model, its manifest (labels, input spec, metrics, provenance, sha256) and a report.

Default I/O type is int8: it is TFLite's native quantized type (symmetric int8 weights, int8
activations), so the graph needs no extra QUANTIZE ops at its ends, and the Edge TPU compiler
accepts it. ``--io-type uint8`` is for older tooling that only feeds uint8; the agent handles both
through the same lookup table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Final

import numpy as np

from .. import __version__
from ..errors import ConfigError, ModelError
from ..manifest import ImageInput, Manifest, manifest_path_for, sha256_file, write
from . import _tf, data, evaluate, graph, report, source

logger = logging.getLogger(__name__)

IO_TYPES: Final = ("int8", "uint8")
DEFAULT_CALIBRATION: Final = 200  # images; TFLite's guidance is 100-500 representative samples


@dataclasses.dataclass
class Options:
    model: Path
    out: Path
    data: Path | None = None
    labels: Path | None = None
    io_type: str = "int8"
    allow_float_fallback: bool = False
    num_calibration: int = DEFAULT_CALIBRATION
    seed: int | None = None
    val_split: float | None = None
    test_split: float | None = None
    input_size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: str | None = None
    representative: Path | None = None
    name: str | None = None
    task: str = "custom"
    report: Path | None = None
    keep_float: Path | None = None
    keep_names: bool = False
    per_tensor: bool = False
    command: str = ""


@dataclasses.dataclass
class Prepared:
    """Everything known before TensorFlow: the data, the split and the recorded training settings."""

    sidecar: dict[str, Any]
    dataset: data.Dataset | None
    parts: data.Split | None
    loose: list[Path]
    seed: int
    val_split: float
    test_split: float


def prepare(o: Options) -> Prepared:
    if o.io_type not in IO_TYPES:
        raise ConfigError(f"--io-type {o.io_type}: choose int8 or uint8")
    if o.num_calibration < 1:
        raise ConfigError(f"--num-calibration {o.num_calibration}: must be at least 1")
    if not o.model.exists():
        raise ModelError(f"model {o.model}: not found")
    side = source.read_sidecar(o.model)
    folder = o.data or (Path(side["data"]) if side.get("data") else None)
    seed = o.seed if o.seed is not None else int(side.get("seed", 0))
    val = o.val_split if o.val_split is not None else float(side.get("val_split", 0.15))
    test = o.test_split if o.test_split is not None else float(side.get("test_split", 0.15))
    if folder is None and o.representative is None:
        raise ConfigError("quantize needs calibration images: give --data FOLDER (or --representative FILE.npy)")
    ds, parts, loose = None, None, []
    if folder is not None:
        if data.is_labelled(folder):
            ds = data.scan(folder)
            parts = data.split(ds, seed, val, test)
        else:
            loose = data.scan_unlabelled(folder)
    return Prepared(side, ds, parts, loose, seed, val, test)


def input_spec(o: Options, side: dict[str, Any], hwc: tuple[int, int, int]) -> ImageInput:
    h, w, c = hwc
    rec = side.get("input") or {}

    def per_channel(value: tuple[float, ...] | None, recorded: Any, flag: str) -> tuple[float, ...]:
        v = value if value is not None else tuple(recorded) if recorded else (127.5,)
        if len(v) == 1:
            v = v * c
        if len(v) != c:
            raise ConfigError(f"{flag}: give 1 or {c} values for a {c}-channel model")
        return tuple(float(x) for x in v)

    return ImageInput(
        width=w,
        height=h,
        channels=c,
        color_order="GRAY" if c == 1 else str(rec.get("color_order", "RGB")),
        resize=o.resize or str(rec.get("resize", "stretch")),
        mean=per_channel(o.mean, rec.get("mean"), "--mean"),
        std=per_channel(o.std, rec.get("std"), "--std"),
    )


def representative_set(o: Options, p: Prepared, spec: ImageInput) -> np.ndarray:
    """float32 (N, H, W, C), normalised, from the training split (or loose images / an .npy)."""
    shape = (spec.height, spec.width, spec.channels)
    if o.representative is not None:
        try:
            arr = np.load(o.representative, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ConfigError(f"--representative {o.representative}: cannot read ({e})") from None
        if arr.ndim != 4 or tuple(arr.shape[1:]) != shape:
            got = "x".join(str(d) for d in arr.shape[1:]) if arr.ndim == 4 else f"an array of shape {list(arr.shape)}"
            raise ConfigError(
                f"--representative {o.representative}: images are {got} but the model's input is "
                f"{spec.height}x{spec.width}x{spec.channels} (H x W x C)"
            )
        if arr.dtype == np.uint8:
            return data.normalize(arr[: o.num_calibration], spec)
        return arr[: o.num_calibration].astype(np.float32)
    if p.parts is not None:
        pool = list(p.parts.train)
        order = np.random.default_rng([p.seed, 7]).permutation(len(pool))
        paths = [pool[i].path for i in order[: o.num_calibration]]
    else:
        order = np.random.default_rng([p.seed, 7]).permutation(len(p.loose))
        paths = [p.loose[i] for i in order[: o.num_calibration]]
    return data.normalize(data.load_images(paths, spec), spec)


def _wrap_saved_model(tf: Any, src: source.Source, hwc: tuple[int, int, int], folder: Path) -> None:
    """Re-save a SavedModel's serving function at a fixed (1, H, W, C) input."""

    class Fixed(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.keep = src.keepalive

        @tf.function(input_signature=[tf.TensorSpec((1, *hwc), tf.float32, name="image")])
        def serve(self, image: Any) -> Any:
            return src.call(image)

    module = Fixed()
    tf.saved_model.save(module, str(folder), signatures=module.serve)


def _convert(src: source.Source, hwc: tuple[int, int, int], configure: Any) -> bytes:
    """Run the TFLite converter on the model fixed at a (1, H, W, C) input: static shapes are what
    the Edge TPU compiler and the agent's one-image engine want. Keras' export prints the traced
    signature to stdout and the converter warns about I/O statistics; neither must reach a
    ``--json`` consumer or a warnings-as-errors test, so both are diverted here."""
    tf = _tf.tf()
    keras = _tf.keras()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if src.kind == "keras":
            image = keras.Input(shape=hwc, batch_size=1, name="image")
            fixed = keras.Model(image, src.model(image, training=False))
            conv = tf.lite.TFLiteConverter.from_keras_model(fixed)
        else:
            _wrap_saved_model(tf, src, hwc, Path(tmp) / "fixed")
            conv = tf.lite.TFLiteConverter.from_saved_model(str(Path(tmp) / "fixed"))
        configure(tf, conv)
        try:
            return bytes(conv.convert())
        except Exception as e:
            raise ModelError(f"model {src.path}: TFLite conversion failed ({source._first_line(e)})") from None


def convert_float(src: source.Source, hwc: tuple[int, int, int]) -> bytes:
    return _convert(src, hwc, lambda tf, conv: None)


def convert_int8(
    src: source.Source, hwc: tuple[int, int, int], calib: np.ndarray, io_type: str, per_tensor: bool = False
) -> bytes:
    """Post-training full-integer quantization. Float builtins are *allowed* during conversion so
    that an op without an int8 kernel shows up in the graph (and is listed) instead of aborting
    the converter with an MLIR error; :func:`check_int8` then decides.

    By default convolution weights get one scale per output channel (TFLite's int8 spec). With
    ``per_tensor`` every weight tensor gets a single scale and zero point: a smaller file (a small
    model's per-channel scales, zero points and bias parameters are a visible share of it), at
    some risk of accuracy where a layer's channels have very different ranges — measure it."""

    def gen() -> Any:
        for x in calib:
            yield [x[None, ...]]

    def configure(tf: Any, conv: Any) -> None:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        dtype = tf.int8 if io_type == "int8" else tf.uint8
        conv.inference_input_type = dtype
        conv.inference_output_type = dtype
        if per_tensor:
            # No public converter flag for this; TF's own quantization tests set the same attribute.
            conv._experimental_disable_per_channel = True

    return _convert(src, hwc, configure)


def check_int8(g: graph.GraphInfo, allow_float: bool) -> list[str]:
    """Names of float operators; an error listing them unless float fallback is allowed."""
    floats = [f"{op.name}#{op.index}" for op in g.float_ops()]
    if floats and not allow_float:
        shown = ", ".join(floats[:8]) + (f" and {len(floats) - 8} more" if len(floats) > 8 else "")
        raise ModelError(
            f"{len(floats)} operator(s) stay float after int8 quantization: {shown}; "
            "change those layers or pass --allow-float-fallback to accept a mixed model"
        )
    return floats


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def run(o: Options) -> dict[str, Any]:
    """The whole ``quantize`` command; returns the report as a dict (also written to disk)."""
    p = prepare(o)
    src = source.load(o.model)
    hwc = source.resolve_size(src, o.input_size)
    spec = input_spec(o, p.sidecar, hwc)
    labels = source.find_labels(o.model, o.labels, p.sidecar)
    if labels is None and p.dataset is not None:
        labels = p.dataset.labels
        logger.warning("no labels file: taking the label order from the class folders of %s", p.dataset.root)
    if labels is None:
        raise ModelError(f"model {o.model}: no labels; give --labels labels.txt (one name per line)")
    if len(labels) != src.num_classes:
        raise ModelError(f"model {o.model}: outputs {src.num_classes} classes but there are {len(labels)} labels")
    calib = representative_set(o, p, spec)
    logger.info("calibrating on %d images", len(calib))

    float_bytes = convert_float(src, hwc)
    int8_bytes = convert_int8(src, hwc, calib, o.io_type, o.per_tensor)
    if not o.keep_names:  # both, so the size comparison stays fair
        float_bytes, int8_bytes = graph.strip_names(float_bytes), graph.strip_names(int8_bytes)
    g = graph.read(int8_bytes)
    float_ops = check_int8(g, o.allow_float_fallback)

    o.out.parent.mkdir(parents=True, exist_ok=True)
    o.out.write_bytes(int8_bytes)
    metrics: dict[str, Any] = {
        "float_tflite_bytes": len(float_bytes),
        "int8_tflite_bytes": len(int8_bytes),
        "size_ratio": round(len(int8_bytes) / len(float_bytes), 4),
        "params": _params(src, g),
        "macs": g.macs(),
        "calibration_images": len(calib),
    }
    if p.parts is not None and p.parts.test and p.dataset is not None:
        test = p.parts.test
        images = data.load_images([s.path for s in test], spec)
        y_true = evaluate.label_indices(p.dataset, test, labels)
        with tempfile.TemporaryDirectory() as tmp:
            float_path = o.keep_float or Path(tmp) / "float.tflite"
            float_path.write_bytes(float_bytes)
            y_float = evaluate.predict(float_path, images, spec)
        y_int8 = evaluate.predict(o.out, images, spec)
        metrics["float"] = report.metrics(y_true, y_float, labels)
        metrics["int8"] = report.metrics(y_true, y_int8, labels)
        metrics["top1_drop_points"] = round(100 * (metrics["int8"]["top1"] - metrics["float"]["top1"]), 2)
        # What the converter alone answers for: how often int8 says what float says, whatever the labels.
        metrics["int8_float_agreement"] = round(float(np.mean(np.asarray(y_float) == np.asarray(y_int8))), 4)
    elif o.keep_float:
        o.keep_float.write_bytes(float_bytes)

    tf = _tf.tf()
    side = p.sidecar
    provenance = {
        "tool": "edge-agent-convert",
        "tool_version": __version__,
        "tensorflow": str(tf.__version__),
        "created": _utc_now(),
        "command": o.command,
        "source_model": str(o.model),
        "source_sha256": sha256_file(o.model) if o.model.is_file() else None,
        "dataset": str(p.dataset.root if p.dataset else o.data or o.representative),
        "seed": p.seed,
        "split": {
            "val_fraction": p.val_split,
            "test_fraction": p.test_split,
            "sizes": p.parts.sizes() if p.parts else None,
        },
        "arch": side.get("arch"),
        "alpha": side.get("alpha"),
        "resolution": side.get("resolution", hwc[0]),
        "io_type": o.io_type,
        "weight_quantization": "per-tensor" if o.per_tensor else "per-channel",
        "float_fallback_ops": float_ops,
    }
    if side.get("pretrained"):  # where the start came from, its licence and port check (additive)
        provenance["pretrained"] = side["pretrained"]
    name = o.name or o.out.stem
    manifest = Manifest(
        name=name,
        task=o.task,
        labels=tuple(labels),
        sha256=sha256_file(o.out),
        model_file=o.out.name,
        input=spec,
        provenance=provenance,
        metrics={k: v for k, v in metrics.items()},
    )
    manifest_file = manifest_path_for(o.out)
    write(manifest, manifest_file)
    result = {
        "name": name,
        "model_file": str(o.out),
        "manifest_file": str(manifest_file),
        "io_type": o.io_type,
        "weight_quantization": provenance["weight_quantization"],
        "labels": list(labels),
        "input": spec.to_json(),
        "graph": g.summary(),
        "metrics": metrics,
        "provenance": provenance,
    }
    report_md = o.report or o.out.with_suffix(".report.md")
    result["report_file"] = str(report_md)
    result["report_json"] = str(report.write(result, report_md))
    return result


def _params(src: source.Source, g: graph.GraphInfo) -> int:
    """Keras' parameter count when there is a Keras model (comparable with the papers), else the
    number of values stored in the float graph's constants."""
    if src.kind == "keras":
        return int(src.model.count_params())
    return g.stored_values()


def format_text(result: dict[str, Any]) -> str:
    m = result["metrics"]
    lines = [
        f"wrote {result['model_file']} ({m['int8_tflite_bytes'] / 1024:.1f} KiB, "
        f"{100 * m['size_ratio']:.1f} % of float {m['float_tflite_bytes'] / 1024:.1f} KiB), "
        f"{result['manifest_file']}, {result['report_file']}",
        f"  full int8: {'yes' if result['graph']['full_int8'] else 'no'}; "
        f"params {m['params']:,}; multiply-adds {m['macs']:,}",
    ]
    if "int8" in m:
        lines.append(
            f"  test top-1: float {100 * m['float']['top1']:.1f} %  int8 {100 * m['int8']['top1']:.1f} %  "
            f"({m['top1_drop_points']:+.2f} points, {m['int8']['n']} images)"
        )
    return "\n".join(lines)
