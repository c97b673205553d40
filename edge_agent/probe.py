"""Prove the interpreter works here: load the configured model exactly as the agent does and run
it once, in a child process, so a crash inside the interpreter becomes one line, not a dead doctor.

Why a child: an interpreter package that imports fine can still segfault inside ``Interpreter()``
(tflite-runtime 2.14 under numpy 2; LiteRT's CPU probe under qemu-user with the host's cpuinfo).
Importing it proves nothing; only building the interpreter and invoking it does, and a segfault
cannot be caught in the process it kills. The child uses the agent's own loader
(:func:`edge_agent.service.load_model`: manifest, checks, delegate, smoke invoke), so what doctor
says OK to is what a run will load.

    python -m edge_agent.probe --task waste [--model M] [--labels L] [--edgetpu SPEC] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Final

from .config import Config

PROBE_TIMEOUT_S: Final = 120.0  # an Edge TPU's first invoke uploads the model: give it time


def child_args(config: Config) -> list[str]:
    """The flags that make the child load what ``config`` runs."""
    args = ["--task", config.task, "--threads", str(config.model.threads)]
    if config.model.path:
        args += ["--model", config.model.path]
    if config.model.labels:
        args += ["--labels", config.model.labels]
    if config.model.edgetpu is not None:
        args += ["--edgetpu", config.model.edgetpu]
    return args


def probe(config: Config, timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """(ok, one line): the child's report, or how it died."""
    cmd = [sys.executable, "-m", "edge_agent.probe", *child_args(config)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"loading and invoking the model did not finish within {timeout:.0f} s"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode == 0 and lines:
        r = json.loads(lines[-1])
        return True, (f"{r['model']} ran once on {r['backend']} ({r['delegate']}, {r['threads']} threads) "
                      f"in {r['invoke_ms']:.1f} ms")
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        return False, (f"the interpreter crashed ({name}) loading or invoking the model in a child process: "
                       "the agent would crash the same way")
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    return False, errors[-1] if errors else f"the probe exited {done.returncode}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge_agent.probe", description="load the model, invoke it once")
    p.add_argument("--task", default="waste")
    p.add_argument("--model")
    p.add_argument("--labels")
    p.add_argument("--edgetpu")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    from . import service  # the agent's own loader
    from .errors import EdgeAgentError

    config = Config(task=a.task)
    config.model.path, config.model.labels, config.model.edgetpu = a.model, a.labels, a.edgetpu
    config.model.threads = a.threads
    try:
        _, model = service.load_model(config)
        t0 = time.perf_counter()
        model.engine.warm_up()
        invoke_ms = (time.perf_counter() - t0) * 1000
    except EdgeAgentError as e:
        print(f"probe: error: {e}", file=sys.stderr)
        return int(e.exit_code)
    engine = model.engine
    print(json.dumps({"model": model.name, "backend": f"{engine.backend.name} {engine.backend.version}",
                      "delegate": engine.delegate, "threads": engine.threads, "invoke_ms": round(invoke_ms, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
