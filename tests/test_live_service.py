"""The live page as a service runs it: ``install-service --http``, the token as a systemd
credential, and ``doctor`` saying whether the page is on and where."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, agent_env, free_port
from tests.live_helpers import WASTE_VIDEO, live_agent


def edge_agent(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent", *args], capture_output=True, text=True, timeout=120,
                          env=agent_env(**env), cwd=REPO)


def test_install_service_with_a_non_loopback_page_makes_a_token_credential(tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = edge_agent("install-service", "--task", "waste", "--root", str(root), "--no-enable",
                        "--http", "0.0.0.0:8080")
    assert result.returncode == 0, result.stderr
    config = root / "etc/edge-agent/waste.toml"
    token = root / "etc/edge-agent/waste.http_token"
    dropin = root / "etc/systemd/system/edge-agent@waste.service.d/http-token.conf"
    assert 'listen = "0.0.0.0:8080"' in config.read_text()
    assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text().strip()) == 32
    assert dropin.read_text() == "[Service]\nLoadCredential=http_token:/etc/edge-agent/waste.http_token\n"
    # the unit hands the token over as $CREDENTIALS_DIRECTORY/http_token: then the config is usable
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "http_token").write_text(token.read_text())
    checked = edge_agent("--config", str(config), "--print-config",
                         CREDENTIALS_DIRECTORY=str(creds))
    assert checked.returncode == 0 and "token_file = \"" in checked.stdout, checked.stderr
    without = edge_agent("--config", str(config), "--print-config")
    assert without.returncode == 2 and "--http-token-file" in without.stderr
    again = edge_agent("install-service", "--task", "waste", "--root", str(root), "--no-enable",
                       "--http", "0.0.0.0:8080")
    assert again.returncode == 0 and token.read_text() == (root / "etc/edge-agent/waste.http_token").read_text()
    assert "[unchanged] live page token" in again.stdout  # a token in use is never replaced


def test_install_service_without_http_leaves_the_page_off(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert edge_agent("install-service", "--task", "waste", "--root", str(root), "--no-enable").returncode == 0
    assert '# listen = "8080"' in (root / "etc/edge-agent/waste.toml").read_text()
    assert not (root / "etc/edge-agent/waste.http_token").exists()
    bad = edge_agent("install-service", "--task", "waste", "--root", str(root), "--http", "x:y", "--dry-run")
    assert bad.returncode == 2 and "--http x:y" in bad.stderr


def test_doctor_says_whether_the_page_is_on_and_where(tmp_path: Path) -> None:
    off = tmp_path / "off.toml"
    off.write_text('task = "waste"\n')
    on = tmp_path / "on.toml"
    on.write_text('task = "waste"\n[http]\nlisten = "8099"\n')
    out_off = edge_agent("doctor", "--config", str(off)).stdout
    out_on = edge_agent("doctor", "--config", str(on)).stdout
    assert any("live page" in line and "off" in line for line in out_off.splitlines()), out_off
    assert any("live page" in line and "http://127.0.0.1:8099/" in line for line in out_on.splitlines()), out_on


def test_the_page_runs_under_the_service_settings(tmp_path: Path) -> None:
    """A config file's [http] table is what the unit's `--config` gives the agent."""
    config = tmp_path / "waste.toml"
    config.write_text(f'task = "waste"\nsink = "stdout"\n[source]\nsource = "{WASTE_VIDEO}"\nrealtime = true\n'
                      f'[http]\nlisten = "127.0.0.1:{free_port()}"\n')
    with live_agent(["--config", str(config)]) as agent:
        assert agent.host == "127.0.0.1"
        assert agent.get("/api/state")[0] == 200
