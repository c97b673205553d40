"""The head's last two layers re-fitted in numpy: what enrollment trains when the head has them.

A head on the speech embedding ends ``max-pool → Dense + ReLU → Dense`` (``train-voice``). Re-fitting
only the last layer on five takes per command could not move the person's words away from their
other speech: the 64 features it reads were made for the training voices. Here the dense ReLU
layer before it is fitted too, by backpropagation through both, on the int8 model's own inputs to
that layer (read back from LiteRT), with the ReLU's upper end where the layer's int8 output
saturates, so what is fitted is what the int8 model will compute.

Full batch, Adam with a cosine schedule, no randomness: the same takes give the same model.
Class-balanced (``_unknown_`` weighed as ``class_share`` says, as ``train-voice`` weighs it).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

DEFAULT_STEPS: Final = 400
DEFAULT_LR: Final = 0.03  # Adam, in the layers' own units (features of a few units, weights well under 1)
INPUT_REACH: Final = 16.0  # sqrt(fan-in) x rms of the inputs up to which W1 takes the full rate (a head: 8 x ~1.4)


def cross_entropy(z: np.ndarray, y: np.ndarray, onehot: np.ndarray, sw: np.ndarray) -> tuple[float, np.ndarray]:
    """The weighted softmax cross-entropy of logits ``z`` (n, classes) and its gradient by the logits."""
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = float(-(sw * np.log(p[np.arange(len(y)), y] + 1e-12)).sum())
    return loss, (p - onehot) * sw[:, None]


def adam_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, rate: float, step: int) -> None:
    """One Adam update in place (moments 0.9 / 0.999, bias-corrected): the enrollment fits' optimiser,
    written out in numpy because the Pi has no TensorFlow."""
    m *= 0.9
    m += 0.1 * grad
    v *= 0.999
    v += 0.001 * grad ** 2
    param -= rate * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)


def fit_two_layers(x: np.ndarray, y: np.ndarray, hidden: tuple[np.ndarray, np.ndarray],
                   last: tuple[np.ndarray, np.ndarray], ceiling: float, steps: int = DEFAULT_STEPS,
                   lr: float = DEFAULT_LR, pull: float = 0.0, class_share: np.ndarray | None = None,
                   progress: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """(W1, b1, W2, b2, final loss) for ``logits = W2 @ clip(W1 @ x + b1, 0, ceiling) + b2``, from
    the given layers, ``pull * |θ - θ_start|^2`` holding every parameter near where it started."""
    w1, b1 = (a.astype(np.float64).copy() for a in hidden)
    w2, b2 = (a.astype(np.float64).copy() for a in last)
    classes = w2.shape[0]
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    cw = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    if class_share is not None:
        cw = cw * class_share
    sw = cw[y] / cw[y].sum()
    onehot = np.eye(classes)[y]
    x = x.astype(np.float64)
    params = [w1, b1, w2, b2]
    start = [p.copy() for p in params]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    # a step of W1 moves each hidden unit by about lr x fan-in^0.5 x |x|: for inputs wider or larger
    # than a head's 64 pooled features of about 1 it is scaled down, or every unit dies at once
    rates = [lr * min(1.0, INPUT_REACH / (np.sqrt(x.shape[1]) * max(float(np.sqrt(np.mean(x ** 2))), 1e-9))),
             lr, lr, lr]
    loss = 0.0
    for step in range(1, steps + 1):
        a = x @ w1.T + b1
        h = np.clip(a, 0.0, ceiling)
        loss, g = cross_entropy(h @ w2.T + b2, y, onehot, sw)
        gh = (g @ w2) * ((a > 0) & (a < ceiling))
        grads = [gh.T @ x, gh.sum(axis=0), g.T @ h, g.sum(axis=0)]
        decay = 0.5 * (1 + np.cos(np.pi * (step - 1) / steps))
        for param, grad, s0, m, v, rate in zip(params, grads, start, m1, m2, rates, strict=True):
            adam_step(param, grad + 2 * pull * (param - s0), m, v, rate * decay, step)
        if progress is not None and (step % max(1, steps // 5) == 0 or step == steps):
            progress(f"enroll: training step {step} of {steps}, cross-entropy {loss:.3f}")
    return (w1.astype(np.float32), b1.astype(np.float32), w2.astype(np.float32), b2.astype(np.float32), loss)
