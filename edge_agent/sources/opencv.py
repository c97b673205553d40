"""OpenCV sources: a USB/V4L2 camera, a video file, or an RTSP/HTTP stream."""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path
from typing import Final

import cv2
import numpy as np

from ..errors import SourceError
from .base import SourceLost

logger = logging.getLogger(__name__)

STREAM_TIMEOUT_MS: Final = 5000  # a network camera silent this long is treated as unplugged
CAMERA_BUFFER_FRAMES: Final = 1  # keep the driver's queue short: we want the newest frame


def list_cameras() -> list[str]:
    return sorted(glob.glob("/dev/video*"))


def _camera_device(target: int | str) -> str | None:
    if isinstance(target, int):
        return f"/dev/video{target}"
    return target if target.startswith("/dev/") else None


class OpenCVSource:
    """``target``: a camera index or ``/dev/videoN``, a video file, or a stream URL."""

    def __init__(
        self,
        target: int | str,
        live: bool,
        loop: bool = False,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        media_period: float | None = None,
    ) -> None:
        self.target = target
        self.media_period = media_period  # a file's frame period: the publish policy's clock for it
        self.live = live
        self.loop = loop
        self.width, self.height, self.fps = width, height, fps
        self.name = f"camera {target}" if isinstance(target, int) or str(target).startswith("/dev/") else str(target)
        self._cap: cv2.VideoCapture | None = None
        # a network stream (rtsp://, http://) that is not up at start is retried, not an error:
        # after a power cut the agent boots before the camera does
        self.retry_open = live and isinstance(target, str) and "://" in target

    def open(self) -> None:
        device = _camera_device(self.target)
        if device is not None and os.name == "posix" and not os.path.exists(device):
            found = ", ".join(list_cameras()) or "none"
            raise SourceError(f"{self.name}: {device} does not exist (cameras on this machine: {found})")
        if not self.live and not Path(str(self.target)).exists():
            raise SourceError(f"video {self.target}: file not found")
        if self.live and device is None:
            # A network stream that stalls would block read() for FFmpeg's default 30 s; turn a
            # stall into SourceLost (and a reopen) after STREAM_TIMEOUT_MS instead.
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                      STREAM_TIMEOUT_MS]
            cap = cv2.VideoCapture(str(self.target), cv2.CAP_FFMPEG, params)
        else:
            cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.name}: OpenCV cannot open it")
        if device is not None or isinstance(self.target, int):
            cap.set(cv2.CAP_PROP_BUFFERSIZE, CAMERA_BUFFER_FRAMES)
            if self.width and self.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
        self._cap = cap

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            raise SourceLost(f"{self.name}: not open")
        ok, frame = self._cap.read()  # a new array each time: the consumer may still hold the last
        if ok and frame is not None:
            return frame
        if self.live:
            raise SourceLost(f"{self.name}: no frame (unplugged or stream dropped)")
        if self.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read()
            if ok:
                return frame
            raise SourceError(f"video {self.target}: cannot rewind")
        return None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
