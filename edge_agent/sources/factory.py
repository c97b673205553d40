"""Config → the one source it asks for, picked from an explicit table of kinds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final

import cv2
import numpy as np

from ..config import Config
from ..errors import SourceError
from .base import Source
from .folder import FolderSource
from .opencv import OpenCVSource
from .picamera import PiCameraSource

STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")
FOLDER_REALTIME_FPS: Final = 10.0  # a folder of images: ten frames a second, like a slow camera (media time)


class Paced:
    """``--realtime``: hand out a file's frames at the file's own rate, like a camera would."""

    def __init__(self, inner: Source, fps: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.live = False
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.media_period = getattr(inner, "media_period", None)
        self._next = 0.0

    def open(self) -> None:
        self.inner.open()
        self._next = time.monotonic()

    def read(self) -> np.ndarray | None:
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + self.period, time.monotonic() - self.period)
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


def video_fps(path: str) -> float:
    cap = cv2.VideoCapture(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    return fps if 0 < fps < 1000 else 25.0


def make_source(config: Config) -> Source:
    s = config.source
    if s.picamera:
        return PiCameraSource(s.width, s.height)
    if s.source:
        if s.source.lower().startswith(STREAM_SCHEMES):
            return OpenCVSource(s.source, live=True)
        path = Path(s.source)
        if path.is_dir():
            folder = FolderSource(path, loop=s.loop, media_period=1.0 / FOLDER_REALTIME_FPS)
            return Paced(folder, FOLDER_REALTIME_FPS) if s.realtime else folder
        if not path.exists():
            raise SourceError(f"source {s.source}: no such file or folder")
        fps = video_fps(str(path))
        video = OpenCVSource(str(path), live=False, loop=s.loop, media_period=1.0 / fps)
        return Paced(video, fps) if s.realtime else video
    camera = s.camera if s.camera is not None else "0"
    target: int | str = int(camera) if camera.isdigit() else camera
    return OpenCVSource(target, live=True, width=s.width, height=s.height, fps=s.fps or None)
