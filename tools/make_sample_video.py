#!/usr/bin/env python3
"""Write the README demo's sample videos from freshly rendered SYNTHETIC images.

    python tools/make_sample_video.py --task waste --out samples/waste.mp4
    python tools/make_sample_video.py --task road --out samples/road.mp4 --check models/road.tflite

The images come from the same generators as the training data but with a different seed
(``--seed``, default 9001, far from the training seed 1), so every frame is held out: the demo
shows the model on images it has never seen. Each class gets a few seconds in turn, a new image
every half second. Frames are 640x480 and fill the whole frame (the agent stretches a frame to
the model's square input, which undoes the 4:3 stretch), with a small caption in a corner.
``--check MODEL`` replays the written file through the agent's engine and prints per-class
accuracy, so a demo video that the model gets wrong is noticed before it ships.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Final

import cv2
import numpy as np

WIDTH: Final = 640
HEIGHT: Final = 480
FPS: Final = 10
FRAMES_PER_IMAGE: Final = 5  # a new image every 0.5 s at 10 fps
GENERATORS: Final = {"waste": "gen_waste_data.py", "road": "gen_road_data.py"}
SECONDS_PER_CLASS: Final = {"waste": 2.0, "road": 3.4}  # ~12 s and ~10 s in all


def generator(task: str) -> ModuleType:
    path = Path(__file__).with_name(GENERATORS[task])
    spec = importlib.util.spec_from_file_location(f"_gen_{task}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def frames(task: str, seed: int, seconds_per_class: float) -> list[tuple[str, np.ndarray]]:
    gen = generator(task)
    out: list[tuple[str, np.ndarray]] = []
    per_class = max(1, round(seconds_per_class * FPS / FRAMES_PER_IMAGE))
    for ci, label in enumerate(gen.CLASSES):
        for i in range(per_class):
            img = gen.render(label, np.random.default_rng([seed, ci, i]))
            frame = cv2.resize(img, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR)
            cv2.putText(frame, f"synthetic: {label}", (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                        cv2.LINE_AA)
            out.extend((label, frame) for _ in range(FRAMES_PER_IMAGE))
    return out


def write(path: Path, video: list[tuple[str, np.ndarray]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise SystemExit(f"cannot open a mp4v video writer for {path}")
    for _, frame in video:
        writer.write(frame)
    writer.release()


def check(path: Path, model: Path, truth: list[str]) -> bool:
    """Replay the file through the agent's engine; True when every class is mostly right."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from edge_agent.engine import Engine
    from edge_agent.manifest import load, manifest_path_for
    from edge_agent.preprocess import image as image_pre

    manifest = load(manifest_path_for(model))
    assert manifest.input is not None
    engine = Engine.load(model, threads=2)
    fill = image_pre.make_fill(engine.table_for(manifest.input))
    cap = cv2.VideoCapture(str(path))
    hits: dict[str, list[bool]] = {}
    for label in truth:
        ok, frame = cap.read()
        if not ok:
            break
        rgb = image_pre.resize(frame, manifest.input)
        scores = engine.run(lambda view, rgb=rgb: fill(rgb, view))
        hits.setdefault(label, []).append(manifest.labels[int(np.argmax(scores))] == label)
    cap.release()
    good = True
    for label, h in hits.items():
        acc = sum(h) / len(h)
        good &= acc >= 0.5
        print(f"  {label:<12} {100 * acc:5.1f} % of {len(h)} frames")
    return good


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=sorted(GENERATORS), required=True)
    p.add_argument("--out", type=Path, required=True, help="the .mp4 to write")
    p.add_argument("--seed", type=int, default=9001, help="image seed; differs from the training seed")
    p.add_argument("--seconds-per-class", type=float, help="default: 2 (waste) / 3.4 (road)")
    p.add_argument("--check", type=Path, metavar="MODEL", help="replay through this .tflite and report accuracy")
    a = p.parse_args(argv)
    video = frames(a.task, a.seed, a.seconds_per_class or SECONDS_PER_CLASS[a.task])
    write(a.out, video)
    size = a.out.stat().st_size
    print(f"wrote {a.out}: {len(video)} frames, {len(video) / FPS:.1f} s, {size / 1024:.0f} KiB")
    if a.check and not check(a.out, a.check, [label for label, _ in video]):
        print("the model gets a class wrong in most frames", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
