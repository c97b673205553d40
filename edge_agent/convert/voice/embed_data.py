"""Training examples for a head on the speech embedding: windows of audio → (embeddings, 96) arrays.

The data folder is what ``tools/gen_voice_data.py`` writes: 1 s clips listed in ``clips.tsv`` (each
with its engine, voice and synthesis settings), ``_background_noise_/``, and running speech under
``_running_/train/`` (sentences with no command in them, one WAV per voice). Each example is a
window of :attr:`EmbeddingSpec.window_ms` (1.48 s by default) run through the agent's own
:class:`~edge_agent.voice.embedding.EmbeddingStream` from a cold start, so the head learns exactly
the vectors the agent computes:

* a clip is placed at a random offset inside the window, over the noise floor, half the time right
  after another word of the same voice (:data:`LEAD_PROBABILITY`: "a word or two of other speech"
  before a command, as people say them and as ``tools/eval_voice.py`` measures); its augmented copy
  goes through :func:`~edge_agent.convert.voice.augment.apply` on the whole window (speed, room
  reverberation, background noise at 5-30 dB SNR, microphone response, AGC, gain);
* running speech gives ``_unknown_`` windows: the stream's embeddings, every window of
  ``embeddings`` consecutive vectors at a stride (clean, and again with a noise bed);
* ``_silence_`` windows are stretches of the background noise.

Features are cached per data folder (``.npz``): the leave-one-engine-out runs of
``tools/eval_voice.py`` train several heads on subsets of the same examples.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from ...errors import ConfigError
from ...sources.wav import read_wav
from ...voice import embedding as emb
from ...voice.embedding import EmbeddingSpec, FrontEnd
from ...voice.recognizer import SILENCE, UNKNOWN
from . import augment as aug
from .data import COMMANDS, NOISE_DIR

logger = logging.getLogger(__name__)

RUNNING_DIR: Final = "_running_"
RUNNING_STRIDE: Final = 3  # every third window of running speech (80 ms hops: a new window each 240 ms)
SILENCE_PER_NOISE: Final = 60  # silence windows cut from each background noise file
FLOOR_RMS: Final = 3e-4
LEAD_PROBABILITY: Final = 0.5  # share of clips heard right after another word of the same voice
LEAD_GAP_S: Final = (0.05, 0.4)  # silence between that word and the clip
# A command word that runs straight on into more speech ("I do not know where", "in stock at") is
# not a command: commands are said with a pause after them. This share of command clips also gives
# an ``_unknown_`` window in which another word follows the command within FOLLOW_GAP_S and the
# window ends FOLLOW_SEEN_S into it.
FOLLOW_PROBABILITY: Final = 0.5
FOLLOW_GAP_S: Final = (0.0, 0.1)
FOLLOW_SEEN_S: Final = (0.25, 0.6)


@dataclasses.dataclass
class Examples:
    """Feature arrays and what each row is: label index, engine, voice, augmented, source kind."""

    x: np.ndarray  # (n, embeddings, 96) float32
    y: np.ndarray  # (n,) int
    engine: np.ndarray  # (n,) str
    voice: np.ndarray  # (n,) str
    augmented: np.ndarray  # (n,) bool
    kind: np.ndarray  # (n,) "clip" | "running" | "silence"
    split: np.ndarray  # (n,) the generator's split of a clip ("train", "validation", "testing"; "" otherwise)

    def select(self, mask: np.ndarray) -> Examples:
        return Examples(*(getattr(self, f.name)[mask] for f in dataclasses.fields(self)))

    def save(self, path: Path) -> None:
        """Written beside, then renamed: a reader never sees half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        with tmp.open("wb") as f:
            np.savez_compressed(f, **{f_.name: getattr(self, f_.name) for f_ in dataclasses.fields(self)})
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Examples:
        with np.load(path, allow_pickle=False) as z:
            return cls(**{f.name: z[f.name] for f in dataclasses.fields(cls)})


def labels_for(commands: Sequence[str]) -> tuple[str, ...]:
    return (*commands, SILENCE, UNKNOWN)


def read_table(data: Path) -> list[dict[str, str]]:
    table = data / "clips.tsv"
    if not table.exists():
        raise ConfigError(f"--data {data}: no clips.tsv (write the folder with tools/gen_voice_data.py)")
    with table.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def window_samples(spec: EmbeddingSpec) -> int:
    """Audio for ``embeddings`` vectors from a cold stream: warm-up hops, then one hop per vector."""
    return (emb.warm_hops() + spec.embeddings - 1) * emb.HOP_SAMPLES


def place_in_window(clip: np.ndarray, spec: EmbeddingSpec, rng: np.random.Generator,
                    lead: np.ndarray | None = None) -> np.ndarray:
    """The clip at a random offset within the audio the head's vectors cover (the last
    :attr:`EmbeddingSpec.window_ms`), over a faint noise floor; ``lead`` (another word) ends a short
    gap before it, cut where the window's audio begins. (Placing the word's end near the window's
    end instead, 0.05-0.8 s before it, cut latency by a sixth and multiplied false accepts on
    running speech: a head sure right at a word's end cannot yet hear that more speech follows.)"""
    n = window_samples(spec)
    covered = spec.window_ms * emb.SAMPLE_RATE_HZ // 1000
    out = rng.normal(0, FLOOR_RMS, n).astype(np.float32)
    clip = clip[:covered]
    start = int(rng.integers(n - covered, n - len(clip) + 1))
    add_at(out, clip, start)
    if lead is not None and len(lead):
        end = start - int(rng.uniform(*LEAD_GAP_S) * emb.SAMPLE_RATE_HZ)
        if end > 0:
            add_at(out, lead, end - len(lead))
    return out


def add_at(out: np.ndarray, x: np.ndarray, start: int) -> None:
    """``x`` added into ``out`` from sample ``start`` on (which may lie before 0), cut at both ends."""
    a, b = max(0, start), min(len(out), start + len(x))
    if b > a:
        out[a:b] += x[a - start: b - start]


def speech_span(x: np.ndarray) -> tuple[int, int]:
    """(first, end) sample of the loud part of a clip: 10 ms frames above a third of the loudest."""
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    if not len(frames):
        return 0, len(x)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud = np.flatnonzero(rms > rms.max() / 3)
    return (int(loud[0]) * 160, (int(loud[-1]) + 1) * 160) if len(loud) else (0, len(x))


def stream_windows(vectors: np.ndarray, spec: EmbeddingSpec, stride: int) -> np.ndarray:
    """Every ``stride``-th window of ``embeddings`` consecutive vectors of one stream."""
    k = spec.embeddings
    if len(vectors) < k:
        return np.zeros((0, k, emb.EMBEDDING_DIM), np.float32)
    idx = np.arange(0, len(vectors) - k + 1, stride)
    return np.stack([vectors[i: i + k] for i in idx]).astype(np.float32)


def load_noises(data: Path) -> list[np.ndarray]:
    out = []
    for p in sorted((data / NOISE_DIR).glob("*.wav")):
        x, rate = read_wav(p)
        if rate == emb.SAMPLE_RATE_HZ and len(x) > emb.SAMPLE_RATE_HZ * 2:
            out.append((x / (np.abs(x).max() + 1e-9)).astype(np.float32))
    if not out:
        raise ConfigError(f"--data {data}: no background noise in {NOISE_DIR}/")
    return out


def followed_window(clip: np.ndarray, follower: np.ndarray, spec: EmbeddingSpec,
                    rng: np.random.Generator) -> np.ndarray:
    """A command word running on into another word: the window ends inside the second word."""
    n = window_samples(spec)
    rate = emb.SAMPLE_RATE_HZ
    out = rng.normal(0, FLOOR_RMS, n).astype(np.float32)
    _, end = speech_span(clip)
    f_start, _ = speech_span(follower)
    follower = follower[max(0, f_start - 160):]
    next_at = n - int(rng.uniform(*FOLLOW_SEEN_S) * rate)
    word_end = next_at - int(rng.uniform(*FOLLOW_GAP_S) * rate)
    add_at(out, clip, word_end - end)  # the clip's head may fall before the window: cut
    add_at(out, follower, next_at)
    return out


def others_by_voice(rows: Sequence[dict[str, str]], commands: Sequence[str]) -> dict[tuple[str, str], list[str]]:
    """Each (engine, voice)'s clips of words that are not commands: the words said before a clip."""
    out: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        if r["path"].split("/", 1)[0] not in commands:
            out.setdefault((r["engine"], r["voice"]), []).append(r["path"])
    return out


def build(data: Path, spec: EmbeddingSpec, commands: Sequence[str] = COMMANDS, copies: int = 1, seed: int = 0,
          front: FrontEnd | None = None, limit: int | None = None, part: tuple[int, int] = (0, 1),
          lead: float = LEAD_PROBABILITY, follow: float = FOLLOW_PROBABILITY) -> Examples:
    """Every clip (and ``copies`` augmented copies), the running speech and silence, as features.
    ``part`` (i, n): only every n-th clip and running-speech file from the i-th (silence in part 0),
    so :func:`build_parallel` can spread the work; each part draws from its own seeded generator."""
    front = front or FrontEnd.load()
    labels = labels_for(commands)
    i_part, n_parts = part
    rng = np.random.default_rng([seed, i_part])
    noises = load_noises(data)
    table = read_table(data)[:limit]
    rows = table[i_part::n_parts]
    leads = others_by_voice(table, commands)
    xs: list[np.ndarray] = []
    meta: list[tuple[int, str, str, bool, str, str]] = []
    for i, row in enumerate(rows):
        x, _ = read_wav(data / row["path"])
        word = row["path"].split("/", 1)[0]
        label = labels.index(word) if word in commands else labels.index(UNKNOWN)
        mine = leads.get((row["engine"], row["voice"]), [])
        for copy in range(1 + copies):
            before = None
            if mine and rng.random() < lead:
                before = read_wav(data / mine[int(rng.integers(len(mine)))])[0]
            window = place_in_window(x, spec, rng, before)
            if copy:
                window = aug.apply(window, aug.draw(rng), rng, noises)
            vectors = emb.embeddings(front, window)
            xs.append(vectors[-spec.embeddings:])
            meta.append((label, row["engine"], row["voice"], bool(copy), "clip", row.get("split", "")))
            if word in commands and mine and rng.random() < follow:
                window = followed_window(x, read_wav(data / mine[int(rng.integers(len(mine)))])[0], spec, rng)
                if copy:
                    window = aug.apply(window, aug.draw(rng), rng, noises)
                xs.append(emb.embeddings(front, window)[-spec.embeddings:])
                meta.append((labels.index(UNKNOWN), row["engine"], row["voice"], bool(copy), "followed",
                             row.get("split", "")))
        if i % 500 == 0:
            logger.info("features: %d of %d clips", i, len(rows))
    for path in sorted((data / RUNNING_DIR / "train").glob("*.wav"))[i_part::n_parts]:
        engine_name, _, voice = path.stem.partition("-")
        x, _ = read_wav(path)
        for noisy in (False, True):
            audio = x
            if noisy:
                bed = np.resize(noises[int(rng.integers(len(noises)))], len(x))
                audio = aug.mix_at_snr(x, bed, float(rng.uniform(5, 25)))
                audio = np.clip(audio / (np.abs(audio).max() + 1e-9) * rng.uniform(0.2, 0.8), -1, 1)
            wins = stream_windows(emb.embeddings(front, audio.astype(np.float32)), spec, RUNNING_STRIDE)
            xs += list(wins)
            meta += [(labels.index(UNKNOWN), engine_name, voice, noisy, "running", "")] * len(wins)
        logger.info("features: running speech %s (%d s)", path.stem, len(x) // emb.SAMPLE_RATE_HZ)
    for k, noise in enumerate(noises if i_part == 0 else []):
        for _ in range(SILENCE_PER_NOISE):
            n = window_samples(spec)
            start = int(rng.integers(0, len(noise) - n))
            window = noise[start: start + n] * float(10 ** rng.uniform(-3, -0.5))
            window = window + rng.normal(0, FLOOR_RMS, n).astype(np.float32)
            xs.append(emb.embeddings(front, window.astype(np.float32))[-spec.embeddings:])
            meta.append((labels.index(SILENCE), "noise", f"noise{k}", False, "silence", ""))
    cols = list(zip(*meta, strict=True))
    return Examples(np.stack(xs).astype(np.float32), np.array(cols[0], np.int64), np.array(cols[1], str),
                    np.array(cols[2], str), np.array(cols[3], bool), np.array(cols[4], str), np.array(cols[5], str))


def _build_part(args: tuple[Path, EmbeddingSpec, tuple[str, ...], int, int, int, int, float, float]) -> Examples:
    data, spec, commands, copies, seed, i, n, lead, follow = args
    return build(data, spec, commands, copies, seed, part=(i, n), lead=lead, follow=follow)


def build_parallel(data: Path, spec: EmbeddingSpec, commands: Sequence[str], copies: int, seed: int,
                   jobs: int, lead: float = LEAD_PROBABILITY, follow: float = FOLLOW_PROBABILITY) -> Examples:
    """:func:`build` in ``jobs`` worker processes, the parts joined in order (the result depends on
    ``jobs``: each part has its own generator; the cache key records it)."""
    import multiprocessing

    if jobs <= 1:
        return build(data, spec, commands, copies, seed, lead=lead, follow=follow)
    work = [(data, spec, tuple(commands), copies, seed, i, jobs, lead, follow) for i in range(jobs)]
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        parts = pool.map(_build_part, work)
    return Examples(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Examples)))


def cached(data: Path, spec: EmbeddingSpec, commands: Sequence[str], copies: int, seed: int,
           cache: Path | None = None, jobs: int = 1, lead: float = LEAD_PROBABILITY,
           follow: float = FOLLOW_PROBABILITY) -> Examples:
    """:func:`build`, kept in ``cache`` (default DATA/_features/...) keyed by its parameters."""
    key = f"emb{spec.embeddings}_c{copies}_s{seed}_j{jobs}_l{lead:g}_f{follow:g}_{'-'.join(commands)}"
    path = cache or data / "_features" / f"{key}.npz"
    if path.exists():
        logger.info("features from %s", path)
        return Examples.load(path)
    ex = build_parallel(data, spec, commands, copies, seed, jobs, lead, follow)
    ex.save(path)
    (path.with_suffix(".json")).write_text(json.dumps({"data": str(data), "key": key, "n": len(ex.y)}) + "\n")
    return ex


def summary(ex: Examples, labels: Sequence[str]) -> dict[str, Any]:
    """Examples per engine and per label (for the training record)."""
    out: dict[str, Any] = {}
    for e in sorted(set(ex.engine.tolist())):
        m = ex.engine == e
        out[e] = {labels[i]: int(np.sum(ex.y[m] == i)) for i in range(len(labels)) if np.any(ex.y[m] == i)}
    return out
