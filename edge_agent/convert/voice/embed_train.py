"""``train-voice --frontend speech_embedding``: a small head on the speech embedding, full int8.

The data folder is ``tools/gen_voice_data.py``'s (clips of every engine, running speech, noise);
:mod:`.embed_data` turns it into (embeddings, 96) windows through the agent's own front end. The
head (:func:`build_head`) reads (1, embeddings, 96, 1). ``mlp`` (the default, as openWakeWord's
heads): the window flattened, two dense layers with BatchNorm; it keeps *where* in the window the
word sits (a command followed by a pause, not by more speech), and carried better to engines it
never heard than ``conv`` (two 1-D convolutions over time, max-pooled: position-blind) on the
same features (leave-one-engine-out, docs in models/voice.md). Either is tiny next to the
embedding model it sits on. ``--hold-out-engines`` leaves engines out of training (their clips become the test
set): the leave-one-engine-out runs of ``tools/eval_voice.py`` call :func:`train_head` so.

Converted with the image tool's converter to full int8 (int8 in and out, logits: the final
softmax removed as for every keyword model), measured float against int8 on the held-out clips
through the agent's own engine, and written with a manifest whose ``input.frontend`` is
``speech_embedding``.
"""

from __future__ import annotations

import dataclasses
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
from ...voice import embedding as emb
from ...voice.embedding import EmbeddingSpec
from ...voice.recognizer import UNKNOWN, RecognizerSettings
from .. import report
from . import embed_data
from .data import COMMANDS
from .model import convert

logger = logging.getLogger(__name__)

DEFAULT_EPOCHS: Final = 30
DEFAULT_WIDTH: Final = 64
HEADS: Final = ("mlp", "conv")
DEFAULT_LR: Final = 2e-3
DEFAULT_BATCH: Final = 128
UNKNOWN_SHARE: Final = 3.0  # _unknown_'s total loss weight, in commands' worth
CALIBRATION: Final = 400
# The recognizer for a head: one result per 80 ms hop, averaged over 5 (400 ms), 3 needed before
# any decision; 400 ms beat 240 ms on engines left out (recall at 2 false accepts an hour, for
# ~60 ms more latency). The threshold is tuned by tools/eval_voice.py on the engines a model never heard.
SETTINGS: Final = RecognizerSettings(stride_ms=80, average_window_ms=400, threshold=0.8, min_count=3,
                                     suppression_ms=1000)


@dataclasses.dataclass
class Options:
    data: Path
    out: Path
    commands: tuple[str, ...] = COMMANDS
    embeddings: int = emb.DEFAULT_EMBEDDINGS
    hold_out_engines: tuple[str, ...] = ()
    epochs: int = DEFAULT_EPOCHS
    width: int = DEFAULT_WIDTH
    head: str = HEADS[0]
    followed: bool = True  # train on windows of a command running on into speech (kind "followed")
    members: int = 1  # heads trained from other seeds, their logits averaged in one model
    lr: float = DEFAULT_LR
    batch: int = DEFAULT_BATCH
    copies: int = 1
    seed: int = 0
    unknown_weight: float = UNKNOWN_SHARE
    name: str | None = None
    command: str = ""
    threshold: float | None = None
    jobs: int = 1  # processes computing the features (once per data folder; cached)


def build_head(keras: Any, shape: tuple[int, int], classes: int, width: int, head: str = HEADS[0]) -> Any:
    """Input (T, 96, 1), the image converter's layout. ``mlp``: flatten, two dense layers of
    2 x ``width`` (BatchNorm folds into them at conversion), softmax. ``conv``: conv over time
    (kernel 3 hops) twice, global max over time, dense; the first convolution spans all 96
    features (a 1-D conv in 2-D form)."""
    L = keras.layers
    inp = keras.Input((*shape, 1), name="embeddings")
    if head == "mlp":
        x = L.Flatten()(inp)
        for i in range(2):
            x = L.Dense(2 * width, use_bias=False)(x)
            x = L.BatchNormalization()(x)
            x = L.ReLU()(x)
            if i == 0:
                x = L.Dropout(0.3)(x)
        return keras.Model(inp, L.Dense(classes, activation="softmax")(x), name="embedding_head")
    x = L.Conv2D(width, (3, shape[1]), padding="valid", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.Conv2D(width, (3, 1), padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.GlobalMaxPooling2D()(x)
    x = L.Dropout(0.3)(x)
    x = L.Dense(width, activation="relu")(x)
    out = L.Dense(classes, activation="softmax")(x)
    return keras.Model(inp, out, name="embedding_head")


def class_weights(y: np.ndarray, labels: Sequence[str], unknown_share: float) -> dict[int, float]:
    counts = np.bincount(y, minlength=len(labels)).astype(np.float64)
    target = np.ones(len(labels))
    target[list(labels).index(UNKNOWN)] = unknown_share
    w = np.where(counts > 0, target / np.maximum(counts, 1), 0.0)
    w *= len(y) / float((w * counts).sum())
    return {i: float(v) for i, v in enumerate(w)}


def predict_tflite(path: Path, x: np.ndarray) -> np.ndarray:
    """(N, labels) scores through the agent's engine (int8 quantization as the spotter does it)."""
    from ...engine import Engine

    engine = Engine.load(path, threads=1, kind="audio", logits=True)
    scale, zero = engine.input_quant
    out = np.empty((len(x), engine.num_classes), np.float32)
    for i, v in enumerate(x):
        def fill(view: np.ndarray, v: np.ndarray = v) -> None:
            if engine.input_dtype == np.float32:
                view[...] = v.reshape(view.shape)
            else:
                q = np.clip(np.round(v / scale) + zero, -128, 127)
                view[...] = q.astype(engine.input_dtype).reshape(view.shape)
        out[i] = engine.run(fill)
    return out


def train_head(ex: embed_data.Examples, labels: Sequence[str], spec: EmbeddingSpec, o: Options) -> Any:
    """The float Keras head, trained on ``ex`` (already the training rows): ``o.members`` heads
    (seeds ``seed``, ``seed + 100`` ...) joined by :func:`join_members` when more than one."""
    from .. import _tf

    keras = _tf.keras()
    members = []
    steps = o.epochs * int(np.ceil(len(ex.y) / o.batch))
    weights = class_weights(ex.y, labels, o.unknown_weight)
    for k in range(o.members):
        keras.utils.set_random_seed(o.seed + 100 * k)
        model = build_head(keras, spec.shape, len(labels), o.width, o.head)
        model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(o.lr, steps)),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(ex.x[..., None], ex.y, batch_size=o.batch, epochs=o.epochs, shuffle=True, class_weight=weights,
                  verbose=0)
        members.append(model)
        logger.info("head %d of %d trained", k + 1, o.members)
    return members[0] if len(members) == 1 else join_members(keras, members, spec.shape, len(labels))


def join_members(keras: Any, members: Sequence[Any], shape: tuple[int, int], classes: int) -> Any:
    """One model that averages the members' logits, written as ONE final dense layer: each member's
    layers up to its last, their features concatenated, then a dense layer whose weights are the
    members' last layers stacked and divided by their number (the mean of the logits, exactly).
    One file, one invoke, and enrollment still re-fits a single last layer. Why average: heads
    trained alike from other seeds disagree most on speech they never heard, and it is there,
    in the tail of the scores, that false accepts and the threshold live."""
    L = keras.layers
    inp = keras.Input((*shape, 1), name="embeddings")
    feats = []
    for i, member in enumerate(members):
        x = inp
        for layer in member.layers[1:-1]:  # the Input layer aside; up to the features
            clone = layer.__class__.from_config({**layer.get_config(), "name": f"m{i}_{layer.name}"})
            x = clone(x)
            clone.set_weights(layer.get_weights())
        feats.append(x)
    last = L.Dense(classes, activation="softmax", name="logits_mean")
    out = last(L.Concatenate()(feats))
    kernels = [m.layers[-1].get_weights() for m in members]
    last.set_weights([np.concatenate([k for k, _ in kernels]) / len(members), np.mean([b for _, b in kernels], axis=0)])
    return keras.Model(inp, out, name="embedding_heads")


def train(o: Options) -> dict[str, Any]:
    if o.epochs < 1 or o.width < 4 or not o.unknown_weight > 0:
        raise ConfigError("--epochs must be positive, --width at least 4, --unknown-weight positive")
    if o.members < 1:
        raise ConfigError("--members must be at least 1")
    if o.head not in HEADS:
        raise ConfigError(f"--head {o.head!r}: one of {', '.join(HEADS)}")
    if o.out.suffix != ".tflite":
        raise ConfigError(f"--out {o.out}: expected a .tflite path")
    spec = EmbeddingSpec(embeddings=o.embeddings)
    labels = embed_data.labels_for(o.commands)
    t0 = time.monotonic()
    ex = embed_data.cached(o.data, spec, o.commands, o.copies, o.seed, jobs=o.jobs)
    if not o.followed:
        ex = ex.select(ex.kind != "followed")
    held = np.isin(ex.engine, list(o.hold_out_engines))
    unknown = set(o.hold_out_engines) - set(ex.engine.tolist())
    if unknown:
        raise ConfigError(f"--hold-out-engines: no clips of {', '.join(sorted(unknown))} in {o.data}")
    # test set: the held-out engines' clips (unaugmented), else the generator's testing split
    test_mask = (held if held.any() else ex.split == "testing") & (ex.kind == "clip") & ~ex.augmented
    train_ex = ex.select(~held & ~(ex.split == "testing") if not held.any() else ~held)
    test_ex = ex.select(test_mask)
    logger.info("training on %d windows (%s), testing on %d", len(train_ex.y), embed_data.summary(train_ex, labels),
                len(test_ex.y))
    model = train_head(train_ex, labels, spec, o)
    train_s = time.monotonic() - t0
    rng = np.random.default_rng(o.seed)
    calib = train_ex.x[rng.permutation(len(train_ex.y))[:CALIBRATION]]
    float_bytes, int8_bytes, g = convert(model, spec.shape, calib)
    o.out.parent.mkdir(parents=True, exist_ok=True)
    o.out.write_bytes(int8_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        fpath = Path(tmp) / "float.tflite"
        fpath.write_bytes(float_bytes)
        s_float = predict_tflite(fpath, test_ex.x)
    s_int8 = predict_tflite(o.out, test_ex.x)
    m_float = report.metrics(test_ex.y, s_float.argmax(1), labels)
    m_int8 = report.metrics(test_ex.y, s_int8.argmax(1), labels)
    settings = SETTINGS if o.threshold is None else SETTINGS.with_threshold(o.threshold)
    metrics = {"float": m_float, "int8": m_int8,
               "top1_drop_points": round(100 * ((m_int8["top1"] or 0) - (m_float["top1"] or 0)), 2),
               "float_tflite_bytes": len(float_bytes), "int8_tflite_bytes": len(int8_bytes),
               "params": int(model.count_params()), "macs": g.macs(), "test_set": (
                   f"clips of the held-out engines {', '.join(o.hold_out_engines)}" if held.any()
                   else "the generator's testing split")}
    provenance = {
        "tool": "edge-agent-convert train-voice", "tool_version": __version__, "command": o.command,
        "dataset": str(o.data), "frontend": emb.NAME, "frontend_files": embed_data_files(),
        "engines": sorted(set(train_ex.engine.tolist()) - {"noise"}), "held_out_engines": list(o.hold_out_engines),
        "examples": embed_data.summary(train_ex, labels), "seed": o.seed, "epochs": o.epochs,
        "arch": f"{o.head} head width {o.width} on {spec.embeddings}x96 embeddings",
        "followed_windows": o.followed, "members": o.members, "augmented_copies": o.copies,
        "train_seconds": round(train_s, 1), "io_type": "int8", "output": OUTPUT_LOGITS,
    }
    name = o.name or o.out.stem
    manifest = Manifest(name=name, task="voice", labels=tuple(labels), sha256=sha256_file(o.out),
                        model_file=o.out.name, audio={k: v for k, v in spec.to_json().items() if k != "kind"},
                        provenance=provenance, metrics=metrics, extra={"recognizer": settings.to_json()},
                        output=OUTPUT_LOGITS)
    write(manifest, manifest_path_for(o.out))
    from .enroll import add_enroll_block  # the float last layer and anchors: enrollment on the Pi needs them

    kernel, bias = model.layers[-1].get_weights()
    add_enroll_block(o.out, labels, kernel.T, bias, train_ex.x, train_ex.y, o.seed)
    model.save(o.out.with_suffix(".keras"))
    result = {"name": name, "model_file": str(o.out), "manifest_file": str(manifest_path_for(o.out)),
              "labels": list(labels), "metrics": metrics, "provenance": provenance}
    o.out.with_suffix(".report.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def embed_data_files() -> dict[str, str]:
    return emb.check_files()


def format_text(result: dict[str, Any]) -> str:
    m = result["metrics"]
    return (f"wrote {result['model_file']} ({m['int8_tflite_bytes'] / 1024:.1f} KiB), {result['manifest_file']}\n"
            f"  {m['test_set']}: float {100 * (m['float']['top1'] or 0):.2f} %  int8 "
            f"{100 * (m['int8']['top1'] or 0):.2f} % ({m['top1_drop_points']:+.2f} points, {m['int8']['n']} clips)")
