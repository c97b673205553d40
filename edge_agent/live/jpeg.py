"""Frames → small JPEGs, for the live page and the Home Assistant snapshot (OpenCV, already a dependency)."""

from __future__ import annotations

import cv2
import numpy as np


def encode(image: np.ndarray, max_width: int, quality: int) -> bytes:
    """A BGR frame scaled down to at most ``max_width`` pixels wide (aspect kept), as JPEG."""
    h, w = image.shape[:2]
    if w > max_width:
        image = cv2.resize(image, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
