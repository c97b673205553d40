#!/usr/bin/env python3
"""Render a SYNTHETIC road-surface image set: normal / crack / pothole, one folder per class.

Why synthetic: the road demo model and the tests need labelled images that can be regenerated
offline, deterministically, with no photo data set shipped or downloaded. These are procedural
asphalt textures with drawn cracks and potholes; they are NOT photographs, and a model trained
on them demonstrates the pipeline, not road inspection.

    python tools/gen_road_data.py --out build/data/road --per-class 150 --seed 1

Every image has its own random stream seeded by (seed, class, index): re-running gives
identical files regardless of order.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Final

import cv2
import numpy as np

CLASSES: Final = ("crack", "normal", "pothole")
SIZE: Final = 128  # pixels, square; the tool resizes to the model's input

Rng = np.random.Generator


def asphalt(rng: Rng, size: int) -> np.ndarray:
    """Grey aggregate texture: blurred noise at two scales, light speckles, uneven lighting."""
    base = rng.uniform(70, 140)
    coarse = cv2.resize(rng.normal(0, 1, (size // 8, size // 8)).astype(np.float32), (size, size))
    fine = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (3, 3), 0.8)
    grey = base + 8 * coarse + 14 * fine
    speck = rng.random((size, size)) < 0.01
    grey[speck] += rng.uniform(30, 70)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    grey += rng.uniform(-20, 20) * xx + rng.uniform(-20, 20) * yy
    img = np.repeat(grey[..., None], 3, axis=2) + rng.uniform(-4, 4, 3)[None, None, :]
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:  # a painted lane marking, in any class, so paint is not a cue
        x = int(rng.uniform(0.1, 0.9) * size)
        cv2.line(img, (x, 0), (x + int(rng.uniform(-20, 20)), size), (210, 210, 215), int(rng.uniform(3, 7)))
    return img


def draw_normal(img: np.ndarray, rng: Rng) -> None:
    """Intact surface; sometimes a faint patch or oil stain so 'dark' alone is not 'defect'."""
    if rng.random() < 0.4:
        s = img.shape[0]
        c = (int(rng.uniform(0.2, 0.8) * s), int(rng.uniform(0.2, 0.8) * s))
        axes = (int(rng.uniform(0.05, 0.15) * s), int(rng.uniform(0.05, 0.15) * s))
        overlay = img.copy()
        cv2.ellipse(overlay, c, axes, rng.uniform(0, 180), 0, 360, (50, 50, 55), -1)
        cv2.addWeighted(overlay, 0.25, img, 0.75, 0, dst=img)


def draw_crack(img: np.ndarray, rng: Rng) -> None:
    """Thin dark random-walk lines with a few branches."""
    s = img.shape[0]
    for _ in range(rng.integers(1, 3)):
        x, y = rng.uniform(0, s), rng.uniform(0, s)
        heading = rng.uniform(0, 2 * math.pi)
        for _step in range(rng.integers(25, 60)):
            heading += rng.normal(0, 0.35)
            nx, ny = x + 3 * math.cos(heading), y + 3 * math.sin(heading)
            shade = int(rng.uniform(10, 40))
            cv2.line(img, (int(x), int(y)), (int(nx), int(ny)), (shade, shade, shade), int(rng.integers(1, 3)),
                     cv2.LINE_AA)
            if rng.random() < 0.06:  # branch
                bh = heading + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)
                bx, by = nx, ny
                for _b in range(rng.integers(4, 12)):
                    ex, ey = bx + 3 * math.cos(bh), by + 3 * math.sin(bh)
                    cv2.line(img, (int(bx), int(by)), (int(ex), int(ey)), (shade, shade, shade), 1, cv2.LINE_AA)
                    bx, by, bh = ex, ey, bh + rng.normal(0, 0.3)
            x, y = nx, ny


def draw_pothole(img: np.ndarray, rng: Rng) -> None:
    """A dark irregular hollow with a lighter broken rim and rubble inside."""
    s = img.shape[0]
    c = np.array([rng.uniform(0.3, 0.7) * s, rng.uniform(0.3, 0.7) * s])
    n = 14
    angles = np.linspace(0, 2 * math.pi, n, endpoint=False) + rng.uniform(0, 0.4, n)
    r = rng.uniform(0.15, 0.3) * s * rng.uniform(0.75, 1.25, n)
    pts = np.stack([c[0] + np.cos(angles) * r * rng.uniform(0.7, 1.0), c[1] + np.sin(angles) * r], 1)
    pts = pts.astype(np.int32)
    rim = pts.copy()
    cv2.polylines(img, [rim], True, (165, 165, 170), int(rng.integers(2, 5)), cv2.LINE_AA)
    inner = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(inner, [pts], 255)
    inner = cv2.erode(inner, np.ones((3, 3), np.uint8))
    depth = rng.uniform(0.3, 0.55)
    img[inner > 0] = (img[inner > 0] * depth).astype(np.uint8)
    if rng.random() < 0.4:  # standing water reflects the sky
        water = cv2.erode(inner, np.ones((7, 7), np.uint8))
        img[water > 0] = np.clip(img[water > 0] * 0.5 + np.array([120, 90, 70]) * 0.5, 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(inner)
    if len(xs):
        for _ in range(rng.integers(3, 8)):  # rubble
            k = rng.integers(len(xs))
            v = int(rng.uniform(60, 120))
            cv2.circle(img, (int(xs[k]), int(ys[k])), int(rng.integers(1, 3)), (v, v, v), -1)


DRAW: Final[dict[str, Callable[[np.ndarray, Rng], None]]] = {
    "crack": draw_crack,
    "normal": draw_normal,
    "pothole": draw_pothole,
}


def render(label: str, rng: Rng, size: int = SIZE) -> np.ndarray:
    img = asphalt(rng, size)
    DRAW[label](img, rng)
    gain = rng.uniform(0.8, 1.2)
    img = np.clip(img.astype(np.float32) * gain + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)
    if rng.random() < 0.4:  # motion blur of a moving vehicle
        k = int(rng.integers(3, 6))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0 / k
        img = cv2.filter2D(img, -1, kernel)
    return img


README: Final = """# SYNTHETIC road-surface images (not photographs)

Rendered by `tools/gen_road_data.py --per-class {per_class} --seed {seed}` in edge-agent:
procedural asphalt with drawn cracks (crack), hollows (pothole) or nothing (normal).
They exist to exercise and demonstrate the conversion pipeline offline; a model trained on them
says nothing about real roads. Regenerate instead of editing: the output is deterministic.
"""


def generate(out: Path, per_class: int, seed: int, size: int = SIZE) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for ci, label in enumerate(CLASSES):
        folder = out / label
        folder.mkdir(exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng([seed, ci, i])
            cv2.imwrite(str(folder / f"{label}_{i:04d}.png"), render(label, rng, size))
    (out / "README.md").write_text(README.format(per_class=per_class, seed=seed), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (one sub-folder per class)")
    p.add_argument("--per-class", type=int, default=150, help="images per class")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--size", type=int, default=SIZE, help="image side in pixels")
    a = p.parse_args(argv)
    generate(a.out, a.per_class, a.seed, a.size)
    print(f"wrote synthetic road images to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
