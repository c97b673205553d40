"""The training command on a tiny Speech Commands-layout folder: checks first, then a real (tiny)
training, full-int8 conversion, and a manifest the agent loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_agent.convert.cli import main as convert_main
from edge_agent.convert.voice import augment, data, train
from edge_agent.errors import ConfigError
from edge_agent.sources.wav import write_wav
from edge_agent.voice.spotter import load_voice_model
from tests.voice_helpers import tone_model, tone_word

__all__ = ["tone_model"]  # the session fixture, imported for the enrollment test

WORDS = {"yes": 300.0, "no": 500.0, "on": 700.0, "off": 900.0, "stop": 1100.0, "tree": 1300.0}


def make_folder(root: Path, per_word: int = 6) -> Path:
    """Tones stand in for words (each word its own pitch); speakers s0..s5, s5 held out."""
    rng = np.random.default_rng(0)
    t = np.arange(16_000) / 16_000
    for word, hz in WORDS.items():
        (root / word).mkdir(parents=True)
        for i in range(per_word):
            x = 0.3 * np.sin(2 * np.pi * hz * t) * (np.abs(t - 0.5) < 0.2) + rng.normal(0, 0.01, t.size)
            write_wav(root / word / f"s{i}_nohash_0.wav", x.astype(np.float32), 16_000)
    (root / "_background_noise_").mkdir()
    write_wav(root / "_background_noise_" / "white.wav", rng.normal(0, 0.2, 48_000).astype(np.float32), 16_000)
    (root / "testing_list.txt").write_text("\n".join(f"{w}/s5_nohash_0.wav" for w in WORDS) + "\n")
    return root


def test_folder_problems_are_reported_before_tensorflow(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", per_word=6)
    with pytest.raises(ConfigError, match="not a folder"):
        data.scan(tmp_path / "none")
    with pytest.raises(ConfigError, match="no folder for the command"):
        data.scan(root, ("yes", "maybe"))
    corpus = data.scan(root)
    assert corpus.labels == ("yes", "no", "on", "off", "stop", "_silence_", "_unknown_")
    assert corpus.counts() == {"train": 30, "validation": 0, "testing": 6}
    assert {c.speaker for c in corpus.clips["testing"]} == {"s5"}  # split by speaker, from the list
    for f in (root / "_background_noise_").iterdir():
        f.unlink()
    with pytest.raises(ConfigError, match="_background_noise_"):
        data.scan(root)


def test_speaker_hash_split_keeps_a_speaker_in_one_split() -> None:
    splits = {data.which_split(f"yes/{s}_nohash_{n}.wav", s, {}) for s in ("abc",) for n in range(5)}
    assert len(splits) == 1
    spread = [data.which_split("", f"speaker{i}", {}) for i in range(2000)]
    assert 0.06 < spread.count("testing") / 2000 < 0.14  # about 10 %, as Speech Commands


@pytest.mark.slow
def test_train_voice_writes_a_full_int8_model_the_agent_loads(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    out = tmp_path / "m" / "kws.tflite"
    code = convert_main(["train-voice", "--data", str(root), "--out", str(out), "--epochs", "1", "--width", "8",
                         "--blocks", "1", "--batch", "16"])
    assert code == 0
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["kind"] == "audio" and manifest["input"]["kind"] == "audio"
    assert manifest["labels"] == ["yes", "no", "on", "off", "stop", "_silence_", "_unknown_"]
    assert manifest["recognizer"]["stride_ms"] == 50
    assert manifest["metrics"]["int8"]["n"] == 6 + 1  # the held-out clips plus their silence share
    assert manifest["output"] == "logits"  # the int8 softmax is removed: scores are not capped at 0.996
    model = load_voice_model(out)
    assert model.engine.input_dtype == np.int8 and model.engine.input_shape == (1, 49, 40, 1)
    scores = model.engine.run(lambda view: view.fill(0))
    assert model.engine.logits and scores.sum() == pytest.approx(1.0, abs=1e-5) and (scores >= 0).all()
    assert model.spec.std > 0 and model.spec.mean < 0  # measured on the training features
    assert out.with_suffix(".report.md").read_text().startswith("# Training report: kws")
    assert out.with_suffix(".keras").is_file() and manifest["provenance"]["keras_model"] == "kws.keras"  # for enroll


def test_class_weights_balance_commands_against_a_data_set_rich_in_other_words() -> None:
    labels = ("yes", "no", "on", "off", "stop", "_silence_", "_unknown_")
    y = np.array([0] * 10 + [1] * 12 + [2] * 10 + [3] * 10 + [4] * 10 + [5] * 20 + [6] * 200)
    w = train.class_weights(y, labels)
    totals = {labels[i]: w[i] * int((y == i).sum()) for i in range(len(labels))}
    for name in ("no", "on", "off", "stop", "_silence_"):
        assert totals[name] == pytest.approx(totals["yes"])
    assert totals["_unknown_"] == pytest.approx(train.UNKNOWN_WEIGHT_SHARE * totals["yes"])
    assert sum(totals.values()) == pytest.approx(len(y))  # the mean weight per example stays 1
    w4 = train.class_weights(y, labels, unknown_share=4.0)  # --unknown-weight 4
    assert w4[6] * 200 == pytest.approx(4.0 * w4[0] * 10)


def test_mel_warp_moves_a_formant_up_or_down_and_leaves_alpha_one_alone() -> None:
    f = np.zeros((49, 40), np.float32)
    f[:, 20] = 1.0
    np.testing.assert_array_equal(augment.warp(f, 1.0), f)
    assert int(np.argmax(augment.warp(f, 1.1)[0])) == 22  # a shorter vocal tract: formants higher
    assert int(np.argmax(augment.warp(f, 0.9)[0])) == 18
    assert augment.warp(f, 1.12).shape == f.shape


def enrollment_folder(root: Path, per_command: int = 3) -> Path:
    """A user's folder: a few recordings per command (tone words, each a little detuned and at its
    own level), one other word, and the room's sound."""
    rng = np.random.default_rng(1)
    for word in ("yes", "no", "on", "off", "stop", "tree"):
        (root / word).mkdir(parents=True)
        for i in range(per_command):
            x = np.zeros(16_000, np.float32)
            tone = tone_word(word, amplitude=float(rng.uniform(0.1, 0.4)))
            start = int(rng.integers(0, 16_000 - len(tone)))
            x[start: start + len(tone)] = tone
            write_wav(root / word / f"me_nohash_{i}.wav", x + rng.normal(0, 0.003, 16_000).astype(np.float32), 16_000)
    (root / "_background_noise_").mkdir()
    write_wav(root / "_background_noise_" / "room.wav", rng.normal(0, 0.01, 30 * 16_000).astype(np.float32), 16_000)
    return root


@pytest.mark.slow
def test_enroll_fine_tunes_the_head_and_keeps_full_int8_the_manifest_and_a_tuned_threshold(
        tmp_path: Path, tone_model: Path) -> None:
    """On the fixed tone model (not a quality test): enroll writes a full-int8 model the agent
    loads, with the base model's front end, a threshold chosen on the room's sound, and a record
    of what it learnt from; the float model it started from is untouched."""
    from edge_agent.convert.voice import enroll

    folder = enrollment_folder(tmp_path / "me")
    out = tmp_path / "mine" / "voice.tflite"
    before = tone_model.with_suffix(".keras").read_bytes()
    base_data = make_folder(tmp_path / "base")  # other voices to replay (the base model's kind of data)
    code = convert_main(["enroll", "--model", str(tone_model), "--data", str(folder), "--out", str(out),
                         "--epochs", "2", "--copies", "2", "--replay", str(base_data), "--replay-clips", "10",
                         "--json"])
    assert code == 0
    manifest = json.loads(out.with_suffix(".json").read_text())
    base = json.loads(tone_model.with_suffix(".json").read_text())
    assert manifest["input"] == base["input"] and manifest["labels"] == base["labels"]
    assert manifest["output"] == "logits" and manifest["recognizer"]["threshold"] in enroll.THRESHOLDS
    assert manifest["recognizer"]["threshold"] >= enroll.THRESHOLD_FLOOR
    prov = manifest["provenance"]
    assert prov["base_sha256"] == base["sha256"] and prov["recordings"]["yes"] == 3 and prov["recordings"]["tree"] == 3
    assert prov["replay"] == str(base_data) and prov["replay_clips"] == 10
    assert prov["threshold_tuning"]["room_minutes"] == pytest.approx(0.5)
    assert prov["threshold_tuning"]["allowed_false_accepts"] == 0  # 30 s of room: none allowed at 2 per hour
    model = load_voice_model(out)
    assert model.engine.input_dtype == np.int8 and model.settings.threshold == manifest["recognizer"]["threshold"]
    assert out.with_suffix(".keras").is_file() and tone_model.with_suffix(".keras").read_bytes() == before


def test_enroll_refuses_a_model_without_its_float_model_and_a_folder_without_a_command(
        tmp_path: Path, tone_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(tone_model.read_bytes())
    lone.with_suffix(".json").write_text(tone_model.with_suffix(".json").read_text())
    folder = enrollment_folder(tmp_path / "me", per_command=1)
    out = str(tmp_path / "o.tflite")
    assert convert_main(["enroll", "--model", str(lone), "--data", str(folder), "--out", out]) == 2
    assert "no float model lone.keras" in capsys.readouterr().err
    for f in (folder / "off").iterdir():
        f.unlink()
    assert convert_main(["enroll", "--model", str(tone_model), "--data", str(folder), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "no recordings of off" in err and len(err.strip().splitlines()) == 1
