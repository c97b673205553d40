"""The change gate: skip inference on a frame that looks like the last one inferred.

Most scenes a Pi watches are static (a bin, a road at night). A 32×24 grey thumbnail costs a
fraction of a millisecond; when its mean absolute difference from the thumbnail of the last
*inferred* frame is below the threshold (grey levels, 0-255), the frame is not inferred and the
last scores stand for it, so smoothing, the publish policy and its heartbeat go on as before.
Comparing with the last inferred frame, not the previous one, means a slow drift (dusk) adds up
and is inferred once it is large enough. A real change is inferred on the frame it appears in.
"""

from __future__ import annotations

from typing import Final

import cv2
import numpy as np

THUMB_SIZE: Final = (32, 24)  # width, height: enough for "did anything move", cheap at 640x480


def thumbnail(image: np.ndarray) -> np.ndarray:
    """BGR or grey frame → 24×32 grey, float32, averaged over each cell (INTER_AREA)."""
    small = cv2.resize(image, THUMB_SIZE, interpolation=cv2.INTER_AREA)
    if small.ndim == 3:
        small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return small.astype(np.float32)


class ChangeGate:
    """``changed(image)``: infer this frame? Always True for the first, and when off (0)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._last: np.ndarray | None = None
        self.skipped = 0

    def changed(self, image: np.ndarray) -> bool:
        if self.threshold <= 0:
            return True
        thumb = thumbnail(image)
        if self._last is not None and float(np.mean(np.abs(thumb - self._last))) < self.threshold:
            self.skipped += 1
            return False
        self._last = thumb
        return True
