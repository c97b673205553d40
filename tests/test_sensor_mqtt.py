"""End to end over a real mosquitto: a simulated IMU publishing at 50 Hz → the sensor agent in the
one run loop (edge_agent.runtime) → activity predictions and Home Assistant discovery; and the
same through the ``edge-agent`` command line, as a user runs it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import runtime
from edge_agent.hub import Hub
from edge_agent.publish.mqtt import MqttPublisher
from edge_agent.publish.spool import open_spool
from tests import ha_schema
from tests.helpers import Broker, Subscriber, agent_env, running, start_agent
from tests.sensor_helpers import IMU_LABELS, make_agent, tiny_models

RATE_HZ = 50.0


class Imu:
    """A simulated accelerometer publishing one JSON sample every 20 ms (paced on the clock)."""

    def __init__(self, broker: Broker, topic: str, seconds: float) -> None:
        self.topic, self.seconds = topic, seconds
        self.sent = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-imu")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Imu:
        self.thread.start()
        return self

    def _run(self) -> None:
        start = time.time()
        n = int(self.seconds * RATE_HZ)
        for i in range(n):
            due = start + i / RATE_HZ
            time.sleep(max(0.0, due - time.time()))
            t = due
            ph = 2 * np.pi * 1.9 * (i / RATE_HZ)
            sample = {"ts": round(t, 4), "accel": {"x": 0.5 * np.sin(ph), "y": 9.81 + 2.5 * np.sin(ph),
                                                   "z": np.cos(ph)}}
            self.client.publish(self.topic, json.dumps(sample), qos=0)
            self.sent += 1
        self.client.publish(self.topic, b"\x00 not json", qos=0)

    def close(self) -> None:
        self.thread.join(self.seconds + 10)
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def model() -> Path:
    return tiny_models()["activity"]


def _wait(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_imu_at_50_hz_over_mqtt_to_activity_predictions_in_the_run_loop(model: Path, broker: Broker,
                                                                        tmp_path: Path) -> None:
    sub = Subscriber(broker)
    device = "wrist"

    def configure(c: object) -> None:
        c.task = "activity"  # type: ignore[attr-defined]
        c.device_id = device  # type: ignore[attr-defined]
        c.mqtt.host, c.mqtt.port = broker.host, broker.port  # type: ignore[attr-defined]
        c.sensor.topic = "imu/wrist"  # type: ignore[attr-defined]
        c.sensor.paths = "ax=accel.x,ay=accel.y,az=accel.z"  # type: ignore[attr-defined]

    agent = make_agent(model, configure)
    cfg = agent.config
    publisher = MqttPublisher(cfg.mqtt, cfg.device_id, cfg.task, open_spool(tmp_path / "spool.sqlite", 1000, 3600))
    agent.publisher = publisher
    hub = Hub(cfg, publisher, agent.model.labels, {"task": cfg.task}, agent.metrics)
    controls = runtime.Controls()
    agent.start()
    hub.start()
    publisher.start()
    loop = threading.Thread(target=runtime.run_loop, args=(agent, publisher, controls, hub.commands), daemon=True)
    loop.start()
    try:
        assert publisher.wait_connected(10)
        time.sleep(0.5)  # the source subscribes once connected
        imu = Imu(broker, "imu/wrist", seconds=10.0).start()  # up to 9 windows; 4 even if a stall restarts one
        got = sub.wait_for(f"{device}/activity/prediction", 4, timeout=30)
        imu.close()
        assert _wait(lambda: agent.counts()["bad_records"] >= 1, 10)
    finally:
        controls.stop.set()
        loop.join(10)
        agent.stop()
        hub.stop()
        publisher.flush(3)
        publisher.stop()
    assert len(got) >= 4
    assert [p["seq"] for p in got] == list(range(1, len(got) + 1))
    for p in got:
        assert p["label"] in IMU_LABELS and p["task"] == "activity" and p["device"] == device
        assert {"ts", "run", "latency_ms", "model", "window_ts", "top"} <= set(p)
    assert agent.counts()["received"] >= 400
    discovery = [m for m in sub.messages if m.topic == f"homeassistant/sensor/{device}/activity_label/config"]
    assert discovery, [m.topic for m in sub.messages]
    assert ha_schema.check("sensor", json.loads(discovery[0].payload)) == []
    assert json.loads(discovery[0].payload)["state_topic"] == f"edge-agent/{device}/activity/prediction"
    sub.close()


def _series_wired() -> bool:
    from edge_agent import service

    return "series" in service.KINDS


@pytest.mark.skipif(not _series_wired(), reason="edge_agent.service.KINDS has no 'series' entry yet "
                    "(the runtime wiring: {'series': Kind(sensor.load, SensorAgent, inputs)})")
def test_the_command_line_runs_an_imu_over_mqtt(model: Path, broker: Broker) -> None:
    sub = Subscriber(broker)
    args = ["--task", "activity", "--model", str(model), "--sensor-topic", "imu/cli",
            "--sensor-paths", "ax=accel.x,ay=accel.y,az=accel.z", "--mqtt-host", broker.host,
            "--mqtt-port", str(broker.port), "--device-id", "cli", "--threshold", "0", "--no-on-change",
            "--max-rate", "0", "--log-level", "info"]
    with running(start_agent(args, env=agent_env())) as proc:
        assert _wait(lambda: sub.raw("edge-agent/cli/status") == [b"online"] or proc.poll() is not None, 30)
        assert proc.poll() is None
        time.sleep(0.5)
        imu = Imu(broker, "imu/cli", seconds=8.0).start()
        got = sub.wait_for("cli/activity/prediction", 3, timeout=30)
        imu.close()
        proc.terminate()
        proc.wait(15)
    assert len(got) >= 3 and all(p["label"] in IMU_LABELS for p in got)
    disc = [m for m in sub.messages if m.topic == "homeassistant/sensor/cli/activity_label/config"]
    assert disc and ha_schema.check("sensor", json.loads(disc[0].payload)) == []
    sub.close()


def test_channels_from_two_topics_are_held_and_sampled_together(broker: Broker) -> None:
    """Zigbee2MQTT style: vibration on one topic, temperature on another (sample and hold)."""
    from edge_agent.config import Config
    from edge_agent.sources.series_factory import make_series_source

    c = Config(task="machine")
    c.mqtt.host, c.mqtt.port = broker.host, broker.port
    c.sensor.paths = "vib=vibration@z2m/vib1,temp=temperature@z2m/temp1"
    src = make_series_source(c, ("vib", "temp"))
    src.open()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-z2m")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        time.sleep(1.0)  # the source subscribes once connected
        pub.publish("z2m/vib1", json.dumps({"vibration": 0.5, "ts": 100.0}))  # no temperature yet: held
        time.sleep(0.3)
        pub.publish("z2m/temp1", json.dumps({"temperature": 31.5, "ts": 100.1}))
        time.sleep(0.3)
        pub.publish("z2m/vib1", json.dumps({"vibration": 0.7, "ts": 100.2}))
        pub.publish("z2m/temp1", json.dumps({"humidity": 40}))  # no channel: counted
        got = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (sum(len(s.t) for s in got) < 2 or src.bad_records < 1):
            s = src.read(0.2)
            if s is not None:
                got.append(s)
    finally:
        pub.loop_stop()
        pub.disconnect()
        src.close()
    t = np.concatenate([s.t for s in got])
    x = np.concatenate([s.x for s in got])
    assert t.tolist() == [100.1, 100.2]
    assert x.tolist() == [[0.5, 31.5], [0.7, 31.5]]
    assert src.bad_records == 1


@pytest.mark.skipif(not _series_wired(), reason="edge_agent.service.KINDS has no 'series' entry yet")
def test_the_command_line_reads_a_serial_line_and_validates_a_sensor_config(model: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.helpers import REPO, run_agent
    from tests.sensor_helpers import walk

    ok = run_agent(["--task", "activity", "--model", str(model), "--serial", "/dev/ttyUSB9", "--validate-config"])
    assert ok.returncode == 0 and "config OK" in ok.stdout, ok.stderr[-2000:]
    bad = run_agent(["--task", "activity", "--model", str(model), "--validate-config"])
    assert bad.returncode == 2 and "needs an input" in bad.stderr
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "edge_agent", "--task", "activity", "--model", str(model),
                                 "--serial", os.ttyname(slave), "--sink", "stdout", "--threshold", "0",
                                 "--no-on-change", "--max-rate", "0", "--max-frames", "3"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=agent_env(), cwd=REPO)
        t, x = walk(10.0)
        time.sleep(3.0)  # the agent opens the port
        os.write(master, b"t,ax,ay,az\n\xff\xfe garbage\n" + b"".join(
            f"{ti:.3f},{r[0]:.3f},{r[1]:.3f},{r[2]:.3f}\n".encode() for ti, r in zip(t, x, strict=True)))
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, err[-2000:]
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3 and all(p["label"] in IMU_LABELS for p in lines)
