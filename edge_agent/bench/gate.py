"""``gate``: what a static scene costs, with the change gate and without, as a user runs the agent.

Most scenes a Pi watches do not move. The agent is run as a real subprocess (its own command line)
on a camera-paced video (``--camera-fps``, default 30) of one still scene (``--runs`` frames) with a
little sensor noise, that changes to another scene at a known frame, twice: ``--change-gate 0`` (off, every frame
inferred) and ``--change-gate X`` (``--gate-level``). Reported for each, measured in the same run:

- ``core_pct``: CPU-seconds over wall-seconds of the agent process (all threads) while the scene is
  still, in % of one core (from ``/proc/PID/stat``, start-up and the change excluded);
- ``still_latency_ms_p50``: capture → publish latency of the still frames (a gated frame skips
  the invoke, so it is far below the ungated run's);
- ``change``: the published line of the first changed frame: its ``latency_ms`` (an inferred
  frame costs the ungated run's latency) and ``scores_changed`` (its scores differ from the frame
  before; with a trained model this says the change was inferred on its own frame, a model with
  random weights may give the same rounded scores to both scenes).

Every frame is printed (``--no-on-change --max-rate 0``, stdout sink) so the change can be located
by ``seq``; the publishing this adds is the same with and without the gate. A benchmark, never a
timed test.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np

from .common import Context, spread
from .peer import agent_env, labels_flag, proc_cpu_s

AFTER_S: Final = 2.0  # after the change
SETTLE_S: Final = 2.0  # start-up and the first frames are left out of the still part's CPU


def scene_video(path: Path, fps: float, still_frames: int, after_s: float, seed: int = 0) -> int:
    """A 640×480 mp4 of one still scene with ±2 grey levels of sensor noise for ``still_frames``,
    then another scene. Returns the index of the first changed frame."""
    rng = np.random.default_rng(seed)
    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // w), (yy * 255 // h), np.full((h, w), 90)], axis=-1).astype(np.int16)
    first = base.copy()
    cv2.rectangle(first, (80, 80), (260, 300), (30, 160, 220), -1)
    second = base.copy()
    cv2.circle(second, (420, 240), 150, (220, 40, 40), -1)
    change_at = still_frames
    total = change_at + round(after_s * fps)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    try:
        for i in range(total):
            scene = first if i < change_at else second
            noise = rng.integers(-2, 3, size=(h, w, 1), dtype=np.int16)
            writer.write(np.clip(scene + noise, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    return change_at


def run_gated(ctx: Context, model: Path, video: Path, change_at: int, fps: float, gate: float,
              threads: int) -> dict[str, Any]:
    """One agent run: % of one core while still, and the first changed frame's line."""
    cmd = [sys.executable, "-m", "edge_agent", "--task", "custom", "--model", str(model), "--source", str(video),
           "--realtime", "--threshold", "0", "--max-rate", "0", "--no-on-change", "--threads", str(threads),
           "--change-gate", str(gate), "--log-level", "warning", "--sink", "stdout", *labels_flag(ctx, model)]
    settle = min(int(SETTLE_S * fps), change_at // 3)
    lines: dict[int, dict[str, Any]] = {}
    marks: dict[str, tuple[float, float]] = {}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          env=agent_env(None)) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = json.loads(raw)
            seq = int(line["seq"])
            lines[seq] = line
            if seq >= settle and "start" not in marks:
                marks["start"] = (time.perf_counter(), proc_cpu_s(proc.pid))
            if seq >= change_at - 1 and "end" not in marks:
                marks["end"] = (time.perf_counter(), proc_cpu_s(proc.pid))
        proc.wait()
    if proc.returncode != 0 or "start" not in marks or "end" not in marks:
        raise RuntimeError(f"gate: the agent exited {proc.returncode} after {len(lines)} lines: {' '.join(cmd)}")
    (t0, c0), (t1, c1) = marks["start"], marks["end"]
    before, changed = lines.get(change_at - 1), lines.get(change_at)
    still = [float(lines[i]["latency_ms"]) for i in range(settle, change_at) if i in lines]
    return {
        "gate": gate,
        "core_pct": 100.0 * (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0,
        "still_frames": change_at - settle,
        "still_latency_ms_p50": statistics.median(still) if still else None,
        "change": {
            "seq": change_at,
            "published": changed is not None,
            "scores_changed": bool(changed and before and changed["top"] != before["top"]),
            "latency_ms": changed.get("latency_ms") if changed else None,
        },
    }


def mode_gate(ctx: Context) -> dict[str, Any]:
    a = ctx.args
    fps = a.camera_fps or 30.0
    threads = int(str(a.threads).split(",")[0])
    video = ctx.workdir / "scene.mp4"
    change_at = scene_video(video, fps, a.runs, AFTER_S)  # --runs: frames of the still scene
    rounds: list[dict[str, Any]] = []
    for _ in range(a.rounds):
        rounds.append({"off": run_gated(ctx, ctx.model, video, change_at, fps, 0.0, threads),
                       "on": run_gated(ctx, ctx.model, video, change_at, fps, a.gate_level, threads)})
    return {"gate": {
        "camera_fps": fps, "threads": threads, "gate_level": a.gate_level, "rounds": rounds,
        "core_pct_off": spread([r["off"]["core_pct"] for r in rounds]),
        "core_pct_on": spread([r["on"]["core_pct"] for r in rounds]),
        "on_vs_off": spread([r["on"]["core_pct"] / r["off"]["core_pct"] for r in rounds if r["off"]["core_pct"] > 0]),
        "change_latency_ms_on": spread([r["on"]["change"]["latency_ms"] or 0.0 for r in rounds]),
        "still_latency_ms_on": spread([r["on"]["still_latency_ms_p50"] or 0.0 for r in rounds]),
        "still_latency_ms_off": spread([r["off"]["still_latency_ms_p50"] or 0.0 for r in rounds]),
        "change_scores_changed": all(r["on"]["change"]["scores_changed"] for r in rounds),
    }}
