"""doctor proves the interpreter works, not just that it imports: the configured model is loaded by
the agent's own loader and invoked once in a child process, and a crash there is one FAIL line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, agent_env

CRASHING_INTERPRETER = '''\
"""A stand-in for an interpreter package that imports fine and segfaults inside Interpreter(),
as tflite-runtime 2.14 does under numpy 2 and LiteRT does under qemu-user with an x86 cpuinfo."""
import ctypes


class Interpreter:
    def __init__(self, *args, **kwargs):
        ctypes.string_at(0)  # SIGSEGV, like the real thing: no Python exception to catch


def load_delegate(*args, **kwargs):
    raise ValueError("no delegate here")
'''


def doctor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent", "doctor", *args], capture_output=True, text=True,
                          timeout=180, env=agent_env(**env), cwd=REPO)


def test_doctor_runs_the_model_once_and_says_so() -> None:
    result = doctor()
    invoke = [line for line in result.stdout.splitlines() if line.split()[1:2] == ["invoke"]]
    assert len(invoke) == 1, result.stdout
    assert invoke[0].startswith("OK") and "waste ran once on ai_edge_litert" in invoke[0], invoke[0]


def test_an_interpreter_that_crashes_in_its_constructor_is_one_fail_line(tmp_path: Path) -> None:
    package = tmp_path / "stand_in" / "ai_edge_litert"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "interpreter.py").write_text(CRASHING_INTERPRETER)
    healthy = doctor()
    result = doctor(PYTHONPATH=str(tmp_path / "stand_in"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr

    def failed(out: str) -> list[str]:
        return [line.split()[1] for line in out.splitlines() if line.startswith("FAIL")]

    # exactly one more FAIL than on this machine with the real interpreter (no camera or broker here)
    assert sorted(failed(result.stdout)) == sorted(["invoke", *failed(healthy.stdout)])
    assert "invoke" not in failed(healthy.stdout)
    lines = result.stdout.splitlines()
    (fail,) = [line for line in lines if line.startswith("FAIL") and line.split()[1] == "invoke"]
    assert "crashed (SIGSEGV)" in fail
    assert any(line.startswith("OK    interpreter") for line in lines)  # importing it alone looked fine
