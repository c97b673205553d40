"""The wheel carries everything a user needs: installed into a fresh venv, run from an empty folder
with no checkout on the path, it finds its shipped model, sample video and systemd unit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel in it; its dependencies come from the test environment's
    site-packages through a .pth line (the same versions, no download), never the checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    wheels = tmp / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("edge_agent-*.whl")
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir


def run_installed(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGE_AGENT_MODELS")}
    env["HOME"] = str(cwd)
    return subprocess.run([str(venv / "bin" / "edge-agent"), *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=env)


def test_the_installed_wheel_runs_the_demo_from_an_empty_folder(venv: Path, tmp_path: Path) -> None:
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import edge_agent; print(edge_agent.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert where.startswith(str(venv)), where  # the wheel's copy, not the checkout's
    share = venv / "share" / "edge-agent"
    result = run_installed(venv, "--task", "waste", "--source", str(share / "samples" / "waste.mp4"), "--sink",
                           "stdout", "--no-on-change", "--max-rate", "0", "--max-frames", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    labels = json.loads((share / "models" / "waste.json").read_text())["labels"]
    assert len(lines) == 3 and all(p["label"] in labels for p in lines)
    assert str(share / "models" / "waste.tflite") in result.stderr


def test_the_installed_wheel_installs_its_own_unit(venv: Path, tmp_path: Path) -> None:
    result = run_installed(venv, "install-service", "--task", "waste", "--dry-run", "--root", str(tmp_path / "root"),
                           "--exec", str(venv / "bin" / "edge-agent"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "edge-agent@.service" in result.stdout and not (tmp_path / "root").exists()


def test_the_wheel_says_which_pythons_it_is_for(venv: Path) -> None:
    """What pip and PyPI show: Debian 12's 3.11 and Debian 13's 3.13 (Raspberry Pi OS bookworm, trixie)."""
    out = subprocess.run([str(venv / "bin" / "python"), "-c", "import importlib.metadata as m, json; "
                          "print(json.dumps(m.metadata('edge-agent').get_all('Classifier')))"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    classifiers = json.loads(out)
    assert {"Programming Language :: Python :: 3.11", "Programming Language :: Python :: 3.13"} <= set(classifiers)
