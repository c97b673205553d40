"""The interface every frame source implements, and the frame it yields."""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Final, Protocol

import numpy as np

from ..errors import SourceError

logger = logging.getLogger(__name__)

BACKOFF_MIN_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One captured image (BGR uint8), stamped when it was captured."""

    image: np.ndarray
    ts: float  # wall clock (time.time()) at capture: what the hub sees as frame_ts
    mono: float  # time.monotonic() at capture: for latency, immune to clock steps
    index: int
    # What the reader thread's ``prepare`` made of ``image`` (the resized model input), tagged by
    # whoever prepared it so a consumer can tell it is for its own model; None when not prepared.
    prepared: tuple[object, np.ndarray] | None = None
    # The media's own time of this frame (seconds) for a recorded source (a file, a folder): what the
    # publish policy runs on, so a file decoded at 200 fps publishes what a camera would have. None
    # for a live source, whose policy runs on ``mono``.
    media_s: float | None = None

    @property
    def clock(self) -> float:
        """The time the publish policy compares: media time for a recording, monotonic time live."""
        return self.media_s if self.media_s is not None else self.mono


class SourceLost(Exception):
    """A live source stopped delivering (unplugged camera, dropped stream): reopen it."""


class Source(Protocol):
    """``open`` raises :class:`~edge_agent.errors.SourceError` when it cannot start at all;
    ``read`` returns the next image, ``None`` at the end of a finite source, or raises
    :class:`SourceLost` when a live source fails."""

    name: str
    live: bool  # a camera or stream: serve the freshest frame, reopen on failure

    def open(self) -> None: ...

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


class Reopenable(Protocol):
    name: str

    def open(self) -> None: ...

    def close(self) -> None: ...


def reopen_with_backoff(source: Reopenable, why: str, stop: threading.Event,
                        backoff_max_s: float = BACKOFF_MAX_S) -> bool:
    """Close a failed live source (camera, stream, microphone) and reopen it, waiting 0.5 s
    doubling to ``backoff_max_s`` between tries, so the process lives on through an unplug.
    True once it is open again; False when ``stop`` is set first."""
    logger.warning("%s; reopening", why)
    delay = BACKOFF_MIN_S
    while not stop.is_set():
        source.close()
        if stop.wait(delay):
            return False
        try:
            source.open()
        except SourceError as e:
            delay = min(delay * 2, backoff_max_s)
            logger.warning("%s; retrying in %.1f s", e, delay)
            continue
        logger.info("%s reopened", source.name)
        return True
    return False
