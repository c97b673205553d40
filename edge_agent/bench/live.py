"""``live``: what one viewer of the live page costs the agent, as a ratio measured in one run.

The agent runs as a real subprocess (its own command line) on the source video, unpaced and
looped (``--loop``: as fast as the CPU allows, so any work a viewer adds shows as lost fps), with
``--http`` on a free loopback port and every frame printed (``--no-on-change --max-rate 0``,
stdout sink). Phases of ``--runs`` frames alternate, ``--rounds`` times: no viewer, then one
viewer reading the MJPEG stream (the heaviest way to watch: ``STREAM_FPS`` JPEGs a second,
encoded in the server's thread). Reported: fps per phase, the JPEGs the viewer received, and
``with_vs_without`` = fps with a viewer / fps without (the target: at least 0.95), and
``cpu_with_vs_without``: the agent process's CPU time per frame (all threads, /proc) with a
viewer / without, which other processes on a shared machine disturb far less than fps. Interleaved
phases of one process cancel warm-up and thermal drift. A benchmark, never a timed test.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Final

import cv2

from ..live import jpeg
from ..live.server import STREAM_FPS
from ..live.view import PAGE_JPEG_QUALITY, PAGE_MAX_WIDTH
from .common import Context, spread
from .peer import agent_env, labels_flag, proc_cpu_s

TARGET_WITH_VS_WITHOUT: Final = 0.95  # one viewer costs at most 5 % of the agent's fps
SETTLE_FRAMES: Final = 30  # start-up frames left out
PAGE_WAIT_S: Final = 60.0


class Viewer:
    """One MJPEG viewer in a thread: reads everything, counts the JPEGs."""

    def __init__(self, port: int) -> None:
        self.jpegs = 0
        self._stop = threading.Event()
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._sock.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while not self._stop.is_set():
                chunk = self._sock.recv(65536)
                if not chunk:
                    return
                self.jpegs += chunk.count(b"Content-Type: image/jpeg")

    def close(self) -> int:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)
        return self.jpegs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mode_live(ctx: Context) -> dict[str, Any]:
    a = ctx.args
    threads = int(str(a.threads).split(",")[0])
    port = _free_port()
    cmd = [sys.executable, "-m", "edge_agent", "--task", "custom", "--model", str(ctx.model), "--source",
           str(ctx.source), "--loop", "--threshold", "0", "--max-rate", "0", "--no-on-change", "--threads",
           str(threads), "--sink", "stdout", "--http", str(port), "--log-level", "warning",
           *labels_flag(ctx, ctx.model)]
    phases: list[dict[str, Any]] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          env=agent_env(None)) as proc:
        assert proc.stdout is not None
        try:
            lines = iter(proc.stdout)
            for _ in range(SETTLE_FRAMES):
                next(lines)
            for _ in range(a.rounds):
                for watched in (False, True):
                    viewer = Viewer(port) if watched else None
                    if viewer is not None:  # the viewer is counted once its stream is open
                        deadline = time.monotonic() + PAGE_WAIT_S
                        while viewer.jpegs == 0 and time.monotonic() < deadline:
                            next(lines)
                    t0, c0 = time.perf_counter(), proc_cpu_s(proc.pid)
                    for _ in range(a.runs):
                        next(lines)
                    elapsed, cpu = time.perf_counter() - t0, proc_cpu_s(proc.pid) - c0
                    jpegs = viewer.close() if viewer is not None else 0
                    phases.append({"viewer": watched, "frames": a.runs, "fps": a.runs / elapsed,
                                   "cpu_ms_per_frame": 1000 * cpu / a.runs, "jpegs_received": jpegs})
        except StopIteration:
            raise RuntimeError(f"live: the agent ended early: {' '.join(cmd)}") from None
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    encode_ms = _encode_ms(ctx)
    rounds = [{"without": phases[i]["fps"], "with": phases[i + 1]["fps"],
               "with_vs_without": phases[i + 1]["fps"] / phases[i]["fps"],
               "cpu_with_vs_without": phases[i + 1]["cpu_ms_per_frame"] / max(phases[i]["cpu_ms_per_frame"], 1e-9),
               "jpegs_received": phases[i + 1]["jpegs_received"]} for i in range(0, len(phases), 2)]
    return {"live": {
        "threads": threads, "frames_per_phase": a.runs, "stream_fps": STREAM_FPS, "phases": phases,
        "rounds": rounds,
        "fps_without": spread([r["without"] for r in rounds]),
        "fps_with": spread([r["with"] for r in rounds]),
        "with_vs_without": spread([r["with_vs_without"] for r in rounds]),
        "cpu_with_vs_without": spread([r["cpu_with_vs_without"] for r in rounds]),
        "target": TARGET_WITH_VS_WITHOUT,
        # what one viewer can cost at most, whatever else runs: STREAM_FPS encodes a second
        "encode_ms_p50": round(encode_ms, 3),
        "viewer_core_pct": round(encode_ms * STREAM_FPS / 10, 3),
    }}


def _encode_ms(ctx: Context, frames: int = 60) -> float:
    """Median time to encode one of the source's frames as the page's JPEG, in this process."""
    cap = cv2.VideoCapture(str(ctx.source))
    times: list[float] = []
    try:
        while len(times) < frames:
            ok, image = cap.read()
            if not ok:
                break
            t0 = time.perf_counter()
            jpeg.encode(image, PAGE_MAX_WIDTH, PAGE_JPEG_QUALITY)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        cap.release()
    return statistics.median(times) if times else 0.0
