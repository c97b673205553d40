"""Speakers and rooms by augmentation: pure numpy on 16 kHz float32 audio and on log-mel features.

Shared by the trainer (on the fly, every augmented copy draws its own chain) and by
``tools/gen_voice_data.py`` / ``tools/eval_voice.py`` (the reverberant and noisy test streams), so a
room in training and a room in a measurement are made the same way.

Speaker:  :func:`speed` (pitch, formants and tempo together: a different speaker's rate and
          register), :func:`warp` (vocal-tract length on the mel axis), :func:`spec_augment`.
Room:     :func:`room_impulse` (a synthetic impulse response: direct sound, sparse early
          reflections, an exponentially decaying diffuse tail with a given RT60) and :func:`reverb`.
Mic:      :func:`mic_response` (a cheap USB microphone's band limits and tilt), :func:`agc`
          (automatic gain control: slow level riding), :func:`clip_peaks` (an overdriven input).
Level:    gain from whisper to shout, background at an SNR down to 5 dB (:func:`mix_at_snr`).

Each function takes a :class:`numpy.random.Generator` where it draws, so a seed reproduces a set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final

import numpy as np

SAMPLE_RATE_HZ: Final = 16_000
SPEED_RANGE: Final = (0.88, 1.14)  # resampling factor: ±2 semitones of pitch, formants and tempo with it
RT60_RANGE_S: Final = (0.15, 0.8)  # a furnished living room to a bare kitchen
ROOM_PROBABILITY: Final = 0.6  # share of augmented copies heard in a reverberant room
DIRECT_TO_REVERB_DB: Final = (-3.0, 12.0)  # far talker (reverb as loud as the voice) to near
MIC_PROBABILITY: Final = 0.7
HIGHPASS_HZ: Final = (60.0, 350.0)  # a small capsule's low cut
LOWPASS_HZ: Final = (3400.0, 7600.0)  # a telephone-grade USB mic to a good one
TILT_DB_PER_OCTAVE: Final = (-3.0, 3.0)
AGC_PROBABILITY: Final = 0.3
CLIP_PROBABILITY: Final = 0.1
CLIP_LEVEL: Final = (0.3, 0.8)  # of the peak
GAIN_DB: Final = (-24.0, 6.0)  # whisper / far to shout / close, before the microphone's clipping
NOISE_PROBABILITY: Final = 0.85
SNR_DB: Final = (5.0, 30.0)
WARP_RANGE: Final = (0.88, 1.12)  # mel-axis stretch: a longer or shorter vocal tract
MASKS: Final = 2  # SpecAugment: this many time and this many frequency masks
MAX_TIME_MASK_FRAMES: Final = 4  # 4 x 20 ms hops: a dropped syllable edge, not a whole word
MAX_FREQ_MASK_BINS: Final = 4  # of 40 mel bins: a missing formant band (a poor microphone)


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster (linear interpolation): factor 1.1 raises pitch and
    formants by 10 % and shortens the word by 9 %, as a smaller, quicker speaker would."""
    if factor == 1.0 or len(x) < 2:
        return x.astype(np.float32)
    n = max(1, round(len(x) / factor))
    pos = np.arange(n) * factor
    return np.interp(pos, np.arange(len(x)), x).astype(np.float32)


def room_impulse(rng: np.random.Generator, rt60_s: float, rate: int = SAMPLE_RATE_HZ,
                 drr_db: float | None = None) -> np.ndarray:
    """A synthetic room impulse response, unit direct path: a few early reflections in the first
    ~40 ms (walls at 1-7 m) and a diffuse tail of noise decaying 60 dB in ``rt60_s``, high
    frequencies decaying faster (air and soft furnishing absorb them). Length 1.2 x RT60."""
    n = max(int(1.2 * rt60_s * rate), 16)
    t = np.arange(n) / rate
    decay = np.exp(-6.91 * t / rt60_s)  # 60 dB = e^-6.91
    tail = rng.standard_normal(n) * decay
    # darker tail: one-pole low-pass whose cut-off falls with RT60 (longer rooms ring darker)
    a = float(np.clip(0.2 + 0.5 * rt60_s, 0.2, 0.7))
    size = 1 << (2 * n - 1).bit_length()
    w = np.exp(-2j * np.pi * np.fft.rfftfreq(size))
    tail = np.fft.irfft(np.fft.rfft(tail, size) / (1 - a * w), size)[:n]
    tail[: int(0.005 * rate)] = 0.0  # the diffuse field arrives after the direct sound
    h = np.zeros(n)
    h[0] = 1.0
    for _ in range(int(rng.integers(3, 8))):
        d = int(rng.uniform(0.003, 0.04) * rate)
        if d < n:
            h[d] += rng.uniform(0.2, 0.7) * rng.choice([-1.0, 1.0])
    drr = rng.uniform(*DIRECT_TO_REVERB_DB) if drr_db is None else drr_db
    tail_energy = float(np.sum(tail**2)) + 1e-12
    h += tail * np.sqrt(10 ** (-drr / 10) / tail_energy)
    return h.astype(np.float32)


def reverb(x: np.ndarray, h: np.ndarray, keep_length: bool = True) -> np.ndarray:
    """``x`` convolved with ``h`` (FFT); the same length as ``x`` unless asked for the tail too,
    rescaled to ``x``'s peak so a reverberant room is not also a louder one."""
    n = len(x) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:n]
    if keep_length:
        y = y[: len(x)]
    peak_in, peak_out = float(np.abs(x).max()), float(np.abs(y).max())
    return (y * (peak_in / peak_out if peak_out > 0 else 1.0)).astype(np.float32)


def mic_response(x: np.ndarray, rng: np.random.Generator, rate: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """A cheap microphone: a smooth high-pass and low-pass at random corners and a spectral tilt."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / rate)
    hp, lp = rng.uniform(*HIGHPASS_HZ), rng.uniform(*LOWPASS_HZ)
    tilt = rng.uniform(*TILT_DB_PER_OCTAVE)
    g = 1.0 / np.sqrt(1 + (hp / np.maximum(f, 1.0)) ** 4)  # 2nd-order-like skirts
    g *= 1.0 / np.sqrt(1 + (f / lp) ** 8)
    g *= 10 ** (tilt * np.log2(np.maximum(f, 50.0) / 1000.0) / 20)
    return np.fft.irfft(spec * g, len(x)).astype(np.float32)


def agc(x: np.ndarray, target_rms: float = 0.1, window_s: float = 0.2, rate: int = SAMPLE_RATE_HZ,
        max_gain_db: float = 30.0) -> np.ndarray:
    """Automatic gain control as a phone or a USB mic chip does it: the short-term level is
    ridden towards ``target_rms`` (the gain changes slowly; quiet stretches get the noise lifted)."""
    w = max(1, int(window_s * rate))
    power = np.convolve(x.astype(np.float64) ** 2, np.ones(w) / w, mode="same")
    gain = target_rms / np.sqrt(power + 1e-10)
    gain = np.minimum(gain, 10 ** (max_gain_db / 20))
    k = max(1, w // 2)
    gain = np.convolve(gain, np.ones(k) / k, mode="same")  # smooth: an AGC has attack and release
    return (x * gain).astype(np.float32)


def clip_peaks(x: np.ndarray, level: float) -> np.ndarray:
    """Hard clipping at ``level`` of the peak: an input stage driven too hard."""
    peak = float(np.abs(x).max())
    if peak == 0:
        return x.astype(np.float32)
    return np.clip(x, -level * peak, level * peak).astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech`` plus ``noise`` (same length) scaled to ``snr_db`` below the speech's active RMS."""
    active = speech[np.abs(speech) > 0.05 * (np.abs(speech).max() + 1e-12)]
    level = float(np.sqrt(np.mean(active**2))) if len(active) else 0.05
    noise_rms = float(np.sqrt(np.mean(noise**2))) + 1e-12
    return (speech + noise * (level / noise_rms / 10 ** (snr_db / 20))).astype(np.float32)


def fit(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """Crop (around the loud part) or zero-pad to ``length`` samples."""
    if len(x) == length:
        return x
    if len(x) < length:
        out = np.zeros(length, np.float32)
        start = int(rng.integers(0, length - len(x) + 1))
        out[start: start + len(x)] = x
        return out
    loud = np.flatnonzero(np.abs(x) > 0.1 * (np.abs(x).max() + 1e-12))
    centre = int((loud[0] + loud[-1]) // 2) if len(loud) else len(x) // 2
    start = int(np.clip(centre - length // 2, 0, len(x) - length))
    return x[start: start + length]


@dataclasses.dataclass(frozen=True)
class Chain:
    """What one augmented copy went through (for the training record)."""

    speed: float
    rt60_s: float | None
    mic: bool
    agc: bool
    clip: float | None
    gain_db: float
    snr_db: float | None


def draw(rng: np.random.Generator) -> Chain:
    return Chain(
        speed=float(rng.uniform(*SPEED_RANGE)),
        rt60_s=float(rng.uniform(*RT60_RANGE_S)) if rng.random() < ROOM_PROBABILITY else None,
        mic=bool(rng.random() < MIC_PROBABILITY),
        agc=bool(rng.random() < AGC_PROBABILITY),
        clip=float(rng.uniform(*CLIP_LEVEL)) if rng.random() < CLIP_PROBABILITY else None,
        gain_db=float(rng.uniform(*GAIN_DB)),
        snr_db=float(rng.uniform(*SNR_DB)) if rng.random() < NOISE_PROBABILITY else None,
    )


def apply(x: np.ndarray, chain: Chain, rng: np.random.Generator, noises: Sequence[np.ndarray],
          rate: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """One clip through speaker → room → background → microphone → level, same length out."""
    n = len(x)
    y = fit(speed(x, chain.speed), n, rng)
    if chain.rt60_s is not None and np.any(y):
        y = reverb(y, room_impulse(rng, chain.rt60_s, rate))
    if chain.snr_db is not None and noises and np.any(y):
        src = noises[int(rng.integers(len(noises)))]
        start = int(rng.integers(0, max(1, len(src) - n + 1)))
        bed = np.resize(src[start: start + n], n)
        y = mix_at_snr(y, bed, chain.snr_db)
    if chain.mic:
        y = mic_response(y, rng, rate)
    if chain.agc:
        y = agc(y, rate=rate)
    peak = float(np.abs(y).max()) + 1e-9
    y = y / peak * 0.5 * 10 ** (chain.gain_db / 20)
    if chain.clip is not None:
        y = clip_peaks(y, chain.clip)
    return np.clip(y, -1, 1).astype(np.float32)


def warp(f: np.ndarray, alpha: float) -> np.ndarray:
    """Stretch the mel axis by ``alpha`` (bin b takes the value at b / alpha, linearly
    interpolated, the edge bin repeated): vocal tract length perturbation (Jaitly & Hinton 2013)
    done on the features. Unseen voices differ from the training ones mostly in timbre, i.e. in
    where their formants sit; this shows the model the same word from shorter and longer tracts."""
    bins = f.shape[1]
    pos = np.clip(np.arange(bins) / alpha, 0, bins - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, bins - 1)
    frac = (pos - lo).astype(f.dtype)
    return f[:, lo] * (1 - frac) + f[:, hi] * frac


def spec_augment(f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Time and frequency masks (Park et al. 2019), filled with the clip's mean: robustness to
    voices and microphones the training set lacks, at no cost on the device."""
    out = f.copy()
    frames, bins = out.shape
    fill = out.mean()
    for _ in range(MASKS):
        w = int(rng.integers(0, MAX_TIME_MASK_FRAMES + 1))
        t0 = int(rng.integers(0, frames - w + 1))
        out[t0: t0 + w, :] = fill
        h = int(rng.integers(0, MAX_FREQ_MASK_BINS + 1))
        b0 = int(rng.integers(0, bins - h + 1))
        out[:, b0: b0 + h] = fill
    return out
