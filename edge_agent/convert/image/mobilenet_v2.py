"""torchvision's MobileNetV2, rebuilt in Keras layer for layer, so its ImageNet state dict loads.

Why not ``keras.applications.MobileNetV2``: two details make torchvision's weights give noise in
it. Keras pads stride-2 convolutions asymmetrically (one pixel bottom/right, TensorFlow's "same"),
torch pads one pixel on every side; and Keras' batch norm epsilon is 1e-3 where torch's is 1e-5.
Both are wrong by a little at every layer and by a lot after 52 of them. Here every 3x3
convolution has an explicit symmetric ``ZeroPadding2D(1)`` and every batch norm epsilon 1e-5;
layer names are torch's parameter prefixes with dots as underscores, so :func:`load` is a plain
name lookup and a missing or misshapen tensor is an error that names it.

The network: ``features`` (stem conv, 17 inverted-residual blocks, 1x1 conv to 1280) as one
nested Keras model (frozen or partly unfrozen as a unit), then global average pool, dropout and a
dense classifier, as torchvision's ``classifier``. The input is the normalised image
(torchvision: RGB scaled to [0, 1], minus ImageNet's mean, over its std).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from ...errors import ConfigError
from .. import _tf

# torchvision mobilenet_v2: (expansion t, output channels c, repeats n, first stride s)
SETTINGS: Final = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                   (6, 320, 1, 1))
EPSILON: Final = 1e-5  # torch's BatchNorm2d default
LAST_CHANNELS: Final = 1280
BLOCKS: Final = 19  # features.0 (stem) .. features.18 (1x1 to 1280)
# torchvision's preprocessing, in the pixel units the manifest uses: (pixel - mean) / std
TORCH_MEAN: Final = (0.485 * 255, 0.456 * 255, 0.406 * 255)
TORCH_STD: Final = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding (never below 90 % of ``v``)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class _Builder:
    def __init__(self, keras: Any, momentum: float) -> None:
        self.k = keras
        self.momentum = momentum

    def conv_bn(self, x: Any, prefix: str, filters: int, kernel: int, stride: int, depthwise: bool, relu: bool) -> Any:
        """torch ``Conv2d(bias=False)`` + ``BatchNorm2d`` (+ ``ReLU6``); conv at ``prefix.0``, bn ``prefix.1``."""
        return self.conv_bn_named(x, f"{prefix}_0", f"{prefix}_1", filters, kernel, stride, depthwise, relu)

    def conv_bn_named(self, x: Any, conv: str, bn: str, filters: int, kernel: int, stride: int, depthwise: bool,
                      relu: bool) -> Any:
        k = self.k
        if kernel > 1:
            x = k.layers.ZeroPadding2D(kernel // 2, name=f"{conv}_pad")(x)
        if depthwise:
            x = k.layers.DepthwiseConv2D(kernel, strides=stride, padding="valid", use_bias=False, name=conv)(x)
        else:
            x = k.layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False, name=conv)(x)
        x = k.layers.BatchNormalization(epsilon=EPSILON, momentum=self.momentum, name=bn)(x)
        return k.layers.ReLU(6.0, name=f"{bn}_relu6")(x) if relu else x

    def block(self, x: Any, index: int, c_in: int, c_out: int, stride: int, t: int) -> Any:
        p = f"features_{index}_conv"
        hidden = round(c_in * t)
        y = x
        i = 0
        if t != 1:
            y = self.conv_bn(y, f"{p}_{i}", hidden, 1, 1, False, True)
            i += 1
        y = self.conv_bn(y, f"{p}_{i}", hidden, 3, stride, True, True)
        y = self.conv_bn_named(y, f"{p}_{i + 1}", f"{p}_{i + 2}", c_out, 1, 1, False, False)
        if stride == 1 and c_in == c_out:
            y = self.k.layers.Add(name=f"features_{index}_add")([x, y])
        return y


def features(resolution: int, alpha: float = 1.0, momentum: float = 0.99, channels: int = 3) -> Any:
    """The convolutional base as a Keras model named ``features``: normalised image → (h, w, 1280)."""
    keras = _tf.keras()
    b = _Builder(keras, momentum)
    inputs = keras.Input((resolution, resolution, channels), name="image")
    c_in = make_divisible(32 * alpha)
    x = b.conv_bn(inputs, "features_0", c_in, 3, 2, False, True)
    index = 1
    for t, c, n, s in SETTINGS:
        c_out = make_divisible(c * alpha)
        for r in range(n):
            x = b.block(x, index, c_in, c_out, s if r == 0 else 1, t)
            c_in = c_out
            index += 1
    x = b.conv_bn(x, f"features_{index}", make_divisible(LAST_CHANNELS * max(1.0, alpha)), 1, 1, False, True)
    return keras.Model(inputs, x, name="features")


def classifier(base: Any, num_classes: int, dropout: float = 0.2, train_base: bool = True) -> Any:
    """``base`` + global pool + dropout + dense softmax (torchvision's ``classifier.1``).

    ``train_base=False`` calls the base in inference mode: its batch-norm statistics stay the
    ImageNet ones even while some of its layers are unfrozen (the usual fine-tuning recipe: a few
    hundred photos cannot re-estimate them)."""
    keras = _tf.keras()
    inputs = keras.Input(base.input_shape[1:], name="image")
    x = base(inputs, training=False) if not train_base else base(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=f"mobilenet_v2_{base.input_shape[1]}")


def _torch_name(layer_name: str) -> str:
    return layer_name.replace("_", ".")


def load(base: Any, state: dict[str, np.ndarray], head: Any = None) -> list[str]:
    """Copy a torchvision MobileNetV2 state dict into ``base`` (and ``classifier.1`` into ``head``,
    a Dense layer, when given). Returns the state-dict keys that were not used (the 1000-class
    classifier when no head is given). Any layer without its tensors, or with a tensor of another
    shape, is an error naming both."""
    keras = _tf.keras()
    used: set[str] = set()

    def take(key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in state:
            raise ConfigError(f"weights: no tensor '{key}' in the state dict: not torchvision's MobileNetV2")
        value = np.asarray(state[key], np.float32)
        used.add(key)
        return value

    for layer in base.layers:
        prefix = _torch_name(layer.name)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            w = take(f"{prefix}.weight", ())  # torch (C, 1, kh, kw) → Keras (kh, kw, C, 1)
            _assign(layer, [w.transpose(2, 3, 0, 1)], prefix)
        elif isinstance(layer, keras.layers.Conv2D):
            w = take(f"{prefix}.weight", ())  # torch (out, in, kh, kw) → Keras (kh, kw, in, out)
            _assign(layer, [w.transpose(2, 3, 1, 0)], prefix)
        elif isinstance(layer, keras.layers.BatchNormalization):
            _assign(layer, [take(f"{prefix}.{n}", ()) for n in ("weight", "bias", "running_mean", "running_var")],
                    prefix)
            used.add(f"{prefix}.num_batches_tracked")
    if head is not None:
        _assign(head, [take("classifier.1.weight", ()).T, take("classifier.1.bias", ())], "classifier.1")
    return sorted(k for k in state if k not in used)


def _assign(layer: Any, values: list[np.ndarray], prefix: str) -> None:
    want = [tuple(w.shape) for w in layer.get_weights()]
    got = [tuple(v.shape) for v in values]
    if want != got:
        raise ConfigError(f"weights: '{prefix}' has shapes {got} but this network needs {want} "
                          "(torchvision MobileNetV2 at width 1.0 only)")
    layer.set_weights(values)


def imagenet_classifier(resolution: int, state: dict[str, np.ndarray]) -> Any:
    """The full 1000-class ImageNet network with ``state`` loaded: what :mod:`.imagenet` checks."""
    base = features(resolution)
    model = classifier(base, int(state["classifier.1.bias"].shape[0]) if "classifier.1.bias" in state else 1000,
                       dropout=0.0, train_base=False)
    load(base, state, model.get_layer("probs"))
    return model


def unfreeze_top(base: Any, blocks: int) -> int:
    """Make the convolutions of the last ``blocks`` of the 19 ``features`` blocks trainable.
    Returns the number of trainable weights tensors, so a caller can say what it trains."""
    keras = _tf.keras()
    base.trainable = True
    first = BLOCKS - blocks
    count = 0
    for layer in base.layers:
        parts = layer.name.split("_")
        index = int(parts[1]) if len(parts) > 1 and parts[0] == "features" and parts[1].isdigit() else -1
        # batch norm stays frozen: a trainable Keras BatchNormalization runs in training mode (batch
        # statistics, moving averages updated) whatever the enclosing call says, and a few hundred
        # photos would overwrite ImageNet's statistics with noise
        layer.trainable = index >= first and not isinstance(layer, keras.layers.BatchNormalization)
        if layer.trainable:
            count += len(layer.trainable_weights)
    return count
