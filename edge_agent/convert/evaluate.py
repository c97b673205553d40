"""Run a ``.tflite`` over labelled images through the agent's own :class:`~edge_agent.engine.Engine`.

Why the engine and not ``tf.lite.Interpreter``: the figure that matters is what the agent will
see, so the measurement goes through the same interpreter discovery, input lookup table
(normalise + quantize in one step) and int64 dequantization as serving. No TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import Engine
from ..errors import ConfigError, ModelError
from ..manifest import ImageInput, Manifest, load, manifest_path_for
from ..preprocess import image as image_pre
from . import data, report


def predict(model_path: Path, images: np.ndarray, spec: ImageInput, threads: int = 2) -> np.ndarray:
    """Top-1 class index for each uint8 image (N, H, W, C) already resized to the model's input."""
    engine = Engine.load(model_path, threads=threads)
    _, h, w, c = engine.input_shape
    if images.shape[1:] != (h, w, c):
        raise ModelError(
            f"model {model_path}: input is {w}x{h}x{c} but the images are "
            f"{images.shape[2]}x{images.shape[1]}x{images.shape[3]}"
        )
    fill = image_pre.make_fill(engine.table_for(spec))
    out = np.empty(len(images), np.int64)
    for i, img in enumerate(images):
        out[i] = int(np.argmax(engine.run(_writer(fill, img))))
    return out


def _writer(fill: image_pre.Fill, img: np.ndarray) -> Callable[[np.ndarray], None]:
    def write(view: np.ndarray) -> None:
        fill(img, view)

    return write


def label_indices(ds: data.Dataset, samples: Sequence[data.Sample], labels: Sequence[str]) -> np.ndarray:
    """Folder class names → the model's label indices (folders may be a subset, in any order)."""
    missing = [name for name in ds.labels if name not in labels]
    if missing:
        raise ConfigError(
            f"data folder {ds.root}: class folder(s) {', '.join(missing)} are not among the model's labels "
            f"({', '.join(labels)})"
        )
    index = [labels.index(name) for name in ds.labels]
    return np.asarray([index[s.label] for s in samples], np.int64)


def evaluate(
    model_path: Path,
    folder: Path,
    manifest_path: Path | None = None,
    split: str = "all",
    threads: int = 2,
) -> dict[str, Any]:
    """top-1, per-class and confusion of a converted model on a labelled folder. ``split='test'``
    re-creates the held-out split recorded in the manifest's provenance (seed and fractions)."""
    manifest: Manifest = load(manifest_path or manifest_path_for(model_path))
    if manifest.input is None:
        raise ModelError(f"model {model_path}: its manifest describes an audio model, not an image model")
    ds = data.scan(folder)
    if split == "all":
        samples: Sequence[data.Sample] = ds.samples
    else:
        prov = manifest.provenance.get("split") or {}
        seed = manifest.provenance.get("seed")
        if seed is None or "val_fraction" not in prov:
            raise ConfigError(f"--split {split}: the manifest records no seed/split; use --split all")
        parts = data.split(ds, int(seed), float(prov["val_fraction"]), float(prov["test_fraction"]))
        samples = getattr(parts, split)
    if not samples:
        raise ConfigError(f"data folder {folder}: the {split} split is empty")
    images = data.load_images([s.path for s in samples], manifest.input)
    y_true = label_indices(ds, samples, manifest.labels)
    y_pred = predict(model_path, images, manifest.input, threads)
    result = report.metrics(y_true, y_pred, manifest.labels)
    result.update({"model": str(model_path), "data": str(folder), "split": split, "labels": list(manifest.labels)})
    return result


def format_text(result: dict[str, Any]) -> str:
    labels = result["labels"]
    lines = [f"{result['model']} on {result['data']} ({result['split']}, {result['n']} images): "
             f"top-1 {100 * result['top1']:.1f} %"]
    for name in labels:
        pc = result["per_class"][name]
        p = "n/a" if pc["precision"] is None else f"{100 * pc['precision']:.1f} %"
        r = "n/a" if pc["recall"] is None else f"{100 * pc['recall']:.1f} %"
        lines.append(f"  {name:<16} precision {p:>8}  recall {r:>8}  n={pc['support']}")
    lines.append("confusion (rows: true, columns: predicted, in label order):")
    lines += ["  " + " ".join(f"{v:>5}" for v in row) for row in result["confusion"]]
    return "\n".join(lines)
