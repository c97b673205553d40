"""sd_notify against a real AF_UNIX datagram socket, and the agent under a fake service manager.

The end-to-end test plays systemd's part: it binds the notify socket, sets ``$NOTIFY_SOCKET`` and
``$WATCHDOG_USEC`` for a real agent subprocess, and feeds it a real MJPEG stream over HTTP
(127.0.0.1) that it can stall at will while keeping the connection open, which is what a hung
IP camera does. OpenCV then blocks inside ``read()``, so the main loop gets no frames.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_agent.sdnotify import SystemdNotifier, socket_address, watchdog_interval
from tests.helpers import REPO, agent_env

WATCHDOG_S = 2.0  # the WatchdogSec= the fake service manager asks for


class NotifySocket:
    """The service manager's end: a bound AF_UNIX datagram socket recording what arrives."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(socket_address(address))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def times(self, message: str) -> list[float]:
        """Arrival times of datagrams that contain the line ``message``."""
        with self._lock:
            return [t for t, m in self.messages if message in m.split("\n")]

    def wait_for(self, message: str, timeout: float, after: float = 0.0) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [t for t in self.times(message) if t >= after]
            if hits:
                return hits[0]
            time.sleep(0.02)
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        if not self.address.startswith("@"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)


class MjpegCamera:
    """An IP camera on 127.0.0.1: multipart JPEG over HTTP at ``fps``. ``gate`` holds back the
    first frame; ``freeze`` stops sending while the connection stays open."""

    def __init__(self, fps: float = 20.0) -> None:
        self.jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), (40, 160, 90), np.uint8))[1].tobytes()
        self.period = 1.0 / fps
        self.gate = threading.Event()
        self.freeze = threading.Event()
        self.closing = threading.Event()
        self.connected = threading.Event()
        self.gate_opened_at = 0.0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def open_gate(self) -> None:
        self.gate_opened_at = time.monotonic()
        self.gate.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                camera.connected.set()
                part = (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(camera.jpeg)
                        + camera.jpeg + b"\r\n")
                with contextlib.suppress(OSError):
                    while not camera.closing.is_set():
                        if camera.gate.is_set() and not camera.freeze.is_set():
                            self.wfile.write(part)
                            self.wfile.flush()
                        camera.closing.wait(camera.period)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(str(tmp_path / "notify.sock"))
    yield sock
    sock.close()


# -- the notifier on its own -----------------------------------------------------------------

def test_no_notify_socket_means_no_op() -> None:
    notifier = SystemdNotifier.from_environment({})
    assert not notifier.enabled
    notifier.ready()
    notifier.watchdog()
    assert notifier.send("READY=1") is False


def test_path_socket_receives_each_report(notify_socket: NotifySocket) -> None:
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": notify_socket.address})
    notifier.ready()
    notifier.status("12.5 fps,\nlast label glass")
    notifier.reloading()
    notifier.stopping()
    assert notify_socket.wait_for("STOPPING=1", 5) is not None
    texts = [m for _, m in notify_socket.messages]
    assert texts[0] == "READY=1"
    assert texts[1] == "STATUS=12.5 fps, last label glass"  # one line: a newline would start a new field
    reload_fields = dict(line.split("=", 1) for line in texts[2].split("\n"))
    assert reload_fields["RELOADING"] == "1"
    now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert 0 < now_usec - int(reload_fields["MONOTONIC_USEC"]) < 5_000_000
    notifier.close()


def test_abstract_socket() -> None:
    server = NotifySocket(f"@edge-agent-test-{secrets.token_hex(6)}")
    try:
        notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": server.address})
        notifier.ready()
        notifier.close()
        assert server.wait_for("READY=1", 5) is not None
    finally:
        server.close()


def test_watchdog_pings_are_rate_limited(notify_socket: NotifySocket) -> None:
    now = [100.0]
    notifier = SystemdNotifier(notify_socket.address, watchdog_s=0.5, clock=lambda: now[0])
    for _ in range(40):  # one call per frame at 20 fps for 2 s
        notifier.watchdog()
        now[0] += 0.05
    assert notify_socket.wait_for("WATCHDOG=1", 2) is not None
    time.sleep(0.1)
    notifier.close()
    assert len(notify_socket.times("WATCHDOG=1")) == 4  # at 0, 0.5, 1.0, 1.5 s


def test_watchdog_interval_from_environment() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid=42) == 30 / 4
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, pid=42) == 30 / 4
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, pid=42) is None  # not ours
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid=42) is None
    assert watchdog_interval({}, pid=42) is None
    # at most half of WatchdogSec, as sd_watchdog_enabled(3) asks
    assert watchdog_interval({"WATCHDOG_USEC": "1000000"}, pid=1) <= 0.5  # type: ignore[operator]


def test_vanished_service_manager_is_not_fatal(tmp_path: Path) -> None:
    notifier = SystemdNotifier(str(tmp_path / "gone.sock"))
    assert notifier.send("READY=1") is False
    notifier.ready()  # logged once, never raised
    notifier.close()


# -- the agent under a fake service manager --------------------------------------------------

def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen([sys.executable, "-m", "edge_agent", *args], stdout=subprocess.DEVNULL,
                                stderr=err, env=env, cwd=REPO)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def test_ready_after_first_inference_watchdog_while_running_none_when_stuck(
    notify_socket: NotifySocket, int8_model: Path, tmp_path: Path
) -> None:
    camera = MjpegCamera(fps=20)
    env = agent_env(NOTIFY_SOCKET=notify_socket.address, WATCHDOG_USEC=str(int(WATCHDOG_S * 1e6)))
    log = tmp_path / "agent.log"
    proc = _start(["--source", camera.url, "--model", str(int8_model), "--sink", "stdout", "--threshold", "0",
                   "--no-on-change", "--max-rate", "0"],
                  env, log)
    try:
        assert camera.connected.wait(60), log.read_text()
        time.sleep(0.5)  # model loaded and stream open, but no frame yet
        assert notify_socket.times("READY=1") == [], "READY=1 before any frame was inferred"
        camera.open_gate()
        ready = notify_socket.wait_for("READY=1", 20)
        assert ready is not None, log.read_text()
        assert ready > camera.gate_opened_at

        time.sleep(2 * WATCHDOG_S)  # running: pings keep coming
        camera.freeze.set()
        frozen_at = time.monotonic()
        pings = [t for t in notify_socket.times("WATCHDOG=1") if ready <= t <= frozen_at]
        assert len(pings) >= 2 * (frozen_at - ready) / WATCHDOG_S - 1, pings
        gaps = [b - a for a, b in zip([ready, *pings], [*pings, frozen_at], strict=True)]
        assert max(gaps) <= WATCHDOG_S / 2, gaps  # so every WatchdogSec window holds at least two
        assert any(m.startswith("STATUS=") and "fps" in m for _, m in notify_socket.messages)

        time.sleep(1.5 * WATCHDOG_S + 1.0)  # longer than WatchdogSec: systemd would restart us now
        grace = 1.0  # frames already inside FFmpeg's buffer when the camera stalled
        late = [t - frozen_at for t in notify_socket.times("WATCHDOG=1") if t > frozen_at + grace]
        assert late == [], f"watchdog pinged while no frame arrived: {late}"
        assert proc.poll() is None, "the agent exited instead of hanging"
    finally:
        camera.close()  # the stream ends: OpenCV's read() returns, the agent can stop
        code = _stop(proc)
    assert code == 0, log.read_text()[-3000:]
    assert notify_socket.times("STOPPING=1"), log.read_text()[-3000:]
