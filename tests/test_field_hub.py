"""Defaults for a home hub: what Home Assistant gets from a steady scene, and what its recorder
keeps. The real agent on a real broker; the policy itself as a pure function."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config import Config, PostprocessConfig
from edge_agent.hub import discovery_messages
from edge_agent.postprocess import Prediction, PublishPolicy, Scored
from tests import ha_schema
from tests.helpers import Broker, Subscriber, eventually, free_port, run_agent, running, start_agent


def _p(label: str, score: float) -> Prediction:
    return Prediction(label, score, 0, (Scored(label, score),))


def test_the_default_policy_publishes_changes_and_a_heartbeat_not_every_frame() -> None:
    policy = PublishPolicy.from_config(PostprocessConfig())
    frames = [i / 30 for i in range(30 * 150)]  # 150 s of a steady 30 fps scene
    sent = [t for t in frames if policy.decide(_p("glass", 0.9), t)]
    assert sent[0] == 0.0 and len(sent) == 3, sent  # the first, then one heartbeat a minute
    assert all(b - a >= 60 for a, b in itertools.pairwise(sent))


def test_the_default_ceiling_holds_however_the_label_flaps() -> None:
    policy = PublishPolicy.from_config(PostprocessConfig())
    flapping = [(i / 30, "glass" if i % 2 else "paper") for i in range(30 * 10)]
    sent = [t for t, label in flapping if policy.decide(_p(label, 0.95), t)]
    assert len(sent) <= 10 * policy.max_rate + 1
    assert policy.max_rate > 0, "the default has a ceiling"


def test_home_assistant_attributes_do_not_change_on_every_frame() -> None:
    config = Config(task="waste", device_id="pi")
    _topic, payload = discovery_messages(config, ["glass", "paper"])[0]
    assert ha_schema.check("sensor", payload) == []
    template = payload["json_attributes_template"]
    assert "seq" not in template and "frame_ts" not in template, "each distinct attributes set is a recorder row"
    assert payload["expire_after"] == 3 * int(config.postprocess.heartbeat_s)


def test_sensor_entities_attributes_do_not_change_on_every_window() -> None:
    """Sensor tasks as image ones: nothing per message (seq, window_ts) in the attributes, and the
    state expires after three heartbeats (a silent sensor shows unavailable, not a stale label)."""
    for task, labels in (("activity", ["sitting", "walking"]), ("machine", ["normal", "anomaly"])):
        config = Config(task=task, device_id="pi")
        messages = discovery_messages(config, labels)
        assert messages
        for topic, payload in messages:
            assert ha_schema.check(topic.split("/")[1], payload) == [], topic
            template = payload.get("json_attributes_template", "")
            assert "seq" not in template and "window_ts" not in template, (topic, template)
            assert payload["expire_after"] == 3 * int(config.postprocess.heartbeat_s), topic


def _steady_video(path: Path, seconds: float, fps: int = 30) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (320, 240))
    frame = np.full((240, 320, 3), (40, 160, 90), np.uint8)
    for _ in range(int(seconds * fps)):
        writer.write(frame)
    writer.release()
    return path


def test_a_steady_scene_at_the_defaults_is_one_message_not_thirty_a_second(int8_model: Path, tmp_path: Path,
                                                                          broker: Broker) -> None:
    video = _steady_video(tmp_path / "steady.mp4", 6)
    sub = Subscriber(broker, "edge-agent/steady/#")
    result = run_agent(["--model", str(int8_model), "--source", str(video), "--realtime", "--task", "custom",
                        "--threshold", "0", "--mqtt-host", broker.host, "--mqtt-port", str(broker.port),
                        "--device-id", "steady", "--metrics-interval", "0"])
    assert result.returncode == 0, result.stderr
    time.sleep(1)
    seqs = {p["seq"] for p in sub.payloads("/prediction")}
    sub.close()
    assert seqs == {0}, "180 frames of one scene: one prediction (the heartbeat is a minute away)"


def test_a_hub_that_subscribes_after_discovery_still_gets_the_current_state(int8_model: Path, tmp_path: Path,
                                                                           broker: Broker) -> None:
    """Home Assistant subscribes to an entity's state topic only once its discovery config has
    arrived; the first prediction is sent before that. With on_change it would wait a heartbeat."""
    video = _steady_video(tmp_path / "steady.mp4", 3)
    state_topic = "edge-agent/late/custom/prediction"
    got: list[bytes] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"late-hub-{free_port()}")

    def on_message(c: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.startswith("homeassistant/") and msg.payload and not subscribed.is_set():
            time.sleep(0.5)  # HA sets the entity up, then subscribes
            c.subscribe(state_topic, qos=1)
            subscribed.set()
        elif msg.topic == state_topic:
            got.append(bytes(msg.payload))

    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("homeassistant/sensor/late/#", qos=1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        time.sleep(1)
        proc = start_agent(["--model", str(int8_model), "--source", str(video), "--realtime", "--loop", "--task",
                            "custom", "--threshold", "0", "--mqtt-host", broker.host, "--mqtt-port", str(broker.port),
                            "--device-id", "late", "--metrics-interval", "0"])
        with running(proc):
            deadline = time.monotonic() + 30
            while not got and time.monotonic() < deadline:
                time.sleep(0.1)
        assert subscribed.is_set(), "no discovery config arrived"
        assert got, "the hub that subscribed after discovery never got a state"
        assert json.loads(got[0])["seq"] == 0
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.mark.parametrize("flag", ["--no-on-change"])
def test_every_frame_is_still_one_flag_away(int8_model: Path, tmp_path: Path, flag: str) -> None:
    video = _steady_video(tmp_path / "steady.mp4", 1)
    result = run_agent(["--model", str(int8_model), "--source", str(video), "--task", "custom", "--threshold", "0",
                        "--sink", "stdout", flag, "--max-rate", "0"])
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 30


def test_the_road_fault_does_not_turn_off_between_heartbeats() -> None:
    config = Config(task="road", device_id="pi")
    messages = dict(discovery_messages(config, ["normal", "crack", "pothole"]))
    fault = messages["homeassistant/binary_sensor/pi/road_fault/config"]
    assert ha_schema.check("binary_sensor", fault) == []
    assert "off_delay" not in fault or fault["off_delay"] > config.postprocess.heartbeat_s
    assert fault["expire_after"] > config.postprocess.heartbeat_s


def test_after_a_restart_a_fresh_state_comes_before_online(int8_model: Path, tmp_path: Path, broker: Broker) -> None:
    """Home Assistant shows an entity's last state again the moment availability says online; so a
    restarted agent sends its first prediction first, and "online" after it."""
    video = _steady_video(tmp_path / "steady.mp4", 1)
    sub = Subscriber(broker, "edge-agent/fresh/#")
    args = ["--model", str(int8_model), "--source", str(video), "--task", "custom", "--threshold", "0",
            "--mqtt-host", broker.host, "--mqtt-port", str(broker.port), "--device-id", "fresh",
            "--metrics-interval", "0"]
    for _ in range(2):
        result = run_agent(args)
        assert result.returncode == 0, result.stderr
    time.sleep(0.5)
    with sub._lock:
        order = [(m.topic.rsplit("/", 1)[-1], json.loads(m.payload)["run"] if m.topic.endswith("prediction") else
                  m.payload.decode()) for m in sub.messages if not m.topic.endswith("/snapshot")]  # snapshot: a JPEG
    sub.close()
    onlines = [i for i, (kind, value) in enumerate(order) if kind == "status" and value == "online"]
    runs = list(dict.fromkeys(value for kind, value in order if kind == "prediction"))
    assert len(onlines) == 2 and len(runs) == 2, order
    for run, online in zip(runs, onlines, strict=True):
        first = next(i for i, (kind, value) in enumerate(order) if kind == "prediction" and value == run)
        assert first < online, order


def test_after_a_replay_the_present_state_is_sent_again_but_a_command_is_not(
        broker_factory: Callable[..., Broker]) -> None:
    """The backlog of an outage goes out behind the live messages; then the newest live message of
    each replayed topic is sent once more, so Home Assistant ends on the present state. A voice
    command is an event: sent once more it would fire an automation twice."""
    from edge_agent.config import MqttConfig
    from edge_agent.publish.mqtt import MqttPublisher
    from edge_agent.publish.spool import MemorySpool

    broker = broker_factory(persistent=True)
    sub = Subscriber(broker, "edge-agent/ev/#", persistent=True)  # its session outlives the outage
    broker.stop()
    publisher = MqttPublisher(MqttConfig(host=broker.host, port=broker.port), "ev", "voice", MemorySpool())
    publisher.mark_events({"edge-agent/ev/voice/command"})
    publisher.start()
    try:
        backlog = 120  # per topic: ~5 s of replay at 50 a second, the live ones go out meanwhile
        for seq in range(backlog):
            publisher.publish("voice/command", {"seq": seq})
            publisher.publish("custom/prediction", {"seq": seq})
        time.sleep(2.5)  # older than this at the reconnect: the backlog
        broker.start()
        assert publisher.wait_connected(30)
        publisher.publish("voice/command", {"seq": backlog})  # live, while the backlog drains
        publisher.publish("custom/prediction", {"seq": backlog})
        eventually(lambda: len(sub.payloads("/prediction")) >= backlog + 2, 60, "backlog, live and present state")
        time.sleep(1.0)  # a repeated command would be here by now
    finally:
        publisher.stop()
    commands = [p["seq"] for p in sub.payloads("/voice/command")]
    predictions = [p["seq"] for p in sub.payloads("/prediction")]
    sub.close()
    assert sorted(predictions) == [*range(backlog), backlog, backlog], "the present state once more"
    assert predictions[-1] == backlog
    assert sorted(commands) == list(range(backlog + 1)), "every command once, none repeated"
