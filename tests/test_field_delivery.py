"""Delivery in the field, as a user sees it: the real agent as a subprocess, a real mosquitto,
real spool files. Poisoned and corrupt spools, kill -9 at random moments, refusals by an ACL, a
broker that refuses logins for a while, a camera that comes up after the agent."""

from __future__ import annotations

import json
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.publish.spool import LOSS_BOUND_S, SqliteSpool
from tests.helpers import (
    REPO,
    Broker,
    Subscriber,
    agent_env,
    eventually,
    free_port,
    make_password_file,
    once_each,
    run_agent,
    running,
    start_agent,
)
from tests.mjpeg import MjpegCamera

EVERY_FRAME = ("--no-on-change", "--max-rate", "0")
# The writer thread commits every 0.25 s; on a loaded CI machine it can be scheduled late. The
# bound the README states is LOSS_BOUND_S; this is what a test on two busy cores may add to it.
SCHEDULING_SLACK_S = 0.75


def _agent(model: Path, video: Path, broker: Broker, device: str, *extra: str) -> list[str]:
    return ["--model", str(model), "--source", str(video), "--mqtt-host", broker.host, "--mqtt-port",
            str(broker.port), "--device-id", device, "--task", "custom", "--threshold", "0", *EVERY_FRAME,
            "--log-level", "info", *extra]


def _lines(err: str, needle: str) -> list[str]:
    return [line for line in err.splitlines() if needle in line]


def test_poisoned_spool_rows_are_moved_aside_and_live_predictions_flow(int8_model: Path, video: Path,
                                                                      broker: Broker, tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = state / "spool-poison-custom.sqlite"
    topic = "edge-agent/poison/custom/prediction"
    SqliteSpool(path).close()
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO outbox (id, topic, payload, qos, retain, created) VALUES (?, ?, ?, ?, ?, ?)", [
            (1, topic, None, 1, 0, time.time()),  # NULL payload
            (2, "edge-agent/" + "x" * 70_000, b"{}", 1, 0, time.time()),  # a topic paho refuses as too long
            (3, None, b"{}", 1, 0, time.time()),
            *((i, topic, json.dumps({"backlog": i}).encode(), 1, 0, time.time()) for i in range(4, 54)),
        ])
        # a bit flip in a row header: the payload reads as text that is not UTF-8 (issue 27: the
        # whole backlog was held back by it)
        db.execute("UPDATE outbox SET payload = CAST(X'7BC3287D' AS TEXT) WHERE id = 20")
    sub = Subscriber(broker, "edge-agent/poison/#")
    result = run_agent(_agent(int8_model, video, broker, "poison"), env=agent_env(STATE_DIRECTORY=str(state)))
    assert result.returncode == 0, result.stderr
    received = sub.wait_for("/prediction", 30 + 49)
    assert len(once_each([p for p in received if "backlog" not in p])) == 30, "live ones flow past the poison"
    backlog = sorted({p["backlog"] for p in sub.payloads("/prediction") if "backlog" in p})
    sub.close()
    assert backlog == [i for i in range(4, 54) if i != 20], "the rest of the backlog flows"
    assert len(_lines(result.stderr, "dead-letter")) == 1, result.stderr
    assert "keeping predictions in memory" not in result.stderr
    assert "Traceback" not in result.stderr
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT id FROM dead ORDER BY id")] == [1, 2, 3, 20]
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


def test_a_corrupt_spool_file_is_salvaged_in_one_line_not_a_crash_loop(int8_model: Path, video: Path,
                                                                      broker: Broker, tmp_path: Path) -> None:
    """Damaged pages cost the predictions on them, not the whole backlog (issue 27), and the line
    says how many were saved and lost; every saved one is then sent or still waits: none is lost
    silently."""
    state = tmp_path / "state"
    state.mkdir()
    path = state / "spool-corrupt-custom.sqlite"
    spool = SqliteSpool(path)
    total = 400
    for i in range(total):
        spool.put("edge-agent/corrupt/custom/prediction", json.dumps({"backlog": i, "pad": "x" * 200}).encode(),
                  1, False)
    spool.close()
    data = bytearray(path.read_bytes())
    rng = random.Random(1)
    for _ in range(3):  # random pages overwritten
        at = rng.randrange(1, len(data) // 4096) * 4096
        data[at:at + 4096] = rng.randbytes(4096)
    path.write_bytes(bytes(data))
    sub = Subscriber(broker, "edge-agent/corrupt/#")
    lines: list[str] = []
    for _ in range(2):  # and again: the second start finds the fresh file
        result = run_agent(_agent(int8_model, video, broker, "corrupt", "--max-frames", "10"),
                           env=agent_env(STATE_DIRECTORY=str(state)))
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        lines += _lines(result.stderr, "moved it aside")
    sub.close()
    assert len(lines) == 1, lines
    counts = re.search(r"saved (\d+) predictions from it, (\d+) lost", lines[0])
    assert counts is not None, lines[0]
    saved, lost = int(counts[1]), int(counts[2])
    assert saved + lost == total and saved > 0 and lost > 0, lines[0]
    assert len([p for p in sub.payloads("/prediction") if "backlog" not in p]) >= 20
    assert len(list(state.glob("spool-corrupt-custom.sqlite.corrupt-*"))) == 1
    sent = {p["backlog"] for p in sub.payloads("/prediction") if "backlog" in p}
    with sqlite3.connect(path) as db:
        waiting = {json.loads(r[0])["backlog"] for r in db.execute("SELECT payload FROM outbox")}
    assert len(sent | waiting) == saved and (sent | waiting) <= set(range(total)), "each saved one sent or waiting"


def test_sigkill_five_times_loses_nothing_older_than_the_bound(int8_model: Path, video: Path, tmp_path: Path,
                                                              broker_factory: Callable[..., Broker]) -> None:
    """The broker is away while the agent is killed five times at random moments; what each killed
    run made more than LOSS_BOUND_S before its kill must all arrive once the broker is back."""
    broker = broker_factory(start=False)
    env = agent_env(STATE_DIRECTORY=str(tmp_path / "state"))
    args = _agent(int8_model, video, broker, "killed", "--loop", "--realtime", "--metrics-interval", "0")
    rng = random.Random(5)
    kills: list[float] = []
    for _ in range(5):
        proc = start_agent(args, env=env)
        with running(proc):
            time.sleep(rng.uniform(4.0, 7.0))  # model load, then a few seconds of predictions
            kills.append(time.time())
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    broker.start()
    sub = Subscriber(broker, "edge-agent/killed/custom/prediction")
    drain = start_agent([*args, "--max-frames", "20"], env=env)
    with running(drain):
        drain.wait(120)
    by_run: dict[str, list[dict[str, object]]] = {}
    eventually(lambda: len({p["run"] for p in sub.payloads("/prediction")}) >= 6, 60, "every run")
    time.sleep(2)
    for p in sub.payloads("/prediction"):
        by_run.setdefault(str(p["run"]), []).append(p)
    sub.close()
    killed = sorted((runs for runs in by_run.values() if any(p.get("replayed") for p in runs)),
                    key=lambda runs: min(str(p["ts"]) for p in runs))
    assert len(killed) == 5, {k: len(v) for k, v in by_run.items()}
    for kill, got in zip(kills, killed, strict=True):
        seqs = sorted({int(str(p["seq"])) for p in got})
        assert seqs == list(range(len(seqs))), "a hole: a prediction older than the last one kept was lost"
        last = max(got, key=lambda p: int(str(p["seq"])))
        from datetime import datetime

        made = datetime.fromisoformat(str(last["ts"]).replace("Z", "+00:00")).timestamp()
        lost_s = kill - made
        print(f"kill: {len(seqs)} kept, the last made {lost_s:.2f} s before the kill")
        assert lost_s <= LOSS_BOUND_S + SCHEDULING_SLACK_S, (lost_s, len(seqs))


def _acl_broker(broker_factory: Callable[..., Broker], tmp_path: Path) -> Broker:
    """Anyone may read; user 'pi' may write its status, info, metrics and discovery, not predictions."""
    acl = tmp_path / "acl"
    acl.write_text("topic read #\n\nuser pi\ntopic readwrite edge-agent/pi/status\ntopic write edge-agent/pi/info\n"
                   "topic write edge-agent/pi/metrics\ntopic readwrite homeassistant/#\n")
    port = free_port()
    return broker_factory(f"listener {port} 127.0.0.1\nallow_anonymous true\nacl_file {acl}\n", port=port)


def test_mqtt5_refusals_are_counted_logged_once_and_shown_by_doctor(
        int8_model: Path, video: Path, tmp_path: Path, broker_factory: Callable[..., Broker]) -> None:
    broker = _acl_broker(broker_factory, tmp_path)
    state = tmp_path / "state"
    sub = Subscriber(broker, "edge-agent/pi/#")
    env = agent_env(STATE_DIRECTORY=str(state))
    result = run_agent(_agent(int8_model, video, broker, "pi", "--mqtt-username", "pi", "--mqtt-protocol", "5",
                              "--loop", "--realtime", "--max-frames", "40", "--metrics-interval", "1"), env=env)
    assert result.returncode == 0, result.stderr
    refused = _lines(result.stderr, "refused the message on")
    assert len(refused) == 1 and "Not authorized" in refused[0], result.stderr
    metrics = sub.payloads("/metrics")
    sub.close()
    assert sub.payloads("/prediction") == []
    assert metrics and metrics[-1]["refused"] > 0, metrics[-1:]
    assert "edge-agent/pi/custom/prediction" in metrics[-1]["refused_topics"]
    conf = tmp_path / "agent.toml"
    conf.write_text(f'task = "custom"\ndevice_id = "pi"\n[model]\npath = "{int8_model}"\n'
                    f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n')
    doctor = subprocess.run([sys.executable, "-m", "edge_agent", "doctor", "--config", str(conf)], capture_output=True,
                            text=True, env=env, cwd=REPO, timeout=60)
    line = next(li for li in doctor.stdout.splitlines() if " spool " in li)
    assert "not delivered" in line and "Not authorized" in line, doctor.stdout


def test_mqtt311_refusal_is_caught_by_the_echo_check(int8_model: Path, video: Path, tmp_path: Path,
                                                     broker_factory: Callable[..., Broker]) -> None:
    broker = _acl_broker(broker_factory, tmp_path)
    result = run_agent(_agent(int8_model, video, broker, "pi", "--mqtt-username", "pi", "--loop", "--realtime",
                              "--max-frames", "150"), timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(_lines(result.stderr, "did not deliver it back")) == 1, result.stderr


def test_mqtt311_echo_check_is_quiet_when_the_topic_is_allowed(int8_model: Path, video: Path,
                                                               broker: Broker) -> None:
    result = run_agent(_agent(int8_model, video, broker, "pi", "--loop", "--realtime", "--max-frames", "150"),
                       timeout=120)
    assert result.returncode == 0, result.stderr
    assert "did not deliver it back" not in result.stderr


def test_a_broker_refusing_logins_for_a_while_is_waited_for(int8_model: Path, video: Path, tmp_path: Path,
                                                            broker_factory: Callable[..., Broker]) -> None:
    """As when the broker's auth backend restarts after a power cut: refused, then accepted."""
    port = free_port()
    passwords = make_password_file(tmp_path, {"someone-else": "x"})
    conf = f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
    broker = broker_factory(conf, port=port)
    sub = Subscriber(broker, "edge-agent/pi/#", username="someone-else", password="x")
    proc = start_agent(_agent(int8_model, video, broker, "pi", "--mqtt-username", "pi", "--loop", "--realtime",
                              "--max-frames", "100"), env=agent_env(EDGE_AGENT_MQTT_PASSWORD="pw"))
    with running(proc):
        time.sleep(8)
        assert proc.poll() is None, "a refused login must not end the agent"
        make_password_file(tmp_path, {"someone-else": "x", "pi": "pw"})
        broker.stop()
        broker.start()
        sub.client.reconnect()
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "refused the connection" in err and "retrying" in err
    got = sub.wait_for("/prediction", 30)
    sub.close()
    assert len({p["seq"] for p in got}) == 100, "the predictions made while refused were kept"


def test_a_network_camera_that_comes_up_late_is_waited_for(int8_model: Path) -> None:
    port = free_port()
    camera = MjpegCamera()
    proc = start_agent(["--task", "custom", "--model", str(int8_model), "--source",
                        f"http://127.0.0.1:{port}/stream.mjpg", "--sink", "stdout", "--threshold", "0", *EVERY_FRAME,
                        "--max-frames", "5"])
    with running(proc):
        time.sleep(8)
        assert proc.poll() is None, "a stream that is not up yet must not end the agent"
        camera.start(port)
        try:
            out, err = proc.communicate(timeout=90)
        finally:
            camera.stop()
    assert proc.returncode == 0, err
    assert len([json.loads(line) for line in out.splitlines()]) == 5
    assert "not up yet" in err


def test_a_missing_local_camera_is_still_exit_2(int8_model: Path) -> None:
    result = run_agent(["--task", "custom", "--model", str(int8_model), "--camera", "/dev/video97"])
    assert result.returncode == 2, result.stderr


class _BrokenSpool(SqliteSpool):
    """A spool whose reads fail every time (as a bug would): the sender must not die silently."""

    def after(self, cursor: int, limit: int) -> list:  # type: ignore[type-arg]
        raise RuntimeError("spool read failed")


def test_a_sender_that_keeps_failing_makes_the_publisher_fatal_not_silent(broker: Broker) -> None:
    from edge_agent.config import MqttConfig
    from edge_agent.publish.mqtt import THREAD_RESTARTS, MqttPublisher

    publisher = MqttPublisher(MqttConfig(host=broker.host, port=broker.port), "broken", "custom",
                              _BrokenSpool(None))
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        publisher.publish("custom/prediction", {"label": "x"})
        eventually(lambda: publisher.fatal is not None, 30 + THREAD_RESTARTS * 2, "the publisher to give up")
        assert "mqtt-sender keeps failing" in str(publisher.fatal)
        assert publisher.thread_restarts >= THREAD_RESTARTS
        assert not publisher.healthy()
    finally:
        publisher.stop(0.5)


def test_healthy_while_the_broker_is_away_because_the_spool_keeps_everything(tmp_path: Path) -> None:
    from edge_agent.config import MqttConfig
    from edge_agent.publish.mqtt import MqttPublisher

    publisher = MqttPublisher(MqttConfig(host="127.0.0.1", port=free_port()), "away", "custom",
                              SqliteSpool(tmp_path / "s.sqlite"))
    publisher.start()
    try:
        publisher.publish("custom/prediction", {"label": "x"})
        time.sleep(1.5)
        assert publisher.healthy() and publisher.fatal is None
        assert publisher.state.startswith("unreachable")
        assert publisher.pending == 1
    finally:
        publisher.stop(0.5)


def test_after_an_outage_live_predictions_go_first_and_the_backlog_follows_marked(
        int8_model: Path, video: Path, broker_factory: Callable[..., Broker]) -> None:
    broker = broker_factory(persistent=True)
    sub = Subscriber(broker, "edge-agent/replay/custom/prediction", persistent=True)
    proc = start_agent(_agent(int8_model, video, broker, "replay", "--loop", "--realtime", "--metrics-interval", "0"))
    with running(proc):
        eventually(lambda: len(sub.payloads("/prediction")) >= 10, 30, "first predictions")
        broker.stop()
        before = len(sub.messages)
        time.sleep(20)  # ~200 predictions spooled at 10 fps
        broker.start()
        eventually(lambda: any(not json.loads(m.payload).get("replayed") for m in sub.messages[before + 20:]), 90,
                   "live predictions after the reconnect")
        eventually(lambda: sum(bool(json.loads(m.payload).get("replayed")) for m in sub.messages) >= 150, 60,
                   "the backlog")
    after = [(m.timestamp, json.loads(m.payload)) for m in sub.messages[before:]]
    sub.close()
    replayed = [p["seq"] for _, p in after if p.get("replayed")]
    assert replayed == sorted(replayed) and len(replayed) >= 150, "the backlog: marked and in order"
    newest_spooled = max(replayed)
    live = [(t, p["seq"]) for t, p in after if not p.get("replayed") and p["seq"] > newest_spooled]
    first_live = next(i for i, (_, p) in enumerate(after) if not p.get("replayed") and p["seq"] > newest_spooled)
    last_replayed = max(i for i, (_, p) in enumerate(after) if p.get("replayed"))
    assert first_live < last_replayed, "live predictions waited for the whole backlog"
    # the agent's reconnect: its first message then, replayed or live (earlier ones in ``after`` are
    # what the broker had queued for the subscriber before it went down)
    start = min(t for t, p in after if p.get("replayed") or p["seq"] > newest_spooled)
    print(f"first live prediction {live[0][0] - start:.2f} s after the agent's reconnect; "
          f"backlog of {len(replayed)} drained in {after[last_replayed][0] - start:.1f} s")
