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
