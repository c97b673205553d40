"""The voice agent as a user runs it: ``python -m edge_agent --task voice`` on a WAV file, a real
mosquitto, a real subscriber, the shipped model, speech by a voice the model never heard."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edge_agent import manifest as manifest_mod
from edge_agent.sources.wav import read_wav, write_wav
from tests import ha_schema
from tests.helpers import Broker, Subscriber, assert_one_line_error, run_agent
from tests.voice_helpers import HELD_OUT_VOICE, VOICE_MODEL, speech_stream

COMMAND_FIELDS = {"task", "command", "score", "ts", "audio_ts", "seq", "run", "latency_ms", "model", "device"}


def voice_args(broker: Broker, *extra: str) -> list[str]:
    return ["--task", "voice", "--mqtt-host", broker.host, "--mqtt-port", str(broker.port), "--device-id", "pi1",
            *extra]


@pytest.fixture(scope="module")
def on_off_yes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, float, float]]]:
    path = tmp_path_factory.mktemp("speech") / "stream.wav"
    return path, speech_stream(path, ["on", "off", "yes"], voice=HELD_OUT_VOICE, seed=3)


def test_on_off_yes_from_a_held_out_voice_are_exactly_three_commands_in_order(
        on_off_yes: tuple[Path, list[tuple[str, float, float]]], broker: Broker) -> None:
    wav, marks = on_off_yes
    sub = Subscriber(broker, "#")
    result = run_agent(voice_args(broker, "--source", str(wav)))
    assert result.returncode == 0, result.stderr[-3000:]
    got = sub.wait_for("/voice/command", 3, timeout=10)
    time.sleep(0.5)  # anything extra would have arrived by now
    got = sub.payloads("/voice/command")
    sub.close()
    assert [p["command"] for p in got] == ["on", "off", "yes"], (got, result.stderr[-2000:])
    assert [p["seq"] for p in got] == [0, 1, 2]
    assert all(m.topic == "edge-agent/pi1/voice/command" for m in sub.messages if m.topic.endswith("command"))
    assert len(marks) == 3
    for p in got:
        assert set(p) == COMMAND_FIELDS, set(p) ^ COMMAND_FIELDS
        assert p["task"] == "voice" and p["device"] == "pi1" and p["model"]["name"] == "voice"
        assert 0.0 < p["score"] <= 1.0 and 0.0 <= p["latency_ms"] < 1000
        assert p["ts"].endswith("Z") and len(p["ts"]) == len("2026-01-01T00:00:00.000Z")
        assert p["model"]["sha256"] == manifest_mod.load(VOICE_MODEL.with_suffix(".json")).sha256[:12]
    assert len({p["run"] for p in got}) == 1
    # Home Assistant sees the commands as an event entity whose value template reads this payload
    event = json.loads(sub.raw("homeassistant/event/pi1/voice_command/config")[0])
    assert ha_schema.check("event", event) == []
    assert event["event_types"] == ["yes", "no", "on", "off", "stop"]
    assert event["state_topic"] == "edge-agent/pi1/voice/command"
    info = json.loads(sub.raw("edge-agent/pi1/info")[0])
    assert info["task"] == "voice" and info["model"]["name"] == "voice"


def test_the_same_stream_at_44_1_khz_gives_the_same_commands(
        on_off_yes: tuple[Path, list[tuple[str, float, float]]], tmp_path: Path) -> None:
    from edge_agent.preprocess.audio import resample

    x, rate = read_wav(on_off_yes[0])
    wav = tmp_path / "stream44.wav"
    write_wav(wav, resample(x, rate, 44_100), 44_100)
    result = run_agent(["--task", "voice", "--source", str(wav), "--sink", "stdout"])
    assert result.returncode == 0, result.stderr[-3000:]
    got = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["command"] for p in got] == ["on", "off", "yes"]


def test_noise_and_other_words_publish_nothing(tmp_path: Path) -> None:
    wav = tmp_path / "others.wav"
    speech_stream(wav, ["hello", "weather", "kitchen", "go", "left", "seven", "happy"], seed=5, gap_s=(0.8, 1.5))
    result = run_agent(["--task", "voice", "--source", str(wav), "--sink", "stdout"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == ""


def test_realtime_paces_the_file_at_its_own_rate(tmp_path: Path) -> None:
    wav = tmp_path / "quiet.wav"
    write_wav(wav, np.random.default_rng(0).normal(0, 1e-3, 2 * 16_000).astype(np.float32), 16_000)
    t0 = time.monotonic()
    fast = run_agent(["--task", "voice", "--source", str(wav), "--sink", "stdout"])
    t_fast = time.monotonic() - t0
    t0 = time.monotonic()
    paced = run_agent(["--task", "voice", "--source", str(wav), "--sink", "stdout", "--realtime"])
    t_paced = time.monotonic() - t0
    assert fast.returncode == paced.returncode == 0, (fast.stderr, paced.stderr)
    assert t_paced - t_fast > 1.7, (t_fast, t_paced)  # 2 s of audio: about 2 s longer than as fast as possible


def test_sources_the_voice_task_cannot_use_are_one_line_errors(tmp_path: Path) -> None:
    assert_one_line_error(run_agent(["--task", "voice", "--source", str(tmp_path / "none.wav"), "--sink", "stdout"]),
                          "none.wav", "file not found")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 100)
    assert_one_line_error(run_agent(["--task", "voice", "--source", str(video), "--sink", "stdout"]),
                          "reads WAV files")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    assert_one_line_error(run_agent(["--task", "voice", "--source", str(bad), "--sink", "stdout"]),
                          "bad.wav", "not a PCM WAV")


def test_a_model_without_an_audio_manifest_is_refused(tmp_path: Path, int8_model: Path) -> None:
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(VOICE_MODEL.read_bytes())
    wav = tmp_path / "q.wav"
    write_wav(wav, np.zeros(16_000, np.float32), 16_000)
    assert_one_line_error(run_agent(["--task", "voice", "--model", str(lone), "--source", str(wav),
                                     "--sink", "stdout"]), "no manifest")
    assert_one_line_error(run_agent(["--task", "voice", "--model", str(int8_model), "--source", str(wav),
                                     "--sink", "stdout"]), "not an audio model")
    data = json.loads(VOICE_MODEL.with_suffix(".json").read_text())
    data["input"]["mel_bins"] = 32
    (tmp_path / "lone.json").write_text(json.dumps(data))
    assert_one_line_error(run_agent(["--task", "voice", "--model", str(lone), "--source", str(wav),
                                     "--sink", "stdout"]), "32", "model's input")
    data = json.loads(VOICE_MODEL.with_suffix(".json").read_text())
    data["recognizer"]["thresholds"] = {"stop": 2}
    (tmp_path / "lone.json").write_text(json.dumps(data))
    assert_one_line_error(run_agent(["--task", "voice", "--model", str(lone), "--source", str(wav),
                                     "--sink", "stdout"]), "lone.json", "'recognizer'", "thresholds")


def test_an_absent_microphone_is_a_clear_error_that_lists_the_devices() -> None:
    result = run_agent(["--task", "voice", "--mic", "No Such Microphone", "--sink", "stdout"])
    line = assert_one_line_error(result, "microphone No Such Microphone")
    assert "input devices" in line or "no audio input devices" in line, line
