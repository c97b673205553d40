"""A user's mistake is one clear line and exit code 2, never a traceback, and names the culprit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import agent_env, assert_one_line_error, run_agent


def test_corrupt_model_names_the_file_and_why(tmp_path: Path, video: Path, model_dir: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\0" * 4096)
    result = run_agent(["--model", str(bad), "--labels", str(model_dir / "labels.txt"), "--source", str(video)])
    assert_one_line_error(result, str(bad), "not a TFLite flatbuffer")


def test_truncated_model_is_caught_before_the_interpreter(tmp_path: Path, video: Path, model_dir: Path) -> None:
    data = (model_dir / "tiny_int8.tflite").read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: len(data) // 2])
    result = run_agent(["--model", str(cut), "--labels", str(model_dir / "labels.txt"), "--source", str(video)])
    assert_one_line_error(result, str(cut), "cannot load it")


def test_manifest_sha256_mismatch(tmp_path: Path, video: Path, model_dir: Path) -> None:
    model = tmp_path / "m.tflite"
    shutil.copy(model_dir / "tiny_int8.tflite", model)
    manifest = json.loads((model_dir / "tiny_int8.json").read_text())
    manifest["sha256"] = "0" * 64
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    result = run_agent(["--model", str(model), "--source", str(video)])
    assert_one_line_error(result, str(model), "sha256", "does not match")


def test_missing_labels_file(int8_model: Path, video: Path, tmp_path: Path) -> None:
    model = tmp_path / "nomanifest.tflite"
    shutil.copy(int8_model, model)
    result = run_agent(["--model", str(model), "--labels", str(tmp_path / "labels.txt"), "--source", str(video)])
    assert_one_line_error(result, "labels file", "labels.txt", "not found")


def test_model_without_manifest_or_labels(int8_model: Path, video: Path, tmp_path: Path) -> None:
    model = tmp_path / "nomanifest.tflite"
    shutil.copy(int8_model, model)
    result = run_agent(["--model", str(model), "--source", str(video)])
    assert_one_line_error(result, "no manifest", "--labels")


def test_labels_that_do_not_match_the_outputs(int8_model: Path, video: Path, tmp_path: Path) -> None:
    model = tmp_path / "nomanifest.tflite"
    shutil.copy(int8_model, model)
    (tmp_path / "labels.txt").write_text("one\ntwo\n")
    result = run_agent(["--model", str(model), "--labels", str(tmp_path / "labels.txt"), "--source", str(video)])
    assert_one_line_error(result, "3 outputs but 2 labels")


@pytest.mark.parametrize(
    ("toml", "needles"),
    [
        ("[mqtt]\nport = \"abc\"\n", ["field 'mqtt.port'", "an integer"]),
        ("[mqtt]\nport = 70000\n", ["field 'mqtt.port'", "1 to 65535"]),
        ("[mqtt]\nhots = \"x\"\n", ["unknown field 'mqtt.hots'"]),
        ("[postprocess]\nthreshold = 2\n", ["field 'postprocess.threshold'"]),
        ("task = \"garbage\"\n", ["field 'task'", "waste"]),
        ("[mqtt\n", ["not valid TOML"]),
    ],
)
def test_bad_config_value_names_field_and_file(tmp_path: Path, toml: str, needles: list[str]) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(toml)
    result = run_agent(["--config", str(cfg), "--print-config"])
    assert_one_line_error(result, str(cfg), *needles)


def test_bad_flag_value_names_the_flag(tmp_path: Path) -> None:
    result = run_agent(["--qos", "7", "--print-config"])
    assert_one_line_error(result, "flag --qos", "mqtt.qos")


def test_camera_index_that_does_not_exist(int8_model: Path) -> None:
    result = run_agent(["--model", str(int8_model), "--camera", "57"])
    assert_one_line_error(result, "camera 57", "/dev/video57 does not exist")


def test_missing_video_file(int8_model: Path, tmp_path: Path) -> None:
    result = run_agent(["--model", str(int8_model), "--source", str(tmp_path / "nope.mp4")])
    assert_one_line_error(result, "nope.mp4", "no such file")


def test_picamera_without_picamera2_says_how_to_install(int8_model: Path) -> None:
    result = run_agent(["--model", str(int8_model), "--picamera"])
    assert_one_line_error(result, "picamera2 is not installed", "--system-site-packages")


def test_print_config_masks_the_password_and_shows_the_merge(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text("device_id = \"kitchen\"\n[mqtt]\nhost = \"hub.local\"\nusername = \"pi\"\n")
    result = run_agent(["--config", str(cfg), "--mqtt-port", "8883", "--print-config"],
                       env=agent_env(EDGE_AGENT_MQTT_PASSWORD="s3cret-pw"))
    assert result.returncode == 0, result.stderr
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert 'password = "********"' in result.stdout
    assert 'host = "hub.local"' in result.stdout and "port = 8883" in result.stdout
    assert 'device_id = "kitchen"' in result.stdout


def test_validate_config_exits_zero_when_usable(int8_model: Path) -> None:
    result = run_agent(["--model", str(int8_model), "--validate-config"])
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout
