"""Runs a source in its own thread, so capture and decode overlap with inference.

A live source (camera, stream) keeps only the newest frame: when inference is slower than the
camera, older frames are dropped and counted rather than queued, so latency never builds up.
A finite source (file, folder) hands over every frame through a one-frame queue, and the next
frame is read only once the consumer has taken the previous one: decode still overlaps
inference, but a frame is not decoded (and stamped) long before it is used. Reading ahead into a
longer queue added a full inference period of capture → publish latency per queued frame
(measured by tools/bench.py: p50 105 ms → 2 invokes at ~18 ms each) for no gain in throughput.
A live source that fails is closed and reopened with exponential backoff; the process lives on.
A source that says ``retry_open`` (a network stream) and is not reachable at start is retried the
same way instead of failing the start: after a power cut the agent often boots before the camera
or the network. A local camera or file that does not exist still fails at start (exit 2): that
is a config mistake, not a boot order.

``prepare`` (set by the service to the model's resize) runs in the reader thread when that is
where the spare time is: if the consumer is busy (inferring the previous frame) when a frame has
been decoded, the reader resizes it too, so the resize overlaps the invoke just as the decode does;
if the consumer is already waiting for a frame, the frame goes to it at once and it resizes it
itself. A big model (invoke ≫ decode) so gets its resize off the main thread, and a tiny one
(invoke ≈ decode) does not make the reader the bottleneck. Measured by tools/bench.py
(docs/BENCHMARKS.md). If ``prepare`` fails the frame goes on unprepared and the consumer's own
resize reports the problem, exactly as before.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Final

import numpy as np

from ..errors import SourceError
from .base import BACKOFF_MAX_S, Frame, Source, SourceLost, reopen_with_backoff

logger = logging.getLogger(__name__)

FILE_QUEUE_FRAMES: Final = 1  # decode the next frame while this one is inferred; more only adds latency
SLOT_WAIT_S: Final = 0.2  # how often a reader waiting for the consumer checks for stop
STOP_WAIT_S: Final = 1.0  # how long stop() waits for a read in progress


Prepare = Callable[[np.ndarray], tuple[object, np.ndarray]]


class FrameReader:
    def __init__(self, source: Source, backoff_max_s: float = BACKOFF_MAX_S, prepare: Prepare | None = None) -> None:
        self.source = source
        self.prepare = prepare  # swapped by the service on reload; read once per frame
        self.backoff_max_s = backoff_max_s
        self.dropped = 0  # live frames replaced before inference took them
        self.reopens = 0
        self.frames = 0
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._queue: queue.Queue[Frame] = queue.Queue(maxsize=FILE_QUEUE_FRAMES)
        self._slots = threading.Semaphore(FILE_QUEUE_FRAMES)  # finite sources: read only into a free slot
        self._latest: Frame | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._consumer_waiting = False  # get() is blocked for a frame: hand the next one over unprepared
        self.error: str | None = None
        self.waiting = False  # a network stream not reachable since the start: being retried

    @property
    def ended(self) -> bool:
        """A finite source has delivered its last frame and it has been taken."""
        return self._ended.is_set() and self._queue.empty() and self._latest is None

    def start(self) -> None:
        """Open the source now, so a wrong camera or file is reported at start-up, then read on.
        A network stream that is not up yet is not an error: the reader retries it with backoff."""
        pending: str | None = None
        try:
            self.source.open()
        except SourceError as e:
            if not getattr(self.source, "retry_open", False):
                raise
            pending = f"{e} (not up yet?)"
            self.waiting = True
        self._thread = threading.Thread(target=self._run, args=(pending,), name="frame-reader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading. A reader stuck inside a hung camera's ``read()`` is not waited for long,
        and the source is then closed by the reader thread itself when (if) the read returns:
        releasing an OpenCV capture while another thread is inside ``read()`` can crash FFmpeg."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is None:
            self.source.close()
            return
        self._thread.join(timeout=STOP_WAIT_S)
        if self._thread.is_alive():
            logger.warning("%s is not answering; leaving it to close when its read returns", self.source.name)
            return
        self.source.close()

    def get(self, timeout: float) -> Frame | None:
        """The next frame, or None when none came within ``timeout`` (or the source ended)."""
        self._consumer_waiting = True
        try:
            if self.source.live:
                with self._cond:
                    if self._latest is None:
                        self._cond.wait(timeout)
                    frame, self._latest = self._latest, None
                    return frame
            try:
                frame = self._queue.get(timeout=timeout)
            except queue.Empty:
                return None
            self._slots.release()
            return frame
        finally:
            self._consumer_waiting = False

    def _deliver(self, frame: Frame) -> None:
        if self.source.live:
            with self._cond:
                if self._latest is not None:
                    self.dropped += 1
                self._latest = frame
                self._cond.notify()
            return
        while not self._stop.is_set():
            try:
                self._queue.put(frame, timeout=0.2)
                return
            except queue.Full:
                continue

    def _run(self, pending: str | None = None) -> None:
        index = 0
        # a recording's frames are spaced by its own frame period, however fast they decode
        period = getattr(self.source, "media_period", None) if not self.source.live else None
        try:
            if pending is not None:
                if not self._reopen(pending):
                    return
                self.waiting = False
            while not self._stop.is_set():
                if not self.source.live and not self._wait_for_slot():
                    return
                try:
                    image = self.source.read()
                except SourceLost as e:
                    if not self.source.live:
                        self._slots.release()  # nothing was delivered into the slot
                    if not self._reopen(str(e)):
                        return
                    continue
                if image is None:
                    return
                now_wall, now_mono = time.time(), time.monotonic()
                media_s = index * period if period else None
                self._deliver(Frame(image, now_wall, now_mono, index, self._prepare(image), media_s))
                index += 1
                self.frames += 1
        except SourceError as e:
            self.error = str(e)
            logger.error("%s", e)
        except Exception:
            self.error = f"{self.source.name}: unexpected error while reading"
            logger.exception("%s", self.error)
        finally:
            if self._stop.is_set():
                self.source.close()  # idempotent; covers a stop() that gave up waiting for us
            self._ended.set()
            with self._cond:
                self._cond.notify_all()

    def _prepare(self, image: np.ndarray) -> tuple[object, np.ndarray] | None:
        prepare = self.prepare
        if prepare is None or self._consumer_waiting:  # the consumer is idle: it resizes sooner than we would
            return None
        try:
            return prepare(image)
        except Exception:  # the consumer resizes it again and reports the error where it always did
            return None

    def _wait_for_slot(self) -> bool:
        """Block until the consumer has room for one more frame; False once we are told to stop."""
        while not self._stop.is_set():
            if self._slots.acquire(timeout=SLOT_WAIT_S):
                return True
        return False

    def _reopen(self, why: str) -> bool:
        if not reopen_with_backoff(self.source, why, self._stop, self.backoff_max_s):
            return False
        self.reopens += 1
        return True
