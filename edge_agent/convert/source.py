"""Import a trained model (.keras, .h5 or a SavedModel folder) with its labels and input shape.

A model made by ``train`` carries a sidecar ``<stem>.train.json`` (labels, architecture, seed,
split, normalisation, data folder), so ``quantize`` can reproduce the exact held-out split.
A model from a notebook has none: labels then come from ``--labels``, a ``labels.txt`` beside
(or inside) the model, or the class folders of the data, in that order.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelError
from ..manifest import read_labels
from . import _tf


@dataclasses.dataclass
class Source:
    path: Path
    kind: str  # "keras" or "savedmodel"
    model: Any  # a keras.Model, or the SavedModel's serving signature
    keepalive: Any  # the loaded SavedModel object (its variables must outlive the signature)
    input_shape: tuple[int | None, ...]  # (batch, H, W, C)
    input_name: str | None
    num_classes: int

    def call(self, x: Any) -> Any:
        """Run the model on a batch tensor (used to trace a fixed-shape function for conversion)."""
        if self.kind == "keras":
            return self.model(x, training=False)
        out = self.model(**{str(self.input_name): x})
        return next(iter(out.values()))


def sidecar_path(model_path: Path) -> Path:
    """``build/waste.keras`` → ``build/waste.train.json``."""
    if model_path.is_dir():
        return model_path / "train.json"
    return model_path.with_suffix(".train.json")


def read_sidecar(model_path: Path) -> dict[str, Any]:
    path = sidecar_path(model_path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: cannot read the training record ({e})") from None
    return data if isinstance(data, dict) else {}


def find_labels(model_path: Path, explicit: Path | None, sidecar: dict[str, Any]) -> tuple[str, ...] | None:
    if explicit is not None:
        return read_labels(explicit)
    if sidecar.get("labels"):
        return tuple(str(x) for x in sidecar["labels"])
    candidates = [model_path / "labels.txt"] if model_path.is_dir() else []
    candidates += [model_path.with_suffix(".labels.txt"), model_path.parent / "labels.txt"]
    for c in candidates:
        if c.is_file():
            return read_labels(c)
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def load(path: Path) -> Source:
    """Load a model and check it is one image in, one class-score vector out."""
    if not path.exists():
        raise ModelError(f"model {path}: not found")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelError(f"model {path}: a folder but not a SavedModel (no saved_model.pb)")
        return _load_saved_model(path)
    if path.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        raise ModelError(f"model {path}: expected a .keras or .h5 file or a SavedModel folder")
    keras = _tf.keras()
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises ValueError, OSError, TypeError... for bad files
        raise ModelError(f"model {path}: Keras cannot load it ({_first_line(e)})") from None
    if len(model.inputs) != 1:
        raise ModelError(f"model {path}: has {len(model.inputs)} inputs; the tool converts one-image classifiers")
    if len(model.outputs) != 1:
        raise ModelError(f"model {path}: has {len(model.outputs)} outputs; the tool converts one-output classifiers")
    shape = tuple(None if d is None else int(d) for d in model.inputs[0].shape)
    out = tuple(model.outputs[0].shape)
    return Source(path, "keras", model, None, _check_shapes(path, shape, out), None, int(out[-1]))


def _load_saved_model(path: Path) -> Source:
    tf = _tf.tf()
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as e:
        raise ModelError(f"model {path}: TensorFlow cannot load the SavedModel ({_first_line(e)})") from None
    sig = loaded.signatures.get("serving_default")
    if sig is None:
        raise ModelError(f"model {path}: the SavedModel has no 'serving_default' signature")
    specs = sig.structured_input_signature[1]
    if len(specs) != 1:
        raise ModelError(f"model {path}: has {len(specs)} inputs; the tool converts one-image classifiers")
    outputs = sig.structured_outputs
    if len(outputs) != 1:
        raise ModelError(f"model {path}: has {len(outputs)} outputs; the tool converts one-output classifiers")
    name, spec = next(iter(specs.items()))
    shape = tuple(None if d is None else int(d) for d in spec.shape)
    out = tuple(next(iter(outputs.values())).shape)
    return Source(path, "savedmodel", sig, loaded, _check_shapes(path, shape, out), name, int(out[-1]))


def _check_shapes(path: Path, shape: tuple[int | None, ...], out: tuple[Any, ...]) -> tuple[int | None, ...]:
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise ModelError(f"model {path}: input shape {list(shape)} is not an image batch (N, H, W, 1 or 3)")
    if len(out) != 2 or out[-1] is None or int(out[-1]) < 2:
        raise ModelError(f"model {path}: output shape {list(out)} is not a vector of class scores (N, classes)")
    return shape


def resolve_size(source: Source, requested: tuple[int, int] | None) -> tuple[int, int, int]:
    """(H, W, C) for conversion: the model's own size, or ``--input-size`` for a model whose size is
    open. A request that contradicts a fixed model size is the user's mistake, said in one line."""
    _, h, w, c = source.input_shape
    assert c is not None
    if requested is not None:
        rw, rh = requested
        if (h is not None and h != rh) or (w is not None and w != rw):
            raise ConfigError(
                f"--input-size {rw}x{rh} does not match the model's input {w}x{h}x{c}; "
                "the representative images must have the model's input shape"
            )
        return rh, rw, c
    if h is None or w is None:
        raise ConfigError(f"model {source.path}: its input size is not fixed; give one with --input-size WxH")
    return h, w, c
