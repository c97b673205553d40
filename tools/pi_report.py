#!/usr/bin/env python3
"""The report of tools/pi_check.sh for one suite: what ran in the emulated arm64 root, and its
predictions against this machine's, frame by frame (and keyword by keyword for the voice WAV).

    python tools/pi_report.py build/pi/host build/pi/trixie trixie cortex-a72

Reads the files pi_check.sh leaves in the two folders; prints Markdown.
"""

from __future__ import annotations

import json
import sys
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
    hv, gv = messages(host / "voice.jsonl"), messages(out / "voice.jsonl")
    hc, gc = [m.get("command") for m in hv], [m.get("command") for m in gv]
    diff = max((abs(float(a["score"]) - float(b["score"])) for a, b in zip(hv, gv, strict=False)), default=0.0)
    verdict = "the same commands in the same order" if hc == gc else f"DIFFERENT (host: {hc})"
    lines.append(f"- voice WAV (espeak-ng: yes, no, stop, and go, which is not a command): exit {exits['voice']}, "
                 f"commands {gc}: {verdict}; "
                 f"max score difference {diff:.4f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    host, out, suite, cpu = Path(argv[0]), Path(argv[1]), argv[2], argv[3]
    print(report(host, out, suite, cpu), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
