"""``edge-agent install-service`` as a user runs it: a dry run, then a real install into a
temporary root, twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edge_agent import config as config_mod
from tests.helpers import REPO, agent_env

VENV_AGENT = str(Path(sys.executable).parent / "edge-agent")
EXPECTED = {  # path under the root → mode
    "etc/edge-agent": 0o755,
    "etc/edge-agent/waste.toml": 0o644,
    "etc/edge-agent/waste.mqtt_password": 0o600,
    "etc/systemd/system/edge-agent@.service": 0o644,
    "etc/udev/rules.d/99-edge-agent-coral.rules": 0o644,
}
ENABLE_LINK = "etc/systemd/system/multi-user.target.wants/edge-agent@waste.service"


def install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent", "install-service", *args], capture_output=True,
                          text=True, timeout=60, env=agent_env(), cwd=REPO)


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every path under ``root``: mode, mtime and content (or link target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        data = os.readlink(path).encode() if path.is_symlink() else path.read_bytes() if path.is_file() else b""
        found[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, data)
    return found


def results(stdout: str) -> dict[str, str]:
    """``[word] step ...`` lines → {first two words of the step: word}."""
    out = {}
    for line in stdout.splitlines():
        word, _, rest = line.partition("] ")
        out[" ".join(rest.split()[:2])] = word.lstrip("[")
    return out


def test_dry_run_prints_every_step_and_touches_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = install("--task", "waste", "--root", str(root), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert not root.exists()
    lines = result.stdout.splitlines()
    assert lines == [
        "[skipped] user edge-agent: useradd --system --user-group --home-dir /var/lib/edge-agent --no-create-home "
        "--shell /usr/sbin/nologin --comment edge-agent service edge-agent (--root: the user is created on the target)",
        f"[would be created] directory {root}/etc/edge-agent",
        f"[would be created] config {root}/etc/edge-agent/waste.toml",
        f"[would be created] credential {root}/etc/edge-agent/waste.mqtt_password",
        f"[would be created] unit {root}/etc/systemd/system/edge-agent@.service",
        f"[would be created] udev rule {root}/etc/udev/rules.d/99-edge-agent-coral.rules",
        "[skipped] reload udev: udevadm control --reload-rules (--root: the target's udev and systemd load it at boot)",
        "[skipped] reload systemd: systemctl daemon-reload (--root: the target's udev and systemd load it at boot)",
        f"[would be enabled] enable edge-agent@waste.service: systemctl --root={root} enable edge-agent@waste.service",
    ]


def test_dry_run_on_this_machine_lists_the_live_commands() -> None:
    result = install("--task", "road", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "useradd --system" in result.stdout
    assert "/etc/edge-agent/road.toml" in result.stdout
    assert "systemctl enable edge-agent@road.service" in result.stdout
    assert not Path("/etc/edge-agent/road.toml").exists() or "[unchanged] config" in result.stdout


def test_install_into_a_root_twice_changes_nothing_the_second_time(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = install("--task", "waste", "--root", str(root), "--mqtt-host", "hub.local")
    assert first.returncode == 0, first.stderr
    assert results(first.stdout)[f"config {root}/etc/edge-agent/waste.toml"] == "created"
    for rel, mode in EXPECTED.items():
        assert (root / rel).exists(), rel
        assert (root / rel).stat().st_mode & 0o7777 == mode, rel
    assert os.readlink(root / ENABLE_LINK) == "/etc/systemd/system/edge-agent@.service"

    unit = (root / "etc/systemd/system/edge-agent@.service").read_text()
    assert f"ExecStart={VENV_AGENT} --config /etc/edge-agent/%i.toml\n" in unit
    shipped = (REPO / "systemd/edge-agent@.service").read_text()
    assert unit == shipped.replace("/opt/edge-agent/venv/bin/edge-agent", VENV_AGENT)
    assert (root / "etc/udev/rules.d/99-edge-agent-coral.rules").read_text() == \
        (REPO / "systemd/99-edge-agent-coral.rules").read_text()

    cfg = config_mod.Config()  # the example config is valid as written
    config_mod.load_file(cfg, root / "etc/edge-agent/waste.toml")
    config_mod.validate(cfg)
    assert (cfg.task, cfg.mqtt.host, cfg.source.camera) == ("waste", "hub.local", "0")

    before = snapshot(root)
    second = install("--task", "waste", "--root", str(root), "--mqtt-host", "hub.local")
    assert second.returncode == 0, second.stderr
    assert snapshot(root) == before
    words = set(results(second.stdout).values())
    assert words <= {"unchanged", "skipped", "not needed"}, second.stdout
    unchanged = [line for line in second.stdout.splitlines() if line.startswith("[unchanged]")]
    assert len(unchanged) == 6, second.stdout  # directory, config, credential, unit, udev rule, enable


def test_reinstall_keeps_an_edited_config_and_repairs_the_unit(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert install("--root", str(root)).returncode == 0
    config = root / "etc/edge-agent/waste.toml"
    config.write_text('task = "waste"\n[mqtt]\nhost = "mine"\n')
    unit = root / "etc/systemd/system/edge-agent@.service"
    unit.write_text(unit.read_text().replace("WatchdogSec=30", "WatchdogSec=0"))

    again = install("--root", str(root))
    assert again.returncode == 0, again.stderr
    assert config.read_text() == 'task = "waste"\n[mqtt]\nhost = "mine"\n'
    assert f"[unchanged] config {config}" in again.stdout
    assert f"[updated] unit {unit}" in again.stdout
    assert "WatchdogSec=30\n" in unit.read_text()


def test_a_venv_under_home_is_refused(tmp_path: Path) -> None:
    result = install("--root", str(tmp_path / "root"), "--exec", "/home/pi/venv/bin/edge-agent")
    assert result.returncode == 2
    assert "ProtectHome=yes" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "root").exists()
