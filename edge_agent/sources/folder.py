"""A folder of images, read in name order: for testing a model on a user's own photos."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import cv2
import numpy as np

from ..errors import SourceError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class FolderSource:
    live = False

    def __init__(self, path: Path, loop: bool = False, media_period: float | None = None) -> None:
        self.path = path
        self.media_period = media_period  # seconds between two images on the media clock (the policy's)
        self.loop = loop
        self.name = f"folder {path}"
        self._files: list[Path] = []
        self._pos = 0

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"{self.name}: not a folder")
        self._files = sorted(p for p in self.path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f"{self.name}: no images in it ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self._pos = 0

    def read(self) -> np.ndarray | None:
        while True:
            if self._pos >= len(self._files):
                if not self.loop:
                    return None
                self._pos = 0
            path = self._files[self._pos]
            self._pos += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return image
            logger.warning("skipping %s: not a readable image", path)

    def close(self) -> None:
        self._files = []
