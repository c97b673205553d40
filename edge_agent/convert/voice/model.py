"""The keyword network (DS-CNN), its full-int8 conversion and its predictions through the agent's engine.

Conversion is the image tool's own (:mod:`edge_agent.convert.quantize`): the Keras model is fixed at
a batch of one, converted to float32 and to full int8 calibrated on training features, names
stripped, and refused if an operator stays float (:func:`quantize.check_int8`). A keyword model
then loses its final int8 softmax (:func:`logits.strip_softmax`): its top level, 0.996, is where a
sure "stop" and a nearly sure "stuff" both sit, and no threshold could split them.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings
from pathlib import Path
from typing import Any, Final

import numpy as np

from ...preprocess import audio
from ...preprocess.audio import AudioSpec
from .. import graph, logits, quantize, source

DEFAULT_WIDTH: Final = 64  # channels of the separable blocks
DEFAULT_BLOCKS: Final = 4


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


def _source(model: Any, shape: tuple[int, int]) -> source.Source:
    return source.Source(path=Path(str(model.name)), kind="keras", model=model, keepalive=None,
                         input_shape=(None, *shape, 1), input_name=None, num_classes=int(model.output_shape[-1]))


def convert(model: Any, shape: tuple[int, int], calib: np.ndarray) -> tuple[bytes, bytes, graph.GraphInfo]:
    """(float32 .tflite, full-int8 .tflite with logits out, the int8 graph) for a Keras keyword model;
    ``calib`` is (N, frames, mels) normalised training features."""
    src = _source(model, shape)
    hwc = (*shape, 1)
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        float_bytes = graph.strip_names(quantize.convert_float(src, hwc))
        int8_bytes = graph.strip_names(quantize.convert_int8(src, hwc, calib[..., None], "int8"))
    int8_bytes = logits.strip_softmax(int8_bytes, "the converted model")
    g = graph.read(int8_bytes)
    quantize.check_int8(g, allow_float=False)
    return float_bytes, int8_bytes, g


def predict_tflite(path: Path, clips: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """(N,) predicted indices through the agent's own engine and front end."""
    from ...engine import Engine

    engine = Engine.load(path, threads=1, kind="audio")
    scale, zero = engine.input_quant
    fill = audio.make_fill(spec, engine.input_dtype, scale, zero)
    out = np.empty(len(clips), np.int64)
    for i, clip in enumerate(clips):
        out[i] = int(np.argmax(engine.run(functools.partial(fill, clip))))
    return out
