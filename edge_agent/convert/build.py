"""MobileNet v1 / v2 / v3-small / v3-large at a width multiplier and input resolution.

The backbones are ``keras.applications`` with ``weights=None`` (nothing is downloaded) or a local
weights file; the classifier head is added here and reproduces each architecture's published top
(v1/v2: global pool → dropout → dense; v3: global pool → 1x1 conv 1024/1280 → hard-swish →
dropout → 1x1 conv), so ``describe`` and ``train`` count the same network the papers do.

The model's input is the *already normalised* float image (``edge_agent.preprocess.image``
does (x - mean) / std): no Rescaling layer inside, so the int8 input quantization and the
agent's lookup table describe one and the same mapping. v3's built-in preprocessing is off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from ..errors import ConfigError, ModelError
from . import _tf

ARCHS: Final = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
ALIASES: Final = {
    "v1": "mobilenet_v1",
    "v2": "mobilenet_v2",
    "v3-small": "mobilenet_v3_small",
    "v3-large": "mobilenet_v3_large",
    "v3_small": "mobilenet_v3_small",
    "v3_large": "mobilenet_v3_large",
}
ALPHA_RANGE: Final = (0.25, 1.0)
# 96–224 is the range the papers and the shipped ImageNet weights cover; Keras accepts down to 32,
# which the tests use to stay fast on a 2-core machine.
RESOLUTION_RANGE: Final = (32, 224)
V3_LAST_POINT: Final = {"mobilenet_v3_small": 1024, "mobilenet_v3_large": 1280}
# BatchNorm momentum for training from scratch. Keras' MobileNet v2/v3 use 0.999, tuned for
# ImageNet's 10^5+ steps; with a few hundred steps the moving averages barely leave their
# initial values and the model evaluates as noise. 0.9 settles within ~50 steps.
BN_MOMENTUM: Final = 0.9


def canonical_arch(name: str) -> str:
    arch = ALIASES.get(name.lower(), name.lower().replace("-", "_"))
    if arch not in ARCHS:
        raise ConfigError(f"--arch '{name}': choose one of {', '.join(ARCHS)} (or v1, v2, v3-small, v3-large)")
    return arch


def check_shape(alpha: float, resolution: int) -> None:
    lo, hi = ALPHA_RANGE
    if not lo <= alpha <= hi:
        raise ConfigError(f"--alpha {alpha}: the width multiplier must be between {lo} and {hi}")
    rlo, rhi = RESOLUTION_RANGE
    if not rlo <= resolution <= rhi:
        raise ConfigError(f"--resolution {resolution}: must be between {rlo} and {rhi} pixels")


def _backbone(keras: Any, arch: str, alpha: float, shape: tuple[int, int, int], weights: str | None) -> Any:
    common = {"input_shape": shape, "alpha": alpha, "include_top": False, "weights": weights}
    if arch == "mobilenet_v1":
        return keras.applications.MobileNet(**common)
    if arch == "mobilenet_v2":
        return keras.applications.MobileNetV2(**common)
    if arch == "mobilenet_v3_small":
        return keras.applications.MobileNetV3Small(include_preprocessing=False, **common)
    return keras.applications.MobileNetV3Large(include_preprocessing=False, **common)


def build(
    arch: str,
    alpha: float,
    resolution: int,
    num_classes: int,
    *,
    weights: Path | None = None,
    freeze_base: bool = False,
    dropout: float = 0.2,
    channels: int = 3,
) -> Any:
    """A compiled-ready (uncompiled) Keras classifier: normalised image in, softmax out."""
    arch = canonical_arch(arch)
    check_shape(alpha, resolution)
    keras = _tf.keras()
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    if weights is not None and not weights.is_file():
        raise ConfigError(f"--weights {weights}: file not found (weights are never downloaded)")
    shape = (resolution, resolution, channels)
    try:
        base = _backbone(keras, arch, alpha, shape, str(weights) if weights else None)
    except ValueError as e:
        raise ModelError(f"cannot build {arch} alpha={alpha} at {resolution}px: {_first_line(e)}") from None
    except OSError as e:
        raise ModelError(f"--weights {weights}: cannot load ({_first_line(e)})") from None
    if weights is None:
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = BN_MOMENTUM
    base.trainable = not freeze_base
    inputs = keras.Input(shape=shape, name="image")
    x = base(inputs, training=False) if freeze_base else base(inputs)
    if arch in V3_LAST_POINT:
        x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="pool")(x)
        x = keras.layers.Conv2D(V3_LAST_POINT[arch], 1, use_bias=True, name="conv_head")(x)
        x = keras.layers.Activation("hard_swish", name="conv_head_act")(x)
        x = keras.layers.Dropout(dropout, name="dropout")(x)
        x = keras.layers.Conv2D(num_classes, 1, name="logits")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        outputs = keras.layers.Activation("softmax", name="probs")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        x = keras.layers.Dropout(dropout, name="dropout")(x)
        outputs = keras.layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=f"{arch}_{alpha:g}_{resolution}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
