"""Raspberry Pi camera through picamera2 (libcamera), imported only when asked for."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SourceError
from .base import SourceLost

INSTALL_HINT = (
    "picamera2 is not installed: on Raspberry Pi OS run 'sudo apt install python3-picamera2' "
    "and create the venv with --system-site-packages"
)


class PiCameraSource:
    live = True

    def __init__(self, width: int = 640, height: int = 480) -> None:
        self.name = "picamera"
        self.size = (width, height)
        self._cam: Any = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2  # lazy: only Pi users have it
        except ImportError:
            raise SourceError(INSTALL_HINT) from None
        try:
            cam = Picamera2()
            # BGR888 in libcamera's naming is laid out B,G,R in memory... as RGB888 is; picamera2
            # documents "RGB888" as giving a BGR-ordered numpy array, which is what OpenCV expects.
            config = cam.create_video_configuration(main={"size": self.size, "format": "RGB888"})
            cam.configure(config)
            cam.start()
        except (IndexError, RuntimeError, OSError) as e:
            raise SourceError(f"picamera: cannot start the camera ({e})") from None
        self._cam = cam

    def read(self) -> np.ndarray | None:
        try:
            frame: np.ndarray = self._cam.capture_array("main")
        except Exception as e:  # libcamera raises assorted errors when the ribbon is pulled
            raise SourceLost(f"picamera: {e}") from None
        return frame

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            finally:
                self._cam = None
