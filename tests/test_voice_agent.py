"""The voice agent as a user runs it: ``python -m edge_agent --task voice`` on a WAV file, a real
mosquitto, a real subscriber.

Exact sequences, payloads and silences are asserted on the fixed tone model (tests/voice_helpers.py:
weights set in code, far from any threshold), so they test the pipeline and cannot move when the
shipped model is retrained. The shipped model, on speech by a voice it never heard, is held to
properties any model must keep (each event a spoken command, at most one per word, in order)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edge_agent import manifest as manifest_mod
from edge_agent.sources.wav import read_wav, write_wav
from edge_agent.voice.spotter import load_voice_model
from tests import ha_schema
from tests.helpers import Broker, Subscriber, assert_one_line_error, run_agent
from tests.voice_helpers import (
    HELD_OUT_VOICE,
    VOICE_MODEL,
    assert_events_follow_the_words,
    speech_stream,
    tone_model,
    tone_stream,
)
from tools import eval_voice

COMMAND_FIELDS = {"task", "command", "score", "ts", "audio_ts", "seq", "run", "latency_ms", "model", "device"}
FILE_FIELDS = COMMAND_FIELDS | {"offset_s"}  # a file source also says where in the file


def voice_args(broker: Broker, *extra: str) -> list[str]:
    return ["--task", "voice", "--mqtt-host", broker.host, "--mqtt-port", str(broker.port), "--device-id", "pi1",
            *extra]


__all__ = ["tone_model"]  # the session fixture, imported for these tests


@pytest.fixture(scope="module")
def on_off_yes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, float, float]]]:
    path = tmp_path_factory.mktemp("tones") / "stream.wav"
    return path, tone_stream(path, ["on", "off", "tree", "yes"], seed=3)


def test_on_off_yes_are_exactly_three_commands_in_order_on_mqtt_and_home_assistant(
        on_off_yes: tuple[Path, list[tuple[str, float, float]]], broker: Broker, tone_model: Path) -> None:
    wav, marks = on_off_yes
    sub = Subscriber(broker, "#")
    result = run_agent(voice_args(broker, "--source", str(wav), "--model", str(tone_model)))
    assert result.returncode == 0, result.stderr[-3000:]
    got = sub.wait_for("/voice/command", 3, timeout=10)
    time.sleep(0.5)  # anything extra would have arrived by now
    got = sub.payloads("/voice/command")
    sub.close()
    assert [p["command"] for p in got] == ["on", "off", "yes"], (got, result.stderr[-2000:])  # "tree" is no command
    assert [p["seq"] for p in got] == [0, 1, 2]
    assert all(m.topic == "edge-agent/pi1/voice/command" for m in sub.messages if m.topic.endswith("command"))
    assert len(marks) == 4
    said = [m for m in marks if m[0] != "tree"]
    for p, (_word, start, end) in zip(got, said, strict=True):
        assert set(p) == FILE_FIELDS, set(p) ^ FILE_FIELDS
        assert start < p["offset_s"] <= end + 1.5  # the end of the deciding window, seconds into the file
        assert p["task"] == "voice" and p["device"] == "pi1" and p["model"]["name"] == "tone"
        assert 0.9 <= p["score"] <= 1.0 and p["latency_ms"] >= 0.0
        assert p["ts"].endswith("Z") and len(p["ts"]) == len("2026-01-01T00:00:00.000Z")
        assert p["model"]["sha256"] == manifest_mod.load(tone_model.with_suffix(".json")).sha256[:12]
    assert len({p["run"] for p in got}) == 1
    # Home Assistant sees the commands as an event entity whose value template reads this payload
    event = json.loads(sub.raw("homeassistant/event/pi1/voice_command/config")[0])
    assert ha_schema.check("event", event) == []
    assert event["event_types"] == ["yes", "no", "on", "off", "stop"]
    assert event["state_topic"] == "edge-agent/pi1/voice/command"
    info = json.loads(sub.raw("edge-agent/pi1/info")[0])
    assert info["task"] == "voice" and info["model"]["name"] == "tone"


def test_the_same_stream_at_44_1_khz_gives_the_same_commands(
        on_off_yes: tuple[Path, list[tuple[str, float, float]]], tmp_path: Path, tone_model: Path) -> None:
    from edge_agent.preprocess.audio import resample

    x, rate = read_wav(on_off_yes[0])
    wav = tmp_path / "stream44.wav"
    write_wav(wav, resample(x, rate, 44_100), 44_100)
    result = run_agent(["--task", "voice", "--source", str(wav), "--sink", "stdout", "--model", str(tone_model)])
    assert result.returncode == 0, result.stderr[-3000:]
    got = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["command"] for p in got] == ["on", "off", "yes"]


def test_noise_and_a_word_that_is_no_command_publish_nothing(tmp_path: Path, tone_model: Path) -> None:
    wav = tmp_path / "others.wav"
    tone_stream(wav, ["tree", "tree", "tree"], gap_s=0.8)
    result = run_agent(["--task", "voice", "--source", str(wav), "--sink", "stdout", "--model", str(tone_model)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == ""


def test_the_shipped_model_on_a_voice_it_never_heard_announces_only_what_was_said(tmp_path: Path) -> None:
    """The default model, end to end and in stream time: whatever it hears of "on off yes" by a
    held-out voice is those words, once each, in order (how many it hears is eval_voice's figure)."""
    wav = tmp_path / "speech.wav"
    marks = speech_stream(wav, ["on", "off", "yes"], voice=HELD_OUT_VOICE, seed=3)
    result = run_agent(["--task", "voice", "--source", str(wav), "--sink", "stdout"])
    assert result.returncode == 0, result.stderr[-3000:]
    published = [json.loads(line)["command"] for line in result.stdout.splitlines()]
    model = load_voice_model(VOICE_MODEL)
    x, _ = read_wav(wav)
    stream = eval_voice.Stream("speech", x, marks)
    events = eval_voice.recognize(model.labels, model.settings, *eval_voice.posteriors(model, stream)[:2])
    assert published == [label for label, _ in events]  # the agent and the spotter agree
    assert_events_follow_the_words([(label, t / 1000) for label, t in events], marks)


def test_the_shipped_model_is_full_int8_small_and_says_what_it_outputs() -> None:
    model = load_voice_model(VOICE_MODEL)
    assert model.engine.input_dtype == np.int8 and VOICE_MODEL.stat().st_size <= 250 * 1024
    assert model.labels == ("yes", "no", "on", "off", "stop", "_silence_", "_unknown_")
    assert model.manifest.logits and 0.5 <= model.settings.threshold <= 1.0


def test_realtime_paces_the_file_at_its_own_rate(tmp_path: Path) -> None:
    """A lower bound only (the paced run cannot finish before its audio has played), so a loaded
    machine cannot fail it; without pacing 4 s of audio takes well under 4 s."""
    wav = tmp_path / "quiet.wav"
    write_wav(wav, np.random.default_rng(0).normal(0, 1e-3, 4 * 16_000).astype(np.float32), 16_000)
    t0 = time.monotonic()
    paced = run_agent(["--task", "voice", "--source", str(wav), "--sink", "stdout", "--realtime"])
    t_paced = time.monotonic() - t0
    assert paced.returncode == 0, paced.stderr
    assert t_paced >= 4.0, t_paced


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


def test_a_command_inside_other_sound_is_announced_when_it_holds_the_window(tone_model: Path) -> None:
    """"turn it ON please": the spotter has no notion of a phrase; it announces a command when the
    last second scores as one. A command with a little other sound around it is announced once
    and the sound is not; one buried in as much other sound as itself on each side scores as
    _unknown_ and is not announced (on the tone model, "tree" standing for the other words). How
    the shipped model scores spoken phrases is eval_voice --phrases's figure (docs/VOICE.md)."""
    from tests.voice_helpers import tone_word

    model = load_voice_model(tone_model)
    rng = np.random.default_rng(0)

    def events_for(flank_s: float) -> list[tuple[str, float]]:
        flank = tone_word("tree")[: int(flank_s * 16_000)]
        audio = np.concatenate([np.zeros(16_000, np.float32), flank, tone_word("on"), flank,
                                np.zeros(24_000, np.float32)])
        audio = (audio + 0.003 * rng.standard_normal(len(audio))).astype(np.float32)
        start = 1.0 + flank_s
        stream = eval_voice.Stream("phrase", audio, [("on", start, start + 0.4)])
        events = eval_voice.recognize(model.labels, model.settings, *eval_voice.posteriors(model, stream)[:2])
        assert_events_follow_the_words([(label, t / 1000) for label, t in events], stream.marks)
        return events

    assert [label for label, _ in events_for(0.1)] == ["on"]
    assert events_for(0.4) == []
