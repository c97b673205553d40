#!/usr/bin/env python3
"""How far a shipped image model moves when a frame changes by a few grey levels.

The same frame decoded by two FFmpeg builds (x86 and arm64, or two versions) differs by 1-2 grey
levels on most pixels; a model whose scores jump for that publishes a frame on one machine and not
on another. This tool measures it without a second machine: every frame of a video, decoded once
by the agent's own video source and kept in memory (lossless), against a copy with uniform integer
noise in [-N, +N] grey levels on every pixel and channel (fixed seed), both through the agent's own
model loader and inference (resize, lookup table, LiteRT; no TensorFlow).

    python tools/perturb_check.py --task waste                       # models/waste.tflite on samples/waste.mp4
    python tools/perturb_check.py --task road --noise 3 --seeds 0,1,2 --json
    python tools/perturb_check.py --model build/x.tflite --video samples/road.mp4 --save build/perturb

Reported, over all frames (and all seeds): the largest change of the top score (the score of the
label the clean frame gets), the largest change of any class's score, and how many frames change
label. ``--max-delta D`` makes the exit code 1 when the top-score change exceeds D (a gate).
``--save DIR`` also writes both frame sets as PNG folders (``DIR/clean``, ``DIR/noisy-<seed>``),
which ``edge-agent --source DIR --threshold 0`` reads frame by frame.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_agent import loader  # noqa: E402
from edge_agent.agents import image as image_agent  # noqa: E402
from edge_agent.config import Config  # noqa: E402
from edge_agent.sources.base import Frame  # noqa: E402
from edge_agent.sources.opencv import OpenCVSource  # noqa: E402


def read_frames(video: Path) -> list[np.ndarray]:
    """Every frame of the video, decoded as the agent decodes a file (BGR uint8)."""
    source = OpenCVSource(str(video), live=False)
    source.open()
    frames: list[np.ndarray] = []
    try:
        while (frame := source.read()) is not None:
            frames.append(frame)
    finally:
        source.close()
    return frames


def perturb(frame: np.ndarray, rng: np.random.Generator, levels: int) -> np.ndarray:
    """Uniform integer noise in [-levels, +levels] on every pixel and channel, clipped to 0..255."""
    noise = rng.integers(-levels, levels + 1, frame.shape, dtype=np.int16)
    return np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)


@dataclasses.dataclass
class Worst:
    frame: int = -1
    label: str = ""
    before: float = 0.0
    after: float = 0.0


def measure(model_path: Path, task: str, frames: list[np.ndarray], levels: int, seeds: list[int],
            save: Path | None = None) -> dict[str, Any]:
    config = Config(task=task)
    config.model.path = str(model_path)
    config.model.threads = 1
    manifest = loader.read_manifest(model_path, config)
    model = image_agent.load(model_path, manifest, config)
    infer = image_agent.ImageInference(model)

    def scores(img: np.ndarray, index: int) -> np.ndarray:
        return np.asarray(infer(Frame(img, 0.0, 0.0, index)), np.float64)

    clean = [scores(f, i) for i, f in enumerate(frames)]
    if save is not None:
        write_pngs(save / "clean", frames)
    max_top = max_any = 0.0
    flips = 0
    worst = Worst()
    per_seed: list[dict[str, Any]] = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        noisy_frames = [perturb(f, rng, levels) for f in frames]
        if save is not None:
            write_pngs(save / f"noisy-{seed}", noisy_frames)
        seed_top = seed_any = 0.0
        seed_flips = 0
        for i, (img, before) in enumerate(zip(noisy_frames, clean, strict=True)):
            after = scores(img, i)
            top = int(np.argmax(before))
            d_top = abs(float(after[top] - before[top]))
            seed_any = max(seed_any, float(np.max(np.abs(after - before))))
            seed_flips += int(np.argmax(after)) != top
            if d_top > seed_top:
                seed_top = d_top
                if d_top > max_top:
                    worst = Worst(i, model.labels[top], float(before[top]), float(after[top]))
        per_seed.append({"seed": seed, "max_top_delta": round(seed_top, 4), "max_class_delta": round(seed_any, 4),
                         "label_flips": seed_flips})
        max_top, max_any, flips = max(max_top, seed_top), max(max_any, seed_any), flips + seed_flips
    return {
        "model": str(model_path),
        "sha256": model.sha256,
        "frames": len(frames),
        "noise_levels": levels,
        "seeds": seeds,
        "max_top_delta": round(max_top, 4),
        "max_class_delta": round(max_any, 4),
        "label_flips": flips,
        "worst": dataclasses.asdict(worst),
        "per_seed": per_seed,
    }


def write_pngs(folder: Path, frames: list[np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), f)


def format_text(r: dict[str, Any], video: Path) -> str:
    w = r["worst"]
    lines = [
        f"{r['model']} on {video} ({r['frames']} frames), uniform noise ±{r['noise_levels']} grey levels, "
        f"seeds {','.join(str(s) for s in r['seeds'])}:",
        f"  max |Δ top score| {r['max_top_delta']:.3f}   max |Δ any class score| {r['max_class_delta']:.3f}   "
        f"label flips {r['label_flips']} of {r['frames'] * len(r['seeds'])}",
    ]
    if w["frame"] >= 0:
        lines.append(f"  worst: frame {w['frame']} '{w['label']}' {w['before']:.3f} -> {w['after']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=("waste", "road"), default="waste")
    p.add_argument("--model", type=Path, help="default: models/<task>.tflite")
    p.add_argument("--video", type=Path, help="default: samples/<task>.mp4")
    p.add_argument("--noise", type=int, default=3, help="grey levels: noise is uniform in [-N, +N] (default 3)")
    p.add_argument("--seeds", default="0", help="comma-separated noise seeds (default 0)")
    p.add_argument("--max-delta", type=float, help="exit 1 when the max top-score change exceeds this")
    p.add_argument("--save", type=Path, metavar="DIR", help="also write the clean and noisy frames as PNGs")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args(argv)
    model = a.model or ROOT / "models" / f"{a.task}.tflite"
    video = a.video or ROOT / "samples" / f"{a.task}.mp4"
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    frames = read_frames(video)
    if not frames:
        print(f"{video}: no frames", file=sys.stderr)
        return 2
    result = measure(model, a.task, frames, a.noise, seeds, a.save)
    result["video"] = str(video)
    print(json.dumps(result, indent=2) if a.json else format_text(result, video))
    if a.max_delta is not None and result["max_top_delta"] > a.max_delta:
        print(f"max top-score change {result['max_top_delta']:.3f} > {a.max_delta}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
