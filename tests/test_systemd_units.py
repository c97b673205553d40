"""The shipped units, checked by systemd's own tools (systemd-analyze 252, as on Bookworm).

``systemd-analyze verify`` exits 0 on an unknown key (``WatchdogSecs=``) and only prints a
warning, so any output at all fails the test. It also insists that ExecStart='s binary exists,
so we verify the unit exactly as ``install-service`` writes it (ExecStart= pointing at this
venv's edge-agent), not a copy doctored for the test.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.errors import ExitCode
from tests.helpers import REPO, agent_env

UNIT = REPO / "systemd" / "edge-agent@.service"
UDEV = REPO / "systemd" / "99-edge-agent-coral.rules"
MAX_EXPOSURE = 3.0  # systemd-analyze security: "OK" up to here


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is missing: apt-get install systemd"
    return found


@pytest.fixture(scope="module")
def installed_unit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    result = subprocess.run([sys.executable, "-m", "edge_agent", "install-service", "--root", str(root)],
                            capture_output=True, text=True, env=agent_env(), cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    return root / "etc/systemd/system/edge-agent@.service"


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=60)


def exposure(unit: Path) -> tuple[float, str]:
    result = subprocess.run([systemd_analyze(), "security", "--offline=true", str(unit)], capture_output=True,
                            text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    return float(match.group(1)), match.group(2)


def sections(unit: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    return parser


def test_verify_prints_nothing(installed_unit: Path) -> None:
    result = verify(installed_unit)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_verify_would_catch_a_typo(installed_unit: Path, tmp_path: Path) -> None:
    """The test above can fail: a misspelt key is only a warning, and we see it."""
    bad = tmp_path / "edge-agent@.service"
    bad.write_text(installed_unit.read_text().replace("WatchdogSec=30", "WatchdogSecs=30"))
    result = verify(bad)
    assert result.returncode == 0
    assert "Unknown key 'WatchdogSecs'" in result.stderr


def test_verify_of_the_shipped_file_only_misses_the_binary(tmp_path: Path) -> None:
    """The file in systemd/ as shipped: its one complaint is /opt/edge-agent/venv not existing here."""
    result = verify(UNIT)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    # systemd 252 names the template's test instance "i", 257 (Debian 13) "test_instance"
    assert len(lines) == 1, lines
    assert re.fullmatch(r"edge-agent@(i|test_instance)\.service: Command /opt/edge-agent/venv/bin/edge-agent "
                        r"is not executable: No such file or directory", lines[0]), lines


def test_security_exposure_is_ok_and_documented(installed_unit: Path) -> None:
    level, verdict = exposure(installed_unit)
    assert level <= MAX_EXPOSURE and verdict == "OK", (level, verdict)
    docs = (REPO / "docs" / "PI.md").read_text()
    assert f"exposure level {level:.1f} OK" in docs, f"docs/PI.md should quote the measured {level:.1f}"


def test_the_traps_are_avoided() -> None:
    unit = sections(UNIT)
    service, unit_section = unit["Service"], unit["Unit"]
    assert service["Type"] == "notify"  # notify-reload is systemd 253+, Bookworm has 252
    assert "StartLimitIntervalSec" in unit_section and "StartLimitIntervalSec" not in service
    assert "StartLimitBurst" in unit_section
    assert service.get("PrivateDevices", "no") == "no"  # would hide /dev/video*, /dev/snd, USB
    assert service["RestartPreventExitStatus"] == str(int(ExitCode.USAGE))
    assert service["Restart"] == "on-failure"
    text = UNIT.read_text()
    for device in ("char-video4linux", "char-alsa", "char-usb_device", "char-apex", "char-dma_heap", "char-media"):
        assert f"DeviceAllow={device} rw" in text, device
    assert "LoadCredential=mqtt_password:" in text  # the name config.load_secrets looks for
    assert "ExecStart=/opt/edge-agent/venv/bin/edge-agent --config /etc/edge-agent/%i.toml" in text


def test_udev_rule_covers_the_coral_before_and_after_its_firmware_loads() -> None:
    rules = [line for line in UDEV.read_text().splitlines() if line and not line.startswith("#")]
    ids = {(m.group(1), m.group(2)) for line in rules
           if (m := re.search(r'ATTR\{idVendor\}=="(\w+)", ATTR\{idProduct\}=="(\w+)"', line))}
    assert ids == {("1a6e", "089a"), ("18d1", "9302")}
    assert all('GROUP="plugdev"' in line for line in rules)  # the unit's SupplementaryGroups
    assert any('SUBSYSTEM=="apex"' in line for line in rules)
