"""The home hub: Home Assistant discovery, store and forward, remote control, health, a fleet."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent import manifest as manifest_mod
from edge_agent.config import Config
from edge_agent.hub import DISCOVERY_HOLD_S, ControlError, discovery_messages, event_topics, parse_command
from tests import ha_schema
from tests.helpers import (
    Broker,
    Subscriber,
    agent_env,
    eventually,
    make_video,
    once_each,
    run_agent,
    running,
    start_agent,
)


def _agent(model: Path, video: Path, broker: Broker, device: str, *extra: str) -> list[str]:
    return ["--model", str(model), "--source", str(video), "--mqtt-host", broker.host, "--mqtt-port",
            str(broker.port), "--device-id", device, "--threshold", "0",
                "--no-on-change", "--max-rate", "0", "--log-level", "info", *extra]


@pytest.fixture(scope="module")
def road_model(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    """The tiny 3-class model relabelled as a road model (normal / crack / pothole)."""
    d = tmp_path_factory.mktemp("road")
    model = d / "road.tflite"
    model.write_bytes((model_dir / "tiny_int8.tflite").read_bytes())
    m = manifest_mod.load(model_dir / "tiny_int8.json")
    manifest_mod.write(manifest_mod.Manifest(name="road", task="road", labels=("normal", "crack", "pothole"),
                                             sha256=m.sha256, model_file="road.tflite", input=m.input),
                       d / "road.json")
    return model


# -- discovery --------------------------------------------------------------------------------
@pytest.mark.parametrize(("task", "labels"), [
    ("waste", ("cardboard", "glass", "metal", "paper", "plastic", "trash")),
    ("road", ("normal", "crack", "pothole")),
    ("custom", ("cat", "dog")),
    ("voice", ("yes", "no", "on", "off", "stop", "_silence_", "_unknown_")),
])
def test_discovery_payloads_follow_the_home_assistant_schema(task: str, labels: tuple[str, ...]) -> None:
    config = Config(task=task, device_id="kitchen")
    messages = discovery_messages(config, labels)
    components = [topic.split("/")[1] for topic, _ in messages]
    # image tasks: the label sensor, the road's fault, and the snapshot behind each change (README: Live page)
    expected = {"voice": ["event"], "road": ["sensor", "binary_sensor", "image"]}.get(task, ["sensor", "image"])
    assert components == expected
    # never sent twice on purpose: an event (it would fire twice); a state is (a late subscriber's due)
    assert event_topics(messages) == ({"edge-agent/kitchen/voice/command"} if task == "voice" else frozenset())
    unique_ids = [payload["unique_id"] for _, payload in messages]
    assert len(set(unique_ids)) == len(unique_ids)
    for topic, payload in messages:
        component = topic.split("/")[1]
        assert topic.startswith("homeassistant/") and topic.endswith("/config")
        assert ha_schema.check(component, payload) == [], (topic, payload)
        assert payload["availability"][0]["topic"] == "edge-agent/kitchen/status"
        assert payload["device"]["identifiers"] == ["edge_agent_kitchen"]
        assert {"name", "model", "sw_version"} <= set(payload["device"])
        assert payload["origin"]["name"] == "edge-agent"
    if task == "voice":
        assert messages[0][1]["event_types"] == ["yes", "no", "on", "off", "stop"]
        assert messages[0][1]["state_topic"] == "edge-agent/kitchen/voice/command"
    if task == "road":
        fault = messages[1][1]
        assert fault["device_class"] == "problem" and (fault.get("off_delay", 0) > 0 or fault["expire_after"] > 0)
        assert "crack" in fault["value_template"] and "normal" not in fault["value_template"]


def test_discovery_on_connect_and_again_when_home_assistant_comes_online(road_model: Path, video: Path,
                                                                        broker: Broker) -> None:
    sub = Subscriber(broker, "#")
    proc = start_agent(_agent(road_model, video, broker, "roadpi", "--task", "road", "--loop", "--realtime"))
    with running(proc):
        sensor = "homeassistant/sensor/roadpi/road_label/config"
        fault = "homeassistant/binary_sensor/roadpi/road_fault/config"
        eventually(lambda: bool(sub.raw(sensor)) and bool(sub.raw(fault)), 30, "discovery")
        assert ha_schema.check("sensor", json.loads(sub.raw(sensor)[0])) == []
        assert ha_schema.check("binary_sensor", json.loads(sub.raw(fault)[0])) == []
        info = json.loads(sub.raw("edge-agent/roadpi/info")[0])
        assert info["task"] == "road" and info["model"]["name"] == "road" and info["backend"]["name"]
        before = len(sub.raw(sensor))
        sub.client.publish("homeassistant/status", "online", qos=1)  # HA restarted: not retained
        eventually(lambda: len(sub.raw(sensor)) > before, 15, "discovery re-sent after homeassistant/status online")
    # retained: a hub connecting later still sees the entities
    late = Subscriber(broker, "homeassistant/#")
    eventually(lambda: bool(late.raw(sensor)), 10, "retained discovery")
    late.close()
    sub.close()


def _one_frame(int8_model: Path, video: Path, broker: Broker, device: str,
               *flag: str) -> tuple[list[tuple[str, bytes]], float | None]:
    """Run one frame to the end: (prediction and status messages in arrival order, seconds from
    the label's discovery config to the prediction as a subscriber received them)."""
    sub = Subscriber(broker, "#")
    status, prediction = f"edge-agent/{device}/status", f"edge-agent/{device}/custom/prediction"
    config = f"homeassistant/sensor/{device}/custom_label/config"
    result = run_agent(_agent(int8_model, video, broker, device, "--task", "custom", "--max-frames", "1", *flag))
    assert result.returncode == 0, result.stderr
    eventually(lambda: sub.texts(status)[-1:] == ["offline"], 10, "offline at the end")
    order = sub.arrivals(prediction, status)
    sub.close()
    configs = [m.timestamp for m in sub.messages if m.topic == config and m.payload]
    predictions = [m.timestamp for m in sub.messages if m.topic == prediction]
    gap = predictions[0] - configs[0] if configs and predictions else None
    return order, gap


def test_a_run_that_ends_at_once_holds_its_state_until_the_hub_can_have_it(
        int8_model: Path, video: Path, broker: Broker) -> None:
    """One frame, then stop: Home Assistant subscribes to a new entity's state topic a moment
    after its discovery config, so after this process's first discovery the prediction waits
    (DISCOVERY_HOLD_S) and goes out once, then the retained ``offline``; with discovery off,
    nothing waits."""
    for device, flag in (("once", ()), ("onceoff", ("--no-discovery",))):
        order, gap = _one_frame(int8_model, video, broker, device, *flag)
        predictions = [payload for topic, payload in order if topic.endswith("/prediction")]
        assert len(predictions) == 1, order  # held, so not sent again
        assert order[-1] == (f"edge-agent/{device}/status", b"offline"), order  # after it, not before
        if not flag:
            assert gap is not None and gap >= DISCOVERY_HOLD_S - 0.5, f"the prediction came {gap} s after the config"
        else:
            assert gap is None


def test_no_discovery_clears_the_tasks_entities(road_model: Path, video: Path, broker: Broker) -> None:
    for flag in ((), ("--no-discovery",)):
        proc = start_agent(_agent(road_model, video, broker, "roadpi", "--task", "road", "--max-frames", "3", *flag))
        with running(proc):
            proc.wait(60)
    late = Subscriber(broker, "homeassistant/#")
    time.sleep(1.0)
    assert late.raw("homeassistant/sensor/roadpi/road_label/config") == []  # empty retained = removed
    late.close()


# -- store and forward ------------------------------------------------------------------------
def _first_occurrences(seqs: list[int]) -> list[int]:
    seen: set[int] = set()
    out = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def test_broker_down_30s_mid_stream_loses_nothing(int8_model: Path, video: Path,
                                                  broker_factory: Callable[..., Broker]) -> None:
    broker = broker_factory(persistent=True)
    sub = Subscriber(broker, "edge-agent/+/custom/prediction", persistent=True)
    frames = 450  # 45 s at the video's 10 fps
    proc = start_agent(_agent(int8_model, video, broker, "outage", "--task", "custom", "--loop", "--realtime",
                              "--max-frames", str(frames), "--metrics-interval", "0"))
    with running(proc):
        eventually(lambda: len(sub.payloads("/prediction")) >= 20, 30, "first predictions")
        broker.stop()
        time.sleep(30)
        broker.start()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    eventually(lambda: len({p["seq"] for p in sub.payloads("/prediction")}) >= frames, 30, "every seq")
    got = sub.payloads("/prediction")
    sub.close()
    seqs = [p["seq"] for p in got]
    unique = _first_occurrences(seqs)
    assert sorted(unique) == list(range(frames)), "missing"
    # live predictions go first after the reconnect, the backlog behind them: each stream in order
    replayed = _first_occurrences([p["seq"] for p in got if p.get("replayed")])
    live = _first_occurrences([p["seq"] for p in got if not p.get("replayed")])
    assert replayed and replayed == sorted(replayed), "the backlog out of order"
    assert live == sorted(live), "live predictions out of order"
    print(f"duplicates after the outage: {len(seqs) - len(unique)}")


def test_sigkill_mid_stream_then_restart_loses_nothing_accepted(int8_model: Path, video: Path, tmp_path: Path,
                                                                broker_factory: Callable[..., Broker]) -> None:
    broker = broker_factory(persistent=True)
    sub = Subscriber(broker, "edge-agent/+/custom/prediction", persistent=True)
    state = tmp_path / "state"
    env = agent_env(STATE_DIRECTORY=str(state))
    args = _agent(int8_model, video, broker, "killme", "--task", "custom", "--loop", "--realtime",
                  "--metrics-interval", "0")
    first = start_agent(args, env=env)
    with running(first):
        eventually(lambda: len(sub.payloads("/prediction")) >= 10, 30, "first predictions")
        broker.stop()
        time.sleep(3)  # predictions now pile up in the spool
        first.send_signal(signal.SIGKILL)
        first.wait()
    run_a = sub.payloads("/prediction")[0]["run"]
    with sqlite3.connect(state / "spool-killme-custom.sqlite") as db:
        spooled = [json.loads(row[0]) for row in db.execute("SELECT payload FROM outbox ORDER BY id")]
    assert spooled, "the kill must happen with predictions still waiting"
    accepted = {p["seq"] for p in spooled if p["run"] == run_a} | {
        p["seq"] for p in sub.payloads("/prediction") if p["run"] == run_a}
    broker.start()
    second = start_agent([*args, "--max-frames", "5"], env=env)
    with running(second):
        second.wait(60)
    eventually(lambda: accepted <= {p["seq"] for p in sub.payloads("/prediction") if p["run"] == run_a}, 30,
               "the spooled predictions of the killed run")
    got_a = _first_occurrences([p["seq"] for p in sub.payloads("/prediction") if p["run"] == run_a])
    sub.close()
    assert got_a == list(range(max(accepted) + 1))


def test_unwritable_spool_falls_back_to_memory_with_one_clear_line(int8_model: Path, video: Path,
                                                                   broker: Broker, tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir()
    (locked / "spool.sqlite").mkdir()  # a directory where the file should be: cannot be opened as a DB
    sub = Subscriber(broker, "edge-agent/#")
    proc = start_agent(_agent(int8_model, video, broker, "ro", "--task", "custom", "--spool",
                              str(locked / "spool.sqlite")))
    with running(proc):
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "keeping predictions in memory" in err and "spool" in err
    assert len(once_each(sub.wait_for("/prediction", 30))) == 30
    sub.close()


# -- remote control -----------------------------------------------------------------------------
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=2048),
                 st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                              lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                                  st.sampled_from(["threshold", "pause", "resume", "publish", "max_rate",
                                                   "on_change", "x"]) | st.text(max_size=8), kids, max_size=4),
                              max_leaves=12).map(lambda v: json.dumps(v).encode())))
def test_parse_command_accepts_or_rejects_never_crashes(raw: bytes) -> None:
    try:
        command = parse_command(raw)
    except ControlError as e:
        assert str(e)
        return
    if command.threshold is not None:
        assert 0 <= command.threshold <= 1


CONTROL_PAYLOADS = st.one_of(
    st.binary(max_size=1500),
    st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                 lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                     st.sampled_from(["threshold", "pause", "max_rate", "on_change", "publish", "x"])
                     | st.text(max_size=8), kids, max_size=4),
                 max_leaves=12).map(lambda v: json.dumps(v).encode()),
)


def test_remote_control_applies_valid_and_survives_fuzzed_payloads(int8_model: Path, video: Path,
                                                                   broker: Broker) -> None:
    sub = Subscriber(broker, "edge-agent/#")
    # --log-level error: each rejected payload logs a warning, and nobody reads the agent's stderr
    # pipe until the end; 200 of them could fill it (64 KiB), block logging in the MQTT callback
    # and so stop the replies (seen once in CI). journald reads a real service's stderr at once.
    proc = start_agent(_agent(int8_model, video, broker, "ctl", "--task", "custom", "--loop", "--realtime",
                              "--remote-control", "--metrics-interval", "1", "--log-level", "error"))
    with running(proc):
        eventually(lambda: len(sub.payloads("/prediction")) >= 5, 30, "predictions")
        sent: list[bytes] = []

        @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
        @given(CONTROL_PAYLOADS)
        def fuzz(payload: bytes) -> None:  # property: whatever arrives, the agent lives and answers
            sub.client.publish("edge-agent/ctl/custom/set", payload, qos=1).wait_for_publish(5)
            sent.append(payload)
            assert proc.poll() is None

        fuzz()
        eventually(lambda: len(sub.payloads("/set/result")) >= len(sent), 30, "a reply to every fuzzed payload")
        assert proc.poll() is None
        rejected = sum(1 for r in sub.payloads("/set/result") if not r["ok"])
        assert rejected > len(sent) // 2
        sub.client.publish("edge-agent/ctl/custom/set", b'{"resume": true, "threshold": 1.0}', qos=1)
        eventually(lambda: sub.payloads("/set/result")[-1]["ok"], 10, "accepted")
        time.sleep(1.0)
        count = len(sub.payloads("/prediction"))
        time.sleep(2.0)
        assert len(sub.payloads("/prediction")) == count, "threshold 1.0 must silence predictions"
        metrics = sub.payloads("/metrics")[-1]
        assert {"fps", "latency_ms", "frames_dropped", "spool_depth", "uptime_s", "cpu_temp_c"} <= set(metrics)
        assert metrics["commands_rejected"] == rejected
        assert metrics["latency_ms"]["p50"] <= metrics["latency_ms"]["p95"]
    sub.close()


def test_remote_control_is_off_unless_enabled(int8_model: Path, video: Path, broker: Broker) -> None:
    sub = Subscriber(broker, "edge-agent/#")
    proc = start_agent(_agent(int8_model, video, broker, "noctl", "--task", "custom", "--loop", "--realtime"))
    with running(proc):
        eventually(lambda: len(sub.payloads("/prediction")) >= 3, 30, "predictions")
        sub.client.publish("edge-agent/noctl/custom/set", b'{"threshold": 1.0}', qos=1)
        time.sleep(1.5)
        count = len(sub.payloads("/prediction"))
        time.sleep(1.5)
        assert len(sub.payloads("/prediction")) > count
        assert sub.payloads("/set/result") == []
    sub.close()


# -- security: ACL ----------------------------------------------------------------------------
def test_acl_confines_a_device_to_its_own_topics(int8_model: Path, video: Path, tmp_path: Path,
                                                 broker_factory: Callable[..., Broker]) -> None:
    from tests.helpers import free_port, make_ca, make_cert, make_password_file

    ca = make_ca(tmp_path)
    server = make_cert(tmp_path, ca, "server")
    passwords = make_password_file(tmp_path, {"pi1": "pi1-pw", "hub": "hub-pw"})
    acl = REPO_ACL.read_text()
    (tmp_path / "acl").write_text(acl)
    port = free_port()
    conf = (f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
            f"acl_file {tmp_path / 'acl'}\ncafile {ca[0]}\ncertfile {server[0]}\nkeyfile {server[1]}\n")
    broker = broker_factory(conf, port=port)
    sub = Subscriber(broker, "#", username="hub", password="hub-pw", ca=str(ca[0]))
    result = start_agent(_agent(int8_model, video, broker, "pi1", "--task", "custom", "--mqtt-username", "pi1",
                                "--tls", "--ca", str(ca[0]), "--max-frames", "10"),
                         env=agent_env(EDGE_AGENT_MQTT_PASSWORD="pi1-pw"))
    with running(result):
        _, err = result.communicate(timeout=60)
    assert result.returncode == 0, err
    assert [p["seq"] for p in once_each(sub.wait_for("/prediction", 10))] == list(range(10))
    assert sub.raw("homeassistant/sensor/pi1/custom_label/config"), "discovery is within the device's rights"
    # pi1's credentials trying to speak for pi2: the broker refuses (MQTT 5 says so in the PUBACK)
    intruder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="intruder", protocol=mqtt.MQTTv5)
    intruder.username_pw_set("pi1", "pi1-pw")
    intruder.tls_set(ca_certs=str(ca[0]))
    codes: list[int] = []
    intruder.on_publish = lambda c, u, mid, rc, p: codes.append(rc.value)
    intruder.connect(broker.host, broker.port)
    intruder.loop_start()
    intruder.publish("edge-agent/pi2/custom/prediction", b'{"label": "forged"}', qos=1).wait_for_publish(5)
    time.sleep(1.0)
    intruder.loop_stop()
    intruder.disconnect()
    assert codes and codes[0] == 135  # 0x87 Not authorized
    assert sub.raw("edge-agent/pi2/custom/prediction") == []
    sub.close()


REPO_ACL = Path(__file__).resolve().parent.parent / "docs" / "mosquitto-acl.conf"


# -- fleet ------------------------------------------------------------------------------------
def test_twenty_agents_on_one_broker_for_a_minute(int8_model: Path, tmp_path: Path, broker: Broker) -> None:
    video = make_video(tmp_path / "fleet.mp4", frames=20, size=(320, 240), fps=5)
    sub = Subscriber(broker, "edge-agent/+/custom/prediction")
    frames = 300  # one minute at 5 fps
    procs = [start_agent(_agent(int8_model, video, broker, f"fleet{i:02d}", "--task", "custom", "--loop",
                                "--realtime", "--threads", "1", "--max-frames", str(frames),
                                "--metrics-interval", "0"))
             for i in range(20)]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err[-2000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    eventually(lambda: len(sub.payloads("/prediction")) >= 20 * frames, 30, "all predictions")
    by_device: dict[str, list[int]] = {}
    for message in sub.messages:
        payload = json.loads(message.payload)
        device = message.topic.split("/")[1]
        assert payload["device"] == device
        by_device.setdefault(device, []).append(payload["seq"])
    sub.close()
    assert sorted(by_device) == [f"fleet{i:02d}" for i in range(20)]
    for device, seqs in by_device.items():
        assert _first_occurrences(seqs) == list(range(frames)), device
