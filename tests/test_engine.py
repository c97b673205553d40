"""The engine: interpreter discovery, feeding and dequantizing, Edge TPU delegate handling."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from edge_agent.agents.image import ImageInference
from edge_agent.config import Config
from edge_agent.manifest import ImageInput
from edge_agent.preprocess import image as pre
from edge_agent.service import load_model
from edge_agent.sources.base import Frame
from tests.helpers import REPO, agent_env, assert_one_line_error, make_video, run_agent


def direct_scores(model: Path, tensor: np.ndarray) -> np.ndarray:
    """What a user gets calling the interpreter by hand on the same preprocessed input."""
    interp = Interpreter(model_path=str(model))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.set_tensor(inp["index"], tensor[None])
    interp.invoke()
    raw = interp.get_tensor(out["index"])[0]
    scale, zero = out["quantization"]
    return raw.astype(np.float32) if scale == 0 else (raw.astype(np.int64) - zero) * scale


@pytest.mark.parametrize("io_type", ["int8", "uint8", "float32"])
def test_agent_outputs_equal_a_direct_interpreter_call(model_dir: Path, io_type: str, tmp_path: Path) -> None:
    model = model_dir / f"tiny_{io_type}.tflite"
    config = Config(task="custom")
    config.model.path = str(model)
    kind, loaded = load_model(config)
    assert kind == "image"
    infer = ImageInference(loaded)
    rng = np.random.default_rng(1)
    for _ in range(3):
        frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        ours = infer(Frame(frame, 0.0, 0.0, 0))
        # resized ahead in the reader thread (as the agent runs): the same scores
        np.testing.assert_array_equal(infer(Frame(frame, 0.0, 0.0, 0, infer.prepare(frame))), ours)
        rgb = pre.resize(frame, loaded.spec)
        spec = loaded.spec
        if io_type == "float32":
            tensor = ((rgb.astype(np.float32) - 127.5) / 127.5).astype(np.float32)
        else:
            interp = Interpreter(model_path=str(model))
            scale, zero = interp.get_input_details()[0]["quantization"]
            info = np.iinfo(np.dtype(io_type))
            real = (rgb.astype(np.float64) - np.asarray(spec.mean)) / np.asarray(spec.std)
            tensor = np.clip(np.round(real / scale + zero), info.min, info.max).astype(io_type)
        np.testing.assert_allclose(ours, direct_scores(model, tensor), rtol=0, atol=1e-6)


def test_preprocessing_feeds_the_model_its_own_quantization(model_dir: Path) -> None:
    config = Config(task="custom")
    config.model.path = str(model_dir / "tiny_int8.tflite")
    engine = load_model(config)[1].engine
    table = engine.table_for(ImageInput(48, 48))
    scale, zero = engine.input_quant
    assert table.dtype == np.int8
    # pixel 0 → real -1, pixel 255 → real +1, each through the model's own scale/zero point
    assert table[0, 0] == np.clip(round(-1 / scale + zero), -128, 127)
    assert table[255, 0] == np.clip(round(1 / scale + zero), -128, 127)


def test_tflite_runtime_is_refused_under_numpy2_with_one_line(int8_model: Path, video: Path) -> None:
    target = Path(sys.prefix) / "tflite-runtime"  # tools/test.sh puts it beside the test venv
    if not (target / "tflite_runtime").is_dir():
        pytest.fail(f"tools/test.sh installs tflite-runtime 2.14 into {target} for this test")
    env = agent_env(PYTHONPATH=str(target), EDGE_AGENT_INTERPRETER="tflite_runtime")
    # why we refuse it: the raw interpreter really does break under numpy 2
    raw = subprocess.run([sys.executable, "-c", f"from tflite_runtime.interpreter import Interpreter; "
                          f"Interpreter({str(int8_model)!r})"], capture_output=True, text=True, env=env)
    assert raw.returncode != 0
    result = run_agent(["--model", str(int8_model), "--source", str(video), "--sink", "stdout"], env=env)
    assert_one_line_error(result, "tflite-runtime 2.14", "numpy")


@pytest.fixture(scope="session")
def edgetpu_stub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("a C compiler is needed to build the libedgetpu stand-in (tools/test.sh installs gcc)")
    d = tmp_path_factory.mktemp("edgetpu")
    src = REPO / "tests" / "stubs" / "libedgetpu_stub.c"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(d / "libedgetpu.so.1"), str(src)], check=True)
    return d


def _tpu_env(stub: Path | None, devices: str = "") -> dict[str, str]:
    env = agent_env(EDGETPU_STUB_DEVICES=devices)
    if stub is not None:
        env["LD_LIBRARY_PATH"] = f"{stub}:{os.environ.get('LD_LIBRARY_PATH', '')}"
    return env


def test_edgetpu_missing_library_is_one_line(int8_model: Path, video: Path) -> None:
    result = run_agent(["--model", str(int8_model), "--source", str(video), "--sink", "stdout", "--edgetpu"],
                       env=_tpu_env(None))
    assert_one_line_error(result, "libedgetpu.so.1", "not installed")


def test_edgetpu_missing_device_is_one_line(int8_model: Path, video: Path, edgetpu_stub: Path) -> None:
    result = run_agent(["--model", str(int8_model), "--source", str(video), "--sink", "stdout",
                        "--edgetpu", "usb:1"], env=_tpu_env(edgetpu_stub, devices="usb:0"))
    assert_one_line_error(result, "no Coral device found (usb:1)")


def test_edgetpu_present_runs_through_the_delegate(int8_model: Path, video: Path, edgetpu_stub: Path) -> None:
    result = run_agent(["--model", str(int8_model), "--source", str(video), "--sink", "stdout", "--threshold", "0",
                        "--no-on-change", "--max-rate", "0",
                        "--edgetpu", "usb", "--max-frames", "5"], env=_tpu_env(edgetpu_stub, devices="usb:0"))
    assert result.returncode == 0, result.stderr
    assert "edgetpu:usb" in result.stderr
    assert len(result.stdout.splitlines()) == 5


def test_edgetpu_fallback_runs_on_cpu_with_a_warning(int8_model: Path, tmp_path: Path, edgetpu_stub: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", frames=5)
    result = run_agent(["--model", str(int8_model), "--source", str(clip), "--sink", "stdout", "--threshold", "0",
                        "--no-on-change", "--max-rate", "0",
                        "--edgetpu", "pci", "--edgetpu-fallback"], env=_tpu_env(edgetpu_stub, devices="usb:0"))
    assert result.returncode == 0, result.stderr
    assert "running on the CPU instead" in result.stderr
    assert len(result.stdout.splitlines()) == 5


def test_a_frame_prepared_for_another_model_is_resized_again(model_dir: Path) -> None:
    """After a reload to a model of another input size, frames the reader resized for the old one
    are still in flight: they must be resized for the new model, not fed at the wrong size."""
    config = Config(task="custom")
    config.model.path = str(model_dir / "tiny_int8.tflite")
    infer = ImageInference(load_model(config)[1])
    frame = np.random.default_rng(2).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    stale = (object(), np.zeros((10, 10, 3), np.uint8))  # what an old model's prepare left
    np.testing.assert_array_equal(infer(Frame(frame, 0.0, 0.0, 0, stale)), infer(Frame(frame, 0.0, 0.0, 0)))
