"""The interface every frame source implements, and the frame it yields."""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One captured image (BGR uint8), stamped when it was captured."""

    image: np.ndarray
    ts: float  # wall clock (time.time()) at capture: what the hub sees as frame_ts
    mono: float  # time.monotonic() at capture: for latency, immune to clock steps
    index: int


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
