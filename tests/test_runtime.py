"""One runtime for every kind of input: no import cycles in the package, and ``--validate-config``
builds exactly what a run builds, so the two can never disagree."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_agent.sources.wav import write_wav
from edge_agent.tasks import TASKS
from tests.helpers import REPO, assert_one_line_error, run_agent
from tests.test_install import install
from tests.voice_helpers import VOICE_MODEL


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str], root: Path) -> set[str]:
    """Every ``edge_agent`` module this file imports, at the top or inside a function (an import
    hidden in a function is still a cycle: it only moves the failure to run time)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "edge_agent")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "edge_agent":
                continue
            for alias in node.names:  # `from . import service` names a module, not a value
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    found.discard(name)
    return {m for m in found if m in modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_graph(root: Path = REPO) -> dict[str, set[str]]:
    """edge_agent module → the edge_agent modules it imports, for the package under ``root``."""
    files = sorted((root / "edge_agent").rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    return {module_name(f, root): imports_of(f, modules, root) for f in files}


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    """The check below must be able to fail: the shape the old service ↔ voice agent had."""
    pkg = tmp_path / "edge_agent"
    (pkg / "voice").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "voice" / "__init__.py").write_text("")
    (pkg / "service.py").write_text("from .voice import service as vs\n")
    (pkg / "voice" / "service.py").write_text("def run():\n    from ..service import make_publisher\n")
    graph = package_graph(tmp_path)
    assert cycles(graph) == [["edge_agent.service", "edge_agent.voice.service"]]


def test_edge_agent_has_no_import_cycles() -> None:
    graph = package_graph()
    assert cycles(graph) == []
    assert "edge_agent.agents.image" in graph["edge_agent.service"]  # the graph is the real one


def test_no_module_of_the_agent_reaches_back_into_the_composition_root() -> None:
    """Data flows one way: only entry points — the CLI, doctor's probe child and the bench (which
    measure what the CLI builds) — import the composition root; agents, sources, the runtime and
    the hub never do."""
    graph = package_graph()
    importers = sorted(m for m, deps in graph.items() if "edge_agent.service" in deps)
    entry_points = ("edge_agent.cli", "edge_agent.probe")
    assert importers and all(m in entry_points or m.startswith("edge_agent.bench.") for m in importers), importers


def test_validate_config_checks_a_voice_front_end_the_run_would_refuse(tmp_path: Path) -> None:
    """Reproduced bug: a voice manifest with mel_bins = 32 got "config OK", then the run exited 2."""
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(VOICE_MODEL.read_bytes())
    data = json.loads(VOICE_MODEL.with_suffix(".json").read_text())
    data["input"]["mel_bins"] = 32
    (tmp_path / "lone.json").write_text(json.dumps(data))
    wav = tmp_path / "q.wav"
    write_wav(wav, np.zeros(16_000, np.float32), 16_000)
    args = ["--task", "voice", "--model", str(lone), "--source", str(wav), "--sink", "stdout"]
    validated = run_agent([*args, "--validate-config"])
    ran = run_agent(args)
    assert "config OK" not in validated.stdout
    assert_one_line_error(validated, "32", "model's input")
    assert_one_line_error(ran, "32", "model's input")


def test_install_service_writes_a_voice_config_that_validates_and_runs(tmp_path: Path) -> None:
    """Reproduced bug: ``install-service --task voice`` wrote ``camera = "0"``, which validate
    passed and the run refused. Now the example listens to a microphone, and a camera line in a
    voice config is refused by validate exactly as by the run."""
    root = tmp_path / "root"
    result = install("--task", "voice", "--root", str(root), "--mqtt-host", "127.0.0.1")
    assert result.returncode == 0, result.stderr
    conf = root / "etc/edge-agent/voice.toml"
    text = conf.read_text()
    assert 'mic = "default"' in text and "camera" not in text.split("[source]")[1].split("[")[0]
    validated = run_agent(["--config", str(conf), "--validate-config"])
    assert validated.returncode == 0, validated.stderr
    assert validated.stdout.strip() == "config OK"

    with_camera = tmp_path / "camera.toml"
    with_camera.write_text(text.replace('mic = "default"', 'camera = "0"'))
    wav = tmp_path / "q.wav"
    write_wav(wav, np.zeros(16_000, np.float32), 16_000)
    refused = run_agent(["--config", str(with_camera), "--validate-config"])
    line = assert_one_line_error(refused, "source.camera", "voice")
    assert str(with_camera) in line
    ran = run_agent(["--config", str(with_camera), "--sink", "stdout"])
    assert_one_line_error(ran, "source.camera", "voice")


def test_an_image_task_refuses_a_microphone_before_opening_anything(tmp_path: Path) -> None:
    result = run_agent(["--task", "waste", "--mic", "default", "--sink", "stdout", "--validate-config"])
    assert_one_line_error(result, "source.mic", "waste")


@pytest.mark.parametrize("task", sorted(t for t, spec in TASKS.items() if spec.model))
def test_install_service_writes_a_config_that_validates_for_every_built_in_task(task: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = install("--task", task, "--root", str(root), "--mqtt-host", "127.0.0.1")
    assert result.returncode == 0, result.stderr
    validated = run_agent(["--config", str(root / f"etc/edge-agent/{task}.toml"), "--validate-config"])
    assert (validated.returncode, validated.stdout.strip()) == (0, "config OK"), validated.stderr[-2000:]
