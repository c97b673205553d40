"""The small series architectures ``train-series`` offers, and how each becomes a fixed batch-1
model the TFLite converter can turn into full int8.

Recurrent layers need care (issue 18). Keras 3 lowers LSTM and GRU to a ``WHILE`` loop; full
int8 conversion of that loop crashes TensorFlow 2.21's converter (a segmentation fault, seen
here) or leaves it float. So:

- ``lstm``: built with ``tf_keras`` (Keras 2) when it is installed: its LSTM carries the function
  annotation TFLite fuses into ONE ``UNIDIRECTIONAL_SEQUENCE_LSTM`` operator, quantized to int8
  (int16 cell state, per TFLite's integer LSTM kernel). Without ``tf_keras`` the LSTM is unrolled
  over the window (int8 FULLY_CONNECTED / LOGISTIC / TANH / MUL / ADD per step: a bigger file),
  and the report says so.
- ``gru``: TFLite has no fused GRU, so it is always unrolled over the window.

The op report in every model card lists what was produced; nothing stays float silently
(:func:`~edge_agent.convert.quantize.check_int8` refuses float operators).
"""

from __future__ import annotations

import importlib
from typing import Any, Final

from .. import _tf

ARCHS: Final = ("cnn", "lstm", "gru", "dnn", "autoencoder")


def recurrent_macs(arch: str, shape: tuple[int, ...], units: int) -> int:
    """Multiply-adds inside a fused LSTM (the graph walk counts FULLY_CONNECTED and CONV only):
    four gates, each (inputs + units) x units, per time step."""
    if arch != "lstm" or len(shape) != 2:
        return 0
    steps, inputs = shape
    return steps * 4 * units * (inputs + units)


def tf_keras() -> Any | None:
    """Keras 2 (``pip install tf_keras``), or None."""
    _tf.tf()
    try:
        return importlib.import_module("tf_keras")
    except ImportError:
        return None


def library(arch: str) -> tuple[Any, str]:
    """(the Keras module to build ``arch`` with, how recurrent layers are lowered)."""
    if arch == "lstm":
        k2 = tf_keras()
        if k2 is not None:
            return k2, ("fused UNIDIRECTIONAL_SEQUENCE_LSTM (built with tf_keras: Keras 3 makes a WHILE loop whose "
                        "full-int8 conversion crashes TensorFlow 2.21's converter)")
        return _tf.keras(), "unrolled over the window (tf_keras is not installed: pip install tf_keras)"
    if arch == "gru":
        return _tf.keras(), "unrolled over the window (TFLite has no fused GRU operator)"
    return _tf.keras(), "none"


def build(arch: str, lib: Any, shape: tuple[int, ...], outputs: int, units: int, seed: int) -> Any:
    """A small model for one window; ``outputs`` classes (softmax) or, for the autoencoder, a
    reconstruction of the (flattened) input."""
    L = lib.layers
    lib.utils.set_random_seed(seed)
    inp = lib.Input(shape=shape, name="window")
    if arch == "cnn":
        x = L.Conv1D(units, 5, padding="same", activation="relu")(inp)
        x = L.MaxPooling1D(2)(x)
        x = L.Conv1D(units, 5, padding="same", activation="relu")(x)
        x = L.GlobalAveragePooling1D()(x)
    elif arch == "lstm":
        x = L.LSTM(units, unroll=lib is _tf.keras())(inp)
    elif arch == "gru":
        x = L.GRU(units, unroll=True, reset_after=False)(inp)
    elif arch == "dnn":
        x = L.Flatten()(inp) if len(shape) > 1 else inp
        x = L.Dense(units, activation="relu")(x)
        x = L.Dense(max(4, units // 2), activation="relu")(x)
    elif arch == "autoencoder":
        flat = L.Flatten()(inp) if len(shape) > 1 else inp
        n = 1
        for d in shape:
            n *= d
        x = L.Dense(units, activation="relu")(flat)
        x = L.Dense(max(2, units // 2), activation="relu")(x)
        x = L.Dense(units, activation="relu")(x)
        return lib.Model(inp, L.Dense(n, name="reconstruction")(x))
    else:
        raise ValueError(arch)
    return lib.Model(inp, L.Dense(outputs, activation="softmax", name="scores")(x))


def fixed_batch(lib: Any, model: Any, shape: tuple[int, ...]) -> Any:
    """The same layers behind a (1, ...) input: static shapes for the converter and the engine."""
    inp = lib.Input(shape=shape, batch_size=1, name="window")
    return lib.Model(inp, model(inp, training=False))
