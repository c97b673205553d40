"""``edge-agent-convert train-series``: its one-line errors (before TensorFlow loads), the fused int8
LSTM and the op report, and a whole run on a tiny folder of recordings. No assertion here depends
on how well a model trained: they check what the converter produced and that int8 agrees with float."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from edge_agent import manifest as manifest_mod
from edge_agent.agents import sensor
from edge_agent.config import Config
from edge_agent.convert import graph
from edge_agent.convert.series import data as series_data
from edge_agent.errors import ConfigError
from tests.sensor_helpers import walk, write_csv

REPO = Path(__file__).resolve().parent.parent


def convert(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent.convert", "train-series", *args], capture_output=True,
                          text=True, timeout=900, cwd=REPO)


def tiny_folder(root: Path, sources: int = 4, seconds: float = 12.0) -> Path:
    """Two classes (slow and fast sway) from ``sources`` simulated subjects."""
    for s in range(sources):
        for label, f in (("slow", 0.8), ("fast", 2.5)):
            t = np.arange(int(seconds * 50)) / 50
            x = np.stack([np.sin(2 * np.pi * f * t + s), 9.8 + np.cos(2 * np.pi * f * t), 0.1 * t], axis=1)
            (root / label).mkdir(parents=True, exist_ok=True)
            write_csv(root / label / f"s{s}-1.csv", t, x)
    return root


def test_a_recording_with_a_missing_channel_is_one_line_naming_it(tmp_path: Path) -> None:
    data = tiny_folder(tmp_path / "d")
    t, x = walk(3.0)
    write_csv(data / "fast" / "s9-1.csv", t, x[:, :2], ("ax", "ay"))
    r = convert(str(data), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "missing channel 'az'" in r.stderr and r.stderr.count("error:") == 1


def test_too_few_sources_to_hold_out_is_one_line(tmp_path: Path) -> None:
    r = convert(str(tiny_folder(tmp_path / "d", sources=2)), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and "need at least 3" in r.stderr and "Traceback" not in r.stderr


def test_splits_are_by_source_and_the_auc_is_the_mann_whitney_statistic() -> None:
    split = series_data.split_sources([f"s{i}" for i in range(10)], seed=0, val=0.2, test=0.2)
    assert not set(split.train) & set(split.val) and not set(split.train) & set(split.test)
    assert len(split.test) == 2 and len(split.val) == 2 and len(split.train) == 6
    with pytest.raises(ConfigError, match="at least 3"):
        series_data.split_sources(["a", "b"], 0, 0.2, 0.2)
    assert series_data.roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert series_data.roc_auc(np.array([1.0, 1.0]), np.array([0, 1])) == 0.5


@pytest.mark.slow
def test_a_fixed_weight_lstm_becomes_one_fused_int8_op_that_agrees_with_float(tmp_path: Path) -> None:
    """Weights set in code (no training); the converter's output is read back from the flatbuffer."""
    from edge_agent.convert import _tf
    from edge_agent.convert.series import models as series_models
    from edge_agent.convert.series.train import _convert, empty_float_intermediates

    tf = _tf.tf()
    lib, lowering = series_models.library("lstm")
    if "fused" not in lowering:
        pytest.skip("tf_keras is not installed: the LSTM is unrolled (reported as such)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = series_models.build("lstm", lib, (20, 3), 4, 8, seed=0)
        rng = np.random.default_rng(0)
        model.set_weights([rng.normal(0, 0.4, w.shape).astype(np.float32) for w in model.get_weights()])
        fixed = series_models.fixed_batch(lib, model, (20, 3))
        calib = rng.normal(0, 1, (100, 20, 3)).astype(np.float32)
        q = _convert(tf, fixed, calib)
    g = graph.read(q)
    assert g.op_counts().get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1 and "WHILE" not in g.op_counts()
    assert g.float_ops() == [] and g.subgraphs == 1
    assert len(g.float_tensors()) == empty_float_intermediates(q)  # only the kernel's empty scale holders
    path = tmp_path / "lstm.tflite"
    path.write_bytes(q)
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    i, o = interp.get_input_details()[0], interp.get_output_details()[0]
    (si, zi), (so, zo) = i["quantization"], o["quantization"]
    x = rng.normal(0, 1, (50, 20, 3)).astype(np.float32)
    want = model.predict(x, verbose=0)
    got = []
    for w in x:
        interp.set_tensor(i["index"], np.clip(np.round(w / si + zi), -128, 127).astype(np.int8)[None])
        interp.invoke()
        got.append((interp.get_tensor(o["index"])[0].astype(np.int64) - zo) * so)
    assert np.abs(np.array(got) - want).max() < 0.08


@pytest.mark.slow
def test_train_series_writes_a_model_the_agent_loads_with_a_card_and_op_report(tmp_path: Path) -> None:
    data = tiny_folder(tmp_path / "sway", sources=5)
    out = tmp_path / "models"
    r = convert(str(data), "--out", str(out), "--arch", "cnn", "--epochs", "2", "--window", "25", "--stride", "10",
                "--units", "ax=m/s²", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout)
    assert result["graph"]["full_int8"] and result["provenance"]["float_fallback_ops"] == []
    assert result["provenance"]["split_by"] == "source"
    assert set(result["provenance"]["split"]["test"]).isdisjoint(result["provenance"]["split"]["train"])
    m = result["metrics"]
    assert m["float"]["n"] == m["int8"]["n"] > 0
    assert abs(m["top1_drop_points"]) <= 100 * 2 / m["int8"]["n"] + 10  # int8 follows float (tiny test split)
    man = manifest_mod.load(out / "sway.json")
    assert man.kind == "series" and man.series is not None
    assert [c["name"] for c in man.series["channels"]] == ["ax", "ay", "az"]
    assert man.series["channels"][0]["unit"] == "m/s²"
    model = sensor.load(out / "sway.tflite", man, Config(task="custom"))
    assert model.infer(np.zeros((25, 3), np.float32)).shape == (2,)
    card = (out / "sway.md").read_text()
    assert "CONV_2D" in card or "FULLY_CONNECTED" in card
    assert "held out by **source**" in card and "train-series" in card


def _machine_folder(root: Path, sources: int = 4) -> Path:
    """Healthy recordings of a machine (vibration and temperature) from ``sources`` machines."""
    for s in range(sources):
        t = np.arange(400) / 50
        x = np.stack([np.sin(2 * np.pi * 1.2 * t + s), 0.3 * np.cos(2 * np.pi * 0.5 * t), 40 + 0.01 * t], axis=1)
        (root / "normal").mkdir(parents=True, exist_ok=True)
        write_csv(root / "normal" / f"m{s}-1.csv", t, x, ("vib", "hum", "temp"))
    return root


@pytest.mark.slow
def test_an_autoencoder_from_normal_recordings_only_trains_and_says_no_faults_were_held_out(tmp_path: Path) -> None:
    data = _machine_folder(tmp_path / "pump")
    args = ("--arch", "autoencoder", "--rate", "0", "--window", "1", "--stride", "1", "--epochs", "2", "--json")
    r = convert(str(data), "--out", str(tmp_path / "m1"), *args)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    result = json.loads(r.stdout)
    assert result["metrics"]["int8"]["anomalous"] == 0 and result["metrics"]["roc_auc_drop"] is None
    assert "No held-out faults" in (tmp_path / "m1" / "pump.md").read_text()
    # a fault recording from a machine the split trains on still counts in the held-out figures
    trained_on = result["provenance"]["split"]["train"][0]
    t = np.arange(200) / 50
    fault = np.stack([3 * np.sin(2 * np.pi * 7 * t), np.ones_like(t), 60 + t], axis=1)
    (data / "anomaly").mkdir()
    write_csv(data / "anomaly" / f"{trained_on}-bearing.csv", t, fault, ("vib", "hum", "temp"))
    r = convert(str(data), "--out", str(tmp_path / "m2"), *args)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads(r.stdout)["metrics"]
    assert m["int8"]["anomalous"] == len(t) and m["int8"]["roc_auc"] is not None
