#!/usr/bin/env python3
"""The report of tools/pi_check.sh for one suite: what ran in the emulated arm64 root, and its
predictions against this machine's, frame by frame (and keyword by keyword for the voice WAV),
and the CPU seconds each voice model takes per second of audio, here and under emulation.

    python tools/pi_report.py build/pi/host build/pi/trixie trixie cortex-a72

Reads the files pi_check.sh leaves in the two folders; prints Markdown.
"""

from __future__ import annotations

import json
import sys
import wave
from pathlib import Path
from typing import Any


def messages(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.startswith("{")]


def scores(m: dict[str, Any]) -> dict[str, float]:
    return {t["label"]: float(t["score"]) for t in m["top"]}


def compare_frames(host: list[dict[str, Any]], guest: list[dict[str, Any]]) -> tuple[int, int, float, int, str]:
    """(frames compared, labels equal, max score difference over every class, frame of it, its label)."""
    hs, gs = {m["seq"]: m for m in host}, {m["seq"]: m for m in guest}
    common = sorted(set(hs) & set(gs))
    same = sum(hs[s]["label"] == gs[s]["label"] for s in common)
    worst, at, label = 0.0, -1, ""
    for s in common:
        a, b = scores(hs[s]), scores(gs[s])
        for k in a:
            d = abs(a[k] - b.get(k, 0.0))
            if d > worst:
                worst, at, label = d, s, k
    return len(common), same, worst, at, label


def sha(ms: list[dict[str, Any]]) -> str:
    return ", ".join(sorted({m["model"]["sha256"] for m in ms})) or "none"


# the voice models pi_check.sh runs (the file names of its runs), and what the report calls them
VOICE_MODELS = {"voice": "log-mel (default, voice.tflite)",
                "voice_embedding": "speech embedding (voice_embedding.tflite)"}


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def cpu_s(err: Path) -> float | None:
    """The process's CPU seconds (user + system) from the last line bash's ``time`` wrote
    (``cpu_s USER SYS``); None when the run did not get that far."""
    lines = err.read_text(errors="replace").splitlines() if err.exists() else []
    parts = lines[-1].split() if lines else []
    if len(parts) != 3 or parts[0] != "cpu_s":
        return None
    return float(parts[1]) + float(parts[2])


def per_audio_s(folder: Path, model: str, short_s: float, long_s: float) -> tuple[float | None, float | None]:
    """(CPU s per s of audio of the whole process on the long WAV, and the same with the start
    taken out: the difference between the long and the short run over the difference in audio)."""
    short, long = cpu_s(folder / f"{model}.err"), cpu_s(folder / f"{model}-long.err")
    whole = long / long_s if long is not None else None
    marginal = (long - short) / (long_s - short_s) if long is not None and short is not None else None
    return whole, marginal


def fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b <= 0 else f"{a / b:.1f}x"


def voice_section(host: Path, out: Path, exits: dict[str, str]) -> list[str]:
    """Both voice models: the commands on the voice WAV (and on the long one) here and there,
    and the CPU per second of audio of single-threaded runs."""
    short_s, long_s = wav_seconds(host / "voice.wav"), wav_seconds(host / "voice-long.wav")
    lines = [f"- voice, both models, `--threads 1`, on the voice WAV ({short_s:.2f} s; espeak-ng: yes, no, stop, "
             f"and go, which is not a command) and on it {long_s / short_s:.0f} times over ({long_s:.1f} s):"]
    table = ["", "| model | commands on the voice WAV (arm64) | host vs arm64 | "
                 "host x86 CPU s per s of audio (whole process / start taken out) | "
                 "emulated arm64 CPU s per s of audio (whole / start out) |", "|---|---|---|---|---|"]
    figures: dict[str, tuple[float | None, ...]] = {}
    for model, name in VOICE_MODELS.items():
        commands = [m.get("command") for m in messages(out / f"{model}.jsonl")]
        verdicts = []
        for run in (model, f"{model}-long"):
            hv, gv = messages(host / f"{run}.jsonl"), messages(out / f"{run}.jsonl")
            hc, gc = [m.get("command") for m in hv], [m.get("command") for m in gv]
            diff = max((abs(float(a["score"]) - float(b["score"])) for a, b in zip(hv, gv, strict=False)),
                       default=0.0)
            same = "same" if hc == gc else f"DIFFERENT (host {hc}, arm64 {gc})"
            verdicts.append(f"{'long' if run.endswith('-long') else 'short'}: exit {exits.get(run, '?')}, "
                            f"{len(gc)} commands, {same}, max score difference {diff:.4f}")
        h_whole, h_marg = per_audio_s(host, model, short_s, long_s)
        g_whole, g_marg = per_audio_s(out, model, short_s, long_s)
        figures[model] = (h_whole, h_marg, g_whole, g_marg)
        table.append(f"| {name} | {commands} | {'; '.join(verdicts)} | {fmt(h_whole)} / {fmt(h_marg)} | "
                     f"{fmt(g_whole)} / {fmt(g_marg)} |")
    emb, mel = figures["voice_embedding"], figures["voice"]
    table += ["", f"Embedding / log-mel, CPU per second of audio (start taken out): host x86 "
                  f"{ratio(emb[1], mel[1])}, emulated arm64 {ratio(emb[3], mel[3])} (whole process: "
                  f"{ratio(emb[0], mel[0])} / {ratio(emb[2], mel[2])}). Emulated CPU time is qemu-user "
                  "translating arm64 code on this x86 machine, not a Pi's speed: the ratio between the two "
                  "models is the informative number there.", ""]
    return lines + table


def report(host: Path, out: Path, suite: str, cpu: str) -> str:
    exits = dict(line.rsplit(" exit ", 1) for line in (out / "exit.txt").read_text().splitlines())
    lines = [f"## {suite} arm64 (qemu-user, QEMU_CPU={cpu})", ""]
    lines += [f"- {x}" for x in (out / "system.txt").read_text().splitlines()]
    lines.append(f"- `edge-agent --version`: {(out / 'version.txt').read_text().strip()}")
    demo = messages(out / "demo.jsonl")
    lines.append(f"- demo (`edge-agent --sink stdout --task waste --source .../share/edge-agent/samples/waste.mp4`, "
                 f"from an empty folder): exit {exits['demo']}, {len(demo)} predictions, "
                 f"labels {', '.join(sorted({m['label'] for m in demo}))}")
    doctor = (out / "doctor.txt").read_text().splitlines()
    fails = [x.strip() for x in doctor if "FAIL" in x]
    lines.append(f"- `edge-agent doctor`: exit {exits['doctor']}, {len(doctor)} lines, {len(fails)} FAIL"
                 + (": " + "; ".join(fails) if fails else ""))
    svc = (out / "install-service.txt").read_text()
    lines.append(f"- `install-service --task waste --dry-run --root DIR`: exit {exits['install-service']}, "
                 f"{len(svc.splitlines())} lines printed"
                 + (", installs `edge-agent@.service`" if "edge-agent@.service" in svc else ", NO unit named"))
    for task in ("waste", "road"):
        h, g = messages(host / f"{task}.jsonl"), messages(out / f"{task}.jsonl")
        n, same, worst, at, label = compare_frames(h, g)
        where = f" (frame {at}, '{label}')" if at >= 0 else ""
        lines.append(f"- {task} sample video, frame by frame: exit {exits[task]}, {len(g)} frames here, {len(h)} on "
                     f"the host (model {sha(g)} / {sha(h)}); labels equal {same}/{n}; "
                     f"max score difference {worst:.4f}{where}")
    lines += voice_section(host, out, exits)
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    host, out, suite, cpu = Path(argv[0]), Path(argv[1]), argv[2], argv[3]
    print(report(host, out, suite, cpu), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
