#!/usr/bin/env python3
"""Synthesise a keyword-spotting data set with espeak-ng, in the Speech Commands layout.

    OUT/yes/<voice>_nohash_<n>.wav ... OUT/<other word>/...   16 kHz mono 16-bit, 1 s each
    OUT/_background_noise_/*.wav                               a minute of each noise kind
    OUT/testing_list.txt, OUT/validation_list.txt              as in Speech Commands
    OUT/voices.json                                            which voices went where

A *voice* is an espeak-ng accent plus a variant (``en-us+m3``). The split is by variant: the
variants in :data:`TEST_VARIANTS` (and :data:`VAL_VARIANTS`) are never heard in training, in any
accent, so the held-out accuracy says how the model does on a timbre it never heard — the
question a user in a living room asks. Speed, pitch, loudness, time shift and noise vary per clip.

Needs only espeak-ng (``apt install espeak-ng``): no downloads. Usage:
    python tools/gen_voice_data.py OUT [--per-word 2] [--others-per-voice 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_agent.preprocess.audio import SAMPLE_RATE_HZ, resample, to_float
from edge_agent.sources.wav import write_wav

COMMANDS: Final = ("yes", "no", "on", "off", "stop")
# Speech Commands' auxiliary words (and two more). No minimal pairs of a command ("an"/"on",
# "of"/"off", "know"/"no", "step"/"stop"), no word that starts with one ("often", "yesterday",
# "stopwatch"): espeak-ng renders those too close to the command for any 1 s classifier, and a
# person saying them near the device would be heard as the command by people too.
OTHER_WORDS: Final = (
    "go", "up", "down", "left", "right", "cat", "dog", "bird", "bed", "house", "tree", "wow", "happy",
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "zero", "learn", "follow",
    "forward", "backward", "visual", "sheila", "marvin", "under", "yellow",
)
# Words never used in training: for the false-accept stream in tools/eval_voice.py.
UNSEEN_WORDS: Final = (
    "hello", "weather", "music", "kitchen", "later", "maybe", "okay", "thanks", "coffee", "window",
    "table", "morning", "evening", "dinner", "garden", "light", "bright", "sofa", "channel", "volume",
    "please", "sorry", "where", "what", "when", "today", "tomorrow", "again", "little", "water",
    "onion", "bonus", "pocket", "yellowish", "nation", "stuff", "jazz", "button", "outside",
)
ACCENTS: Final = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
                  "en-us-nyc")
TRAIN_VARIANTS: Final = (
    "m1", "m2", "m4", "m5", "m7", "m8", "f1", "f3", "f4", "f5", "adam", "anika", "announcer", "aunty", "belinda",
    "benjamin", "boris", "caleb", "david", "ed", "edward", "grandma", "iven", "john", "linda", "michel",
    "norbert", "paul", "pedro", "quincy", "rob", "robert", "steph", "travis", "victor", "zac",
)
VAL_VARIANTS: Final = ("m6", "iven2", "steph2", "klatt")
TEST_VARIANTS: Final = ("m3", "f2", "max", "Andy", "Lee", "grandpa", "shelby", "Annie")
ESPEAK_SPEED_WPM: Final = (120, 220)  # espeak-ng -s range (default 175 words per minute)
ESPEAK_PITCH: Final = (25, 80)  # espeak-ng -p range, 0-99 (default 50)
SNR_DB: Final = (5.0, 30.0)  # speech-to-noise ratio of the mixed-in noise
NOISE_FRACTION: Final = 0.8  # share of clips with noise mixed in; the rest carry only a faint floor
NOISE_FLOOR_RMS: Final = 3e-4  # a real microphone is never digitally silent
PEAK_RANGE: Final = (0.05, 0.9)  # speech peak amplitude: a quiet far talker to a close loud one
TRIM_LEVEL: Final = 0.02  # of the peak: below this at the ends is espeak's padding silence
NOISE_SECONDS: Final = 60
NOISE_KINDS: Final = ("white", "pink", "brown", "hum", "fan", "babble")

VAL_VARIANTS_ONLY: Final = tuple(v for v in VAL_VARIANTS if v not in TRAIN_VARIANTS)
assert not set(TEST_VARIANTS) & (set(TRAIN_VARIANTS) | set(VAL_VARIANTS)), "test voices must be unheard"


def voice_id(accent: str, variant: str) -> str:
    return f"{accent}+{variant}"


def synth(text: str, voice: str, speed: int = 175, pitch: int = 50, rate: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """espeak-ng → float32 mono at ``rate``, the silent padding at both ends trimmed."""
    out = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                         capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(out), "rb") as w:
        native = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    x = resample(to_float(pcm), native, rate)
    return trim(x)


def trim(x: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(x) > TRIM_LEVEL * (np.abs(x).max() + 1e-9))
    return x[loud[0]: loud[-1] + 1] if len(loud) else x[:0]


def colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power ∝ 1/f^exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    x = np.fft.irfft(spec / f ** (exponent / 2), n)
    return (x / (np.std(x) + 1e-12)).astype(np.float32)


def make_noise(kind: str, seconds: float, rng: np.random.Generator, voices: Sequence[str] = (),
               rate: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """One kind of background noise, unit RMS. ``babble`` is several far talkers saying other words."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    if kind in ("white", "pink", "brown"):
        return colored_noise(rng, n, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind])
    if kind == "hum":
        mains = float(rng.choice([50.0, 60.0]))
        x = sum(np.sin(2 * np.pi * mains * h * t + rng.uniform(0, 6.3)) / h for h in (1, 2, 3, 5))
        x = np.asarray(x) + 0.3 * colored_noise(rng, n, 1.0)
    elif kind == "fan":
        x = colored_noise(rng, n, 1.5) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
    elif kind == "babble":
        x = np.zeros(n, np.float32)
        for _ in range(4):
            pos = 0
            while pos < n:
                word = synth(str(rng.choice(OTHER_WORDS + UNSEEN_WORDS)), str(rng.choice(voices)),
                             int(rng.integers(*ESPEAK_SPEED_WPM)), int(rng.integers(*ESPEAK_PITCH)), rate)
                end = min(n, pos + len(word))
                x[pos:end] += word[: end - pos] * rng.uniform(0.3, 1.0)
                pos = end + int(rng.uniform(0.05, 0.4) * rate)
    else:
        raise ValueError(kind)
    return (x / (np.std(x) + 1e-12)).astype(np.float32)


def place(word: np.ndarray, rng: np.random.Generator, length: int) -> np.ndarray | None:
    """The word at a random offset inside a ``length``-sample clip; None if it does not fit."""
    if len(word) == 0 or len(word) > length:
        return None
    out = np.zeros(length, np.float32)
    start = int(rng.integers(0, length - len(word) + 1))
    out[start: start + len(word)] = word / (np.abs(word).max() + 1e-9) * rng.uniform(*PEAK_RANGE)
    return out


def add_noise(clip: np.ndarray, noises: Sequence[np.ndarray], rng: np.random.Generator,
              snr_db: tuple[float, float] = SNR_DB, fraction: float = NOISE_FRACTION) -> np.ndarray:
    """Mix a random stretch of a random noise at a random SNR (relative to the speech RMS)."""
    out = clip + rng.normal(0, NOISE_FLOOR_RMS, len(clip)).astype(np.float32)
    if rng.random() < fraction and noises:
        noise = noises[int(rng.integers(len(noises)))]
        start = int(rng.integers(0, len(noise) - len(clip)))
        speech = clip[np.abs(clip) > 0]
        level = float(np.sqrt(np.mean(speech**2))) if len(speech) else 0.05
        gain = level / 10 ** (rng.uniform(*snr_db) / 20)
        out = out + noise[start: start + len(clip)] * gain
    return np.clip(out, -1, 1).astype(np.float32)


def compose_stream(words: Sequence[tuple[str, str]], rng: np.random.Generator, noise: np.ndarray | None = None,
                   gap_s: tuple[float, float] = (1.5, 3.0), snr_db: float = 20.0, lead_s: float = 1.5,
                   rate: int = SAMPLE_RATE_HZ) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """(word, voice) pairs spoken one after another with random gaps, over continuous noise.

    Returns the stream and (word, start_s, end_s) of each word, end being where espeak's audio
    drops below :data:`TRIM_LEVEL` of its peak: the reference point for detection latency."""
    parts: list[np.ndarray] = [np.zeros(int(lead_s * rate), np.float32)]
    marks: list[tuple[str, float, float]] = []
    pos = len(parts[0])
    for word, voice in words:
        x = synth(word, voice, int(rng.integers(*ESPEAK_SPEED_WPM)), int(rng.integers(*ESPEAK_PITCH)), rate)
        x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.3, 0.8)
        gap = np.zeros(int(rng.uniform(*gap_s) * rate), np.float32)
        marks.append((word, pos / rate, (pos + len(x)) / rate))
        parts += [x.astype(np.float32), gap]
        pos += len(x) + len(gap)
    stream = np.concatenate(parts)
    speech_rms = float(np.sqrt(np.mean(stream[np.abs(stream) > 0] ** 2))) if np.any(stream) else 0.05
    stream = stream + rng.normal(0, NOISE_FLOOR_RMS, len(stream)).astype(np.float32)
    if noise is not None and len(noise):
        reps = int(np.ceil(len(stream) / len(noise)))
        bed = np.tile(noise, reps)[: len(stream)]
        stream = stream + bed * np.float32(speech_rms / 10 ** (snr_db / 20))
    return np.clip(stream, -1, 1).astype(np.float32), marks


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--per-word", type=int, default=2, help="renditions of each command per voice")
    p.add_argument("--others-per-voice", type=int, default=10, help="other words each voice says")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--accents", type=int, default=len(ACCENTS), help="use only the first N accents (quick runs)")
    p.add_argument("--noise-seconds", type=float, default=NOISE_SECONDS)
    a = p.parse_args(argv)
    accents = ACCENTS[: a.accents]
    rng = np.random.default_rng(a.seed)
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    clip = SAMPLE_RATE_HZ  # 1 s

    train_voices = [voice_id(acc, v) for acc in accents for v in TRAIN_VARIANTS]
    noise_dir = out / "_background_noise_"
    noise_dir.mkdir(exist_ok=True)
    noises = []
    for kind in NOISE_KINDS:
        x = make_noise(kind, a.noise_seconds, rng, train_voices)
        write_wav(noise_dir / f"{kind}.wav", 0.5 * x / (np.abs(x).max() + 1e-9), SAMPLE_RATE_HZ)
        noises.append(x)

    splits = {"train": TRAIN_VARIANTS, "validation": VAL_VARIANTS_ONLY, "testing": TEST_VARIANTS}
    lists: dict[str, list[str]] = {"validation": [], "testing": []}
    counts: dict[str, int] = {}
    for split, variants in splits.items():
        for accent in accents:
            for variant in variants:
                voice = voice_id(accent, variant)
                words = [w for w in COMMANDS for _ in range(a.per_word)]
                words += [str(w) for w in rng.choice(OTHER_WORDS, a.others_per_voice, replace=False)]
                for n, word in enumerate(words):
                    speed, pitch = int(rng.integers(*ESPEAK_SPEED_WPM)), int(rng.integers(*ESPEAK_PITCH))
                    try:
                        placed = place(synth(word, voice, speed, pitch), rng, clip)
                    except subprocess.CalledProcessError:
                        placed = None
                    if placed is None:
                        continue
                    rel = f"{word}/{voice.replace('+', '_')}_nohash_{n}.wav"
                    (out / word).mkdir(exist_ok=True)
                    write_wav(out / rel, add_noise(placed, noises, rng), SAMPLE_RATE_HZ)
                    counts[split] = counts.get(split, 0) + 1
                    if split in lists:
                        lists[split].append(rel)
            print(f"{split}: {accent} done ({counts.get(split, 0)} clips)", file=sys.stderr)
    for split, names in lists.items():
        (out / f"{split}_list.txt").write_text("\n".join(sorted(names)) + "\n")
    (out / "voices.json").write_text(json.dumps({
        "accents": ACCENTS, "train_variants": TRAIN_VARIANTS, "validation_variants": VAL_VARIANTS_ONLY,
        "test_variants": TEST_VARIANTS, "commands": COMMANDS, "other_words": OTHER_WORDS,
        "unseen_words": UNSEEN_WORDS, "clips": counts, "seed": a.seed,
    }, indent=2) + "\n")
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
