"""The serial source through a pseudo-terminal pair: the same pyserial code path as /dev/ttyUSB0.

Garbage bytes, a header without a channel, a sensor that goes silent and a burst of 10,000
samples: counted drops or one clear error, never a crash, never a prediction from stale samples."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_agent.agents import sensor
from edge_agent.config import Config
from tests.sensor_helpers import IMU_LABELS, Collect, make_agent, tiny_models, walk

pytest.importorskip("serial")


@pytest.fixture(scope="module")
def model() -> Path:
    return tiny_models()["activity"]


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    """(master fd the test writes to, the slave's device path the agent opens)."""
    master, slave = os.openpty()
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def lines(t: np.ndarray, x: np.ndarray) -> bytes:
    return b"".join(f"{ti:.3f},{r[0]:.3f},{r[1]:.3f},{r[2]:.3f}\n".encode() for ti, r in zip(t, x, strict=True))


def writer(fd: int, data: bytes, chunk: int = 512, pause: float = 0.0) -> threading.Thread:
    def run() -> None:
        for i in range(0, len(data), chunk):
            os.write(fd, data[i:i + chunk])
            if pause:
                time.sleep(pause)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


class Loop:
    """The runtime's read → process loop on a thread, so the test can write and watch."""

    def __init__(self, agent: sensor.SensorAgent) -> None:
        self.agent = agent
        self.stop = threading.Event()
        agent.start()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set() and not self.agent.ended:
            item = self.agent.read(0.05, self.stop)
            if item is not None:
                self.agent.process(item)

    def wait(self, predicate: object, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.agent.stop()


def serial_agent(model: Path, port: str, pub: Collect, stale: float = 0.0) -> sensor.SensorAgent:
    def configure(c: Config) -> None:
        c.sensor.serial = port
        c.sensor.baud = 115200
        c.sensor.stale_s = stale

    return make_agent(model, configure, pub)


def test_csv_lines_with_garbage_bytes_become_predictions_and_counted_drops(model: Path, pty: tuple[int, str]) -> None:
    master, port = pty
    t, x = walk(6.0)  # 300 samples at 50 Hz → 5 windows at 25 Hz
    data = b"t,ax,ay,az\n" + lines(t[:150], x[:150]) + b"\xff\xfe\x00garbage\n1,2\nnot,a,number,here\n" + (
        b"x" * 5000) + b"\n" + lines(t[150:], x[150:])
    pub = Collect()
    loop = Loop(serial_agent(model, port, pub))
    try:
        writer(master, data)
        assert loop.wait(lambda: loop.agent.counts()["received"] >= 300 and loop.agent.inferences >= 4)
    finally:
        loop.close()
    counts = loop.agent.counts()
    assert counts["received"] == 300
    assert counts["bad_records"] >= 3
    assert {p["label"] for _, p in pub.messages} <= set(IMU_LABELS)
    assert loop.agent.error is None


def test_json_lines_over_serial(model: Path, pty: tuple[int, str]) -> None:
    master, port = pty
    t, x = walk(4.0)
    data = b"".join(f'{{"t": {ti:.3f}, "ax": {r[0]:.3f}, "ay": {r[1]:.3f}, "az": {r[2]:.3f}}}\n'.encode()
                    for ti, r in zip(t, x, strict=True))
    pub = Collect()
    loop = Loop(serial_agent(model, port, pub))
    try:
        writer(master, data + b'{"t": 9, "ax": 1}\n{broken\n')
        windows = (len(t) // 2 - 50) // 25 + 1
        # bad lines are counted as the port is read; samples once the loop has taken them: wait for both
        assert loop.wait(lambda: loop.agent.counts()["bad_records"] >= 2 and loop.agent.inferences >= windows)
    finally:
        loop.close()
    assert loop.agent.counts()["received"] == len(t)
    assert loop.agent.inferences == windows


def test_a_header_without_a_channel_stops_the_source_naming_it(model: Path, pty: tuple[int, str]) -> None:
    master, port = pty
    loop = Loop(serial_agent(model, port, Collect()))
    try:
        os.write(master, b"t,ax,ay\n0,1,2\n")
        assert loop.wait(lambda: loop.agent.ended)
    finally:
        loop.close()
    assert loop.agent.error is not None and "missing channel 'az'" in loop.agent.error


def test_a_silent_sensor_is_reported_and_its_stale_window_never_predicted(model: Path, pty: tuple[int, str]) -> None:
    master, port = pty
    pub = Collect()
    loop = Loop(serial_agent(model, port, pub, stale=1.5))  # margin for a loaded machine
    t, x = walk(30.0)
    try:
        os.write(master, lines(t[:140], x[:140]))  # 2.8 s: 70 samples at 25 Hz → one window, 20 left over
        assert loop.wait(lambda: loop.agent.inferences == 1)
        assert loop.wait(lambda: loop.agent.silent, timeout=10)
        assert "silent" in loop.agent.status() and "no predictions" in loop.agent.status()
        # 1.2 s more (30 samples): with the 20 before the silence it would fill a window; it must not
        os.write(master, lines(t[140:200], x[140:200]))
        assert loop.wait(lambda: loop.agent.counts()["received"] == 200)
        time.sleep(0.2)
        assert loop.agent.inferences == 1 and not loop.agent.silent
        os.write(master, lines(t[200:260], x[200:260]))  # 30 more: now a whole fresh window
        assert loop.wait(lambda: loop.agent.inferences == 2)
    finally:
        loop.close()
    assert loop.agent.silences >= 1
    assert loop.agent.metrics()["silences"] >= 1


def test_a_burst_of_10000_samples_is_taken_without_a_crash(model: Path, pty: tuple[int, str]) -> None:
    master, port = pty
    t, x = walk(200.0)  # 10,000 samples
    pub = Collect()
    loop = Loop(serial_agent(model, port, pub))
    try:
        writer(master, lines(t, x), chunk=65536)
        assert loop.wait(lambda: loop.agent.counts()["received"] == 10_000, timeout=60)
        windows = (5000 - 50) // 25 + 1
        # every window is either inferred or counted as dropped; the loop may still be windowing the
        # last samples it read when "received" reaches 10,000, so wait for the accounting (bounded)
        assert loop.wait(lambda: loop.agent.inferences + loop.agent.counts()["windows_dropped"] == windows,
                         timeout=60)
        assert loop.wait(lambda: not loop.agent._pending, timeout=60)
    finally:
        loop.close()
    c = loop.agent.counts()
    assert loop.agent.inferences + c["windows_dropped"] == windows
    assert len(pub.messages) == loop.agent.inferences
    assert loop.agent.error is None
