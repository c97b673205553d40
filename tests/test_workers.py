"""Frame-level parallelism: several interpreters infer frames at once, and what is published is
exactly what one interpreter publishes, in seq order; a worker that fails stops the run loudly."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from edge_agent.agents.workers import InferencePool
from edge_agent.errors import InferenceError
from edge_agent.sources.base import Frame
from tests.helpers import run_agent


def frame(i: int) -> Frame:
    return Frame(np.zeros((2, 2, 3), np.uint8), 0.0, 0.0, i)


def test_results_come_back_in_submission_order_however_workers_finish() -> None:
    """The first worker is slow and the second fast: order is still 0, 1, 2, ..."""
    gate = threading.Event()

    def slow(f: Frame) -> np.ndarray:
        gate.wait(5)
        return np.array([f.index], np.float32)

    def fast(f: Frame) -> np.ndarray:
        gate.set()  # the slow one finishes only after a fast one has
        return np.array([f.index], np.float32)

    pool = InferencePool([slow, fast])
    out: list[int] = []
    try:
        for i in range(20):
            pool.submit(frame(i))
            out += [f.index for f, _ in pool.ready()]
            assert pool.pending <= 2  # never more in flight than workers
        done = list(pool.drain())
    finally:
        pool.close()
    out += [f.index for f, _ in done]
    assert out == list(range(20))
    assert all(f.index == int(scores[0]) for f, scores in done)  # each frame with its own scores


def test_a_worker_that_fails_fails_the_run_with_the_frame_named() -> None:
    def flaky(f: Frame) -> np.ndarray:
        if f.index == 3:
            raise RuntimeError("Input tensor 36 lacks data")
        return np.zeros(1, np.float32)

    pool = InferencePool([flaky, flaky])
    try:
        with pytest.raises(InferenceError, match=r"frame 3: RuntimeError: Input tensor 36 lacks data"):
            for i in range(6):
                pool.submit(frame(i))
                list(pool.ready())
            list(pool.drain())
    finally:
        pool.close()
    assert InferenceError.exit_code == 1  # not the user's mistake: systemd restarts us


def test_drain_gives_up_on_a_worker_that_never_returns() -> None:
    release = threading.Event()
    pool = InferencePool([lambda f: (release.wait(10), np.zeros(1, np.float32))[1]])
    pool.submit(frame(0))
    with pytest.raises(InferenceError, match="did not finish"):
        list(pool.drain(timeout=0.2))
    assert not release.is_set() and pool.pending == 1  # it gave up while the worker was still stuck
    release.set()
    pool.close()


def _predictions(model: Path, video: Path, *extra: str) -> list[dict[str, object]]:
    result = run_agent(["--model", str(model), "--source", str(video), "--sink", "stdout", "--threshold", "0",
                        "--no-on-change", "--max-rate", "0", "--task", "custom", "--threads", "1", *extra])
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_three_workers_publish_what_one_does_in_seq_order(int8_model: Path, video: Path) -> None:
    """Smoothing over 3 frames depends on order: equal outputs mean frames were finished in order."""
    one = _predictions(int8_model, video, "--smoothing", "3")
    three = _predictions(int8_model, video, "--workers", "3", "--smoothing", "3")
    assert [p["seq"] for p in three] == list(range(len(one))) and len(one) == 30
    assert [(p["label"], p["score"], p["top"]) for p in three] == [(p["label"], p["score"], p["top"]) for p in one]


def test_max_frames_with_workers_publishes_exactly_that_many(int8_model: Path, video: Path) -> None:
    got = _predictions(int8_model, video, "--workers", "2", "--max-frames", "7")
    assert [p["seq"] for p in got] == list(range(7))
