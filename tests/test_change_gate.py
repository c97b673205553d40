"""The change gate: a static scene is not inferred frame after frame, and a change is inferred on
the frame it appears in, so what is published equals what inferring every frame publishes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.preprocess.gate import ChangeGate
from tests.helpers import run_agent


def scene_video(path: Path) -> Path:
    """15 frames of one still scene, then 15 of another (lossless MJPG-free: PNG folder)."""
    path.mkdir()
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    second = 255 - first
    for i in range(30):
        cv2.imwrite(str(path / f"{i:03d}.png"), first if i < 15 else second)
    return path


def predictions(model: Path, source: Path, *extra: str) -> tuple[list[dict[str, object]], str]:
    result = run_agent(["--model", str(model), "--source", str(source), "--sink", "stdout", "--task", "custom",
                        "--threshold", "0", "--no-on-change", "--max-rate", "0", *extra])
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()], result.stderr


def test_a_still_scene_is_inferred_once_and_a_change_on_its_first_frame(int8_model: Path, tmp_path: Path) -> None:
    folder = scene_video(tmp_path / "scene")
    every, _ = predictions(int8_model, folder)
    gated, log = predictions(int8_model, folder, "--change-gate", "2")
    assert len(gated) == len(every) == 30
    assert "28 not inferred (no change)" in log  # frames 1-14 and 16-29 reuse the scores
    assert [(p["label"], p["top"]) for p in gated] == [(p["label"], p["top"]) for p in every]
    assert every[15]["top"] != every[14]["top"]  # the scene change moves the scores: the check means something


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_gate_keeps_seq_order_with_workers(int8_model: Path, tmp_path: Path, workers: str) -> None:
    folder = scene_video(tmp_path / "scene")
    gated, _ = predictions(int8_model, folder, "--change-gate", "2", "--workers", workers)
    assert [p["seq"] for p in gated] == list(range(30))


def test_slow_drift_adds_up_against_the_last_inferred_frame() -> None:
    gate = ChangeGate(2.0)
    base = np.full((48, 64, 3), 100, np.uint8)
    decisions = [gate.changed(base + step) for step in range(6)]  # +1 grey level a frame
    assert decisions == [True, False, True, False, True, False]
    assert gate.skipped == 3
    assert all(ChangeGate(0).changed(base) for _ in range(3))  # 0: off, every frame inferred
