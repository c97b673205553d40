"""Config → the one source it asks for, picked from an explicit table of kinds."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..errors import SourceError
from .base import Source
from .folder import FolderSource
from .opencv import OpenCVSource
from .picamera import PiCameraSource

STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


def make_source(config: Config) -> Source:
    s = config.source
    if s.picamera:
        return PiCameraSource(s.width, s.height)
    if s.source:
        if s.source.lower().startswith(STREAM_SCHEMES):
            return OpenCVSource(s.source, live=True)
        path = Path(s.source)
        if path.is_dir():
            return FolderSource(path, loop=s.loop)
        if not path.exists():
            raise SourceError(f"source {s.source}: no such file or folder")
        return OpenCVSource(str(path), live=False, loop=s.loop)
    camera = s.camera if s.camera is not None else "0"
    target: int | str = int(camera) if camera.isdigit() else camera
    return OpenCVSource(target, live=True, width=s.width, height=s.height, fps=s.fps or None)
