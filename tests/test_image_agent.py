"""The image agent end to end, as a user runs it: a subprocess, a real broker, a real subscriber."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import REPO, Broker, Subscriber, once_each, run_agent, running, start_agent

CONTRACT_FIELDS = {"task", "label", "score", "top", "ts", "frame_ts", "seq", "latency_ms", "model", "device"}


def agent_args(model: Path, video: Path, broker: Broker, *extra: str) -> list[str]:
    return ["--model", str(model), "--source", str(video), "--mqtt-host", broker.host,
            "--mqtt-port", str(broker.port), "--device-id", "pi1", "--task", "custom", "--threshold", "0",
                "--no-on-change", "--max-rate", "0", *extra]


def test_predictions_reach_a_real_subscriber_in_seq_order(int8_model: Path, video: Path, broker: Broker) -> None:
    sub = Subscriber(broker, "edge-agent/#")
    result = run_agent(agent_args(int8_model, video, broker))
    assert result.returncode == 0, result.stderr
    got = once_each(sub.wait_for("/custom/prediction", 30))
    sub.close()
    assert len(got) == 30
    assert [p["seq"] for p in got] == list(range(30))
    for p in got:
        assert set(p) >= CONTRACT_FIELDS, set(p) ^ CONTRACT_FIELDS
        assert p["task"] == "custom" and p["device"] == "pi1"
        assert p["label"] in ("red", "green", "blue") and p["label"] == p["top"][0]["label"]
        assert 0.0 <= p["score"] <= 1.0 and p["latency_ms"] >= 0
        assert p["ts"].endswith("Z") and len(p["ts"]) == len("2026-01-01T00:00:00.000Z")
        assert p["model"]["name"] == "tiny_int8" and len(p["model"]["sha256"]) == 12
        assert [t["score"] for t in p["top"]] == sorted((t["score"] for t in p["top"]), reverse=True)
    assert all(m.topic == "edge-agent/pi1/custom/prediction" for m in sub.messages if "prediction" in m.topic)
    # the retained status ends as offline after a clean exit
    status = sub.texts("edge-agent/pi1/status")
    assert status[0] == "online" and status[-1] == "offline"


def test_retained_status_is_online_while_running_and_will_marks_offline(int8_model: Path, video: Path,
                                                                        broker: Broker) -> None:
    proc = start_agent(agent_args(int8_model, video, broker, "--loop"))
    with running(proc):
        sub = Subscriber(broker, "edge-agent/pi1/status")
        deadline = time.monotonic() + 30
        while "online" not in sub.texts("edge-agent/pi1/status") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sub.texts("edge-agent/pi1/status")[-1] == "online"
        proc.kill()  # no clean exit: the broker must publish the last will
        proc.wait()
        deadline = time.monotonic() + 30
        while sub.texts("edge-agent/pi1/status")[-1] != "offline" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sub.texts("edge-agent/pi1/status")[-1] == "offline"
        sub.close()


def test_broker_absent_at_start_then_appears(int8_model: Path, video: Path, broker_factory) -> None:  # type: ignore[no-untyped-def]
    broker = broker_factory(start=False)
    proc = start_agent(agent_args(int8_model, video, broker, "--max-frames", "20"))
    with running(proc):
        time.sleep(3)
        assert proc.poll() is None, "the agent must keep running without a broker"
        broker.start()
        sub = Subscriber(broker, "edge-agent/#")
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        assert "unreachable" in err
        got = once_each(sub.wait_for("/custom/prediction", 20))
        sub.close()
        assert [p["seq"] for p in got] == list(range(20)), "predictions made while offline were lost"


def test_stdout_sink_needs_no_broker(int8_model: Path, video: Path) -> None:
    result = run_agent(["--model", str(int8_model), "--source", str(video), "--sink", "stdout", "--threshold", "0",
                        "--no-on-change", "--max-rate", "0",
                        "--task", "custom"])
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["seq"] for p in lines] == list(range(30))


def test_on_change_publishes_only_label_changes(int8_model: Path, video: Path) -> None:
    result = run_agent(["--model", str(int8_model), "--source", str(video), "--sink", "stdout", "--threshold", "0",
                        "--no-on-change", "--max-rate", "0",
                        "--hysteresis", "0", "--on-change", "--task", "custom"])
    labels = [json.loads(line)["label"] for line in result.stdout.splitlines()]
    assert labels, result.stderr
    assert all(a != b for a, b in itertools.pairwise(labels))
    assert len(labels) < 30


def test_agent_process_never_imports_tensorflow(int8_model: Path, video: Path) -> None:
    code = (
        "import sys\n"
        "from edge_agent.cli import main\n"
        f"rc = main(['--model', {str(int8_model)!r}, '--source', {str(video)!r}, '--sink', 'stdout', "
        "'--task', 'custom', '--max-frames', '3'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print('HEAVY', heavy, rc, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert "HEAVY [] 0" in result.stderr, result.stderr[-2000:]


def test_mqtt5_delivers_the_same_contract(int8_model: Path, video: Path, broker: Broker) -> None:
    sub = Subscriber(broker, "edge-agent/#")
    result = run_agent(agent_args(int8_model, video, broker, "--mqtt-protocol", "5", "--max-frames", "10"))
    assert result.returncode == 0, result.stderr
    got = once_each(sub.wait_for("/custom/prediction", 10))
    sub.close()
    assert [p["seq"] for p in got] == list(range(10))
    assert set(got[0]) >= CONTRACT_FIELDS
