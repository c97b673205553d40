"""The head's last layer, read from and written back into a full-int8 ``.tflite``, without TensorFlow.

Enrollment re-fits the head's last weighted layer (a ``FULLY_CONNECTED``, or a ``CONV_2D``
whose kernel covers its whole input: the same linear map) and, where a dense ReLU layer feeds it
(:func:`read_hidden_layer`), that one too, so it runs on a Pi that has LiteRT and numpy and
nothing else. Three steps, each checked:

* :func:`read_last_layer`: which op it is, its int8 weights, int32 bias and their scales, the
  tensor that feeds it (the *features*) and what its int8 output can hold.
* :meth:`LastLayer.features`: the features the int8 model itself computes for each input, read
  from an interpreter that keeps every tensor (no delegate, so nothing is fused away).
* :func:`patch`: new float weights quantized at new per-channel scales (max |w| / 127, as the
  converter does), written with the scale vectors of the weights and the bias over the old bytes
  of the same size, each found by content and refused unless found exactly once; the input, the
  features' and the output's quantization stay as converted. The patched file is read back and
  checked before it is kept.

The float weights (``float_weights``) are what the manifest carries under ``enroll`` so the next
enrollment starts from the trained float head, not from its int8 rounding.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from pathlib import Path
from typing import Any, Final

import numpy as np

from ..engine import find_backend
from ..errors import ModelError

LAYER_OPS: Final = ("FULLY_CONNECTED", "CONV_2D")


@dataclasses.dataclass
class LastLayer:
    """The last weighted layer of an int8 head: ``logits = W @ features + b`` (W: classes x D)."""

    path: Path
    op: str
    features_index: int
    weights_q: np.ndarray  # int8 as stored (classes, ...)
    bias_q: np.ndarray  # int32 (classes,)
    weight_scales: np.ndarray  # per output channel (or one)
    feature_scale: float
    feature_zero: int
    bias_scales: np.ndarray
    position: int = 1  # 1: the last weighted layer, 2: the one before it
    output_index: int = -1
    output_range: tuple[float, float] = (-np.inf, np.inf)  # what its int8 output can hold (a fused ReLU: 0..max)

    @property
    def classes(self) -> int:
        return int(self.weights_q.shape[0])

    def float_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) as float: the int8 weights times their scales (when no float head is carried)."""
        w = self.weights_q.reshape(self.classes, -1).astype(np.float64) * self._scales()[:, None]
        b = self.bias_q.astype(np.float64) * self._scales() * self.feature_scale
        return w.astype(np.float32), b.astype(np.float32)

    def _scales(self) -> np.ndarray:
        s = np.asarray(self.weight_scales, np.float64).reshape(-1)
        return np.broadcast_to(s, (self.classes,)) if s.size == 1 else s

    def features(self, inputs: np.ndarray) -> np.ndarray:
        """(N, *input shape) float inputs → (N, D) dequantized features as the int8 model computes them."""
        it = _interpreter(self.path, preserve=True)
        inp = it.get_input_details()[0]
        scale, zero = inp["quantization"]
        out = np.empty((len(inputs), int(np.prod(self.weights_q.shape[1:]))), np.float32)
        for i, x in enumerate(inputs):
            if inp["dtype"] == np.float32:
                q = np.asarray(x, np.float32)
            else:
                q = np.clip(np.round(np.asarray(x) / scale) + zero, -128, 127).astype(inp["dtype"])
            it.set_tensor(inp["index"], q.reshape(inp["shape"]))
            it.invoke()
            f = it.get_tensor(self.features_index).astype(np.float32).reshape(-1)
            out[i] = (f - self.feature_zero) * self.feature_scale
        return out


def _interpreter(path: Path, preserve: bool = False) -> Any:
    """An interpreter without the default delegate (a delegate fuses the layers whose tensors we read)."""
    backend = find_backend()
    mod = importlib.import_module(backend.interpreter.__module__)
    resolver = getattr(mod, "OpResolverType", None)
    kwargs: dict[str, Any] = {}
    if resolver is not None:
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if preserve:
        kwargs["experimental_preserve_all_tensors"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": we read one tensor of it
        it = backend.interpreter(model_path=str(path), num_threads=1, **kwargs)
    it.allocate_tensors()
    return it


def read_last_layer(path: Path, position: int = 1) -> LastLayer:
    """The last FULLY_CONNECTED / CONV_2D op of the int8 model at ``path`` (``position`` 2: the one
    before it); one line if there is none."""
    it = _interpreter(path)
    ops = [op for op in it._get_ops_details() if op["op_name"] in LAYER_OPS]
    if len(ops) < position:
        raise ModelError(f"model {path}: no fully-connected or convolution layer to enroll")
    op = ops[-position]
    feat, wi, bi = (int(i) for i in op["inputs"][:3])
    if bi < 0:  # the converter drops a bias that is all zeros: there are no bytes to rewrite
        raise ModelError(f"model {path}: its layer has no bias tensor; cannot enroll this model without TensorFlow")
    details = {d["index"]: d for d in it.get_tensor_details()}
    w = it.get_tensor(wi)
    b = it.get_tensor(bi)
    if w.dtype != np.int8 or b.dtype != np.int32:
        raise ModelError(f"model {path}: its last layer is not full int8 ({w.dtype}, {b.dtype}); enroll needs the "
                         "int8 model train-voice writes")
    fq = details[feat]["quantization_parameters"]
    if op["op_name"] == "CONV_2D":
        shape = details[feat]["shape"]
        if tuple(w.shape[1:]) != tuple(shape[1:]):
            raise ModelError(f"model {path}: its last convolution does not cover its whole input; cannot enroll")
    scales = details[wi]["quantization_parameters"]["scales"]
    out = int(op["outputs"][0])
    oq = details[out]["quantization_parameters"]
    o_scale, o_zero = (float(oq["scales"][0]), int(oq["zero_points"][0])) if len(oq["scales"]) else (0.0, 0)
    o_range = ((-128 - o_zero) * o_scale, (127 - o_zero) * o_scale) if o_scale else (-np.inf, np.inf)
    return LastLayer(path, op["op_name"], feat, w.copy(), b.copy(), np.asarray(scales, np.float32),
                     float(fq["scales"][0]), int(fq["zero_points"][0]),
                     np.asarray(details[bi]["quantization_parameters"]["scales"], np.float32), position, out,
                     (float(o_range[0]), float(o_range[1])))


def read_hidden_layer(path: Path, last: LastLayer) -> LastLayer | None:
    """The fully-connected layer that feeds ``last`` directly, through a ReLU (its int8 output holds
    nothing below 0), so both can be re-fitted as one small network; None when the model has no such
    layer (a head whose last layer reads the input, or a convolution)."""
    try:
        hidden = read_last_layer(path, position=2)
    except ModelError:
        return None
    if (hidden.op != "FULLY_CONNECTED" or last.op != "FULLY_CONNECTED" or hidden.output_index != last.features_index
            or abs(hidden.output_range[0]) > 1e-9 * max(1.0, hidden.output_range[1])):
        return None
    return hidden


def new_scales(layer: LastLayer, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-channel weight scales for ``w`` (max |w| / 127, as the converter sets them), never so
    small that the bias (at weight scale x feature scale) leaves int32; a per-tensor layer keeps
    one scale, the largest."""
    s = np.maximum(np.abs(w.reshape(layer.classes, -1)).max(axis=1), 1e-9) / 127.0
    s = np.maximum(s, np.abs(b) / (layer.feature_scale * 2.0**30))
    return (s if np.asarray(layer.weight_scales).size > 1 else np.full(1, s.max())).astype(np.float32)


def quantize(layer: LastLayer, w: np.ndarray, b: np.ndarray,
             scales: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Float (W, b) → int8 weights, int32 bias at ``scales`` (default: the layer's own; clipped)."""
    given = np.asarray(layer.weight_scales if scales is None else scales, np.float64).reshape(-1)
    s = np.broadcast_to(given, (layer.classes,)) if given.size == 1 else given
    wq = np.clip(np.round(w.reshape(layer.classes, -1) / s[:, None]), -127, 127).astype(np.int8)
    bq = np.clip(np.round(b / (s * layer.feature_scale)), -(2**31), 2**31 - 1).astype(np.int32)
    return wq.reshape(layer.weights_q.shape), bq


def _replace_once(data: bytearray, old: bytes, new: bytes, what: str, path: Path) -> None:
    at = data.find(old)
    if at < 0 or data.find(old, at + 1) >= 0:
        raise ModelError(f"model {path}: the last layer's {what} is not found exactly once in the file; cannot "
                         "enroll this model without TensorFlow")
    data[at: at + len(old)] = new


def patch(layer: LastLayer, w: np.ndarray, b: np.ndarray, out: Path,
          more: tuple[tuple[LastLayer, np.ndarray, np.ndarray], ...] = ()) -> None:
    """Write the model with (W, b) in its last layer (and each of ``more``: (layer, W, b) of the same
    model) to ``out``: int8 weights at new per-channel scales (the weights' and the bias's scale
    vectors rewritten too), read back and checked."""
    data = bytearray(layer.path.read_bytes())
    checks = [_patch_bytes(data, x, xw, xb) for x, xw, xb in ((layer, w, b), *more)]
    out.write_bytes(bytes(data))
    for x, (wq, bq, scales) in zip((layer, *(m[0] for m in more)), checks, strict=True):
        check = read_last_layer(out, x.position)
        if not (np.array_equal(check.weights_q, wq) and np.array_equal(check.bias_q, bq)
                and np.allclose(check.weight_scales, scales)):
            raise ModelError(f"model {out}: the patched layer did not read back; nothing enrolled")


def _patch_bytes(data: bytearray, layer: LastLayer, w: np.ndarray,
                 b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scales = new_scales(layer, w, b)
    wq, bq = quantize(layer, w, b, scales)
    _replace_once(data, layer.weights_q.tobytes(), wq.tobytes(), "weights", layer.path)
    _replace_once(data, layer.bias_q.astype("<i4").tobytes(), bq.astype("<i4").tobytes(), "bias", layer.path)
    _replace_once(data, layer.weight_scales.astype("<f4").tobytes(), scales.astype("<f4").tobytes(),
                  "weight scales", layer.path)
    bias_scales = (np.broadcast_to(scales, (layer.classes,)) * np.float32(layer.feature_scale)).astype("<f4")
    if layer.bias_scales.size == bias_scales.size:
        _replace_once(data, layer.bias_scales.astype("<f4").tobytes(), bias_scales.tobytes(), "bias scales",
                      layer.path)
    return wq, bq, scales
