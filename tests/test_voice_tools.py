"""The voice data generator and evaluator keep their promises: the false-accept test hears words
training never did, every command gets near misses, and each false accept is traced to a word."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from edge_agent.voice.spotter import load_voice_model
from tests.helpers import REPO
from tests.voice_helpers import HELD_OUT_VOICE, need_espeak
from tools import eval_voice
from tools import gen_voice_data as gen


def test_nothing_trained_sounds_like_an_unseen_word_and_every_command_has_near_misses() -> None:
    need_espeak()
    seen, made_up, unseen = gen.vocabulary()
    trained = {*seen, *made_up}
    assert "sofa" in unseen and "stuff" in made_up and not trained & set(unseen)
    ph = gen.phonemes([*gen.COMMANDS, *sorted(trained | set(unseen))])
    command_ph = [ph[c] for c in gen.COMMANDS]
    unseen_ph = {ph[w] for w in unseen}
    assert not [w for w in trained if ph[w] in unseen_ph]  # a made-up word that espeak reads as an unseen one
    assert not [w for w in trained if gen.too_close(ph[w], command_ph)]
    near = made_up[gen.PSEUDO_WORDS:]
    for c in command_ph:
        close = [w for w in near if gen.edit_distance(ph[w], c) == 2]
        assert len(close) >= gen.NEAR_PER_COMMAND, (c, len(close))
    assert {"stub", "chop", "yawn", "soft"} <= set(near)  # real near misses, not only made-up ones


def test_a_training_voice_asked_for_hard_words_says_that_many_confusable_trained_words(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hard words ("stuff", "up", "hop") all survive the filters (none unseen or a homophone)
    and a training voice asked for 4 says 4 different ones."""
    need_espeak()
    seen, made_up, _ = gen.vocabulary()
    assert set(gen.HARD_WORDS_RAW) <= {*seen, *made_up}
    monkeypatch.setattr(gen, "_NOISES", [gen.make_noise("pink", 2.0, np.random.default_rng(0))])
    written = [rel for rel, _settings in gen.voice_clips((tmp_path, "en+m1", "train", 0, 0, 4, 0))]
    words = [Path(w).parent.name for w in written]
    assert len(set(words)) == 4 and set(words) <= set(gen.HARD_WORDS_RAW)
    assert all((tmp_path / w).stat().st_size > 10_000 for w in written)


def test_each_false_accept_is_traced_to_the_word_before_it() -> None:
    marks = [("hello", 1.0, 1.5), ("stuff", 4.0, 4.4), ("sofa", 8.0, 8.6)]
    events = [("stop", 4600.0), ("on", 7000.0), ("yes", 500.0)]
    assert eval_voice.attribute(events, marks) == ["stuff -> stop", "noise -> on", "noise -> yes"]


def test_posteriors_are_kept_per_model_and_stream(tmp_path: Path) -> None:
    """Re-tuning a model reuses its scores; another model (another sha256) gets its own."""
    model = load_voice_model(REPO / "models" / "voice.tflite")
    rng = np.random.default_rng(0)
    stream = eval_voice.Stream("noise", (0.05 * rng.standard_normal(24_000)).astype(np.float32), [])
    t1, s1, c1 = eval_voice.posteriors(model, stream, tmp_path)
    assert len(t1) == 1 + (24_000 - 16_000) // 800 and s1.shape == (len(t1), len(model.labels))
    [kept] = tmp_path.glob("noise.*.npz")
    assert model.sha256[:12] in kept.name
    t2, s2, c2 = eval_voice.posteriors(model, stream, tmp_path)
    np.testing.assert_array_equal(t2, t1)
    np.testing.assert_array_equal(s2, s1)
    assert c2 == c1  # the time measured when they were computed, read back, not measured again
    other = dataclasses.replace(model, sha256="0" * 64)
    eval_voice.posteriors(other, stream, tmp_path)
    assert len(list(tmp_path.glob("noise.*.npz"))) == 2


def test_validation_variants_chosen_for_the_data_leave_training_and_test_variants_cannot_be_chosen(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A variant named with --validation-variants is never a training voice, and a test voice cannot be one."""
    need_espeak()
    out = tmp_path / "d"
    assert gen.main([str(out), "--validation-variants", "m6,Mike", "--accents", "1", "--random-variants", "0",
                     "--per-word", "0", "--others-per-voice", "0", "--held-out-others", "0",
                     "--noise-seconds", "2", "--jobs", "1"]) == 0
    voices = json.loads((out / "voices.json").read_text())
    assert voices["validation_variants"] == ["m6", "Mike"]
    assert "Mike" in gen.TRAIN_VARIANTS and "Mike" not in voices["train_variants"]
    with pytest.raises(SystemExit) as e:
        gen.main([str(tmp_path / "e"), "--validation-variants", "Andy"])
    assert e.value.code == 2 and "test variants" in capsys.readouterr().err


def test_tuning_and_measuring_listen_to_different_unheard_voices() -> None:
    """The recognizer is tuned on half the test variants and measured on the other half: voices of
    one kind (never heard in training, in any accent), never the same voice in both; the voice the
    agent tests speak with is a measured one."""
    tune, measure = set(eval_voice.TUNE_VARIANTS), set(eval_voice.MEASURE_VARIANTS)
    assert tune and measure and not tune & measure
    assert tune | measure == set(gen.TEST_VARIANTS)
    assert not (tune | measure) & {*gen.TRAIN_VARIANTS, *gen.VAL_VARIANTS}
    assert HELD_OUT_VOICE.split("+")[1] in measure


def test_a_synthetic_room_rings_for_its_rt60_and_keeps_the_level() -> None:
    """Schroeder's backward integration of the impulse response after its first 50 ms (the direct
    sound and early reflections): the -5 to -25 dB decay, times 3, is the RT60 asked for (within
    10 %); reverberant speech is no louder than dry speech."""
    from edge_agent.convert.voice import augment

    for rt60 in (0.3, 0.6, 0.8):
        h = augment.room_impulse(np.random.default_rng(1), rt60, drr_db=0.0).astype(np.float64)[800:]
        edc = 10 * np.log10(np.cumsum((h**2)[::-1])[::-1] / np.sum(h**2))
        t5, t25 = np.argmax(edc <= -5) / 16_000, np.argmax(edc <= -25) / 16_000
        assert 3 * (t25 - t5) == pytest.approx(rt60, rel=0.1), (rt60, 3 * (t25 - t5))
    x = np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)
    y = augment.reverb(x, augment.room_impulse(np.random.default_rng(2), 0.6))
    assert len(y) == len(x) and np.abs(y).max() == pytest.approx(np.abs(x).max(), rel=1e-5)


def test_background_is_mixed_at_the_snr_asked_for_and_speed_changes_length_and_pitch() -> None:
    from edge_agent.convert.voice import augment

    rng = np.random.default_rng(0)
    t = np.arange(16_000) / 16_000
    speech = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    noise = rng.normal(0, 1, 16_000).astype(np.float32)
    for snr in (5.0, 10.0, 30.0):
        mixed = augment.mix_at_snr(speech, noise, snr)
        got = 10 * np.log10(np.mean(speech**2) / np.mean((mixed - speech) ** 2))
        assert got == pytest.approx(snr, abs=0.3)  # speech level: its active samples (>5 % of the peak)
    fast = augment.speed(speech, 1.1)
    assert len(fast) == round(16_000 / 1.1)
    peak_hz = np.argmax(np.abs(np.fft.rfft(fast))) * 16_000 / len(fast)
    assert peak_hz == pytest.approx(484, abs=3)  # 440 Hz x 1.1: pitch and formants move together
    chain = augment.draw(np.random.default_rng(3))
    out = augment.apply(speech, chain, np.random.default_rng(4), [noise])
    assert out.shape == speech.shape and out.dtype == np.float32 and np.abs(out).max() <= 1.0


def test_reserved_engines_are_refused_and_each_clip_records_its_engine_and_voice(tmp_path: Path) -> None:
    """flite and festival are kept for independent evaluation: the data tools refuse them by name.
    The generator writes clips.tsv: every clip's engine, voice and synthesis settings. RHVoice's slt
    and alan voices are reserved too."""
    need_espeak()
    from tools import voice_engines

    for name in ("flite", "festival"):
        with pytest.raises(ValueError, match="reserved"):
            voice_engines.get(name)
        with pytest.raises(SystemExit):
            gen.main([str(tmp_path / name), "--engines", f"espeak,{name}"])
    assert set(voice_engines.RHVoice().voices("all")) == {"bdl", "clb"}
    for voice in ("slt", "alan"):
        with pytest.raises(ValueError, match="reserved"):
            voice_engines.RHVoice().synth("yes", voice, np.random.default_rng(0))
    out = tmp_path / "d"
    assert gen.main([str(out), "--accents", "1", "--random-variants", "0", "--per-word", "1", "--others-per-voice",
                     "0", "--held-out-others", "0", "--noise-seconds", "2", "--jobs", "1"]) == 0
    rows = [line.split("\t") for line in (out / "clips.tsv").read_text().splitlines()]
    assert rows[0] == ["path", "engine", "voice", "split", "settings"] and len(rows) > 1
    for path, engine, voice, split, settings in rows[1:]:
        assert (out / path).is_file() and engine == "espeak" and voice.startswith("en+")
        assert split in ("train", "validation", "testing")
        assert set(json.loads(settings)) == {"speed_wpm", "pitch"}
    assert json.loads((out / "voices.json").read_text())["engines"] == ["espeak"]
