"""PyTorch ``.pth`` files and torchvision MobileNetV2 state dicts made without torch, for tests.

The files are written opcode by opcode, as ``torch.save`` writes them (protocol 2; the same
globals, persistent ids and storage layout), so the reader is tested against torch's format and
not against a pickle of our own classes. A reference forward pass in numpy with torch's semantics
(symmetric padding, batch-norm epsilon 1e-5) checks the Keras port independently of it.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

STORAGE = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _int(v: int) -> bytes:
    return b"J" + struct.pack("<i", v)


def _tuple(values: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def state_pickle(state: dict[str, np.ndarray], extra_global: tuple[str, str] | None = None) -> bytes:
    """The pickle torch writes for an OrderedDict of tensors; storage i holds tensor i."""
    out = b"\x80\x02" + _global("collections", "OrderedDict") + b")R" + b"("
    for i, (name, arr) in enumerate(state.items()):
        arr = np.asarray(arr)
        strides = tuple(s // arr.itemsize for s in arr.strides)
        pid = b"(" + _str("storage") + _global("torch", STORAGE[arr.dtype]) + _str(str(i)) + _str("cpu") + _int(
            arr.size) + b"t" + b"Q"
        hooks = _global("collections", "OrderedDict") + b")R"
        out += _str(name) + _global("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + _int(0) + _tuple(
            arr.shape) + _tuple(strides) + b"\x89" + hooks + b"tR"
    if extra_global is not None:
        out += _str("evil") + _global(*extra_global) + b"(" + _str("true") + b"tR"
    return out + b"u."


def write_zip(state: dict[str, np.ndarray], path: Path, extra_global: tuple[str, str] | None = None) -> None:
    """torch >= 1.6's layout: ``archive/data.pkl`` + ``archive/data/<key>``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", state_pickle(state, extra_global))
        for i, arr in enumerate(state.values()):
            z.writestr(f"archive/data/{i}", _storage(arr))
        z.writestr("archive/version", "3\n")


def write_legacy(state: dict[str, np.ndarray], path: Path) -> None:
    """torch < 1.6's stream: magic, protocol, sys info, the state dict, keys, then raw storages."""
    import pickle

    with path.open("wb") as f:
        pickle.dump(LEGACY_MAGIC, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
        f.write(state_pickle(state))
        pickle.dump([str(i) for i in range(len(state))], f, protocol=2)
        for arr in state.values():
            f.write(struct.pack("<q", np.asarray(arr).size))
            f.write(_storage(arr))


def _storage(arr: np.ndarray) -> bytes:
    """The raw storage in memory order (C or Fortran), little-endian: what the strides describe."""
    a = np.asarray(arr)
    assert a.flags.c_contiguous or a.flags.f_contiguous
    return a.ravel(order="K").astype(a.dtype.newbyteorder("<")).tobytes()


# --- torchvision MobileNetV2: its state-dict layout and a numpy forward with torch semantics ---

SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1))


def _div(v: float) -> int:
    new = max(8, int(v + 4) // 8 * 8)
    return new + 8 if new < 0.9 * v else new


def layout(alpha: float) -> list[tuple]:
    """torchvision's modules in order: ('cbr', prefix, in, out, k, stride, groups, relu) or
    ('res', start/end markers) — enough to make a state dict and run it."""
    mods: list[tuple] = []
    c_in = _div(32 * alpha)
    mods.append(("cbr", "features.0.0", "features.0.1", 3, c_in, 3, 2, 1, True))
    i = 1
    for t, c, n, s in SETTINGS:
        c_out = _div(c * alpha)
        for r in range(n):
            stride = s if r == 0 else 1
            hidden = round(c_in * t)
            p = f"features.{i}.conv"
            mods.append(("begin", stride == 1 and c_in == c_out))
            j = 0
            if t != 1:
                mods.append(("cbr", f"{p}.{j}.0", f"{p}.{j}.1", c_in, hidden, 1, 1, 1, True))
                j += 1
            mods.append(("cbr", f"{p}.{j}.0", f"{p}.{j}.1", hidden, hidden, 3, stride, hidden, True))
            mods.append(("cbr", f"{p}.{j + 1}", f"{p}.{j + 2}", hidden, c_out, 1, 1, 1, False))
            mods.append(("end",))
            c_in = c_out
            i += 1
    mods.append(("cbr", f"features.{i}.0", f"features.{i}.1", c_in, _div(1280 * max(1.0, alpha)), 1, 1, 1, True))
    return mods


def random_state(alpha: float, classes: int | None, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = {}
    last = 0
    for m in layout(alpha):
        if m[0] != "cbr":
            continue
        _, conv, bn, c_in, c_out, k, _, groups, _ = m
        fan = c_in // groups * k * k
        state[f"{conv}.weight"] = (rng.standard_normal((c_out, c_in // groups, k, k)) / np.sqrt(fan)).astype(np.float32)
        state[f"{bn}.weight"] = rng.uniform(0.5, 1.5, c_out).astype(np.float32)
        state[f"{bn}.bias"] = rng.uniform(-0.2, 0.2, c_out).astype(np.float32)
        state[f"{bn}.running_mean"] = rng.uniform(-0.2, 0.2, c_out).astype(np.float32)
        state[f"{bn}.running_var"] = rng.uniform(0.5, 2.0, c_out).astype(np.float32)
        state[f"{bn}.num_batches_tracked"] = np.array(7, np.int64)
        last = c_out
    if classes:
        state["classifier.1.weight"] = (rng.standard_normal((classes, last)) / np.sqrt(last)).astype(np.float32)
        state["classifier.1.bias"] = rng.uniform(-0.1, 0.1, classes).astype(np.float32)
    return state


def _conv(x: np.ndarray, w: np.ndarray, stride: int, groups: int) -> np.ndarray:
    k = w.shape[-1]
    p = k // 2
    xp = np.pad(x, ((p, p), (p, p), (0, 0)))  # torch: the same padding on every side
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(0, 1))[::stride, ::stride]
    if groups == 1:
        return np.einsum("hwcij,ocij->hwo", win, w)
    return np.einsum("hwcij,cij->hwc", win, w[:, 0])


def forward(state: dict[str, np.ndarray], alpha: float, image: np.ndarray) -> np.ndarray:
    """torchvision's forward on one normalised HWC image → logits (or pooled features)."""
    x = image.astype(np.float64)
    stack: list[tuple[np.ndarray, bool]] = []
    for m in layout(alpha):
        if m[0] == "begin":
            stack.append((x, m[1]))
            continue
        if m[0] == "end":
            shortcut, residual = stack.pop()
            if residual:
                x = x + shortcut
            continue
        _, conv, bn, _, _, _, stride, groups, relu = m
        x = _conv(x, state[f"{conv}.weight"].astype(np.float64), stride, groups)
        x = (x - state[f"{bn}.running_mean"]) / np.sqrt(state[f"{bn}.running_var"] + 1e-5) * state[
            f"{bn}.weight"] + state[f"{bn}.bias"]
        if relu:
            x = np.clip(x, 0.0, 6.0)
    pooled = x.mean(axis=(0, 1))
    if "classifier.1.weight" not in state:
        return pooled
    return state["classifier.1.weight"].astype(np.float64) @ pooled + state["classifier.1.bias"]
