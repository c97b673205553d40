"""Image folder → trained Keras MobileNet (``.keras``) + labels + a training record.

Two starts: from scratch (any architecture, :mod:`edge_agent.convert.build`), or from ImageNet
(``--weights imagenet`` or a torchvision ``.pth``: MobileNetV2 ported by :mod:`.mobilenet_v2`),
which trains in two phases — the new head with the base frozen (``--epochs``), then the top
``--fine-tune-blocks`` blocks as well at a lower rate (``--fine-tune-epochs``), batch-norm
statistics kept at ImageNet's — and feeds torchvision's preprocessing, recorded for the manifest.

Images are decoded, resized and normalised by the agent's preprocessing module once, up front
(small data sets fit in memory, and a 2-core Pi-class build box should not re-decode PNGs every
epoch). Augmentation — horizontal flip, small rotation, brightness, random crop (zoom-in) —
runs on those normalised tensors in the input pipeline only, so the saved model has no
augmentation layers to confuse the converter.

The record ``<stem>.train.json`` keeps labels, architecture, seed, split fractions and the
normalisation, so ``quantize`` later calibrates on the same training images and measures the
same held-out test images.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ...errors import ConfigError
from ...manifest import ImageInput
from .. import _tf, build, data, report, source
from ..data import DecodeAugment
from . import imagenet, mobilenet_v2


@dataclasses.dataclass
class Options:
    data: Path
    out: Path
    arch: str = "mobilenet_v1"
    alpha: float = 0.25
    resolution: int = 96
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    val_split: float = 0.15
    test_split: float = 0.15
    weights: Path | None = None  # a Keras .h5, a torchvision .pth, or Path("imagenet")
    freeze_base: bool = False
    augment: bool = True
    decode_augment: DecodeAugment | None = None  # JPEG re-encode, colour jitter, grey-level noise
    stability: float = 0.0  # weight of KL(clean || decode-augmented) in the loss; 0 = off
    init: Path | None = None  # a trained .keras model (same labels and input) to start from
    class_weights: bool = True
    dropout: float = 0.2
    patience: int = 0  # 0 = no early stopping; the best val-accuracy epoch is kept either way
    fine_tune_epochs: int = 10  # ImageNet start only: epochs with the top blocks unfrozen, after the head
    fine_tune_blocks: int = 5  # of MobileNetV2's 19 feature blocks (the last 1x1 conv counts as one)
    fine_tune_learning_rate: float = 1e-4
    command: str = ""


def is_pretrained(weights: Path | None) -> bool:
    """``--weights imagenet`` or a torchvision ``.pth``: the ported MobileNetV2 start."""
    return weights is not None and (str(weights) == "imagenet" or weights.suffix.lower() == ".pth")


def value_range(spec: ImageInput) -> tuple[float, float]:
    """The normalised values pixels 0 and 255 map to (over all channels): what brightness clips to."""
    lo = min((0.0 - m) / s for m, s in zip(spec.mean, spec.std, strict=True))
    hi = max((255.0 - m) / s for m, s in zip(spec.mean, spec.std, strict=True))
    return lo, hi


def augmenter(keras: Any, seed: int, spec: ImageInput | None = None) -> Any:
    """Flip, rotation (±18°), brightness (±20 %), random crop of up to 20 % (zoom in)."""
    span = value_range(spec) if spec is not None else (-1.0, 1.0)
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomZoom((-0.2, 0.0), fill_mode="reflect", seed=seed + 2),
            keras.layers.RandomBrightness(0.2, value_range=span, seed=seed + 3),
        ],
        name="augment",
    )


def decode_mapper(tf: Any, aug: data.DecodeAugment, spec: ImageInput, seed: int, pairs: bool = False) -> Any:
    """A tf.data map: (normalised batch, labels) → the batch through :class:`data.DecodeAugment`
    (``pairs``: ((batch, augmented batch), labels), for :func:`stability_model`).

    The batch goes back to uint8 pixels (exact for the usual 127.5 normalisation), through the
    augmentation in numpy (JPEG needs OpenCV), and is normalised again with the agent's table.
    One seeded generator, called in order (``num_parallel_calls=1``): a rerun draws the same."""
    rng = np.random.default_rng([seed, 7])

    def apply(x: np.ndarray) -> np.ndarray:
        return data.normalize(aug.apply(data.to_pixels(x, spec), rng), spec)

    def mapper(x: Any, y: Any) -> tuple[Any, Any]:
        out = tf.numpy_function(apply, [x], tf.float32, stateful=True)
        out.set_shape(x.shape)
        return ((x, out), y) if pairs else (out, y)

    return mapper


def start_from(keras: Any, path: Path, labels: tuple[str, ...], resolution: int) -> Any:
    """A trained model to go on training (``--init``): same labels, same input size, or an error."""
    if not path.exists():
        raise ConfigError(f"--init {path}: not found")
    labels_file = path.with_suffix(".labels.txt")
    if labels_file.exists():
        have = tuple(x for x in labels_file.read_text(encoding="utf-8").splitlines() if x)
        if have != labels:
            raise ConfigError(f"--init {path}: its labels {list(have)} are not this data's {list(labels)}")
    model = keras.models.load_model(path, compile=False)
    shape = tuple(model.input_shape[1:3])
    if shape != (resolution, resolution) or int(model.output_shape[-1]) != len(labels):
        raise ConfigError(f"--init {path}: input {shape} and {model.output_shape[-1]} outputs do not match "
                          f"--resolution {resolution} and {len(labels)} classes")
    return model


def stability_model(keras: Any, model: Any, weight: float) -> Any:
    """The model seen twice, on an image and on its decode-augmented copy, trained on the first
    with ``weight * KL(p(image) || p(copy))`` added to the loss (stability training, Zheng et al.,
    CVPR 2016): the scores themselves, not only the label, must not move for a decoder's
    difference. Shares every weight with ``model``, which is what gets saved."""

    class StabilityPenalty(keras.layers.Layer):
        def call(self, inputs: Any) -> Any:
            p, q = inputs
            eps = 1e-7
            kl = keras.ops.sum(p * (keras.ops.log(p + eps) - keras.ops.log(q + eps)), axis=-1)
            self.add_loss(weight * keras.ops.mean(kl))
            return p

    clean = keras.Input(model.input_shape[1:], name="image")
    noisy = keras.Input(model.input_shape[1:], name="augmented")
    out = StabilityPenalty(name="stability")([model(clean), model(noisy)])
    return keras.Model([clean, noisy], out, name="stability_training")


def progress_callback(keras: Any, epochs: int, stream: TextIO) -> Any:
    """One line per epoch on stderr (stdout stays clean for ``--json``)."""

    class Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t0 = time.monotonic()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if stream.isatty():
                stream.write(f"\r  batch {batch + 1}  loss {float((logs or {}).get('loss', 0)):.3f}")
                stream.flush()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = logs or {}
            if stream.isatty():
                stream.write("\r")
            stream.write(
                f"epoch {epoch + 1:>3}/{epochs}  loss {logs.get('loss', 0):.3f}  acc {logs.get('accuracy', 0):.3f}  "
                f"val_loss {logs.get('val_loss', float('nan')):.3f}  "
                f"val_acc {logs.get('val_accuracy', float('nan')):.3f}  "
                f"{time.monotonic() - self.t0:.1f}s\n"
            )
            stream.flush()

    return Progress()


def run(o: Options, stream: TextIO | None = None) -> dict[str, Any]:
    # sys.stderr is looked up per call, not bound once at import (a caller that swaps it, as a
    # test's output capture does, would leave a closed file as the default)
    stream = sys.stderr if stream is None else stream
    if o.out.suffix != ".keras":
        raise ConfigError(f"--out {o.out}: the trained model is saved as a .keras file")
    if o.epochs < 1 or o.batch_size < 1 or o.fine_tune_epochs < 0:
        raise ConfigError("--epochs and --batch-size must be at least 1, --fine-tune-epochs at least 0")
    arch = build.canonical_arch(o.arch)
    build.check_shape(o.alpha, o.resolution)
    pretrained = is_pretrained(o.weights)
    if pretrained:
        # the installed ImageNet file is width 1.0; a user's own torchvision .pth may have another
        # width_mult (its tensor shapes are checked layer by layer when it loads)
        if arch != "mobilenet_v2" or (str(o.weights) == "imagenet" and o.alpha != 1.0):
            raise ConfigError(f"--weights {o.weights}: ImageNet weights exist here only for MobileNetV2 at width 1.0; "
                              "use --arch v2 --alpha 1.0")
        if o.init is not None:
            raise ConfigError("--init and an ImageNet --weights exclude each other: --init already holds "
                              "trained weights")
        if not 1 <= o.fine_tune_blocks <= mobilenet_v2.BLOCKS:
            raise ConfigError(f"--fine-tune-blocks {o.fine_tune_blocks}: between 1 and {mobilenet_v2.BLOCKS}")
        assert o.weights is not None
        weights_path, state = imagenet.load(str(o.weights) if str(o.weights) == "imagenet" else o.weights)
    ds = data.scan(o.data)
    parts = data.split(ds, o.seed, o.val_split, o.test_split)
    spec = imagenet.input_spec(o.resolution) if pretrained else ImageInput(o.resolution, o.resolution)
    inherited: dict[str, Any] = {}
    if o.init is not None:  # go on feeding what the first stage was fed (an ImageNet start: torchvision's)
        inherited = source.read_sidecar(o.init)
        rec = inherited.get("input") or {}
        if rec.get("mean") and rec.get("std"):
            spec = dataclasses.replace(spec, mean=tuple(rec["mean"]), std=tuple(rec["std"]),
                                       color_order=str(rec.get("color_order", spec.color_order)))
    counts = dict(zip(ds.labels, ds.counts(), strict=True))
    stream.write(f"{o.data}: {len(ds.samples)} images, {len(ds.labels)} classes {counts}; split {parts.sizes()}\n")
    x_train = data.normalize(data.load_images([s.path for s in parts.train], spec), spec)
    x_val = data.normalize(data.load_images([s.path for s in parts.val], spec), spec)
    x_test = data.normalize(data.load_images([s.path for s in parts.test], spec), spec)
    y_train = np.asarray([s.label for s in parts.train], np.int64)
    y_val = np.asarray([s.label for s in parts.val], np.int64)
    y_test = np.asarray([s.label for s in parts.test], np.int64)

    tf = _tf.tf()
    keras = _tf.keras()
    keras.utils.set_random_seed(o.seed)
    if o.stability and o.decode_augment is None:
        raise ConfigError("--stability needs --decode-augment: it compares each image with its augmented copy")
    pretrained_record: dict[str, Any] | None = None
    base = None
    if pretrained:
        port = imagenet.check_port(state)
        stream.write(f"ImageNet weights {weights_path.name}: port check {port}\n")
        pretrained_record = imagenet.provenance(weights_path, str(o.weights), port)
        base = mobilenet_v2.features(o.resolution, o.alpha)
        mobilenet_v2.load(base, state)
        base.trainable = False
        model = mobilenet_v2.classifier(base, len(ds.labels), o.dropout, train_base=False)
    elif o.init is not None:
        model = start_from(keras, o.init, ds.labels, o.resolution)
    else:
        model = build.build(arch, o.alpha, o.resolution, len(ds.labels), weights=o.weights,
                            freeze_base=o.freeze_base, dropout=o.dropout)
    trained = stability_model(keras, model, o.stability) if o.stability else model
    train_ds = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(
        len(x_train), seed=o.seed, reshuffle_each_iteration=True
    ).batch(o.batch_size)
    if o.augment:
        aug = augmenter(keras, o.seed, spec)
        train_ds = train_ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=1)
    if o.decode_augment is not None:
        train_ds = train_ds.map(decode_mapper(tf, o.decode_augment, spec, o.seed, pairs=bool(o.stability)),
                                num_parallel_calls=1)
    train_ds = train_ds.prefetch(2)
    has_val = len(x_val) > 0
    monitor = "val_accuracy" if has_val else "accuracy"
    best = BestWeights(monitor)
    weights = data.class_weights(y_train, len(ds.labels)) if o.class_weights else None
    val_x = (x_val, x_val) if o.stability else x_val

    def fit(epochs: int, learning_rate: float, offset: int) -> None:
        trained.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                        metrics=["accuracy"])
        callbacks = [progress_callback(keras, epochs, stream), best.callback(keras, offset)]
        if o.patience:
            callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=o.patience))
        trained.fit(train_ds, epochs=epochs, validation_data=(val_x, y_val) if has_val else None,
                    class_weight=weights, callbacks=callbacks, verbose=0,
                    shuffle=False)  # the tf.data pipeline shuffles, seeded

    t0 = time.monotonic()
    if pretrained:
        stream.write(f"phase 1: the head only, base frozen ({o.epochs} epochs)\n")
    fit(o.epochs, o.learning_rate, 0)
    fine_tuned = 0
    if base is not None and o.fine_tune_epochs:
        fine_tuned = mobilenet_v2.unfreeze_top(base, o.fine_tune_blocks)
        stream.write(f"phase 2: the top {o.fine_tune_blocks} blocks too ({fine_tuned} weight tensors), "
                     f"learning rate {o.fine_tune_learning_rate:g} ({o.fine_tune_epochs} epochs)\n")
        fit(o.fine_tune_epochs, o.fine_tune_learning_rate, o.epochs)
    seconds = time.monotonic() - t0
    best.restore(trained)  # the stability wrapper shares the model's weights
    o.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(o.out)
    o.out.with_suffix(".labels.txt").write_text("\n".join(ds.labels) + "\n", encoding="utf-8")

    test_pred = np.argmax(model.predict(x_test, verbose=0), axis=1) if len(x_test) else np.zeros(0, np.int64)
    test_metrics = report.metrics(y_test, test_pred, ds.labels)
    record = {
        "tool": "edge-agent-convert train",
        "created": datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "command": o.command,
        "data": str(o.data),
        "labels": list(ds.labels),
        "class_counts": counts,
        "arch": arch,
        "alpha": o.alpha,
        "resolution": o.resolution,
        "weights": str(o.weights) if o.weights else None,
        "pretrained": pretrained_record or inherited.get("pretrained"),
        "freeze_base": o.freeze_base,
        "fine_tune": {"epochs": o.fine_tune_epochs, "blocks": o.fine_tune_blocks,
                      "learning_rate": o.fine_tune_learning_rate} if pretrained else None,
        "seed": o.seed,
        "val_split": o.val_split,
        "test_split": o.test_split,
        "split_sizes": parts.sizes(),
        "epochs": o.epochs,
        "best_epoch": best.epoch + 1,
        "batch_size": o.batch_size,
        "learning_rate": o.learning_rate,
        "augment": o.augment,
        "decode_augment": o.decode_augment.to_json() if o.decode_augment is not None else None,
        "stability": o.stability,
        "init": str(o.init) if o.init else None,
        "class_weights": weights,
        "input": spec.to_json(),
        "params": int(model.count_params()),
        "train_seconds": round(seconds, 1),
        "best_" + monitor: best.value,
        "keras_test": test_metrics,
    }
    source.sidecar_path(o.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    record["model_file"] = str(o.out)
    record["record_file"] = str(source.sidecar_path(o.out))
    return record


class BestWeights:
    """Keep the weights of the epoch with the best monitored accuracy (ties: the later epoch),
    across training phases. Kept per variable (by identity, not by position): unfreezing layers
    between phases reorders Keras' weight lists."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.value = -1.0
        self.epoch = 0
        self.weights: list[tuple[Any, Any]] | None = None

    def callback(self, keras: Any, offset: int = 0) -> Any:
        outer = self

        class Keep(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                value = float((logs or {}).get(outer.monitor, 0.0))
                if value >= outer.value:
                    outer.value, outer.epoch = value, epoch + offset
                    outer.weights = [(v, v.numpy()) for v in self.model.weights]

        return Keep()

    def restore(self, model: Any) -> None:
        for variable, value in self.weights or []:
            variable.assign(value)


def format_text(record: dict[str, Any]) -> str:
    t = record["keras_test"]
    top1 = "n/a" if t["top1"] is None else f"{100 * t['top1']:.1f} %"
    return (
        f"wrote {record['model_file']} ({record['arch']} alpha {record['alpha']:g} at {record['resolution']} px, "
        f"{record['params']:,} params, best epoch {record['best_epoch']}), {record['record_file']}\n"
        f"  Keras test top-1 {top1} on {t['n']} held-out images; "
        f"next: edge-agent-convert quantize {record['model_file']}"
    )
