"""Enrollment and calibration, measured: what the three loops do for a voice the model never heard.

    python tools/eval_enroll.py enroll --model M --data CLIPS --engine piper --voice joe \\
        --running CLIPS/_running_/eval/piper-joe.wav ... --out DIR
    python tools/eval_enroll.py calibrate --model M --first A.wav --second B.wav

``enroll``: the voice's clips of each command from ``clips.tsv``; ``--takes`` (5) of each become
an enrollment folder (with 2 minutes of the data's room noise as ``_background_noise_``), the rest
are the test. Before and after ``edge-agent-convert enroll`` (run on one core, timed): recall of
the test clips, each alone in room noise through the agent's spotter at the model's own setting,
and false accepts per hour on the voice's running speech (``--running``: no commands in it).

``calibrate``: ``edge-agent calibrate --source FIRST`` picks a threshold and states its 95 %
interval; the same model at that threshold on SECOND gives the rate checked against it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edge_agent.sources.wav import read_wav, write_wav
from edge_agent.voice import calibrate
from edge_agent.voice import embedding as emb
from edge_agent.voice.spotter import load_voice_model, make_spotter

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ("yes", "no", "on", "off", "stop")


def hops(x: np.ndarray) -> list[np.ndarray]:
    return [x[i * emb.HOP_SAMPLES:(i + 1) * emb.HOP_SAMPLES] for i in range(len(x) // emb.HOP_SAMPLES)]


def recall(model_path: Path, clips: list[tuple[str, Path]], room: np.ndarray) -> dict[str, list[int]]:
    """Each clip after 2 s of room noise and before 1.5 s more, on a fresh spotter: heard or not."""
    model = load_voice_model(model_path)
    out: dict[str, list[int]] = {c: [0, 0] for c in COMMANDS}
    rng = np.random.default_rng(0)
    for word, path in clips:
        x, _ = read_wav(path)
        n = 2 * emb.SAMPLE_RATE_HZ + len(x) + 24_000
        at = int(rng.integers(0, len(room) - n))
        bed = room[at: at + n].copy()
        bed[2 * emb.SAMPLE_RATE_HZ: 2 * emb.SAMPLE_RATE_HZ + len(x)] += x
        spotter = make_spotter(model)
        said = [c.label for h in hops(bed) if (c := spotter.push(h)) is not None]
        out[word][0] += int(word in said)
        out[word][1] += 1
    return out


def false_accepts(model_path: Path, wavs: list[Path]) -> tuple[int, float]:
    model = load_voice_model(model_path)
    n, hours = 0, 0.0
    for w in wavs:
        x, _ = read_wav(w)
        spotter = make_spotter(model)
        n += sum(1 for h in hops(x) if spotter.push(h) is not None)
        hours += len(x) / emb.SAMPLE_RATE_HZ / 3600
    return n, hours


def summary(r: dict[str, list[int]]) -> dict[str, object]:
    k, n = sum(v[0] for v in r.values()), sum(v[1] for v in r.values())
    return {"recall": round(k / max(n, 1), 4), "heard": k, "of": n, "per_command": r}


def run_enroll(a: argparse.Namespace) -> dict[str, object]:
    with (a.data / "clips.tsv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["engine"] == a.engine
                and (not a.voice or a.voice in r["voice"]) and r["path"].split("/")[0] in COMMANDS]
    rng = np.random.default_rng(a.seed)
    folder = a.out / "enroll_data"
    shutil.rmtree(folder, ignore_errors=True)
    test: list[tuple[str, Path]] = []
    for word in COMMANDS:
        mine = [a.data / r["path"] for r in rows if r["path"].startswith(word + "/")]
        order = rng.permutation(len(mine))
        (folder / word).mkdir(parents=True)
        for i in order[: a.takes]:
            shutil.copy(mine[i], folder / word / mine[i].name)
        test += [(word, mine[i]) for i in order[a.takes:]]
    room = np.concatenate([read_wav(a.data / "_background_noise_" / f"{k}.wav")[0] for k in a.room_noise])
    room = (room / max(float(np.abs(room).max()), 1e-6) * 0.05).astype(np.float32)
    if a.room_speech:  # people talking in the room: this voice's other running speech, noise under it
        talk = np.concatenate([read_wav(p)[0] for p in a.room_speech])[: 120 * emb.SAMPLE_RATE_HZ]
        bed = np.resize(room, len(talk))
        bed *= 0.3 * np.sqrt(np.mean(talk ** 2) / max(float(np.mean(bed ** 2)), 1e-12))
        room_for_enroll = (talk + bed).astype(np.float32)
    else:
        room_for_enroll = room
    (folder / "_background_noise_").mkdir()
    write_wav(folder / "_background_noise_" / "room.wav", room_for_enroll[: 120 * emb.SAMPLE_RATE_HZ],
              emb.SAMPLE_RATE_HZ)
    out = a.out / "enrolled.tflite"
    t0 = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "edge_agent.convert", "enroll", "--model",
                           str(a.model), "--data", str(folder), "--out", str(out), *a.enroll_args], env=env,
                          capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    result: dict[str, object] = {"engine": a.engine, "voice": a.voice, "takes_per_command": a.takes,
                                 "room": {"noise": a.room_noise, "speech": [str(p) for p in a.room_speech]},
                                 "enroll_seconds_one_core": round(seconds, 1), "enroll_says": done.stdout.strip()}
    for name, model in (("before", a.model), ("after", out)):
        fa, hours = false_accepts(model, a.running)
        result[name] = {**summary(recall(model, test, room)), "false_accepts": fa, "hours": round(hours, 3),
                        "fa_per_hour": round(fa / hours, 2)}
        print(name, json.dumps(result[name]), flush=True)
    return result


def run_calibrate(a: argparse.Namespace) -> dict[str, object]:
    config = a.out / "calibrated.toml"
    config.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "edge_agent", "calibrate", "--task", "voice", "--source",
                           str(a.first), "--model", str(a.model), "--config", str(config)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    model = load_voice_model(a.model)
    x, _ = read_wav(a.second)
    scored = calibrate.score_hops(make_spotter(model), hops(x), model.labels, len(x) / emb.SAMPLE_RATE_HZ)
    x1, _ = read_wav(a.first)
    scored1 = calibrate.score_hops(make_spotter(model), hops(x1), model.labels, len(x1) / emb.SAMPLE_RATE_HZ)
    counts1 = calibrate.curve(scored1, model.settings)
    chosen = calibrate.choose(counts1, scored1.hours, 2.0)
    low, high = calibrate.poisson_interval(counts1[chosen], scored1.hours)
    second = calibrate.count_accepts(scored, model.settings, chosen)
    rate = second / scored.hours
    return {"calibrate_says": done.stdout.strip(), "threshold": chosen, "first_rate": counts1[chosen] / scored1.hours,
            "interval": [round(low, 2), round(high, 2)], "second_false_accepts": second,
            "second_hours": round(scored.hours, 3), "second_rate": round(rate, 2), "within": low <= rate <= high,
            "curve_first": {str(k): v for k, v in counts1.items()},
            "curve_second": {str(k): v for k, v in calibrate.curve(scored, model.settings).items()}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    e = sub.add_parser("enroll")
    e.add_argument("--model", type=Path, required=True)
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--engine", required=True)
    e.add_argument("--voice", default="")
    e.add_argument("--takes", type=int, default=5)
    e.add_argument("--running", type=Path, nargs="+", required=True)
    e.add_argument("--room-noise", nargs="+", default=["babble", "tv", "kitchen"])
    e.add_argument("--room-speech", type=Path, nargs="*", default=[],
                   help="running speech of the voice (not the measured one) as the people talking in the room")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--enroll-args", nargs="*", default=[], help="passed to enroll (--enroll-args=--pull=0.01)")
    e.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("calibrate")
    c.add_argument("--model", type=Path, required=True)
    c.add_argument("--first", type=Path, required=True)
    c.add_argument("--second", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    result = run_enroll(a) if a.what == "enroll" else run_calibrate(a)
    (a.out / f"{a.what}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("curve")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
