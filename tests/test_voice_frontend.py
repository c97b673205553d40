"""The audio front end: derived constants, log-mel against TensorFlow's tf.signal, the resampler."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from edge_agent.errors import ModelError
from edge_agent.preprocess import audio
from edge_agent.preprocess.audio import AudioSpec, Resampler, resample
from edge_agent.voice.recognizer import STRIDE_MS


def test_derived_sizes_are_what_the_model_and_the_manifest_say() -> None:
    spec = AudioSpec()
    assert spec.clip_samples == 16_000  # 1000 ms @ 16 kHz
    assert spec.window_samples == 480  # 30 ms
    assert spec.hop_samples == 320  # 20 ms
    assert spec.frames == 49 and spec.shape == (49, 40)
    assert audio.samples_for(STRIDE_MS, spec.sample_rate) == 800  # 50 ms recognizer stride
    assert spec.fft_length // 2 + 1 == 257
    with pytest.raises(ValueError, match="less than one sample"):
        audio.samples_for(0.01, 16_000)  # never silently 0 samples (the 1280 // 16000 bug)


def _tf_log_mel(x: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """TensorFlow's own ops: an independent implementation of the same definition."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tensorflow as tf
    stft = tf.signal.stft(x[None, :], frame_length=spec.window_samples, frame_step=spec.hop_samples,
                          fft_length=spec.fft_length, window_fn=tf.signal.hann_window, pad_end=False)
    power = tf.math.square(tf.abs(stft))
    mel = tf.signal.linear_to_mel_weight_matrix(spec.mel_bins, spec.fft_length // 2 + 1, spec.sample_rate,
                                                spec.fmin_hz, spec.fmax_hz)
    return np.asarray(tf.math.log(tf.tensordot(power, mel, 1) + spec.log_offset))[0]


@pytest.mark.parametrize("kind", ["noise", "chirp", "quiet"])
def test_log_mel_matches_tensorflow_signal(kind: str) -> None:
    spec = AudioSpec()
    rng = np.random.default_rng(1)
    t = np.arange(spec.clip_samples) / spec.sample_rate
    x = {
        "noise": rng.normal(0, 0.1, spec.clip_samples),
        "chirp": 0.5 * np.sin(2 * np.pi * (100 + 3500 * t) * t),
        "quiet": rng.normal(0, 1e-4, spec.clip_samples),
    }[kind].astype(np.float32)
    ours = audio.log_mel(x, spec)
    ref = _tf_log_mel(x, spec)
    assert ours.shape == ref.shape == (49, 40)
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-4)


def test_features_are_normalised_with_the_manifest_mean_and_std_and_padded() -> None:
    spec = dataclasses.replace(AudioSpec(), mean=-5.0, std=2.0)
    x = np.random.default_rng(0).normal(0, 0.1, 12_000).astype(np.float32)  # shorter than a clip
    raw = audio.log_mel(np.pad(x, (0, 4000)), spec)
    np.testing.assert_allclose(audio.features(x, spec), (raw + 5.0) / 2.0, rtol=1e-6)


def test_quantized_fill_writes_int8_with_the_models_scale() -> None:
    spec = AudioSpec()
    x = np.random.default_rng(0).normal(0, 0.1, spec.clip_samples).astype(np.float32)
    view = np.zeros((1, 49, 40, 1), np.int8)
    audio.make_fill(spec, np.dtype(np.int8), 0.1, -20)(x, view)
    expect = np.clip(np.round(audio.features(x, spec) / 0.1 - 20), -128, 127)
    np.testing.assert_array_equal(view[0, :, :, 0], expect)


def test_audio_spec_round_trips_through_the_manifest_and_names_bad_fields() -> None:
    spec = AudioSpec(mean=-7.5, std=3.25)
    data = {k: v for k, v in spec.to_json().items() if k != "kind"}
    assert AudioSpec.from_mapping(data, "manifest m.json") == spec
    with pytest.raises(ModelError, match=r"manifest m.json: missing field 'input.hop_ms'"):
        AudioSpec.from_mapping({k: v for k, v in data.items() if k != "hop_ms"}, "manifest m.json")
    with pytest.raises(ModelError, match=r"field 'input.mel_bins' must be a number"):
        AudioSpec.from_mapping({**data, "mel_bins": "40"}, "manifest m.json")
    with pytest.raises(ModelError, match="does not fit"):
        AudioSpec.from_mapping({**data, "fmax_hz": 9000.0}, "manifest m.json")


@pytest.mark.parametrize("rate", [48_000, 44_100, 22_050, 8_000])
def test_resampler_keeps_a_tone_and_its_length(rate: int) -> None:
    t = np.arange(2 * rate) / rate
    x = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    y = resample(x, rate, 16_000)
    assert len(y) == 32_000
    ref = np.sin(2 * np.pi * 1000 * np.arange(len(y)) / 16_000)
    assert np.abs(y[200:-200] - ref[200:-200]).max() < 5e-3  # in phase: no delay, no drift


@pytest.mark.parametrize("rate", [48_000, 44_100])
def test_resampler_removes_what_would_alias(rate: int) -> None:
    t = np.arange(rate) / rate
    x = np.sin(2 * np.pi * 11_000 * t).astype(np.float32)  # above 8 kHz: would fold to 5 kHz
    assert np.abs(resample(x, rate, 16_000)[200:-200]).max() < 1e-3  # > 60 dB down


def test_streaming_resampler_equals_the_whole_signal_for_any_chunking() -> None:
    x = np.random.default_rng(0).normal(0, 0.3, 48_000).astype(np.float32)
    whole = resample(x, 48_000, 16_000)
    for size in (13, 960, 4096, 100_000):
        r = Resampler(48_000, 16_000)
        parts = [r.process(x[i: i + size]) for i in range(0, len(x), size)] + [r.flush()]
        np.testing.assert_array_equal(np.concatenate(parts), whole)
