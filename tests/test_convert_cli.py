"""edge-agent-convert as a user runs it: a subprocess, one-line errors with exit status 2 for every
bad input the issue lists, and ``--json`` that is only JSON."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def convert(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.convert", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("edge-agent-convert: error: ")]
    assert len(errors) == 1, proc.stderr
    line = errors[0]
    for needle in needles:
        assert needle in line, line
    assert proc.stdout == ""
    return line


def _images(folder: Path, n: int, value: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((40, 40, 3), (value + 20 * i) % 256, np.uint8))


def test_empty_class_folder(tmp_path: Path) -> None:
    _images(tmp_path / "data" / "cat", 4)
    (tmp_path / "data" / "dog").mkdir()
    proc = convert("train", tmp_path / "data", "--out", tmp_path / "m.keras")
    assert_one_line_error(proc, "class folder 'dog' has no images")


def test_one_class_only(tmp_path: Path) -> None:
    _images(tmp_path / "data" / "cat", 4)
    proc = convert("train", tmp_path / "data", "--out", tmp_path / "m.keras")
    assert_one_line_error(proc, "only one class ('cat')")


def test_unreadable_image(tmp_path: Path) -> None:
    _images(tmp_path / "data" / "cat", 6)
    _images(tmp_path / "data" / "dog", 6, value=128)
    (tmp_path / "data" / "dog" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    proc = convert("train", tmp_path / "data", "--out", tmp_path / "m.keras")
    assert_one_line_error(proc, "truncated.jpg cannot be read")


def test_bad_arch_and_missing_weights_are_one_line(tmp_path: Path) -> None:
    _images(tmp_path / "data" / "cat", 4)
    _images(tmp_path / "data" / "dog", 4, value=128)
    assert_one_line_error(convert("train", tmp_path / "data", "--out", tmp_path / "m.keras", "--arch", "resnet"),
                          "--arch 'resnet'")
    assert_one_line_error(convert("describe", "--alpha", "1.5"), "width multiplier")


@pytest.fixture(scope="module")
def two_input_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    a = keras.Input((32, 32, 3))
    b = keras.Input((32, 32, 3))
    x = keras.layers.Concatenate()([a, b])
    x = keras.layers.GlobalAveragePooling2D()(x)
    path = tmp_path_factory.mktemp("two") / "two_inputs.keras"
    keras.Model([a, b], keras.layers.Dense(2, activation="softmax")(x)).save(path)
    return path


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    path = tmp_path_factory.mktemp("small") / "small.keras"
    keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x)).save(path)
    path.with_suffix(".labels.txt").write_text("cat\ndog\n")
    return path


@pytest.mark.slow
def test_model_with_two_inputs(tmp_path: Path, two_input_model: Path) -> None:
    _images(tmp_path / "data" / "cat", 4)
    _images(tmp_path / "data" / "dog", 4, value=128)
    proc = convert("quantize", two_input_model, "--data", tmp_path / "data", "--out", tmp_path / "m.tflite")
    assert_one_line_error(proc, "has 2 inputs")
    assert not (tmp_path / "m.tflite").exists()


@pytest.mark.slow
def test_representative_set_that_does_not_match_the_input(tmp_path: Path, small_model: Path) -> None:
    calib = tmp_path / "calib.npy"
    np.save(calib, np.zeros((8, 64, 64, 3), np.uint8))
    proc = convert("quantize", small_model, "--representative", calib, "--out", tmp_path / "m.tflite")
    assert_one_line_error(proc, "images are 64x64x3", "model's input is 32x32x3")
    assert not (tmp_path / "m.tflite").exists()
    # the same mistake made with --input-size on a calibration folder
    _images(tmp_path / "data" / "cat", 4)
    _images(tmp_path / "data" / "dog", 4, value=128)
    proc = convert("quantize", small_model, "--data", tmp_path / "data", "--input-size", "64x64",
                   "--out", tmp_path / "m.tflite")
    assert_one_line_error(proc, "--input-size 64x64 does not match the model's input 32x32x3")
