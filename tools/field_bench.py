"""What a Pi left alone for months pays for the defaults: disk bytes written and messages sent.

Runs the real agent (``python -m edge_agent``) as a subprocess on a 30 fps source paced in real
time and looped, against a real mosquitto on 127.0.0.1, and reads the agent process's
``write_bytes`` from ``/proc/PID/io`` (bytes it caused to be written to storage: the spool, its
WAL, anything else) and counts the prediction messages a subscriber receives::

    python tools/field_bench.py                      # defaults, healthy broker and broker down, 120 s each
    python tools/field_bench.py --seconds 300 --json docs/bench/field.json
    python tools/field_bench.py --scenario every-frame-healthy   # the old default, for comparison

Scenarios (:data:`SCENARIOS`): ``defaults-healthy``, ``defaults-broker-down`` and
``every-frame-healthy`` / ``every-frame-broker-down`` (``--no-on-change --max-rate 0``: a
message per frame, what the agent did by default before). The source is ``samples/waste.mp4``
(10 fps) with every frame written three times into a 30 fps file, so the scene changes as in the
sample but a camera's 30 frames a second reach the model. This is a benchmark, never a test: its
figures depend on the machine (docs/FIELD.md records where they were taken).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parent.parent
SAMPLE: Final = REPO / "samples" / "waste.mp4"
TARGET_FPS: Final = 30
WARMUP_S: Final = 15.0  # model load, first connect, discovery: not part of the steady state
SECONDS_PER_DAY: Final = 86400
EVERY_FRAME: Final = ("--no-on-change", "--max-rate", "0")
SCENARIOS: Final = {
    "defaults-healthy": ((), True),
    "defaults-broker-down": ((), False),
    "every-frame-healthy": (EVERY_FRAME, True),
    "every-frame-broker-down": (EVERY_FRAME, False),
}
DEFAULT_SCENARIOS: Final = ("defaults-healthy", "defaults-broker-down")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_source(out: Path, sample: Path = SAMPLE, repeat: int = 3) -> Path:
    """A 30 fps copy of a 10 fps sample: each frame ``repeat`` times."""
    import cv2

    cap = cv2.VideoCapture(str(sample))
    if not cap.isOpened():
        raise SystemExit(f"field_bench: cannot open {sample}")
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), TARGET_FPS, size)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        for _ in range(repeat):
            writer.write(frame)
    writer.release()
    cap.release()
    return out


class Mosquitto:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n{user}")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise SystemExit("field_bench: mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


class Counter:
    """Counts prediction messages on the broker, and keeps the last metrics message."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.count = 0
        self.metrics: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"field-bench-{os.getpid()}")
        ready = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("edge-agent/#", qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            raise SystemExit("field_bench: the subscriber did not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            if msg.topic.endswith("/prediction"):
                self.count += 1
            elif msg.topic.endswith("/metrics"):
                with contextlib.suppress(ValueError):
                    self.metrics = json.loads(msg.payload)

    def read(self) -> int:
        with self._lock:
            return self.count

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise SystemExit("field_bench: /proc/PID/io has no write_bytes (needs Linux with task I/O accounting)")


def run_scenario(name: str, source: Path, seconds: float, model: str | None, workdir: Path) -> dict[str, Any]:
    extra, healthy = SCENARIOS[name]
    broker = Mosquitto(workdir)
    counter: Counter | None = None
    if healthy:
        broker.start()
        counter = Counter(broker.port)
    state = Path(tempfile.mkdtemp(prefix="state-", dir=workdir))
    args = [sys.executable, "-m", "edge_agent", "--source", str(source), "--realtime", "--loop",
            "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port), "--device-id", "bench",
            "--metrics-interval", "10", *extra]
    if model:
        args += ["--model", model]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
    env["STATE_DIRECTORY"] = str(state)
    log = (workdir / f"{name}.log").open("w")
    agent = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        time.sleep(WARMUP_S)
        if agent.poll() is not None:
            raise SystemExit(f"field_bench: the agent exited ({agent.returncode}); see {log.name}")
        w0, c0, t0 = write_bytes(agent.pid), counter.read() if counter else 0, time.monotonic()
        time.sleep(seconds)
        w1, c1, t1 = write_bytes(agent.pid), counter.read() if counter else 0, time.monotonic()
    finally:
        agent.terminate()
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
        log.close()
        if counter is not None:
            counter.close()
        broker.stop()
    elapsed = t1 - t0
    spool = next(state.glob("spool-*.sqlite"), None)
    spooled = None
    if spool is not None and not healthy:
        import sqlite3

        with sqlite3.connect(spool) as db:
            spooled = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    per_hour = (w1 - w0) / elapsed * 3600
    return {
        "scenario": name, "broker": "healthy" if healthy else "down", "flags": list(extra),
        "seconds": round(elapsed, 1), "write_bytes": w1 - w0,
        "mb_per_hour": round(per_hour / 1e6, 3), "mb_per_day": round(per_hour * 24 / 1e6, 2),
        "messages_per_s": round((c1 - c0) / elapsed, 3) if healthy else None,
        "messages_per_day": round((c1 - c0) / elapsed * SECONDS_PER_DAY) if healthy else None,
        "agent_fps": counter.metrics.get("fps") if counter else None,
        "spool_commits": counter.metrics.get("spool_commits") if counter else None,
        "spooled_at_stop": spooled,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=120.0, help="measured seconds per scenario (after warm-up)")
    p.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                   help=f"repeatable (default: {', '.join(DEFAULT_SCENARIOS)})")
    p.add_argument("--model", help="default: the waste task's shipped model")
    p.add_argument("--source", type=Path, help="a 30 fps video (default: samples/waste.mp4 re-timed to 30 fps)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="field-bench-") as tmp:
        workdir = Path(tmp)
        source = args.source or make_source(workdir / "waste30.mp4")
        results = []
        for name in args.scenario or DEFAULT_SCENARIOS:
            print(f"{name}: {WARMUP_S:.0f} s warm-up, then {args.seconds:.0f} s measured ...", flush=True)
            results.append(run_scenario(name, source, args.seconds, args.model, workdir))
            r = results[-1]
            msgs = f"{r['messages_per_s']} msg/s ({r['messages_per_day']}/day)" if r["broker"] == "healthy" else (
                f"{r['spooled_at_stop']} spooled")
            print(f"  disk writes {r['mb_per_hour']} MB/h = {r['mb_per_day']} MB/day; {msgs}; "
                  f"agent {r['agent_fps']} fps", flush=True)
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "load": os.getloadavg()}, "results": results}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
