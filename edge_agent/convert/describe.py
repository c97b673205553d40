"""Parameters and multiply-adds of an architecture, counted from the built Keras model's layers.

Why count layers rather than use a formula: the same counter then works for v1, v2 and v3
(inverted residuals, squeeze-excite) and for any imported notebook model, and it is checked
against the MobileNet v1 paper's Table 6 (569 / 325 / 149 / 41 M mult-adds, 4.2 / 2.6 / 1.3 /
0.5 M parameters at 224 px, 1000 classes). Only convolutions and dense layers are counted, as
in the paper; pooling, activations, batch norm (folded into the conv at conversion) and
element-wise ops are not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Final

from . import _tf
from .build import build, canonical_arch

# MobileNet v1 paper (Howard et al. 2017), Table 6: width → (million mult-adds, million params).
PAPER_V1_224: Final = {1.0: (569.0, 4.2), 0.75: (325.0, 2.6), 0.5: (149.0, 1.3), 0.25: (41.0, 0.5)}


@dataclasses.dataclass(frozen=True)
class Description:
    arch: str
    alpha: float
    resolution: int
    num_classes: int
    params: int
    trainable_params: int
    macs: int
    macs_by_kind: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _layers(model: Any) -> Iterator[Any]:
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:  # a nested model (the backbone)
            yield from _layers(layer)
        else:
            yield layer


def count_macs(model: Any) -> dict[str, int]:
    """Multiply-accumulates per kind of layer for one image (batch dimension ignored)."""
    keras = _tf.keras()
    out: dict[str, int] = {"conv": 0, "depthwise": 0, "dense": 0}
    for layer in _layers(model):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            out["depthwise"] += h * w * c * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            c_in = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            out["conv"] += h * w * c_out * kh * kw * (c_in // layer.groups)
        elif isinstance(layer, keras.layers.Dense):
            rows = 1
            for d in layer.input.shape[1:-1]:
                rows *= d
            out["dense"] += rows * layer.input.shape[-1] * layer.units
    return out


def describe_model(model: Any, arch: str = "custom", alpha: float = 0.0, num_classes: int = 0) -> Description:
    macs = count_macs(model)
    resolution = int(model.inputs[0].shape[1] or 0)
    trainable = sum(int(w.shape.num_elements() if hasattr(w.shape, "num_elements") else _size(w.shape))
                    for w in model.trainable_weights)
    return Description(
        arch=arch,
        alpha=alpha,
        resolution=resolution,
        num_classes=num_classes or int(model.outputs[0].shape[-1]),
        params=int(model.count_params()),
        trainable_params=trainable,
        macs=sum(macs.values()),
        macs_by_kind=macs,
    )


def _size(shape: Any) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def describe(arch: str, alpha: float, resolution: int, num_classes: int = 1000) -> Description:
    """Build the architecture (random weights, nothing downloaded) and count it."""
    arch = canonical_arch(arch)
    model = build(arch, alpha, resolution, num_classes)
    d = describe_model(model, arch, alpha, num_classes)
    _tf.keras().backend.clear_session()
    return d


def paper_check(d: Description) -> dict[str, Any] | None:
    """For MobileNet v1 at 224 px / 1000 classes and a width in the paper's table: our figures next
    to the paper's. Parameters are compared at the paper's printed precision (0.1 M): the 0.25
    model has 0.47 M parameters, which the paper prints as 0.5."""
    if d.arch != "mobilenet_v1" or d.resolution != 224 or d.num_classes != 1000 or d.alpha not in PAPER_V1_224:
        return None
    paper_macs, paper_params = PAPER_V1_224[d.alpha]
    macs_m, params_m = d.macs / 1e6, d.params / 1e6
    return {
        "paper_macs_m": paper_macs,
        "paper_params_m": paper_params,
        "macs_m": round(macs_m, 1),
        "params_m": round(params_m, 3),
        "macs_error_pct": round(100 * (macs_m - paper_macs) / paper_macs, 2),
        "params_error_pct": round(100 * (params_m - paper_params) / paper_params, 2),
        # the paper prints parameters to 0.1 M; compared at that precision
        "params_error_at_paper_precision_pct": round(100 * (round(params_m, 1) - paper_params) / paper_params, 2),
    }


def format_table(rows: list[Description]) -> str:
    lines = [f"{'arch':<20} {'alpha':>5} {'res':>4} {'classes':>7} {'params':>10} {'M mult-adds':>11}  paper"]
    for d in rows:
        check = paper_check(d)
        ref = (f"{check['paper_macs_m']:.0f} M MACs / {check['paper_params_m']} M params "
               f"({check['macs_error_pct']:+.1f} % / {check['params_error_pct']:+.1f} %, "
               f"{check['params_error_at_paper_precision_pct']:+.1f} % at 0.1 M)") if check else ""
        lines.append(
            f"{d.arch:<20} {d.alpha:>5g} {d.resolution:>4} {d.num_classes:>7} "
            f"{d.params / 1e6:>9.3f}M {d.macs / 1e6:>11.1f}  {ref}"
        )
    return "\n".join(lines)
