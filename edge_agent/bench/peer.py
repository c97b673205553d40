"""``peer``: the agent as a user runs it (its own command line, a real subprocess) against the
loop it exists to beat, interleaved round by round in one run, as ratios.

Contenders, each a separate process on the same model and video:

- ``agent``: ``python -m edge_agent --task custom --model M --source V --threshold 0 --threads T
  [--workers W]``; throughput from its own prediction lines (first to last: start-up excluded),
  CPU-seconds from ``/proc/PID/stat`` at the first line and ``wait4`` at exit.
- ``tutorial``: the single-threaded loop of the usual examples (the ``baseline`` mode's loop).
- ``invoke``: the bare interpreter at one thread on a fixed input (CPU per invoke).
- ``decode``: decode + cvtColor + resize to the model's size, nothing else (CPU per frame).

The CPU-bound limit on this machine is ``usable cores / (decode + invoke CPU-seconds per frame)``;
the report gives the agent's FPS against it and against the tutorial loop, and its CPU-seconds per
prediction against the sum of the parts. Both sides print to stdout (``pipeline --mqtt-host``
measures a broker). A benchmark, never a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np

from .. import board
from .baseline import _frames, bench_baseline
from .common import Context, make_interpreter, spread, thread_counts

CHILD: Final = "edge_agent.bench.peer"  # the children below run as `python -m edge_agent.bench.peer KIND`
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu_s(pid: int) -> float:
    """user + system CPU of a running process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# -- the children ------------------------------------------------------------------------------
def child_decode(model: Path, source: Path, frames: int) -> dict[str, float]:
    interp = make_interpreter_plain(model, 1)
    _, h, w, _ = (int(x) for x in interp.get_input_details()[0]["shape"])
    it = _frames(source)
    next(it)
    t0, c0 = time.perf_counter(), _cpu_s()
    for _ in range(frames):
        cv2.resize(cv2.cvtColor(next(it), cv2.COLOR_BGR2RGB), (w, h))
    return {"frames": frames, "wall_s": time.perf_counter() - t0, "cpu_s": _cpu_s() - c0}


def child_invoke(model: Path, frames: int, threads: int) -> dict[str, float]:
    interp = make_interpreter_plain(model, threads)
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
    interp.invoke()
    t0, c0 = time.perf_counter(), _cpu_s()
    for _ in range(frames):
        interp.invoke()
    return {"frames": frames, "wall_s": time.perf_counter() - t0, "cpu_s": _cpu_s() - c0}


def make_interpreter_plain(model: Path, threads: int) -> Any:
    from ..engine import find_backend

    interp = find_backend().interpreter(model_path=str(model), num_threads=threads)
    interp.allocate_tensors()
    return interp


def child_tutorial(model: Path, source: Path, frames: int, threads: int) -> dict[str, float]:
    import tempfile

    from ..engine import find_backend

    args = argparse.Namespace(warmup=5, runs=frames, edgetpu=None, mqtt_host=None, mqtt_port=1883,
                              source=str(source))
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(args, find_backend(), Path(tmp))
        c0 = _cpu_s()
        result = bench_baseline(ctx, model, threads)
        cpu = _cpu_s() - c0
    # the loop's own clock excludes its warm-up; CPU is counted over warm-up too, so scale it
    wall = result["frames"] / result["fps"] if result["fps"] else 0.0
    return {"frames": result["frames"], "wall_s": wall, "cpu_s": cpu * frames / (frames + 5)}


def child_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {CHILD}")
    p.add_argument("kind", choices=("decode", "invoke", "tutorial"))
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--source", type=Path, required=True)
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.kind == "decode":
        out = child_decode(a.model, a.source, a.frames)
    elif a.kind == "invoke":
        out = child_invoke(a.model, a.frames, a.threads)
    else:
        out = child_tutorial(a.model, a.source, a.frames, a.threads)
    print(json.dumps(out))
    return 0


# -- the parent --------------------------------------------------------------------------------
def run_child(kind: str, ctx: Context, model: Path, frames: int, threads: int) -> dict[str, float]:
    cmd = [sys.executable, "-m", CHILD, kind, "--model", str(model), "--source", str(ctx.source),
           "--frames", str(frames), "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"peer {kind}: {done.stderr.strip().splitlines()[-1:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def agent_flags(checkout: Path | None) -> set[str]:
    """The flags this agent's ``--help`` offers: an older checkout may lack --workers or --no-on-change."""
    env = agent_env(checkout)
    out = subprocess.run([sys.executable, "-m", "edge_agent", "--help"], capture_output=True, text=True,
                         timeout=60, env=env, check=True).stdout
    return {word.strip("[],") for word in out.split() if word.startswith(("--", "[--"))}


def agent_env(checkout: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
    if checkout is not None:  # another checkout's agent (before/after in one sitting)
        env["PYTHONPATH"] = str(checkout)
    return env


def labels_flag(ctx: Context, model: Path) -> list[str]:
    """``--labels FILE`` for a model without a manifest (the agent needs labels), else nothing."""
    interp = make_interpreter(ctx, model, 1, None)
    labels = ctx.labels_for(model, int(np.prod(interp.get_output_details()[0]["shape"])))
    return [] if labels is None else ["--labels", str(labels)]


def run_agent(ctx: Context, model: Path, frames: int, threads: int, workers: int,
              checkout: Path | None = None) -> dict[str, float]:
    """The agent's own command line (stdout sink, every frame published); steady-state FPS and CPU
    from its first prediction line on."""
    labels = labels_flag(ctx, model)
    offered = agent_flags(checkout)
    cmd = [sys.executable, "-m", "edge_agent", "--task", "custom", "--model", str(model), "--source",
           str(ctx.source), "--loop", "--threshold", "0", "--max-rate", "0", "--threads", str(threads),
           "--max-frames", str(frames + 1), "--log-level", "warning", "--sink", "stdout"]
    if "--no-on-change" in offered:
        cmd.append("--no-on-change")
    if workers != 1 or "--workers" in offered:
        cmd += ["--workers", str(workers)]
    cmd += labels
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          env=agent_env(checkout)) as proc:
        assert proc.stdout is not None
        proc.stdout.readline()
        first_t, first_cpu = time.perf_counter(), proc_cpu_s(proc.pid)
        lines = sum(1 for _ in proc.stdout)
        last_t = time.perf_counter()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or lines == 0:
        raise RuntimeError(f"peer: the agent exited {proc.returncode} after {lines} lines: {' '.join(cmd)}")
    return {"frames": lines, "wall_s": last_t - first_t, "cpu_s": usage.ru_utime + usage.ru_stime - first_cpu}


def per_frame(r: dict[str, float]) -> tuple[float, float]:
    """(FPS, CPU-seconds per frame)."""
    n = max(r["frames"], 1)
    return (n / r["wall_s"] if r["wall_s"] > 0 else 0.0), r["cpu_s"] / n


def bench_peer(ctx: Context) -> dict[str, Any]:
    a = ctx.args
    model, frames, cores = ctx.model, a.runs, board.usable_cores()
    make_interpreter(ctx, model, 1, None)  # fails here, with the bench's message, if the model is unusable
    workers = [int(w) for w in str(a.workers).split(",") if w.strip()]
    rounds: list[dict[str, Any]] = []
    for _ in range(a.rounds):
        row: dict[str, Any] = {}
        decode_fps, decode_cpu = per_frame(run_child("decode", ctx, model, frames, 1))
        invoke_fps, invoke_cpu = per_frame(run_child("invoke", ctx, model, frames, 1))
        row["decode"] = {"fps": decode_fps, "cpu_ms": decode_cpu * 1000}
        row["invoke_1_thread"] = {"fps": invoke_fps, "cpu_ms": invoke_cpu * 1000}
        row["limit_fps"] = cores / (decode_cpu + invoke_cpu) if decode_cpu + invoke_cpu > 0 else 0.0
        for t in thread_counts(ctx):
            fps, cpu = per_frame(run_child("tutorial", ctx, model, frames, t))
            row[f"tutorial_t{t}"] = {"fps": fps, "cpu_ms": cpu * 1000}
        for t in thread_counts(ctx):
            for w in workers:
                fps, cpu = per_frame(run_agent(ctx, model, frames, t, w))
                row[f"agent_t{t}_w{w}"] = {"fps": fps, "cpu_ms": cpu * 1000}
            if a.before is not None:  # the same agent command line from another checkout, same round
                fps, cpu = per_frame(run_agent(ctx, model, frames, t, 1, a.before))
                row[f"agent_before_t{t}_w1"] = {"fps": fps, "cpu_ms": cpu * 1000}
        rounds.append(row)
    best_tutorial = [max(v["fps"] for k, v in r.items() if k.startswith("tutorial_")) for r in rounds]
    agents = sorted(k for k in rounds[0] if k.startswith("agent_"))
    summary: dict[str, Any] = {}
    for k in agents:
        agent_fps = [r[k]["fps"] for r in rounds]
        summary[k] = {
            "fps": spread(agent_fps),
            "vs_tutorial": spread([f / b for f, b in zip(agent_fps, best_tutorial, strict=True)]),
            "vs_limit": spread([r[k]["fps"] / r["limit_fps"] for r in rounds]),
            "cpu_ms_per_prediction": spread([r[k]["cpu_ms"] for r in rounds]),
            "cpu_vs_parts": spread([r[k]["cpu_ms"] / (r["decode"]["cpu_ms"] + r["invoke_1_thread"]["cpu_ms"])
                                    for r in rounds]),
        }
    return {"cores": cores, "frames": frames, "rounds": rounds, "agents": summary,
            "best_tutorial_fps": spread(best_tutorial),
            "limit_fps": spread([r["limit_fps"] for r in rounds])}


def mode_peer(ctx: Context) -> dict[str, Any]:
    return {"peer": bench_peer(ctx)}


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
