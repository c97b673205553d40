"""A Speech Commands folder → split clips → (audio, label) arrays for training and measuring.

    DATA/yes/*.wav ... DATA/<any other word>/*.wav     1 s (or shorter) clips, any PCM rate
    DATA/_background_noise_/*.wav                      long noise recordings
    DATA/testing_list.txt, DATA/validation_list.txt    optional; else split by speaker hash

The split is Speech Commands' own: the lists when given, else a stable hash of the speaker id (the
part of the file name before ``_nohash_``), so one speaker is never in two splits. Every other
word is ``_unknown_``; ``_silence_`` is cut from the background noise. Checked before any audio is
decoded (and before TensorFlow loads). numpy only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np

from ...errors import ConfigError
from ...preprocess import audio
from ...preprocess.audio import AudioSpec
from ...sources.wav import read_wav
from ...voice.recognizer import SILENCE, UNKNOWN
from . import augment as aug

logger = logging.getLogger(__name__)

COMMANDS: Final = ("yes", "no", "on", "off", "stop")
NOISE_DIR: Final = "_background_noise_"
SPEAKER_SPLIT_RE: Final = re.compile(r"_nohash_.*$")
MAX_PER_CLASS: Final = 2**27 - 1  # Speech Commands' hashing constant for the speaker split
VALIDATION_PERCENT: Final = 10.0
TESTING_PERCENT: Final = 10.0
SILENCE_FRACTION: Final = 1.0  # silence clips per command clip count (one command's worth)
SHIFT_MS: Final = 100  # random time shift ±100 ms (Speech Commands' default)
NOISE_VOLUME: Final = (0.0, 0.3)  # _silence_ clips: noise peak relative to full scale


@dataclasses.dataclass
class Clip:
    path: Path
    word: str
    speaker: str


@dataclasses.dataclass
class Corpus:
    root: Path
    clips: dict[str, list[Clip]]  # split → clips
    noise: list[Path]
    commands: tuple[str, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return (*self.commands, SILENCE, UNKNOWN)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.clips.items()}


def which_split(rel: str, speaker: str, lists: dict[str, set[str]]) -> str:
    """The split of one clip: the lists when the folder has them, else Speech Commands' speaker hash."""
    if lists:
        for name, members in lists.items():
            if rel in members:
                return name
        return "train"
    h = int(hashlib.sha1(speaker.encode()).hexdigest(), 16)
    percent = (h % (MAX_PER_CLASS + 1)) * (100.0 / MAX_PER_CLASS)
    if percent < VALIDATION_PERCENT:
        return "validation"
    if percent < VALIDATION_PERCENT + TESTING_PERCENT:
        return "testing"
    return "train"


def scan(root: Path, commands: Sequence[str] = COMMANDS) -> Corpus:
    """Check the folder and split it; fast, no audio decoded yet."""
    if not root.is_dir():
        raise ConfigError(f"data {root}: not a folder")
    words = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("_"))
    missing = [c for c in commands if c not in words]
    if missing:
        raise ConfigError(f"data {root}: no folder for the command(s) {', '.join(missing)} (found: {', '.join(words)})")
    noise = sorted((root / NOISE_DIR).glob("*.wav"))
    if not noise:
        raise ConfigError(f"data {root}: {NOISE_DIR}/ with noise WAVs is needed for the _silence_ class")
    lists: dict[str, set[str]] = {}
    for name in ("validation", "testing"):
        f = root / f"{name}_list.txt"
        if f.exists():
            lists[name] = {line.strip() for line in f.read_text().splitlines() if line.strip()}
    clips: dict[str, list[Clip]] = {"train": [], "validation": [], "testing": []}
    for word in words:
        for path in sorted((root / word).glob("*.wav")):
            speaker = SPEAKER_SPLIT_RE.sub("", path.stem)
            clips[which_split(f"{word}/{path.name}", speaker, lists)].append(Clip(path, word, speaker))
    for split in ("train", "testing"):
        for c in commands:
            if not any(clip.word == c for clip in clips[split]):
                raise ConfigError(f"data {root}: no '{c}' clips in the {split} split")
    train_speakers = {c.speaker for c in clips["train"]}
    shared = train_speakers & {c.speaker for c in clips["testing"]}
    if shared:
        logger.warning("%d speakers are in both the training and the test split (e.g. %s): the held-out "
                       "accuracy will be optimistic", len(shared), sorted(shared)[0])
    return Corpus(root, clips, noise, tuple(commands))


def load_clip(path: Path, spec: AudioSpec) -> np.ndarray:
    """A clip at the model's rate, zero-padded or cut to the clip length."""
    x, rate = read_wav(path)
    if rate != spec.sample_rate:
        x = audio.resample(x, rate, spec.sample_rate)
    out = np.zeros(spec.clip_samples, np.float32)
    out[: min(len(x), len(out))] = x[: len(out)]
    return out


def load_noise(paths: Sequence[Path], spec: AudioSpec) -> list[np.ndarray]:
    out = []
    for p in paths:
        x, rate = read_wav(p)
        if rate != spec.sample_rate:
            x = audio.resample(x, rate, spec.sample_rate)
        if len(x) >= spec.clip_samples:
            out.append((x / (np.abs(x).max() + 1e-9)).astype(np.float32))
    if not out:
        raise ConfigError(f"{NOISE_DIR}: no noise file is at least one clip long")
    return out


def noise_clip(noise: Sequence[np.ndarray], rng: np.random.Generator, n: int) -> np.ndarray:
    src = noise[int(rng.integers(len(noise)))]
    start = int(rng.integers(0, len(src) - n + 1))
    return src[start: start + n]



def augment(x: np.ndarray, noise: Sequence[np.ndarray], rng: np.random.Generator, spec: AudioSpec) -> np.ndarray:
    """Shift by up to ±SHIFT_MS (zero fill), then one random speaker/room/mic/level chain
    (:func:`augment.apply`: speed, reverb, background at 5-30 dB SNR, mic response, AGC, clipping, gain)."""
    shift = int(rng.integers(-1, 2) * rng.integers(0, audio.samples_for(SHIFT_MS, spec.sample_rate)))
    y = np.zeros_like(x)
    if shift >= 0:
        y[shift:] = x[: len(x) - shift]
    else:
        y[:shift] = x[-shift:]
    return aug.apply(y, aug.draw(rng), rng, noise, spec.sample_rate)


def silence(noise: Sequence[np.ndarray], rng: np.random.Generator, spec: AudioSpec) -> np.ndarray:
    """A ``_silence_`` clip: background noise at a random level, sometimes only a faint floor."""
    n = spec.clip_samples
    level = 0.0 if rng.random() < 0.1 else rng.uniform(*NOISE_VOLUME)
    floor = rng.normal(0, 3e-4, n).astype(np.float32)
    return np.clip(noise_clip(noise, rng, n) * np.float32(level) + floor, -1, 1).astype(np.float32)


def build_split(corpus: Corpus, split: str, spec: AudioSpec, noise: Sequence[np.ndarray],
                rng: np.random.Generator, copies: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, samples) float32 audio, (N,) label indices and (N,) "is an augmented copy" for one split."""
    labels = corpus.labels
    index = {name: i for i, name in enumerate(labels)}
    clips = corpus.clips[split]
    xs: list[np.ndarray] = []
    ys: list[int] = []
    aug: list[bool] = []
    for clip in clips:
        x = load_clip(clip.path, spec)
        y = index.get(clip.word, index[UNKNOWN])
        xs.append(x)
        ys.append(y)
        aug.append(False)
        for _ in range(copies):
            xs.append(augment(x, noise, rng, spec))
            ys.append(y)
            aug.append(True)
    per_command = max(1, sum(1 for y in ys if y == 0))
    for _ in range(int(per_command * SILENCE_FRACTION)):
        xs.append(silence(noise, rng, spec))
        ys.append(index[SILENCE])
        aug.append(False)
    return np.stack(xs), np.asarray(ys, np.int64), np.asarray(aug, bool)


def raw_features(x: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """(N, samples) → (N, frames, mels) log-mel, not yet normalised."""
    raw = dataclasses.replace(spec, mean=0.0, std=1.0)
    return np.stack([audio.features(clip, raw) for clip in x]).astype(np.float32)


