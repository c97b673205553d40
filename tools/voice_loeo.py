"""Leave-one-engine-out for speech-embedding voice models: what a voice never heard will get.

    python tools/eval_voice.py --loeo OUT --data DATA [--engines espeak,mbrola,pico,rhvoice,piper]

For each engine E in turn: a head is trained with ``edge-agent-convert train-voice --frontend
speech_embedding --hold-out-engines E`` (the same code, called in-process) on every other engine,
then measured on E only:

* **clips**: E's 1 s clips, float and int8 (the training report's figures);
* **command recall** on a stream of E's clips as a user says them: each command after a word or
  two of other speech (one of E's other-word clips, 70 % of the time), 1-2 s apart; also with
  10 dB SNR babble and in a 0.6 s RT60 room. A command counts when the recognizer announces it
  between the start of its clip and 1.5 s after its end; per-voice recall beside it;
* **false accepts per hour** on E's running speech (``_running_/eval/``: sentences never trained on,
  in any engine, plus strings of words never trained on), at least 30 minutes where the data has it;
* **detection latency**: from the estimated end of the word (the last 10 ms frame above a third of
  the clip's loudest) to the end of the hop that announced it.

The recognizer's threshold is tuned on held-out engines only, itself left-one-out: E's figures use
the threshold picked on the other folds' left-out engines (the highest mean recall with at most 2
false accepts per hour on each), and the shipped setting is picked the same way on all folds.
The current shipped model (log-mel) is measured on the same streams for comparison.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_agent.convert.voice import augment, embed_data, embed_train
from edge_agent.convert.voice.data import COMMANDS
from edge_agent.sources.wav import read_wav
from edge_agent.voice import embedding as emb
from edge_agent.voice.embedding import EmbeddingSpec
from edge_agent.voice.recognizer import RecognizerSettings
from edge_agent.voice.spotter import EmbeddingSpotter, KeywordSpotter, VoiceModel, load_voice_model

ENGINES: Final = ("espeak", "mbrola", "pico", "rhvoice", "piper")
THRESHOLDS: Final = tuple(round(x, 3) for x in (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99,
                                                0.995, 0.998, 0.999))
FA_TARGET: Final = 2.0
MAX_COMMANDS_PER_VOICE: Final = 60  # command clips per voice in the stream (12 of each command)
MAX_ESPEAK_VOICES: Final = 6
LEAD_PROBABILITY: Final = 0.7
RT60_S: Final = 0.6
BABBLE_SNR_DB: Final = 10.0
MATCH_AFTER_S: Final = 1.5


Mark = tuple[str, str, float, float, float]  # (command, voice, clip start, word end, clip end) in seconds


@dataclasses.dataclass
class Stream:
    name: str
    audio: np.ndarray
    marks: list[Mark]


def word_end(clip: np.ndarray) -> float:
    """Seconds into the clip where the word ends: the last 10 ms frame above a third of the loudest
    (the trainer's :func:`~edge_agent.convert.voice.embed_data.speech_span`)."""
    return embed_data.speech_span(clip)[1] / emb.SAMPLE_RATE_HZ


def command_stream(data: Path, rows: list[dict[str, str]], engine: str, seed: int) -> Stream:
    """E's command clips, each after one of its other-word clips (70 %), 1-2 s apart."""
    rng = np.random.default_rng([seed, *engine.encode()])
    mine = [r for r in rows if r["engine"] == engine]
    voices = sorted({r["voice"] for r in mine})
    if engine == "espeak":
        voices = [v for v in voices if any(r["voice"] == v and r["split"] == "testing" for r in mine)] or voices
        voices = [str(v) for v in rng.permutation(voices)[:MAX_ESPEAK_VOICES]]
    parts: list[np.ndarray] = [np.zeros(emb.SAMPLE_RATE_HZ, np.float32)]
    marks = []
    pos = len(parts[0])
    for voice in voices:
        cmds = [r for r in mine if r["voice"] == voice and r["path"].split("/")[0] in COMMANDS]
        others = [r for r in mine if r["voice"] == voice and r["path"].split("/")[0] not in COMMANDS]
        by_word: dict[str, list[dict[str, str]]] = {}
        for r in cmds:
            by_word.setdefault(r["path"].split("/")[0], []).append(r)
        chosen = [r for w in COMMANDS for r in by_word.get(w, [])[: MAX_COMMANDS_PER_VOICE // len(COMMANDS)]]
        for r in rng.permutation(len(chosen)):
            row = chosen[int(r)]
            if others and rng.random() < LEAD_PROBABILITY:
                lead, _ = read_wav(data / others[int(rng.integers(len(others)))]["path"])
                parts.append(lead)
                pos += len(lead)
            clip, _ = read_wav(data / row["path"])
            start = pos / emb.SAMPLE_RATE_HZ
            marks.append((row["path"].split("/")[0], voice, start, start + word_end(clip),
                          start + len(clip) / emb.SAMPLE_RATE_HZ))
            gap = rng.normal(0, 3e-4, int(rng.uniform(1.0, 2.0) * emb.SAMPLE_RATE_HZ)).astype(np.float32)
            parts += [clip, gap]
            pos += len(clip) + len(gap)
    return Stream(f"commands-{engine}", np.concatenate(parts).astype(np.float32), marks)


def condition(stream: Stream, kind: str, data: Path, seed: int) -> Stream:
    """The stream in a 0.6 s RT60 room, or under 10 dB SNR babble (the generator's babble bed)."""
    rng = np.random.default_rng(seed)
    x = stream.audio
    if kind.startswith("room"):
        y = augment.reverb(x, augment.room_impulse(rng, RT60_S))
    else:
        babble, _ = read_wav(data / "_background_noise_" / "babble.wav")
        y = augment.mix_at_snr(x, np.resize(babble, len(x)), BABBLE_SNR_DB)
    y = y / (np.abs(y).max() + 1e-9) * 0.8
    return Stream(f"{stream.name}-{kind}", y.astype(np.float32), stream.marks)


def running_stream(data: Path, engine: str) -> Stream:
    parts = [read_wav(p)[0] for p in sorted((data / "_running_" / "eval").glob(f"{engine}-*.wav"))]
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return Stream(f"running-{engine}", audio.astype(np.float32), [])


def posteriors(model: VoiceModel, stream: Stream) -> tuple[np.ndarray, np.ndarray, float]:
    """(times_ms, scores, compute_s): the agent's own spotter, hop by hop, the recognizer aside."""
    spotter: EmbeddingSpotter | KeywordSpotter = (EmbeddingSpotter(model) if isinstance(model.spec, EmbeddingSpec)
                                                  else KeywordSpotter(model))
    n = spotter.stride
    times, scores = [], []
    t0 = time.process_time()
    for start in range(0, len(stream.audio) - n + 1, n):
        spotter.push(stream.audio[start: start + n])
        if spotter.last_scores is not None and spotter.inferences > len(scores):
            times.append(spotter.time_ms)
            scores.append(spotter.last_scores)
    return np.asarray(times), np.asarray(scores, np.float32), time.process_time() - t0


def events(labels: Sequence[str], settings: RecognizerSettings, times: np.ndarray,
           scores: np.ndarray) -> list[tuple[str, float]]:
    """(command, seconds) of the recognizer's events: eval_voice's ``recognize``, in seconds."""
    from tools import eval_voice

    return [(label, ms / 1000) for label, ms in eval_voice.recognize(labels, settings, times, scores)]


def score(evs: list[tuple[str, float]], marks: list[tuple[str, str, float, float, float]]) -> dict[str, Any]:
    """Recall (all, per command, per voice), wrong commands, extra events, latency from the word's end."""
    used: set[int] = set()
    hit = np.zeros(len(marks), bool)
    latency = []
    wrong = 0
    for i, (word, _voice, start, end_word, end) in enumerate(marks):
        for j, (label, t) in enumerate(evs):
            if j in used or not start <= t <= end + MATCH_AFTER_S:
                continue
            used.add(j)
            if label == word:
                hit[i] = True
                latency.append(1000 * (t - end_word))
            else:
                wrong += 1
            break
    per_word = {w: _ratio(hit, [m[0] == w for m in marks]) for w in COMMANDS}
    per_voice = {v: _ratio(hit, [m[1] == v for m in marks]) for v in sorted({m[1] for m in marks})}
    return {"n": len(marks), "recall": _ratio(hit, [True] * len(marks)), "per_command": per_word,
            "per_voice": per_voice, "wrong_command": wrong, "extra_events": len(evs) - len(used),
            "latency_p90_ms": round(float(np.percentile(latency, 90)), 1) if latency else None}


def _ratio(hit: np.ndarray, mask: Sequence[bool]) -> float | None:
    m = np.asarray(mask, bool)
    return round(float(hit[m].mean()), 4) if m.any() else None


def sweep(labels: Sequence[str], base: RecognizerSettings, cmd: tuple[np.ndarray, np.ndarray],
          marks: list[tuple[str, str, float, float, float]], fa: tuple[np.ndarray, np.ndarray],
          fa_hours: float) -> dict[float, dict[str, Any]]:
    out = {}
    for t in THRESHOLDS:
        s = base.with_threshold(t)
        r = score(events(labels, s, *cmd), marks)
        n_fa = len(events(labels, s, *fa))
        out[t] = {"recall": r["recall"], "fa_per_hour": round(n_fa / fa_hours, 2) if fa_hours else None,
                  "false_accepts": n_fa}
    return out


def pick(sweeps: Sequence[dict[float, dict[str, Any]]]) -> float:
    """The threshold with the highest mean recall whose false accepts stay at most 2 per hour on every
    given fold; the strictest one when none does."""
    ok = [t for t in THRESHOLDS if all((s[t]["fa_per_hour"] or 0) <= FA_TARGET for s in sweeps)]
    if not ok:
        return THRESHOLDS[-1]
    return max(ok, key=lambda t: (np.mean([s[t]["recall"] or 0 for s in sweeps]), -t))


PER_COMMAND_GRID: Final = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)
TABLE_BASE: Final = 0.99  # the other commands' threshold while one command's is varied


def command_table(labels: Sequence[str], base: RecognizerSettings, z: Any, marks: list[Mark]) -> np.ndarray:
    """(commands, grid, 2): each command's recall and its false accepts on the running speech at each
    threshold of :data:`PER_COMMAND_GRID`, the other commands held at :data:`TABLE_BASE`."""
    out = np.zeros((len(COMMANDS), len(PER_COMMAND_GRID), 2))
    strict = base.with_threshold(TABLE_BASE)
    for i, c in enumerate(COMMANDS):
        for j, t in enumerate(PER_COMMAND_GRID):
            s = dataclasses.replace(strict, thresholds={c: t})
            out[i, j, 0] = score(events(labels, s, z["cmd_t"], z["cmd_s"]), marks)["per_command"][c] or 0.0
            out[i, j, 1] = sum(1 for label, _ in events(labels, s, z["fa_t"], z["fa_s"]) if label == c)
    return out


def pick_per_command(tables: Sequence[tuple[np.ndarray, float]]) -> dict[str, float]:
    """A threshold per command, from ``(command_table, running-speech hours)`` of the tuning folds:
    every combination on the grid (false accepts of different commands add up), the highest mean
    recall whose false accepts stay at most 2 per hour on every fold; ties to the stricter."""
    k, g = len(COMMANDS), len(PER_COMMAND_GRID)
    shape = (g,) * k

    def total(arr: np.ndarray) -> np.ndarray:  # arr (k, g) -> the sum over commands for every combination
        acc = np.zeros(shape)
        for i in range(k):
            acc = acc + arr[i].reshape([g if d == i else 1 for d in range(k)])
        return acc

    ok = np.ones(shape, bool)
    recall = np.zeros(shape)
    for table, hours in tables:
        ok &= total(table[:, :, 1]) <= FA_TARGET * hours + 1e-9
        recall += total(table[:, :, 0])
    strictness = total(np.tile(np.arange(g, dtype=float), (k, 1)))
    key = np.where(ok, recall * 1000 + strictness * 1e-3, -np.inf)
    idx = np.unravel_index(int(np.argmax(key)), shape)
    if not ok[idx]:
        idx = (g - 1,) * k
    return {c: PER_COMMAND_GRID[i] for c, i in zip(COMMANDS, idx, strict=True)}


CONDITION_SECONDS: Final = 240.0  # of the command stream heard again in a room and under babble
OLD_RUNNING_SECONDS: Final = 600.0  # running speech the current (log-mel) model is measured on


def _save(path: Path, **arrays: Any) -> None:
    np.savez(path, **arrays)


def fold(data: Path, out: Path, engine: str, old_model: Path | None, epochs: int, seed: int = 0,
         copies: int = 1, jobs: int = 1, members: int = 1) -> dict[str, Any]:
    """One engine left out: train (or reuse) its head, measure it on that engine; the posteriors are
    kept (``fold-E.npz``) so :func:`combine` can tune the threshold across folds."""
    spec = EmbeddingSpec()
    rows = embed_data.read_table(data)
    path = out / f"loeo-{engine}.tflite"
    o = embed_train.Options(data=data, out=path, hold_out_engines=(engine,), epochs=epochs, seed=seed,
                            copies=copies, jobs=jobs, members=members,
                            command=f"edge-agent-convert train-voice --frontend speech_embedding "
                            f"--data DATA --hold-out-engines {engine} --epochs {epochs} --copies {copies} "
                            f"--members {members}")
    embed_data.cached(data, spec, COMMANDS, copies, seed, jobs=jobs)
    trained = embed_train.train(o) if not path.with_suffix(".report.json").exists() else json.loads(
        path.with_suffix(".report.json").read_text())
    model = load_voice_model(path, threads=1)
    cmd = command_stream(data, rows, engine, seed)
    fa = running_stream(data, engine)
    fa_hours = len(fa.audio) / emb.SAMPLE_RATE_HZ / 3600
    p_cmd = posteriors(model, cmd)
    p_fa = posteriors(model, fa)
    n_cond = int(CONDITION_SECONDS * emb.SAMPLE_RATE_HZ)
    part = Stream(cmd.name, cmd.audio[:n_cond], [m for m in cmd.marks if m[4] + MATCH_AFTER_S < CONDITION_SECONDS])
    conds = {k: posteriors(model, condition(part, k, data, seed)) for k in ("babble10db", "room0.6s")}
    audio_s = (len(cmd.audio) + len(fa.audio)) / emb.SAMPLE_RATE_HZ
    result: dict[str, Any] = {
        "engine": engine,
        "clips": {"float": trained["metrics"]["float"]["top1"], "int8": trained["metrics"]["int8"]["top1"],
                  "n": trained["metrics"]["int8"]["n"],
                  "per_command_int8": {w: trained["metrics"]["int8"]["per_class"][w]["recall"] for w in COMMANDS}},
        "command_minutes": round(len(cmd.audio) / emb.SAMPLE_RATE_HZ / 60, 1),
        "commands": len(cmd.marks), "condition_commands": len(part.marks),
        "running_minutes": round(fa_hours * 60, 1),
        "sweep": sweep(model.labels, model.settings, p_cmd[:2], cmd.marks, p_fa[:2], fa_hours),
        "cpu_s_per_audio_s": round((p_cmd[2] + p_fa[2]) / audio_s, 4),
        "marks": cmd.marks, "condition_marks": part.marks, "fa_hours": fa_hours,
    }
    if old_model is not None:
        old = load_voice_model(old_model, threads=1)
        n_old = int(OLD_RUNNING_SECONDS * emb.SAMPLE_RATE_HZ)
        o_cmd, o_fa = posteriors(old, cmd), posteriors(old, Stream(fa.name, fa.audio[:n_old], []))
        r = score(events(old.labels, old.settings, *o_cmd[:2]), cmd.marks)
        old_hours = min(len(fa.audio), n_old) / emb.SAMPLE_RATE_HZ / 3600
        result["current_model"] = {
            "recall": r["recall"], "per_command": r["per_command"], "running_minutes": round(old_hours * 60, 1),
            "fa_per_hour": round(len(events(old.labels, old.settings, *o_fa[:2])) / old_hours, 2)
            if old_hours else None,
            "settings": old.settings.to_json()}
    _save(out / f"fold-{engine}.npz", cmd_t=p_cmd[0], cmd_s=p_cmd[1], fa_t=p_fa[0], fa_s=p_fa[1],
          **{f"{k}_t": v[0] for k, v in conds.items()}, **{f"{k}_s": v[1] for k, v in conds.items()})
    (out / f"fold-{engine}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"fold {engine}: clips int8 {result['clips']['int8']}, sweep "
          f"{ {t: (v['recall'], v['fa_per_hour']) for t, v in result['sweep'].items()} }", file=sys.stderr)
    return result


def combine(out: Path, engines: Sequence[str]) -> dict[str, Any]:
    """Each fold at the threshold picked on the other folds; the shipped threshold on all of them."""
    folds = {e: json.loads((out / f"fold-{e}.json").read_text()) for e in engines}
    for engine in engines:
        f = folds[engine]
        others = [folds[e]["sweep"] for e in engines if e != engine] or [f["sweep"]]
        t = pick([{float(k): v for k, v in s.items()} for s in others])
        model = load_voice_model(out / f"loeo-{engine}.tflite", threads=1)
        s = model.settings.with_threshold(t)
        z = np.load(out / f"fold-{engine}.npz")
        marks: list[Mark] = [(str(m[0]), str(m[1]), float(m[2]), float(m[3]), float(m[4])) for m in f["marks"]]
        cmarks: list[Mark] = [(str(m[0]), str(m[1]), float(m[2]), float(m[3]), float(m[4]))
                              for m in f["condition_marks"]]
        r = score(events(model.labels, s, z["cmd_t"], z["cmd_s"]), marks)
        n_fa = len(events(model.labels, s, z["fa_t"], z["fa_s"]))
        f["at_threshold_from_other_folds"] = {
            "threshold": t, **r, "false_accepts": n_fa,
            "fa_per_hour": round(n_fa / f["fa_hours"], 2) if f["fa_hours"] else None,
            **{f"recall_{k}": score(events(model.labels, s, z[f"{k}_t"], z[f"{k}_s"]), cmarks)["recall"]
               for k in ("babble10db", "room0.6s")},
            "recall_clean_same_part": score(events(model.labels, s, z["cmd_t"], z["cmd_s"]), cmarks)["recall"],
        }
        for key in ("marks", "condition_marks"):
            f.pop(key, None)
    shipped_t = pick([{float(k): v for k, v in folds[e]["sweep"].items()} for e in engines])
    result = {"engines": list(engines), "folds": folds, "shipped_threshold": shipped_t,
              "settings": dataclasses.asdict(embed_train.SETTINGS) | {"threshold": shipped_t}}
    return per_command(out, engines, result)


def per_command(out: Path, engines: Sequence[str], result: dict[str, Any]) -> dict[str, Any]:
    """The same, with a threshold per command (the recognizer's ``thresholds``): each fold at the
    thresholds picked on the other folds, the shipped ones on all folds."""
    labels = embed_data.labels_for(COMMANDS)
    base = embed_train.SETTINGS
    tables = {}
    data = {}
    for e in engines:
        z = np.load(out / f"fold-{e}.npz")
        f = json.loads((out / f"fold-{e}.json").read_text())
        marks: list[Mark] = [(str(m[0]), str(m[1]), float(m[2]), float(m[3]), float(m[4])) for m in f["marks"]]
        cmarks: list[Mark] = [(str(m[0]), str(m[1]), float(m[2]), float(m[3]), float(m[4]))
                              for m in f["condition_marks"]]
        tables[e] = (command_table(labels, base, z, marks), float(f["fa_hours"]))
        data[e] = (z, marks, cmarks, float(f["fa_hours"]))
    for e in engines:
        chosen = pick_per_command([tables[o] for o in engines if o != e] or [tables[e]])
        s = dataclasses.replace(base, threshold=TABLE_BASE, thresholds=chosen)
        z, marks, cmarks, hours = data[e]
        r = score(events(labels, s, z["cmd_t"], z["cmd_s"]), marks)
        n_fa = len(events(labels, s, z["fa_t"], z["fa_s"]))
        result["folds"][e]["per_command_thresholds_from_other_folds"] = {
            "thresholds": chosen, **r, "false_accepts": n_fa, "fa_per_hour": round(n_fa / hours, 2) if hours else None,
            **{f"recall_{k}": score(events(labels, s, z[f"{k}_t"], z[f"{k}_s"]), cmarks)["recall"]
               for k in ("babble10db", "room0.6s")},
            "recall_clean_same_part": score(events(labels, s, z["cmd_t"], z["cmd_s"]), cmarks)["recall"]}
    shipped = pick_per_command(list(tables.values()))
    result["shipped_thresholds"] = shipped
    result["settings_per_command"] = dataclasses.asdict(base) | {"threshold": TABLE_BASE, "thresholds": shipped}
    return result


def card(result: dict[str, Any], command: str) -> str:
    """The leave-one-engine-out table of the model card (markdown)."""
    lines = ["| engine left out | recall | FA/h (running speech, min) | yes / no / on / off / stop | "
             "babble 10 dB | room 0.6 s | p90 latency | clips int8 (float) | current model recall, FA/h |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for e, f in result["folds"].items():
        a = f["at_threshold_from_other_folds"]
        pc = " / ".join(f"{100 * (a['per_command'][w] or 0):.0f}" for w in COMMANDS)
        cur = f.get("current_model")
        cur_text = f"{100 * (cur['recall'] or 0):.1f} %, {cur['fa_per_hour']}" if cur else "-"
        lines.append(f"| {e} (threshold {a['threshold']}) | {100 * (a['recall'] or 0):.1f} % | {a['fa_per_hour']} "
                     f"({f['running_minutes']}) | {pc} | {100 * (a['recall_babble10db'] or 0):.1f} % | "
                     f"{100 * (a['recall_room0.6s'] or 0):.1f} % "
                     f"(clean {100 * (a['recall_clean_same_part'] or 0):.1f} %) | "
                     f"{a['latency_p90_ms']} ms | "
                     f"{100 * (f['clips']['int8'] or 0):.1f} % ({100 * (f['clips']['float'] or 0):.1f} %) | "
                     f"{cur_text} |")
    if "shipped_thresholds" in result:
        lines += ["", "A threshold per command (the recognizer's `thresholds`), each fold at those picked on the other "
                  "folds; picked on all five folds: "
                  + ", ".join(f"{c} {t}" for c, t in result["shipped_thresholds"].items()), "",
                  "| engine left out | recall | FA/h | yes / no / on / off / stop | babble 10 dB | room 0.6 s "
                  "| p90 latency | thresholds (yes no on off stop) |",
                  "|---|---:|---:|---|---:|---:|---:|---|"]
        for e, f in result["folds"].items():
            a = f["per_command_thresholds_from_other_folds"]
            pc = " / ".join(f"{100 * (a['per_command'][w] or 0):.0f}" for w in COMMANDS)
            lines.append(f"| {e} | {100 * (a['recall'] or 0):.1f} % | {a['fa_per_hour']} | {pc} | "
                         f"{100 * (a['recall_babble10db'] or 0):.1f} % | {100 * (a['recall_room0.6s'] or 0):.1f} % "
                         f"(clean {100 * (a['recall_clean_same_part'] or 0):.1f} %) | {a['latency_p90_ms']} ms | "
                         + " ".join(str(a["thresholds"][w]) for w in COMMANDS) + " |")
        lines += ["", "Per-voice recall (per-command thresholds from the other folds):", ""]
        for e, f in result["folds"].items():
            pv = f["per_command_thresholds_from_other_folds"]["per_voice"]
            lines.append(f"- {e}: " + ", ".join(f"{v} {100 * (r or 0):.0f} %" for v, r in pv.items()))
    lines += ["", "Per-voice recall (left-out engine, its threshold):", ""]
    for e, f in result["folds"].items():
        pv = f["at_threshold_from_other_folds"]["per_voice"]
        lines.append(f"- {e}: " + ", ".join(f"{v} {100 * (r or 0):.0f} %" for v, r in pv.items()))
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def phrases(out: Path, engines: Sequence[str], piper_python: str | None = None, seed: int = 404) -> dict[str, Any]:
    """Commands inside speech ("turn it on please"), each fold's model on its left-out engine's voices:
    how often the phrase's command is announced, another command is, or nothing is (at the fold's
    threshold from the other folds, as in the headline)."""
    from tools import eval_voice, voice_engines

    result = json.loads((out / "loeo.json").read_text())
    figures: dict[str, Any] = {}
    for engine_name in engines:
        model = load_voice_model(out / f"loeo-{engine_name}.tflite", threads=1)
        t = result["folds"][engine_name]["at_threshold_from_other_folds"]["threshold"]
        settings = model.settings.with_threshold(t)
        kwargs = {"piper_python": piper_python} if engine_name == "piper" and piper_python else {}
        engine = voice_engines.get(engine_name, **kwargs)
        rng = np.random.default_rng([seed, *engine_name.encode()])
        voices = engine.voices("testing" if engine_name == "espeak" else "all")[:4]
        parts: list[np.ndarray] = [np.zeros(emb.SAMPLE_RATE_HZ, np.float32)]
        marks: list[tuple[str, float, float]] = []
        pos = len(parts[0])
        for text, _cmd in eval_voice.PHRASES:
            for v in voices:
                x = engine.synth(text, v, rng)
                if len(x) == 0:  # a voice without a diphone the phrase needs (MBROLA us3: "on", "off")
                    continue
                x = x / (np.abs(x).max() + 1e-9) * 0.5
                gap = rng.normal(0, 3e-4, int(rng.uniform(2.0, 3.0) * emb.SAMPLE_RATE_HZ)).astype(np.float32)
                marks.append((text, pos / emb.SAMPLE_RATE_HZ, (pos + len(x)) / emb.SAMPLE_RATE_HZ))
                parts += [x.astype(np.float32), gap]
                pos += len(x) + len(gap)
        stream = Stream(f"phrases-{engine_name}", np.concatenate(parts), [])
        times, scores, _ = posteriors(model, stream)
        evs = events(model.labels, settings, times, scores)
        command_of = dict(eval_voice.PHRASES)
        counts = {"phrases": len(marks), "its_command": 0, "other_command": 0, "nothing": 0}
        for text, start, end in marks:
            got = [label for label, t_s in evs if start <= t_s <= end + MATCH_AFTER_S]
            counts["its_command" if command_of[text] in got else "other_command" if got else "nothing"] += 1
        figures[engine_name] = counts
        print(f"phrases {engine_name}: {counts}", file=sys.stderr)
    return figures
