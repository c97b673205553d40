"""``edge-agent-convert train-voice``: a Speech Commands folder → full-int8 keyword model + manifest + report.

    DATA/yes/*.wav ... DATA/<any other word>/*.wav     1 s (or shorter) clips, any PCM rate
    DATA/_background_noise_/*.wav                      long noise recordings
    DATA/testing_list.txt, DATA/validation_list.txt    optional; else split by speaker hash

Steps, each checked before TensorFlow loads where it can:
1. scan the folder: every command needs clips, the noise folder must exist;
2. split as Speech Commands does — the lists when given, else a stable hash of the speaker id
   (the part of the file name before ``_nohash_``), so one speaker is never in two splits;
3. build the training set: commands, every other word as ``_unknown_``, ``_silence_`` cut from
   the background noise; each clip also in augmented copies (time shift, noise, gain);
4. features with the agent's own :mod:`edge_agent.preprocess.audio` (the same function the agent
   runs every hop), normalised by a mean and std measured here and stored in the manifest;
5. train a small MobileNet-style network (depthwise-separable convolutions, as DS-CNN in
   "Hello Edge", Zhang et al. 2017) on the (49, 40) log-mel image;
6. quantize to full int8 (int8 input and output) calibrated on training features, refuse a graph
   with float operators, and measure float and int8 .tflite on the held-out split through the
   agent's own engine;
7. write the model, the manifest (front end, labels, recognizer settings, metrics, provenance,
   sha256) and a report (markdown + JSON).

TensorFlow is imported lazily through :mod:`edge_agent.convert._tf`, after the data checks.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import hashlib
import json
import logging
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from .. import __version__
from ..errors import ConfigError, EdgeAgentError, ExitCode, ModelError
from ..manifest import OUTPUT_LOGITS, Manifest, manifest_path_for, sha256_file, write
from ..preprocess import audio
from ..preprocess.audio import AudioSpec
from ..sources.wav import read_wav
from ..voice.recognizer import SILENCE, UNKNOWN, RecognizerSettings

logger = logging.getLogger(__name__)

COMMANDS: Final = ("yes", "no", "on", "off", "stop")
NOISE_DIR: Final = "_background_noise_"
SPEAKER_SPLIT_RE: Final = re.compile(r"_nohash_.*$")
MAX_PER_CLASS: Final = 2**27 - 1  # Speech Commands' hashing constant for the speaker split
VALIDATION_PERCENT: Final = 10.0
TESTING_PERCENT: Final = 10.0
SILENCE_FRACTION: Final = 1.0  # silence clips per command clip count (one command's worth)
AUGMENT_COPIES: Final = 1  # augmented copies of each training clip besides the original
SHIFT_MS: Final = 100  # random time shift ±100 ms (Speech Commands' default)
NOISE_PROBABILITY: Final = 0.8  # share of augmented clips with background noise mixed in
NOISE_VOLUME: Final = (0.0, 0.3)  # noise peak relative to full scale
GAIN_DB: Final = (-12.0, 6.0)
MASKS: Final = 2  # SpecAugment on the augmented copies: this many time and this many frequency masks
MAX_TIME_MASK_FRAMES: Final = 4  # 4 x 20 ms hops: a dropped syllable edge, not a whole word
MAX_FREQ_MASK_BINS: Final = 4  # of 40 mel bins: a missing formant band (a poor microphone)
WARP_RANGE: Final = (0.88, 1.12)  # mel-axis stretch on augmented copies: a longer or shorter vocal tract
UNKNOWN_WEIGHT_SHARE: Final = 2.0  # _unknown_'s total loss weight, in commands' worth (see class_weights)
DEFAULT_WIDTH: Final = 64  # channels of the separable blocks
DEFAULT_BLOCKS: Final = 4
DEFAULT_EPOCHS: Final = 20
DEFAULT_BATCH: Final = 100
DEFAULT_LR: Final = 3e-3
CALIBRATION_CLIPS: Final = 300


@dataclasses.dataclass
class Clip:
    path: Path
    word: str
    speaker: str


@dataclasses.dataclass
class Corpus:
    root: Path
    clips: dict[str, list[Clip]]  # split → clips
    noise: list[Path]
    commands: tuple[str, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return (*self.commands, SILENCE, UNKNOWN)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.clips.items()}


def which_split(rel: str, speaker: str, lists: dict[str, set[str]]) -> str:
    """The split of one clip: the lists when the folder has them, else Speech Commands' speaker hash."""
    if lists:
        for name, members in lists.items():
            if rel in members:
                return name
        return "train"
    h = int(hashlib.sha1(speaker.encode()).hexdigest(), 16)
    percent = (h % (MAX_PER_CLASS + 1)) * (100.0 / MAX_PER_CLASS)
    if percent < VALIDATION_PERCENT:
        return "validation"
    if percent < VALIDATION_PERCENT + TESTING_PERCENT:
        return "testing"
    return "train"


def scan(root: Path, commands: Sequence[str] = COMMANDS) -> Corpus:
    """Check the folder and split it; fast, no audio decoded yet."""
    if not root.is_dir():
        raise ConfigError(f"data {root}: not a folder")
    words = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("_"))
    missing = [c for c in commands if c not in words]
    if missing:
        raise ConfigError(f"data {root}: no folder for the command(s) {', '.join(missing)} (found: {', '.join(words)})")
    noise = sorted((root / NOISE_DIR).glob("*.wav"))
    if not noise:
        raise ConfigError(f"data {root}: {NOISE_DIR}/ with noise WAVs is needed for the _silence_ class")
    lists: dict[str, set[str]] = {}
    for name in ("validation", "testing"):
        f = root / f"{name}_list.txt"
        if f.exists():
            lists[name] = {line.strip() for line in f.read_text().splitlines() if line.strip()}
    clips: dict[str, list[Clip]] = {"train": [], "validation": [], "testing": []}
    for word in words:
        for path in sorted((root / word).glob("*.wav")):
            speaker = SPEAKER_SPLIT_RE.sub("", path.stem)
            clips[which_split(f"{word}/{path.name}", speaker, lists)].append(Clip(path, word, speaker))
    for split in ("train", "testing"):
        for c in commands:
            if not any(clip.word == c for clip in clips[split]):
                raise ConfigError(f"data {root}: no '{c}' clips in the {split} split")
    train_speakers = {c.speaker for c in clips["train"]}
    shared = train_speakers & {c.speaker for c in clips["testing"]}
    if shared:
        logger.warning("%d speakers are in both the training and the test split (e.g. %s): the held-out "
                       "accuracy will be optimistic", len(shared), sorted(shared)[0])
    return Corpus(root, clips, noise, tuple(commands))


def load_clip(path: Path, spec: AudioSpec) -> np.ndarray:
    """A clip at the model's rate, zero-padded or cut to the clip length."""
    x, rate = read_wav(path)
    if rate != spec.sample_rate:
        x = audio.resample(x, rate, spec.sample_rate)
    out = np.zeros(spec.clip_samples, np.float32)
    out[: min(len(x), len(out))] = x[: len(out)]
    return out


def load_noise(paths: Sequence[Path], spec: AudioSpec) -> list[np.ndarray]:
    out = []
    for p in paths:
        x, rate = read_wav(p)
        if rate != spec.sample_rate:
            x = audio.resample(x, rate, spec.sample_rate)
        if len(x) >= spec.clip_samples:
            out.append((x / (np.abs(x).max() + 1e-9)).astype(np.float32))
    if not out:
        raise ConfigError(f"{NOISE_DIR}: no noise file is at least one clip long")
    return out


def noise_clip(noise: Sequence[np.ndarray], rng: np.random.Generator, n: int) -> np.ndarray:
    src = noise[int(rng.integers(len(noise)))]
    start = int(rng.integers(0, len(src) - n + 1))
    return src[start: start + n]


def augment(x: np.ndarray, noise: Sequence[np.ndarray], rng: np.random.Generator, spec: AudioSpec) -> np.ndarray:
    """Shift by up to ±SHIFT_MS (zero fill), random gain, background noise at a random volume."""
    shift = int(rng.integers(-1, 2) * rng.integers(0, audio.samples_for(SHIFT_MS, spec.sample_rate)))
    y = np.zeros_like(x)
    if shift >= 0:
        y[shift:] = x[: len(x) - shift]
    else:
        y[:shift] = x[-shift:]
    y = y * np.float32(10 ** (rng.uniform(*GAIN_DB) / 20))
    if rng.random() < NOISE_PROBABILITY:
        y = y + noise_clip(noise, rng, len(y)) * np.float32(rng.uniform(*NOISE_VOLUME))
    return np.clip(y, -1, 1).astype(np.float32)


def silence(noise: Sequence[np.ndarray], rng: np.random.Generator, spec: AudioSpec) -> np.ndarray:
    """A ``_silence_`` clip: background noise at a random level, sometimes only a faint floor."""
    n = spec.clip_samples
    level = 0.0 if rng.random() < 0.1 else rng.uniform(*NOISE_VOLUME)
    floor = rng.normal(0, 3e-4, n).astype(np.float32)
    return np.clip(noise_clip(noise, rng, n) * np.float32(level) + floor, -1, 1).astype(np.float32)


def build_split(corpus: Corpus, split: str, spec: AudioSpec, noise: Sequence[np.ndarray],
                rng: np.random.Generator, copies: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, samples) float32 audio, (N,) label indices and (N,) "is an augmented copy" for one split."""
    labels = corpus.labels
    index = {name: i for i, name in enumerate(labels)}
    clips = corpus.clips[split]
    xs: list[np.ndarray] = []
    ys: list[int] = []
    aug: list[bool] = []
    for clip in clips:
        x = load_clip(clip.path, spec)
        y = index.get(clip.word, index[UNKNOWN])
        xs.append(x)
        ys.append(y)
        aug.append(False)
        for _ in range(copies):
            xs.append(augment(x, noise, rng, spec))
            ys.append(y)
            aug.append(True)
    per_command = max(1, sum(1 for y in ys if y == 0))
    for _ in range(int(per_command * SILENCE_FRACTION)):
        xs.append(silence(noise, rng, spec))
        ys.append(index[SILENCE])
        aug.append(False)
    return np.stack(xs), np.asarray(ys, np.int64), np.asarray(aug, bool)


def raw_features(x: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """(N, samples) → (N, frames, mels) log-mel, not yet normalised."""
    raw = dataclasses.replace(spec, mean=0.0, std=1.0)
    return np.stack([audio.features(clip, raw) for clip in x]).astype(np.float32)


def warp(f: np.ndarray, alpha: float) -> np.ndarray:
    """Stretch the mel axis by ``alpha`` (bin b takes the value at b / alpha, linearly
    interpolated, the edge bin repeated): vocal tract length perturbation (Jaitly & Hinton 2013)
    done on the features. Unseen voices differ from the training ones mostly in timbre, i.e. in
    where their formants sit; this shows the model the same word from shorter and longer tracts."""
    bins = f.shape[1]
    pos = np.clip(np.arange(bins) / alpha, 0, bins - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, bins - 1)
    frac = (pos - lo).astype(f.dtype)
    return f[:, lo] * (1 - frac) + f[:, hi] * frac


def class_weights(y: np.ndarray, labels: Sequence[str],
                  unknown_share: float = UNKNOWN_WEIGHT_SHARE) -> dict[int, float]:
    """Loss weights so each command and ``_silence_`` count as much as each other, and
    ``_unknown_`` as ``unknown_share`` commands together (``--unknown-weight``).

    Why: a data set rich in other words (what keeps false accepts down) is mostly ``_unknown_``;
    trained on those raw counts the network learns that "probably not a command" is the safe
    answer and misses real commands from voices it never heard."""
    counts = np.bincount(y, minlength=len(labels)).astype(np.float64)
    target = np.ones(len(labels))
    target[labels.index(UNKNOWN)] = unknown_share
    weights = np.where(counts > 0, target / np.maximum(counts, 1), 0.0)
    weights *= len(y) / float((weights * counts).sum())  # mean weight per example stays 1
    return {i: float(w) for i, w in enumerate(weights)}


def spec_augment(f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Time and frequency masks (Park et al. 2019), filled with the clip's mean: robustness to
    voices and microphones the training set lacks, at no cost on the device."""
    out = f.copy()
    frames, bins = out.shape
    fill = out.mean()
    for _ in range(MASKS):
        w = int(rng.integers(0, MAX_TIME_MASK_FRAMES + 1))
        t0 = int(rng.integers(0, frames - w + 1))
        out[t0: t0 + w, :] = fill
        h = int(rng.integers(0, MAX_FREQ_MASK_BINS + 1))
        b0 = int(rng.integers(0, bins - h + 1))
        out[:, b0: b0 + h] = fill
    return out


def build_model(keras: Any, shape: tuple[int, int], classes: int, width: int, blocks: int) -> Any:
    """DS-CNN: a strided full convolution, then depthwise 3x3 + pointwise 1x1 blocks (MobileNet v1's
    separable convolution), the first of them strided again (49x40 → 25x20 → 13x10: a quarter of
    the multiply-adds, which matters on a shared Pi core), global average pooling, one dense layer.
    BatchNorm folds into the convolutions at conversion; ReLU (not ReLU6) keeps int8 ranges
    calibrated from data."""
    L = keras.layers
    inp = keras.Input((*shape, 1), name="logmel")
    x = L.Conv2D(width, (10, 4), strides=(2, 2), padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    for i in range(blocks):
        x = L.DepthwiseConv2D(3, strides=2 if i == 0 else 1, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
        x = L.Conv2D(width, 1, use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(0.2)(x)
    out = L.Dense(classes, activation="softmax")(x)
    return keras.Model(inp, out, name="ds_cnn")


def to_tflite(tf: Any, model: Any, calib: np.ndarray | None) -> bytes:
    """float32 .tflite, or full int8 (int8 in and out) calibrated on ``calib`` features."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if calib is not None:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([c[None, ..., None]] for c in calib)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    try:
        with warnings.catch_warnings(record=True) as caught:  # TF's converter warns freely; log, not raise
            warnings.simplefilter("always")
            data = bytes(conv.convert())
        for w in caught:
            logger.debug("converter: %s", w.message)
        return data
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"TFLite conversion failed ({first})") from None


def predict_tflite(path: Path, clips: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """(N,) predicted indices through the agent's own engine and front end."""
    from ..engine import Engine

    engine = Engine.load(path, threads=1, kind="audio")
    scale, zero = engine.input_quant
    fill = audio.make_fill(spec, engine.input_dtype, scale, zero)
    out = np.empty(len(clips), np.int64)
    for i, clip in enumerate(clips):
        out[i] = int(np.argmax(engine.run(functools.partial(fill, clip))))
    return out


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


def train(o: Options) -> dict[str, Any]:
    """The whole command; returns the report (also written beside the model)."""
    if o.epochs < 1 or o.batch < 1 or o.width < 4 or o.blocks < 1:
        raise ConfigError("--epochs, --batch, --width and --blocks must be positive (width at least 4)")
    if not o.unknown_weight > 0:
        raise ConfigError(f"--unknown-weight must be positive, not {o.unknown_weight}")
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
    f_train[augmented] = np.stack([spec_augment(warp(f_train[i], float(rng.uniform(*WARP_RANGE))), rng)
                                   for i in augmented])
    spec = dataclasses.replace(base, mean=round(float(f_train.mean()), 4), std=round(float(f_train.std()), 4))
    f_train = (f_train - spec.mean) / spec.std
    f_val = (raw_features(x_val, base) - spec.mean) / spec.std if len(x_val) else f_train[:0]
    logger.info("features: %d train, %d validation, %d test clips in %.0f s", len(f_train), len(f_val),
                len(x_test), time.monotonic() - t0)

    from . import _tf, graph, logits, report

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
    float_bytes = to_tflite(tf, model, None)
    # Logits out, not the int8 softmax: its top level, 0.996, is where a sure "stop" and a nearly
    # sure "stuff" both sit, and no threshold could split them (see convert/logits.py).
    int8_bytes = logits.strip_softmax(to_tflite(tf, model, calib), "the converted model")
    g = graph.read(int8_bytes)
    floats = [f"{op.name}#{op.index}" for op in g.float_ops()]
    if floats:
        raise ModelError(f"{len(floats)} operator(s) stay float after int8 quantization: {', '.join(floats[:8])}")
    o.out.parent.mkdir(parents=True, exist_ok=True)
    o.out.write_bytes(int8_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.tflite"
        float_path.write_bytes(float_bytes)
        y_float = predict_tflite(float_path, x_test, spec)
    y_int8 = predict_tflite(o.out, x_test, spec)
    m_float = report.metrics(y_test, y_float, labels)
    m_int8 = report.metrics(y_test, y_int8, labels)
    metrics: dict[str, Any] = {
        "float": m_float,
        "int8": m_int8,
        "top1_drop_points": round(100 * (m_int8["top1"] - m_float["top1"]), 2),
        "float_tflite_bytes": len(float_bytes),
        "int8_tflite_bytes": len(int8_bytes),
        "params": int(model.count_params()),
        "macs": g.macs(),
        "calibration_clips": len(calib),
        "final_train_accuracy": round(float(history.history["accuracy"][-1]), 4),
        "final_val_accuracy": round(float(history.history["val_accuracy"][-1]), 4)
        if "val_accuracy" in history.history else None,
    }
    provenance = {
        "tool": "edge-agent-convert train-voice",
        "tool_version": __version__,
        "tensorflow": str(tf.__version__),
        "created": datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "command": o.command,
        "dataset": str(o.data),
        "split": corpus.counts(),
        "split_rule": "testing_list.txt / validation_list.txt" if (o.data / "testing_list.txt").exists()
        else "speaker hash",
        "seed": o.seed,
        "arch": f"ds-cnn width {o.width} blocks {o.blocks}",
        "epochs": o.epochs,
        "train_seconds": round(train_s, 1),
        "augmentation": {
            "copies": AUGMENT_COPIES, "shift_ms": SHIFT_MS, "noise_probability": NOISE_PROBABILITY,
            "noise_volume": list(NOISE_VOLUME), "gain_db": list(GAIN_DB),
            "spec_augment": {"masks": MASKS, "time_frames": MAX_TIME_MASK_FRAMES, "freq_bins": MAX_FREQ_MASK_BINS},
            "mel_warp": list(WARP_RANGE),
        },
        "class_weights": {labels[i]: round(w, 4) for i, w in weights.items()},
        "io_type": "int8",
    }
    name = o.name or o.out.stem
    manifest = Manifest(
        name=name, task="voice", labels=labels, sha256=sha256_file(o.out), model_file=o.out.name,
        audio={k: v for k, v in spec.to_json().items() if k != "kind"}, provenance=provenance, metrics=metrics,
        extra={"recognizer": RecognizerSettings().to_json()}, output=OUTPUT_LOGITS,
    )
    write(manifest, manifest_path_for(o.out))
    result = {"name": name, "model_file": str(o.out), "manifest_file": str(manifest_path_for(o.out)),
              "labels": list(labels), "input": spec.to_json(), "graph": g.summary(), "metrics": metrics,
              "provenance": provenance}
    md = o.report or o.out.with_suffix(".report.md")
    md.write_text(markdown(result, report.confusion_markdown), encoding="utf-8")
    md.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    result["report_file"] = str(md)
    return result


def markdown(result: dict[str, Any], confusion: Any) -> str:
    m = result["metrics"]
    labels = result["labels"]
    lines = [
        f"# Training report: {result['name']}",
        "",
        f"- model: `{result['model_file']}`, full int8, {m['int8_tflite_bytes'] / 1024:.1f} KiB "
        f"(float {m['float_tflite_bytes'] / 1024:.1f} KiB); {m['params']:,} parameters, "
        f"{m['macs']:,} multiply-adds per window",
        f"- front end: {json.dumps(result['input'])}",
        f"- data: `{result['provenance']['dataset']}` ({result['provenance']['split_rule']}: "
        f"{result['provenance']['split']})",
        f"- command: `{result['provenance']['command']}`",
        "",
        f"## Held-out clips ({m['int8']['n']})",
        "",
        "| | float32 | int8 |",
        "|---|---:|---:|",
        f"| accuracy | {100 * m['float']['top1']:.2f} % | {100 * m['int8']['top1']:.2f} % |",
    ]
    for name in labels:
        fp, qp = m["float"]["per_class"][name], m["int8"]["per_class"][name]
        lines.append(f"| {name} recall | {100 * (fp['recall'] or 0):.1f} % | {100 * (qp['recall'] or 0):.1f} % |")
    lines += ["", "### Confusion matrix, int8", "", confusion(m["int8"], labels), ""]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-agent-convert train-voice", description=(
        "Train a keyword-spotting model on a folder in the Speech Commands layout and quantize it to full int8."))
    p.add_argument("--data", type=Path, required=True, help="folder: yes/*.wav ... _background_noise_/*.wav")
    p.add_argument("--out", type=Path, required=True, help="the .tflite to write (manifest and report beside it)")
    p.add_argument("--commands", default=",".join(COMMANDS), help="comma-separated command words")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    p.add_argument("--lr", type=float, default=DEFAULT_LR)
    p.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="channels of the separable blocks")
    p.add_argument("--blocks", type=int, default=DEFAULT_BLOCKS, help="depthwise-separable blocks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--unknown-weight", type=float, default=UNKNOWN_WEIGHT_SHARE,
                   help="_unknown_'s total loss weight in commands' worth: higher means fewer false accepts and "
                        "more missed commands")
    p.add_argument("--name", help="model name in the manifest (default: the file's stem)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON document on stdout")
    return p


def train_voice_main(argv: Sequence[str]) -> int:
    """Entry point for ``edge-agent-convert train-voice`` and ``tools/train_voice.py``."""
    a = parser().parse_args(list(argv))
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commands = tuple(c.strip() for c in a.commands.split(",") if c.strip())
    o = Options(data=a.data, out=a.out, commands=commands, epochs=a.epochs, batch=a.batch, lr=a.lr, width=a.width,
                blocks=a.blocks, seed=a.seed, unknown_weight=a.unknown_weight, name=a.name,
                command="edge-agent-convert train-voice " + " ".join(argv))
    try:
        result = train(o)
    except EdgeAgentError as e:
        print(f"edge-agent-convert: error: {e}", file=sys.stderr)
        return int(e.exit_code)
    if a.json:
        print(json.dumps(result))
    else:
        m = result["metrics"]
        print(f"wrote {result['model_file']} ({m['int8_tflite_bytes'] / 1024:.1f} KiB), {result['manifest_file']}, "
              f"{result['report_file']}\n  held-out accuracy: float {100 * m['float']['top1']:.2f} %  int8 "
              f"{100 * m['int8']['top1']:.2f} % ({m['top1_drop_points']:+.2f} points, {m['int8']['n']} clips)")
    return int(ExitCode.OK)
