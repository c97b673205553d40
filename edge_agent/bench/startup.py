"""``startup``: seconds from process start to the first prediction, and peak RSS."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import numpy as np

from .common import STARTUP_FRAMES, Context, make_interpreter, spread, thread_counts

logger = logging.getLogger("bench")

# -- start-up and memory ----------------------------------------------------------------------
# Why a launcher: Linux carries the parent's peak RSS into a child's ru_maxrss across fork/vfork
# and exec, so wait4() on a child of this (large) bench process reports the bench's own peak. A
# tiny interpreter that forks and execs the agent brings that floor down to ~10 MB; it adds one
# bare Python start (~15 ms) to the measured start-up, so the figure errs on the slow side.
LAUNCHER: Final = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "sys.stderr.write('\\nBENCH-MAXRSS-KB %d\\n' % usage.ru_maxrss)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)
def bench_startup(ctx: Context, model: Path, threads: int) -> dict[str, Any]:
    """Process start → first prediction line, and peak RSS, of ``python -m edge_agent``."""
    a = ctx.args
    interp = make_interpreter(ctx, model, 1, None)
    interp.allocate_tensors()
    labels = ctx.labels_for(model, int(np.prod(interp.get_output_details()[0]["shape"])))
    del interp
    cmd = ["-m", "edge_agent", "--model", str(model), "--source", str(ctx.source),
           "--sink", "stdout", "--task", "custom", "--threshold", "0", "--no-on-change", "--max-rate", "0",
           "--threads", str(threads),
           "--max-frames", str(STARTUP_FRAMES), "--log-level", "warning"]
    if labels:
        cmd += ["--labels", str(labels)]
    if a.edgetpu is not None:
        cmd += ["--edgetpu", a.edgetpu] if a.edgetpu else ["--edgetpu"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
    samples: list[dict[str, float]] = []
    for _ in range(a.startup_repeats):
        t0 = time.monotonic()
        with subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, *cmd], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            first = proc.stdout.readline()
            first_s = time.monotonic() - t0
            # Not communicate(): it reads the raw pipe and would lose lines readline() already
            # buffered (a busy machine delivers two predictions in one read). stderr stays small.
            rest = proc.stdout.read()
            err = proc.stderr.read()
        found = re.search(r"^BENCH-MAXRSS-KB (\d+)$", err, re.MULTILINE)
        if proc.returncode != 0 or not first or not found:
            raise RuntimeError(f"the agent failed (exit {proc.returncode}): {err.strip()[-500:]}")
        samples.append({"first_prediction_s": first_s, "total_s": time.monotonic() - t0,
                        "peak_rss_mb": int(found.group(1)) / 1024.0, "predictions": 1 + rest.count("\n")})
    return {"threads": threads, "command": "python " + " ".join(cmd), "runs": len(samples),
            "first_prediction_s": spread([s["first_prediction_s"] for s in samples]),
            "peak_rss_mb": spread([s["peak_rss_mb"] for s in samples]),
            "samples": [{k: round(v, 4) for k, v in s.items()} for s in samples]}


def mode_startup(ctx: Context) -> dict[str, Any]:
    return {"startup": [bench_startup(ctx, ctx.model, t) for t in thread_counts(ctx)]}
