"""The sensor agent driven as the runtime drives it: loader checks, int8 vs float, replay,
anomaly verdicts, and bad input (NaN/inf, a missing channel, a wrong rate) — clear errors or
counted drops, never a crash."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from edge_agent import manifest as manifest_mod
from edge_agent.agents import sensor
from edge_agent.config import Config
from edge_agent.errors import ConfigError, ModelError, SourceError
from edge_agent.hub import discovery_messages
from edge_agent.manifest import ImageInput
from edge_agent.preprocess import series
from edge_agent.sources.series_factory import make_series_source
from edge_agent.tasks import default_model
from tests import ha_schema
from tests.sensor_helpers import (
    IMU,
    IMU_LABELS,
    MACHINE,
    Collect,
    drive,
    make_agent,
    sample_windows,
    tiny_models,
    walk,
    write_csv,
)

ENVELOPE = {"ts", "seq", "run", "latency_ms", "model", "device", "task", "label", "window_ts"}


@pytest.fixture(scope="module")
def models() -> dict[str, Path]:
    return tiny_models()


def _rewrite(src: Path, dst_dir: Path, **changes: object) -> Path:
    """A copy of a model whose manifest has ``changes`` (top-level fields or input.*)."""
    dst_dir.mkdir(exist_ok=True)
    dst = dst_dir / src.name
    dst.write_bytes(src.read_bytes())
    data = json.loads(src.with_suffix(".json").read_text())
    for key, value in changes.items():
        if key.startswith("input_"):
            data["input"][key[6:]] = value
        elif value is None:
            data.pop(key, None)
        else:
            data[key] = value
    dst.with_suffix(".json").write_text(json.dumps(data))
    return dst


@pytest.mark.parametrize(("changes", "needle"), [
    ({"input_window": 40}, "field 'input'"),
    ({"labels": ["a", "b", "c"]}, "field 'labels'"),
    ({"input_channels": []}, "field 'input.channels'"),
    ({"input_rate_hz": "fast"}, "field 'input.rate_hz'"),
])
def test_the_loader_names_the_field_that_is_wrong(models: dict[str, Path], tmp_path: Path,
                                                  changes: dict[str, object], needle: str) -> None:
    path = _rewrite(models["activity"], tmp_path / "bad", **changes)
    with pytest.raises(ModelError, match=needle):
        sensor.load(path, manifest_mod.load(path.with_suffix(".json")), Config(task="activity"))


def test_an_anomaly_model_needs_its_threshold(models: dict[str, Path], tmp_path: Path) -> None:
    path = _rewrite(models["machine"], tmp_path / "nothr", anomaly=None)
    with pytest.raises(ModelError, match="field 'anomaly'"):
        sensor.load(path, manifest_mod.load(path.with_suffix(".json")), Config(task="machine"))


def test_an_image_manifest_is_refused(models: dict[str, Path]) -> None:
    man = manifest_mod.load(models["activity"].with_suffix(".json"))
    image = dataclasses.replace(man, series=None, input=ImageInput(48, 48))
    with pytest.raises(ModelError, match="not a series"):
        sensor.load(models["activity"], image, Config(task="activity"))


def test_int8_agrees_with_float_through_the_agents_own_inference(models: dict[str, Path]) -> None:
    """The converter's int8 model against its float twin, on windows it was not calibrated on."""
    for name, spec in (("activity", IMU), ("machine", MACHINE)):
        windows = sample_windows(spec, 100, seed=9)
        path = models[name]
        man = manifest_mod.load(path.with_suffix(".json"))
        q = sensor.load(path, man, Config(task=name))
        f = sensor.load(path.with_name(f"{name}.float.tflite"), dataclasses.replace(
            man, sha256=manifest_mod.sha256_file(path.with_name(f"{name}.float.tflite"))), Config(task=name))
        if name == "machine":
            sq, sf = (np.array([m.infer(w)[0] for w in windows]) for m in (q, f))
            assert np.corrcoef(sq, sf)[0, 1] > 0.95
            assert np.median(np.abs(sq - sf) / sf) < 0.1
        else:
            pq, pf = (np.stack([m.infer(w) for w in windows]) for m in (q, f))
            assert pq.shape == (len(windows), len(IMU_LABELS))
            assert np.abs(pq - pf).max() < 0.06
            assert (pq.argmax(1) == pf.argmax(1)).mean() >= 0.85  # near-uniform random-weight scores


def test_a_replay_publishes_one_labelled_window_per_stride(models: dict[str, Path], tmp_path: Path) -> None:
    t, x = walk(8.0, rate_hz=50.0)
    csv = write_csv(tmp_path / "walk.csv", t, x)
    pub = Collect()
    agent = make_agent(models["activity"], lambda c: setattr(c.source, "source", str(csv)), pub)
    drive(agent)
    expected = len(series.recording_windows(t, x, IMU)[0])
    assert agent.inferences == expected == len(pub.messages)
    assert {topic for topic, _ in pub.messages} == {"activity/prediction"}
    payloads = [p for _, p in pub.messages]
    assert [p["seq"] for p in payloads] == list(range(1, expected + 1))
    for p in payloads:
        assert set(p) >= ENVELOPE and {"score", "top"} <= set(p)
        assert p["label"] in IMU_LABELS and 0.0 <= p["score"] <= 1.0
    assert agent.error is None and "windows" in agent.status()


def test_an_anomaly_model_publishes_score_against_its_threshold(models: dict[str, Path], tmp_path: Path) -> None:
    t = np.arange(0, 6, 0.01)
    x = np.c_[np.sin(2 * np.pi * 10 * t), 30 + 0.1 * np.sin(t)]
    csv = write_csv(tmp_path / "m.csv", t, x, ("vib", "temp"))
    pub = Collect()
    agent = make_agent(models["machine"], lambda c: setattr(c.source, "source", str(csv)), pub)
    drive(agent)
    assert pub.messages
    for _, p in pub.messages:
        assert p["anomaly"] is (p["score"] > p["threshold"])
        assert p["label"] == ("anomaly" if p["anomaly"] else "normal")
        assert p["threshold"] == 0.5


def test_nan_and_inf_samples_are_dropped_and_counted(models: dict[str, Path], tmp_path: Path) -> None:
    t, x = walk(6.0)
    x[10, 0], x[20, 1], x[30, 2] = np.nan, np.inf, -np.inf
    csv = write_csv(tmp_path / "nan.csv", t, x)
    agent = make_agent(models["activity"], lambda c: setattr(c.source, "source", str(csv)))
    drive(agent)
    assert agent.counts()["non_finite"] == 3
    assert agent.inferences > 0 and agent.error is None
    assert "3 NaN/inf" in agent.summary()


@pytest.mark.parametrize(("names", "needle"), [(("ax", "ay"), "missing channel 'az'"),
                                               (("ax", "ay", "az", "mag"), "extra channel 'mag'")])
def test_a_recording_with_a_missing_or_extra_channel_is_an_error_naming_it(
        models: dict[str, Path], tmp_path: Path, names: tuple[str, ...], needle: str) -> None:
    t, x = walk(3.0)
    x = np.c_[x, x[:, :1]][:, :len(names)]
    csv = write_csv(tmp_path / "bad.csv", t, x, names)
    agent = make_agent(models["activity"], lambda c: setattr(c.source, "source", str(csv)))
    with pytest.raises(SourceError, match=needle):
        agent.start()


def test_input_slower_than_the_models_rate_is_said_in_status(models: dict[str, Path], tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    t, x = walk(60.0, rate_hz=5.0)  # the model wants 25 Hz
    csv = write_csv(tmp_path / "slow.csv", t, x)
    agent = make_agent(models["activity"], lambda c: setattr(c.source, "source", str(csv)))
    with caplog.at_level(logging.WARNING):
        drive(agent)
    assert "input 5.0 Hz, model wants 25 Hz" in agent.status()
    assert any("5.0 Hz" in r.getMessage() and "25 Hz" in r.getMessage() for r in caplog.records)
    assert agent.metrics()["input_rate_hz"] == pytest.approx(5.0, rel=0.01)


def test_jsonl_replay_with_a_json_path_per_channel(models: dict[str, Path], tmp_path: Path) -> None:
    t, x = walk(4.0)
    lines = [json.dumps({"ts": float(ti), "accel": {"x": float(r[0]), "y": float(r[1]), "z": float(r[2])}})
             for ti, r in zip(t, x, strict=True)]
    lines.insert(5, "not json")
    path = tmp_path / "imu.jsonl"
    path.write_text("\n".join(lines) + "\n")

    def configure(c: Config) -> None:
        c.source.source = str(path)
        c.sensor.paths = "ax=accel.x,ay=accel.y,az=accel.z"

    agent = make_agent(models["activity"], configure)
    drive(agent)
    assert agent.inferences == len(series.recording_windows(t, x, IMU)[0])
    assert agent.counts()["bad_records"] == 1


def test_a_camera_or_no_input_is_refused_for_a_sensor_task() -> None:
    c = Config(task="activity")
    with pytest.raises(ConfigError, match="needs an input"):
        make_series_source(c, IMU.names)
    c.source.camera = "0"
    with pytest.raises(ConfigError, match="reads sensor samples"):
        make_series_source(c, IMU.names)


@pytest.mark.parametrize(("task", "labels", "components"), [
    ("activity", IMU_LABELS, ["sensor"]),
    ("location", ("kitchen", "living"), ["sensor"]),
    ("machine", ("normal", "anomaly"), ["binary_sensor", "sensor"]),
    ("intrusion", ("normal", "anomaly"), ["binary_sensor", "sensor"]),
])
def test_sensor_discovery_follows_the_home_assistant_schema(task: str, labels: tuple[str, ...],
                                                            components: list[str]) -> None:
    messages = discovery_messages(Config(task=task, device_id="shed"), labels)
    assert [topic.split("/")[1] for topic, _ in messages] == components
    for topic, payload in messages:
        assert ha_schema.check(topic.split("/")[1], payload) == [], (topic, payload)
        assert payload["state_topic"] == f"edge-agent/shed/{task}/prediction"
    if components[0] == "binary_sensor":
        assert messages[0][1]["device_class"] == "problem"
        assert "value_json.anomaly" in messages[0][1]["value_template"]


def test_a_custom_task_gets_the_entities_of_its_models_kind() -> None:
    """--task custom with an anomaly (series) or keyword (audio) model: the manifest's kind, not the
    task's default (image), decides what Home Assistant is told."""
    config = Config(task="custom", device_id="shed")
    assert [t.split("/")[1] for t, _ in discovery_messages(config, ("normal", "anomaly"), "series")] == \
        ["binary_sensor", "sensor"]
    assert [t.split("/")[1] for t, _ in discovery_messages(config, ("yes", "no", "_silence_"), "audio")] == ["event"]
    assert next(t.split("/")[1] for t, _ in discovery_messages(config, ("a", "b"))) == "sensor"  # image default


def test_the_sensor_agent_never_imports_tensorflow(models: dict[str, Path], tmp_path: Path) -> None:
    import subprocess
    import sys

    t, x = walk(4.0)
    csv = write_csv(tmp_path / "w.csv", t, x)
    code = (
        "import sys, threading\n"
        "from pathlib import Path\n"
        "from edge_agent import manifest\n"
        "from edge_agent.agents import sensor\n"
        "from edge_agent.config import Config\n"
        "from edge_agent.publish.stdout import StdoutPublisher\n"
        f"p = Path({str(models['activity'])!r})\n"
        f"c = Config(task='activity'); c.source.source = {str(csv)!r}\n"
        "a = sensor.SensorAgent(c, sensor.load(p, manifest.load(p.with_suffix('.json')), c), StdoutPublisher())\n"
        "a.start(); stop = threading.Event()\n"
        "while not a.ended:\n"
        "    w = a.read(0.1, stop)\n"
        "    if w is not None: a.process(w)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
        "print('HEAVY', heavy, a.inferences, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert "HEAVY [] 3" in out.stderr, out.stderr[-2000:]


def test_remote_control_and_reload_keep_seq_and_change_the_policy(models: dict[str, Path], tmp_path: Path) -> None:
    from edge_agent.hub import Command

    t, x = walk(8.0)
    csv = write_csv(tmp_path / "w.csv", t, x)
    pub = Collect()
    agent = make_agent(models["activity"], lambda c: setattr(c.source, "source", str(csv)), pub)
    agent.apply(Command(threshold=1.0))  # nothing reaches a score above 1
    drive(agent)
    assert agent.inferences > 0 and pub.messages == []
    agent.apply(Command(threshold=0.0, max_rate=0.0))
    new = Config(task="activity")
    new.postprocess.threshold = 0.0
    new.postprocess.on_change, new.postprocess.max_rate = False, 0.0  # every window (the default: on change)
    new.source.source = str(csv)
    man = manifest_mod.load(models["activity"].with_suffix(".json"))
    agent.reconfigure(new, sensor.load(models["activity"], man, new))  # SIGHUP: same source, seq kept
    for i, w in enumerate(series.recording_windows(t, x, IMU)[0][:3]):
        agent.process(sensor.Window(w, float(i), time.time(), time.monotonic()))
    assert [p["seq"] for _, p in pub.messages] == [1, 2, 3]


def test_an_anomaly_model_keeps_its_calibrated_threshold_under_remote_control(models: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    from edge_agent.hub import Command

    t = np.arange(0, 3, 0.01)
    csv = write_csv(tmp_path / "m.csv", t, np.c_[np.sin(t), 30 + np.cos(t)], ("vib", "temp"))
    pub = Collect()
    agent = make_agent(models["machine"], lambda c: setattr(c.source, "source", str(csv)), pub)
    agent.apply(Command(threshold=0.99))
    drive(agent)
    assert pub.messages and all(p["threshold"] == 0.5 for _, p in pub.messages)


def test_the_sensor_bench_times_every_window_of_the_shipped_models(tmp_path: Path) -> None:
    from edge_agent.bench import cli

    models = [str(default_model(t)) for t in ("activity", "intrusion")]
    report = cli.run(["sensor", "--model", models[0], "--model", models[1], "--runs", "40", "--chunk", "10",
                      "--quiet", "--json", str(tmp_path / "sensor.json")])
    rows = report["results"]["sensor"]
    assert [r["model"] for r in rows] == ["activity", "intrusion"]
    for r in rows:
        assert r["windows"] == 41  # every window of the pushed samples, none dropped
        assert r["windows_per_s"] > 0 and r["stages"]["infer"]["n"] == 41 and r["stages"]["infer"]["p50"] > 0
