"""``edge-agent-convert train-voice``: a Speech Commands folder → full-int8 keyword model + manifest + report.

Steps, each checked before TensorFlow loads where it can:
1. scan and split the folder (:mod:`.data`);
2. build the training set: commands, every other word as ``_unknown_``, ``_silence_`` cut from
   the background noise; each clip also in an augmented copy (:mod:`.augment`: time shift, speed,
   room reverberation, background at 5-30 dB SNR, microphone response, AGC, clipping, gain; on the
   features a vocal-tract warp and SpecAugment masks);
3. features with the agent's own :mod:`edge_agent.preprocess.audio` (the same function the agent
   runs every hop), normalised by a mean and std measured here and stored in the manifest;
4. train a small DS-CNN (:mod:`.model`) on the (49, 40) log-mel image;
5. quantize to full int8 with the image tool's converter, remove the final softmax, measure float
   and int8 .tflite on the held-out split through the agent's own engine;
6. write the model, the float Keras model beside it (``<stem>.keras``, what ``enroll`` fine-tunes),
   the manifest (front end, labels, recognizer settings, metrics, provenance, sha256) and a report.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from ... import __version__
from ...errors import ConfigError
from ...manifest import OUTPUT_LOGITS, Manifest, manifest_path_for, sha256_file, write
from ...preprocess.audio import AudioSpec
from ...voice.recognizer import UNKNOWN, RecognizerSettings
from .. import report
from . import augment as aug
from .data import COMMANDS, NOISE_DIR, SHIFT_MS, build_split, load_noise, raw_features, scan
from .model import DEFAULT_BLOCKS, DEFAULT_WIDTH, build_model, convert, predict_tflite

logger = logging.getLogger(__name__)

AUGMENT_COPIES: Final = 1  # augmented copies of each training clip besides the original
UNKNOWN_WEIGHT_SHARE: Final = 2.0  # _unknown_'s total loss weight, in commands' worth (see class_weights)
DEFAULT_EPOCHS: Final = 20
DEFAULT_BATCH: Final = 100
DEFAULT_LR: Final = 3e-3
CALIBRATION_CLIPS: Final = 300


def class_weights(y: np.ndarray, labels: Sequence[str],
                  unknown_share: float = UNKNOWN_WEIGHT_SHARE) -> dict[int, float]:
    """Loss weights so each command and ``_silence_`` count as much as each other, and
    ``_unknown_`` as ``unknown_share`` commands together (``--unknown-weight``).

    Why: a data set rich in other words (what keeps false accepts down) is mostly ``_unknown_``;
    trained on those raw counts the network learns that "probably not a command" is the safe
    answer and misses real commands from voices it never heard."""
    counts = np.bincount(y, minlength=len(labels)).astype(np.float64)
    target = np.ones(len(labels))
    if UNKNOWN in labels:
        target[list(labels).index(UNKNOWN)] = unknown_share
    weights = np.where(counts > 0, target / np.maximum(counts, 1), 0.0)
    weights *= len(y) / float((weights * counts).sum())  # mean weight per example stays 1
    return {i: float(w) for i, w in enumerate(weights)}


def feature_augment(f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """On the features of an augmented copy: a vocal-tract warp, then SpecAugment masks."""
    return aug.spec_augment(aug.warp(f, float(rng.uniform(*aug.WARP_RANGE))), rng)


def augmentation_record() -> dict[str, Any]:
    return {
        "copies": AUGMENT_COPIES, "shift_ms": SHIFT_MS, "speed": list(aug.SPEED_RANGE),
        "reverb": {"probability": aug.ROOM_PROBABILITY, "rt60_s": list(aug.RT60_RANGE_S),
                   "direct_to_reverb_db": list(aug.DIRECT_TO_REVERB_DB)},
        "background": {"probability": aug.NOISE_PROBABILITY, "snr_db": list(aug.SNR_DB)},
        "mic": {"probability": aug.MIC_PROBABILITY, "highpass_hz": list(aug.HIGHPASS_HZ),
                "lowpass_hz": list(aug.LOWPASS_HZ), "agc_probability": aug.AGC_PROBABILITY,
                "clip_probability": aug.CLIP_PROBABILITY},
        "gain_db": list(aug.GAIN_DB),
        "spec_augment": {"masks": aug.MASKS, "time_frames": aug.MAX_TIME_MASK_FRAMES,
                         "freq_bins": aug.MAX_FREQ_MASK_BINS},
        "mel_warp": list(aug.WARP_RANGE),
    }


@dataclasses.dataclass
class Options:
    data: Path
    out: Path
    commands: tuple[str, ...] = COMMANDS
    epochs: int = DEFAULT_EPOCHS
    batch: int = DEFAULT_BATCH
    lr: float = DEFAULT_LR
    width: int = DEFAULT_WIDTH
    blocks: int = DEFAULT_BLOCKS
    seed: int = 0
    unknown_weight: float = UNKNOWN_WEIGHT_SHARE
    name: str | None = None
    report: Path | None = None
    command: str = ""


def _log_epoch(epoch: int, logs: dict[str, Any] | None) -> None:
    logger.info("epoch %d: %s", epoch + 1, {k: round(float(v), 4) for k, v in (logs or {}).items()})


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def train(o: Options) -> dict[str, Any]:
    """The whole command; returns the report (also written beside the model)."""
    if o.epochs < 1 or o.batch < 1 or o.width < 4 or o.blocks < 1:
        raise ConfigError("--epochs, --batch, --width and --blocks must be positive (width at least 4)")
    if not o.unknown_weight > 0:
        raise ConfigError(f"--unknown-weight must be positive, not {o.unknown_weight}")
    if o.out.suffix != ".tflite":
        raise ConfigError(f"--out {o.out}: expected a .tflite path")
    corpus = scan(o.data, o.commands)
    logger.info("data %s: %s clips", o.data, corpus.counts())
    base = AudioSpec()
    rng = np.random.default_rng(o.seed)
    noise = load_noise(corpus.noise, base)
    t0 = time.monotonic()
    x_train, y_train, aug_train = build_split(corpus, "train", base, noise, rng, AUGMENT_COPIES)
    x_val, y_val, _ = build_split(corpus, "validation", base, noise, rng, 0) if corpus.clips["validation"] else (
        x_train[:0], y_train[:0], aug_train[:0])
    x_test, y_test, _ = build_split(corpus, "testing", base, noise, rng, 0)
    f_train = raw_features(x_train, base)
    augmented = np.flatnonzero(aug_train)
    f_train[augmented] = np.stack([feature_augment(f_train[i], rng) for i in augmented])
    spec = dataclasses.replace(base, mean=round(float(f_train.mean()), 4), std=round(float(f_train.std()), 4))
    f_train = (f_train - spec.mean) / spec.std
    f_val = (raw_features(x_val, base) - spec.mean) / spec.std if len(x_val) else f_train[:0]
    logger.info("features: %d train, %d validation, %d test clips in %.0f s", len(f_train), len(f_val),
                len(x_test), time.monotonic() - t0)

    from .. import _tf

    tf = _tf.tf()
    keras = _tf.keras()
    keras.utils.set_random_seed(o.seed)
    labels = corpus.labels
    model = build_model(keras, spec.shape, len(labels), o.width, o.blocks)
    steps = o.epochs * int(np.ceil(len(f_train) / o.batch))
    schedule = keras.optimizers.schedules.CosineDecay(o.lr, steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    weights = class_weights(y_train, labels, o.unknown_weight)
    logger.info("class weights: %s", {labels[i]: round(w, 3) for i, w in weights.items()})
    history = model.fit(f_train[..., None], y_train, batch_size=o.batch, epochs=o.epochs, shuffle=True,
                        class_weight=weights,
                        validation_data=(f_val[..., None], y_val) if len(f_val) else None, verbose=0,
                        callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=_log_epoch)])
    train_s = time.monotonic() - t0

    calib = f_train[rng.permutation(len(f_train))[:CALIBRATION_CLIPS]]
    keras_path = o.out.with_suffix(".keras")
    o.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(keras_path)
    provenance = {
        "tool": "edge-agent-convert train-voice",
        "tool_version": __version__,
        "tensorflow": str(tf.__version__),
        "created": utc_now(),
        "command": o.command,
        "dataset": str(o.data),
        "split": corpus.counts(),
        "split_rule": "testing_list.txt / validation_list.txt" if (o.data / "testing_list.txt").exists()
        else "speaker hash",
        "seed": o.seed,
        "arch": f"ds-cnn width {o.width} blocks {o.blocks}",
        "epochs": o.epochs,
        "train_seconds": round(train_s, 1),
        "augmentation": augmentation_record(),
        "class_weights": {labels[i]: round(w, 4) for i, w in weights.items()},
        "io_type": "int8",
        "keras_model": keras_path.name,
    }
    extra = {"train_accuracy": round(float(history.history["accuracy"][-1]), 4),
             "val_accuracy": round(float(history.history["val_accuracy"][-1]), 4)
             if "val_accuracy" in history.history else None}
    return finish(model, spec, labels, calib, x_test, y_test, o.out, o.name, o.report, provenance, extra,
                  RecognizerSettings())


def finish(model: Any, spec: AudioSpec, labels: Sequence[str], calib: np.ndarray, x_test: np.ndarray,
           y_test: np.ndarray, out: Path, name: str | None, report_md: Path | None, provenance: dict[str, Any],
           extra: dict[str, Any], settings: RecognizerSettings) -> dict[str, Any]:
    """Convert, measure float and int8 on the held-out clips, write model + manifest + report
    (shared by ``train-voice`` and ``enroll``)."""
    float_bytes, int8_bytes, g = convert(model, spec.shape, calib)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(int8_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.tflite"
        float_path.write_bytes(float_bytes)
        y_float = predict_tflite(float_path, x_test, spec)
    y_int8 = predict_tflite(out, x_test, spec)
    m_float = report.metrics(y_test, y_float, labels)
    m_int8 = report.metrics(y_test, y_int8, labels)
    metrics: dict[str, Any] = {
        "float": m_float,
        "int8": m_int8,
        "top1_drop_points": round(100 * ((m_int8["top1"] or 0) - (m_float["top1"] or 0)), 2),
        "float_tflite_bytes": len(float_bytes),
        "int8_tflite_bytes": len(int8_bytes),
        "params": int(model.count_params()),
        "macs": g.macs(),
        "calibration_clips": len(calib),
        **{f"final_{k}": v for k, v in extra.items()},
    }
    name = name or out.stem
    manifest = Manifest(
        name=name, task="voice", labels=tuple(labels), sha256=sha256_file(out), model_file=out.name,
        audio={k: v for k, v in spec.to_json().items() if k != "kind"}, provenance=provenance, metrics=metrics,
        extra={"recognizer": settings.to_json()}, output=OUTPUT_LOGITS,
    )
    write(manifest, manifest_path_for(out))
    result = {"name": name, "model_file": str(out), "manifest_file": str(manifest_path_for(out)),
              "labels": list(labels), "input": spec.to_json(), "graph": g.summary(), "metrics": metrics,
              "provenance": provenance}
    md = report_md or out.with_suffix(".report.md")
    md.write_text(markdown(result), encoding="utf-8")
    md.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    result["report_file"] = str(md)
    return result


def markdown(result: dict[str, Any]) -> str:
    m = result["metrics"]
    labels = result["labels"]
    lines = [
        f"# Training report: {result['name']}",
        "",
        f"- model: `{result['model_file']}`, full int8, {m['int8_tflite_bytes'] / 1024:.1f} KiB "
        f"(float {m['float_tflite_bytes'] / 1024:.1f} KiB); {m['params']:,} parameters, "
        f"{m['macs']:,} multiply-adds per window",
        f"- front end: {json.dumps(result['input'])}",
        f"- data: `{result['provenance']['dataset']}` ({result['provenance'].get('split_rule')}: "
        f"{result['provenance'].get('split')})",
        f"- command: `{result['provenance']['command']}`",
        "",
        f"## Held-out clips ({m['int8']['n']})",
        "",
        "| | float32 | int8 |",
        "|---|---:|---:|",
        f"| accuracy | {100 * (m['float']['top1'] or 0):.2f} % | {100 * (m['int8']['top1'] or 0):.2f} % |",
    ]
    for label in labels:
        fp, qp = m["float"]["per_class"][label], m["int8"]["per_class"][label]
        lines.append(f"| {label} recall | {100 * (fp['recall'] or 0):.1f} % | {100 * (qp['recall'] or 0):.1f} % |")
    lines += ["", "### Confusion matrix, int8", "", report.confusion_markdown(m["int8"], labels), ""]
    return "\n".join(lines)


def format_text(result: dict[str, Any]) -> str:
    m = result["metrics"]
    return (f"wrote {result['model_file']} ({m['int8_tflite_bytes'] / 1024:.1f} KiB), {result['manifest_file']}, "
            f"{result['report_file']}\n  held-out accuracy: float {100 * (m['float']['top1'] or 0):.2f} %  int8 "
            f"{100 * (m['int8']['top1'] or 0):.2f} % ({m['top1_drop_points']:+.2f} points, {m['int8']['n']} clips)")


__all__ = ["NOISE_DIR", "Options", "class_weights", "finish", "format_text", "train"]
