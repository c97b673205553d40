"""Camera frame → model input, in one place for both the agent and the conversion tool.

The conversion tool trains on ``normalize(resize(img))`` and calibrates int8 quantization on it;
the agent feeds ``quantize(resize(frame))``. Both go through :func:`resize` and the same
per-pixel table built by :func:`make_table`, so the two paths agree to the last integer.

Why a lookup table: real = (pixel - mean) / std followed by q = round(real / scale + zero_point)
maps each of the 256 possible pixel values to one output value per channel. A 256-entry table
applied with ``cv2.LUT`` does normalisation, quantization and clipping in one pass with no float
temporaries, and writes straight into the interpreter's input tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import cv2
import numpy as np

from ..manifest import ImageInput

LETTERBOX_FILL: Final = 128  # grey ≈ the mean: padding reads as "nothing" after normalisation

_DTYPE_RANGE: Final = {
    np.dtype(np.uint8): (0, 255),
    np.dtype(np.int8): (-128, 127),
}


def _interpolation(src_h: int, src_w: int, dst_h: int, dst_w: int) -> int:
    # INTER_AREA is the right filter when shrinking (no aliasing) and INTER_LINEAR when growing.
    return cv2.INTER_AREA if dst_h < src_h or dst_w < src_w else cv2.INTER_LINEAR


def _scale(img: np.ndarray, dst_w: int, dst_h: int) -> np.ndarray:
    """Resize to (dst_w, dst_h); shrinking in both directions goes through :func:`_shrink`."""
    src_h, src_w = img.shape[:2]
    if dst_w <= src_w and dst_h <= src_h:
        return _shrink(img, dst_w, dst_h)
    return cv2.resize(img, (dst_w, dst_h), interpolation=_interpolation(src_h, src_w, dst_h, dst_w))


def _shrink(img: np.ndarray, dst_w: int, dst_h: int) -> np.ndarray:
    """Area-filtered shrinking at a fraction of INTER_AREA's cost.

    Why: OpenCV's INTER_AREA at a non-integer ratio (640x480 → 224x224) takes ~5 ms on an x86
    core and several times that on a Pi — a quarter of a MobileNet invoke — while its exact 2x
    path takes ~0.3 ms. So halve with INTER_AREA (a true 2x2 box average) while the image is at
    least twice the target each way, then finish the remaining factor (< 2, where every source
    pixel still contributes) bilinearly. The result differs from one INTER_AREA pass by under one
    grey level on average, and is 6-7x cheaper; plain bilinear would alias (about 2.5x the error).
    """
    h, w = img.shape[:2]
    while w >= 2 * dst_w and h >= 2 * dst_h:
        img = img[: h - h % 2, : w - w % 2]  # drop an odd row/column: keeps OpenCV on its exact 2x path
        h, w = h // 2, w // 2
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    if (h, w) == (dst_h, dst_w):
        return img
    return cv2.resize(img, (dst_w, dst_h), interpolation=cv2.INTER_LINEAR)


def crop_box(src_h: int, src_w: int, dst_h: int, dst_w: int) -> tuple[int, int, int, int]:
    """The centred region of the source with the destination's aspect ratio: (y0, y1, x0, x1)."""
    if src_w * dst_h > src_h * dst_w:  # source is wider: trim the sides
        w = max(1, round(src_h * dst_w / dst_h))
        x0 = (src_w - w) // 2
        return 0, src_h, x0, x0 + w
    h = max(1, round(src_w * dst_h / dst_w))
    y0 = (src_h - h) // 2
    return y0, y0 + h, 0, src_w


def resize(frame: np.ndarray, spec: ImageInput) -> np.ndarray:
    """BGR (or grey) uint8 frame of any size → uint8 HxWxC in the model's colour order and size."""
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxWx3 uint8 image, got {frame.dtype} {frame.shape}")
    dst_h, dst_w = spec.height, spec.width
    src_h, src_w = frame.shape[:2]
    if spec.resize == "center_crop":
        y0, y1, x0, x1 = crop_box(src_h, src_w, dst_h, dst_w)
        frame = frame[y0:y1, x0:x1]  # a view: no copy
        src_h, src_w = frame.shape[:2]
    if spec.resize == "letterbox":
        scale = min(dst_w / src_w, dst_h / src_h)
        w, h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
        inner = _scale(frame, w, h)
        if inner.ndim == 2:
            inner = inner[:, :, None]
        out = np.full((dst_h, dst_w, inner.shape[2]), LETTERBOX_FILL, np.uint8)
        y0, x0 = (dst_h - h) // 2, (dst_w - w) // 2
        out[y0 : y0 + h, x0 : x0 + w] = inner
        small = out
    elif (src_h, src_w) == (dst_h, dst_w):
        small = frame
    else:
        small = _scale(frame, dst_w, dst_h)
        if small.ndim == 2:
            small = small[:, :, None]
    return _to_color_order(small, spec)


def _to_color_order(img: np.ndarray, spec: ImageInput) -> np.ndarray:
    channels = img.shape[2]
    if channels == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        channels = 3
    if spec.color_order == "GRAY":
        if channels == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None]
        return img if spec.channels == 1 else np.repeat(img, spec.channels, axis=2)
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
    if spec.color_order == "RGB":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def make_table(spec: ImageInput, dtype: np.dtype, scale: float = 0.0, zero_point: int = 0) -> np.ndarray:
    """A (256, C) table: pixel value → model input value, for each channel.

    ``scale == 0`` means the model takes float input (no quantization): the table holds the
    normalised floats. Otherwise values are quantized with the model's own parameters and
    clipped to the dtype's range, exactly as TFLite's converter calibrated them.
    """
    dtype = np.dtype(dtype)
    pixels = np.arange(256, dtype=np.float64)[:, None]
    real = (pixels - np.asarray(spec.mean, np.float64)) / np.asarray(spec.std, np.float64)
    if dtype == np.float32 or scale == 0.0:
        if dtype != np.float32:
            raise ValueError(f"a {dtype} input needs quantization parameters (scale is 0)")
        return real.astype(np.float32)
    if dtype not in _DTYPE_RANGE:
        raise ValueError(f"unsupported input type {dtype}")
    lo, hi = _DTYPE_RANGE[dtype]
    q = np.clip(np.round(real / scale + zero_point), lo, hi)
    return q.astype(dtype)


Fill = Callable[[np.ndarray, np.ndarray], None]


def make_fill(table: np.ndarray) -> Fill:
    """A function ``fill(rgb_uint8_hwc, out)`` that writes the table lookup of an image into ``out``
    (an interpreter input view of shape (1, H, W, C) or (H, W, C)) without allocating."""
    channels = table.shape[1]
    same = bool(np.all(table == table[:, :1]))
    if table.dtype == np.float32:
        flat = np.ascontiguousarray(table[:, 0]) if same else None

        def fill_float(img: np.ndarray, out: np.ndarray) -> None:
            dst = out.reshape(img.shape)
            if flat is not None:
                np.take(flat, img, out=dst)
            else:
                for c in range(channels):
                    np.take(table[:, c], img[:, :, c], out=dst[:, :, c])

        return fill_float
    # cv2.LUT works on uint8 bytes: reinterpret an int8 table and output as uint8, bit for bit.
    if same:
        lut = np.ascontiguousarray(table[:, 0].view(np.uint8))
    else:
        lut = np.ascontiguousarray(table.view(np.uint8).reshape(256, 1, channels))

    def fill_int(img: np.ndarray, out: np.ndarray) -> None:
        cv2.LUT(img, lut, dst=out.reshape(img.shape).view(np.uint8))

    return fill_int


def normalize(rgb: np.ndarray, spec: ImageInput) -> np.ndarray:
    """uint8 image(s) (..., H, W, C) in model colour order → float32 (x - mean) / std, the values the
    float model trains and calibrates on; computed from the same table the agent uses."""
    table = make_table(spec, np.dtype(np.float32))
    return table[rgb, np.arange(table.shape[1])]


def quantize(rgb: np.ndarray, table: np.ndarray) -> np.ndarray:
    """uint8 image in model colour order → the model's input dtype, via the table (allocates)."""
    out = np.empty(rgb.shape, table.dtype)
    make_fill(table)(rgb, out)
    return out
