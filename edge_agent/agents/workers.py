"""Frame-level parallelism: N interpreters, each in its own worker thread, fed frames in order and
handing scores back in the same order.

Why: intra-op threads on a small model's convolutions scale poorly (two interpreter threads on
two cores kept about one core busy, issue "speed"), while two single-threaded interpreters on
two frames at once keep both busy. LiteRT's ``invoke()`` and OpenCV's resize and LUT release the
GIL, so plain threads overlap. At most ``workers`` frames are in flight; :meth:`submit` waits for
the oldest when that many are, so latency stays bounded and nothing queues up behind the model.
Results come out strictly in submission order (``seq`` order), whatever order workers finish in.

A worker whose inference raises fails the run loudly: the error comes back from :meth:`ready`
or :meth:`drain` as :class:`~edge_agent.errors.InferenceError` (exit code 1, one log line),
never as a silently missing frame.
"""

from __future__ import annotations

import collections
import concurrent.futures
import queue
from collections.abc import Callable, Iterator
from typing import Final

import numpy as np

from ..errors import InferenceError
from ..sources.base import Frame

DRAIN_TIMEOUT_S: Final = 30.0  # the longest a stop waits for frames already given to workers

Inference = Callable[[Frame], np.ndarray]


class InferencePool:
    """``workers`` inferences (each owning its own interpreter), one worker thread each."""

    def __init__(self, inferences: list[Inference]) -> None:
        if not inferences:
            raise ValueError("an inference pool needs at least one inference")
        self.workers = len(inferences)
        self._idle: queue.SimpleQueue[Inference] = queue.SimpleQueue()
        for inference in inferences:
            self._idle.put(inference)
        self._executor = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="infer")
        self._inflight: collections.deque[tuple[Frame, concurrent.futures.Future[np.ndarray]]] = \
            collections.deque()

    @property
    def pending(self) -> int:
        return len(self._inflight)

    def _run(self, frame: Frame) -> np.ndarray:
        inference = self._idle.get()  # one is always free: at most `workers` tasks are in flight
        try:
            return inference(frame)
        finally:
            self._idle.put(inference)

    def submit(self, frame: Frame) -> None:
        """Hand ``frame`` to a worker; when every worker is busy, first wait for the oldest."""
        if len(self._inflight) >= self.workers:
            concurrent.futures.wait([self._inflight[0][1]])
        self._inflight.append((frame, self._executor.submit(self._run, frame)))

    def ready(self) -> Iterator[tuple[Frame, np.ndarray]]:
        """Finished frames at the front of the line, in submission order; does not wait."""
        while self._inflight and self._inflight[0][1].done():
            yield self._pop()

    def drain(self, timeout: float = DRAIN_TIMEOUT_S) -> Iterator[tuple[Frame, np.ndarray]]:
        """Every frame in flight, in order, waiting for each (an end of file, a stop, a reload)."""
        while self._inflight:
            frame, future = self._inflight[0]
            done, _ = concurrent.futures.wait([future], timeout=timeout)
            if not done:
                raise InferenceError(f"inference of frame {frame.index} did not finish within {timeout:.0f} s")
            yield self._pop()

    def _pop(self) -> tuple[Frame, np.ndarray]:
        frame, future = self._inflight.popleft()
        try:
            return frame, future.result()
        except Exception as e:  # the interpreter or the resize failed on this frame
            raise InferenceError(f"inference failed on frame {frame.index}: {type(e).__name__}: {e}") from e

    def close(self) -> None:
        """Stop the worker threads (frames still in flight are dropped: drain first)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
