"""Every window gets the answer the model gives that window alone.

A fused int8 LSTM keeps its hidden and cell state in variable tensors between invokes: without a
reset, a window's scores depend on the window before it (the agent gave another activity at 0.988
for a walking window right after load). The engine resets a stateful model before each invoke;
these tests hold every sequence model we ship or train to it, and the agent's figures on a
recording to the trainer's on the same recording."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_agent import manifest as manifest_mod
from edge_agent.agents import series_model
from edge_agent.preprocess import series
from tests.helpers import assert_one_line_error, run_agent
from tests.sensor_helpers import IMU, build_model, sample_windows, walk, write_csv

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ("activity", "intrusion", "location", "machine")
TRAINED = ("lstm", "gru", "cnn")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny model per sequence architecture the trainer makes (fixed random weights)."""
    d = tmp_path_factory.mktemp("state")
    return {arch: build_model(d, f"walk_{arch}", IMU, arch=arch) for arch in TRAINED}


def _path(name: str, trained: dict[str, Path]) -> Path:
    return trained[name] if name in trained else REPO / "models" / f"{name}.tflite"


def _load(path: Path) -> series_model.SeriesModel:
    return series_model.load(path, manifest_mod.load(path.with_suffix(".json")))


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED + TRAINED)
def test_a_window_gets_the_same_scores_whatever_came_before(name: str, trained: dict[str, Path]) -> None:
    path = _path(name, trained)
    model = _load(path)
    windows = sample_windows(model.spec, 6, seed=3)
    first = model.infer(windows[0])  # right after load
    for other in windows[1:]:
        model.infer(other)
    again = model.infer(windows[0])  # after five other windows
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(_load(path).infer(windows[0]), first)  # a fresh interpreter agrees
    if name == "lstm":  # the fused op really is there, and really keeps state: the reset is what holds
        assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in model.engine.stateful


@pytest.mark.slow
def test_the_agents_windows_of_a_recording_equal_the_trainers(trained: dict[str, Path], tmp_path: Path) -> None:
    """A recording made here, through ``edge-agent --model`` (no --task: the manifest says series)
    and through the trainer's own path (recording_windows + SeriesModel.infer)."""
    path = trained["lstm"]
    t, x = walk(10.0, rate_hz=IMU.rate_hz)
    rng = np.random.default_rng(1)
    x = x * rng.uniform(0.3, 2.0, (1, 3)) + np.cumsum(rng.normal(0, 0.3, x.shape), axis=0)  # windows that differ
    csv = write_csv(tmp_path / "walk.csv", t, x)
    model = _load(path)
    windows, _, _ = series.recording_windows(t, x, model.spec)
    want = [_load(path).infer(w) for w in windows]  # each window alone, in an interpreter of its own
    assert len(want) >= 6
    r = run_agent(["--model", str(path), "--source", str(csv), "--sink", "stdout", "--threshold", "0",
                   "--no-on-change", "--max-rate", "0"])
    assert r.returncode == 0, r.stderr[-2000:]
    got = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [p["label"] for p in got] == [model.labels[int(np.argmax(s))] for s in want]
    assert [p["score"] for p in got] == pytest.approx([round(float(s.max()), 4) for s in want], abs=1e-4)
    assert {p["task"] for p in got} == {"custom"}  # nobody said waste


@pytest.mark.slow
def test_a_named_task_of_another_kind_is_one_line_naming_both(trained: dict[str, Path]) -> None:
    r = run_agent(["--task", "waste", "--model", str(trained["cnn"]), "--source", "x.csv", "--sink", "stdout"])
    assert_one_line_error(r, "a series model", "task 'waste'")
