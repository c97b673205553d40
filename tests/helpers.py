"""Real parts for tests: a mosquitto broker on a free loopback port, a subscriber, tiny models,
generated videos, and a way to run the agent as the user does (a subprocess)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any] | None, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``: for the servers tests start (mosquitto, PulseAudio)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Broker:
    """A real mosquitto on 127.0.0.1, configured by the test (plain, password, TLS, ACL)."""

    def __init__(self, workdir: Path, extra_conf: str = "", port: int | None = None,
                 persistent: bool = False) -> None:
        self.workdir = workdir
        self.persistent = persistent
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.log = workdir / f"mosquitto-{self.port}.log"

    def write_conf(self) -> None:
        conf = self.extra_conf or f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        # as root, mosquitto drops to user 'mosquitto', who cannot read the test's private files
        user = "user root\n" if os.geteuid() == 0 else ""
        # persistent: sessions and queued QoS 1 messages survive a broker restart (saved on SIGTERM)
        store = (f"persistence true\npersistence_location {self.workdir}/\npersistence_file broker-{self.port}.db\n"
                 if self.persistent else "persistence false\n")
        # mosquitto queues at most 1000 QoS 1 messages for a subscriber that reads slower than they
        # come, then drops them ("Outgoing messages are being dropped"): a test's subscriber on a
        # loaded machine falls behind an agent at hundreds of predictions a second, and the loss
        # would be the broker's, not the agent's. A bound no test reaches (0, "no bound", makes
        # mosquitto 2.0.11 drop a client that subscribes to its own topic at QoS 0: the echo check).
        queue = "max_queued_messages 1000000\n"
        self.conf.write_text(conf + user + store + queue)

    def start(self) -> Broker:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.write_conf()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([binary, "-c", str(self.conf), "-v"], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.2):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


class Subscriber:
    """A real MQTT subscriber that records every message it receives."""

    def __init__(self, broker: Broker, topic: str = "#", persistent: bool = False, **auth: Any) -> None:
        """``persistent``: a session the broker keeps while we are away (clean_session=False)."""
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.topic = topic
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{free_port()}",
                                  clean_session=not persistent)
        self.client.reconnect_delay_set(1, 1)
        if auth.get("username"):
            self.client.username_pw_set(auth["username"], auth.get("password"))
        if auth.get("ca"):
            self.client.tls_set(ca_certs=auth["ca"])
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._ready.wait(10), "subscriber did not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def raw(self, topic: str) -> list[bytes]:
        with self._lock:
            return [bytes(m.payload) for m in self.messages if m.topic == topic]

    def payloads(self, suffix: str) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(m.payload) for m in self.messages if m.topic.endswith(suffix) and m.payload]

    def arrivals(self, *topics: str) -> list[tuple[str, bytes]]:
        """(topic, payload) of these topics in the order they arrived."""
        with self._lock:
            return [(m.topic, bytes(m.payload)) for m in self.messages if m.topic in topics]

    def texts(self, topic: str) -> list[str]:
        with self._lock:
            return [m.payload.decode() for m in self.messages if m.topic == topic]

    def wait_for(self, suffix: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.payloads(suffix)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        return self.payloads(suffix)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def once_each(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Predictions as a hub keeps them: the contract sends the newest prediction again after a
    Home Assistant discovery (2 s later, or at stop when the run ends sooner) and says to drop
    repeats by (``run``, ``seq``). Only that is dropped: a repeat of anything but the newest
    prediction so far, or one that differs from the first copy, fails here."""
    first: dict[tuple[Any, Any], dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for p in payloads:
        key = (p.get("run"), p.get("seq"))
        if key in first:
            assert p == first[key], f"seq {key[1]} sent twice with different payloads"
            assert out and (out[-1].get("run"), out[-1].get("seq")) == key, f"seq {key[1]} repeated out of turn"
            continue
        first[key] = p
        out.append(p)
    return out


def make_video(path: Path, frames: int = 30, size: tuple[int, int] = (640, 480), fps: int = 10) -> Path:
    """A real mp4 (OpenCV's mp4v encoder) whose frames cycle through flat colours."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]
    for i in range(frames):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:] = colours[(i // 5) % 3]
        cv2.circle(frame, (size[0] // 2, size[1] // 2), 40 + i, (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def agent_env(**extra: str) -> dict[str, str]:
    """The environment of an agent subprocess: nothing of ours inherited, and a fresh state
    folder (spool) so one test's unsent predictions never leak into another's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["STATE_DIRECTORY"] = tempfile.mkdtemp(prefix="edge-agent-state-")
    env.update(extra)
    return env


def run_agent(args: Sequence[str], timeout: float = 120, env: dict[str, str] | None = None,
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or agent_env(), cwd=REPO)


def start_agent(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "edge_agent", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env or agent_env(), cwd=REPO)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit code 2, no traceback, and an 'error:' line that mentions each needle."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@contextlib.contextmanager
def running(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def make_ca(d: Path, name: str = "ca") -> tuple[Path, Path]:
    """A throwaway certificate authority made with openssl: (cert, key)."""
    key, cert = d / f"{name}.key", d / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", f"/CN=edge-agent test {name}"],
                   check=True, capture_output=True)
    return cert, key


def make_cert(d: Path, ca: tuple[Path, Path], name: str, san: str = "IP:127.0.0.1") -> tuple[Path, Path]:
    """A certificate signed by ``ca`` for ``san``: (cert, key)."""
    key, csr, cert, ext = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt", d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n")
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                    "-subj", f"/CN={name}"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
                    "-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(ext)],
                   check=True, capture_output=True)
    return cert, key


def make_password_file(d: Path, users: dict[str, str]) -> Path:
    path = d / "passwords"
    path.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
    path.chmod(0o600)
    subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-U", str(path)],
                   check=True, capture_output=True)
    return path


def eventually(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``predicate()`` holds, or fail naming ``what``: tests wait for what they need,
    with a generous bound, instead of sleeping a guessed time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
