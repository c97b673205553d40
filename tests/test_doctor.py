"""``edge-agent doctor`` on this machine (no camera, no Coral, a real broker), as a user runs it."""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.doctor import coral_devices, decode_throttled
from tests.helpers import REPO, Broker, agent_env


def doctor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent", "doctor", *args], capture_output=True, text=True,
                          timeout=60, env=agent_env(**env), cwd=REPO)


def write_config(path: Path, broker: Broker, model: Path, extra_mqtt: str = "") -> Path:
    path.write_text(f'task = "custom"\n[model]\npath = "{model}"\n'
                    f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n{extra_mqtt}')
    return path


def as_json(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    data = json.loads(result.stdout)
    return {c["name"]: c for c in data["checks"]}


def test_this_machine(broker: Broker, int8_model: Path, model_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent.toml", broker, int8_model)
    result = doctor("--config", str(config), EDGE_AGENT_MODELS=str(model_dir))
    lines = result.stdout.splitlines()
    checks = as_json(doctor("--config", str(config), "--json", EDGE_AGENT_MODELS=str(model_dir)))
    failed = [name for name, c in checks.items() if c["status"] == "fail"]

    assert result.returncode == (1 if failed else 0), result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    fail_lines = [line for line in lines if line.startswith("FAIL")]
    assert len(fail_lines) == len(failed), result.stdout  # one line per failed check
    assert lines[-1] == (f"{len(failed)} checks failed" if len(failed) != 1 else "1 check failed")

    by_name = {line.split()[1]: line for line in lines[:-1]}
    assert by_name["broker"].startswith("OK") and f"{broker.host}:{broker.port}: connected" in by_name["broker"]
    assert by_name["interpreter"].startswith("OK")
    for name in ("python", "numpy", "cpu", "board", "temperature", "throttling", "audio", "libedgetpu"):
        assert name in by_name, name
    for model in ("tiny_int8.tflite", "tiny_uint8.tflite", "tiny_float32.tflite"):
        assert checks[f"model {model}"]["status"] == "ok", checks[f"model {model}"]

    if not glob.glob("/dev/video*"):  # this machine: no camera
        assert checks["camera"]["status"] == "fail"
        assert "no camera" in checks["camera"]["detail"]
        assert result.returncode == 1
    if not coral_devices():  # no Coral: worth a warning, not a failure, since the config does not ask for one
        assert checks["edgetpu"] == {"name": "edgetpu", "status": "warn",
                                     "detail": "no Coral found (not needed: model.edgetpu is not set)"}


def test_broker_down_and_coral_asked_for_are_failures(broker_factory: Callable[..., Broker], int8_model: Path,
                                                      model_dir: Path, tmp_path: Path) -> None:
    down = broker_factory(start=False)  # a free port with nobody listening
    config = write_config(tmp_path / "agent.toml", down, int8_model)
    config.write_text(config.read_text().replace("[model]\n", '[model]\nedgetpu = "usb"\n'))
    result = doctor("--config", str(config), EDGE_AGENT_MODELS=str(model_dir))
    assert result.returncode == 1
    fails = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("FAIL")}
    assert "unreachable" in fails["broker"]
    if not coral_devices():
        assert "no Coral found" in fails["edgetpu"]


def test_wrong_password_is_reported_and_the_right_one_passes(
    broker_factory: Callable[..., Broker], int8_model: Path, model_dir: Path, tmp_path: Path
) -> None:
    passwords = tmp_path / "passwords"
    passwords.write_text("agent:s3cret\n")
    passwords.chmod(0o600)
    subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-U", str(passwords)],
                   check=True)
    probe = Broker(tmp_path)
    broker = broker_factory(f"listener {probe.port} 127.0.0.1\nallow_anonymous false\n"
                            f"password_file {passwords}\n", port=probe.port)
    config = write_config(tmp_path / "agent.toml", broker, int8_model, 'username = "agent"\n')

    wrong = as_json(doctor("--config", str(config), "--json", EDGE_AGENT_MODELS=str(model_dir),
                           EDGE_AGENT_MQTT_PASSWORD="nope"))
    assert wrong["broker"]["status"] == "fail"
    assert "refused" in wrong["broker"]["detail"]
    assert "nope" not in json.dumps(wrong)

    right = as_json(doctor("--config", str(config), "--json", EDGE_AGENT_MODELS=str(model_dir),
                           EDGE_AGENT_MQTT_PASSWORD="s3cret"))
    assert right["broker"]["status"] == "ok", right["broker"]
    assert "as agent" in right["broker"]["detail"]


def test_a_corrupt_model_fails_its_checksum(int8_model: Path, tmp_path: Path, broker: Broker) -> None:
    models = tmp_path / "models"
    models.mkdir()
    copy = models / int8_model.name
    data = bytearray(int8_model.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    shutil.copy(int8_model.with_suffix(".json"), models)
    config = write_config(tmp_path / "agent.toml", broker, copy)
    checks = as_json(doctor("--config", str(config), "--json", EDGE_AGENT_MODELS=str(models)))
    assert checks["model tiny_int8.tflite"]["status"] == "fail"
    assert "sha256" in checks["model tiny_int8.tflite"]["detail"]


def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("[mqtt]\nprot = 1\n")
    result = doctor("--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"edge-agent doctor: error: config {config}: unknown field 'mqtt.prot'"]


def test_coral_found_by_either_usb_id_and_pcie(tmp_path: Path) -> None:
    """sysfs as the kernel lays it out; the one fake here, since no Coral is plugged in."""
    usb, dev = tmp_path / "usb", tmp_path / "dev"
    for name, (vendor, product) in {"1-1": ("1a6e", "089a"), "2-1": ("18d1", "9302"), "3-1": ("046d", "0825")}.items():
        (usb / name).mkdir(parents=True)
        (usb / name / "idVendor").write_text(vendor + "\n")
        (usb / name / "idProduct").write_text(product + "\n")
    dev.mkdir()
    (dev / "apex_0").touch()
    found = coral_devices(str(usb), str(dev))
    assert found == ["Coral USB, firmware not loaded yet (1a6e:089a, 1-1)",
                     "Coral USB, firmware loaded (18d1:9302, 2-1)", f"Coral PCIe {dev}/apex_0"]


def test_throttled_bits() -> None:
    assert decode_throttled(0x0) == ([], [])
    assert decode_throttled(0x50005) == (["under-voltage", "throttled"], ["under-voltage", "throttled"])
    assert decode_throttled(0x80000) == ([], ["soft temperature limit"])
