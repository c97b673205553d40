#!/usr/bin/env python3
"""Render a SYNTHETIC waste image set in TrashNet's layout (one folder per class).

Why synthetic: the demo models and the tests need labelled images that can be regenerated
anywhere, offline, byte for byte, without shipping or downloading a photo data set. These are
rendered shapes and textures (a bottle, a sheet, a can...) on a table-like background; they are
NOT photographs and a model trained on them is a demo of the pipeline, not a waste sorter.

    python tools/gen_waste_data.py --out build/data/waste --per-class 150 --seed 1

Every image is drawn from its own random stream seeded by (seed, class, index), so the output
does not depend on the order of generation and re-running gives identical files.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Final

import cv2
import numpy as np

CLASSES: Final = ("cardboard", "glass", "metal", "paper", "plastic", "trash")
# TrashNet's class sizes, used by --trashnet-ratios to reproduce its imbalance (trash is rare).
TRASHNET_COUNTS: Final = {"cardboard": 403, "glass": 501, "metal": 410, "paper": 594, "plastic": 482, "trash": 137}
SIZE: Final = 128  # pixels, square; the tool resizes to the model's input

Rng = np.random.Generator


def background(rng: Rng, size: int) -> np.ndarray:
    """A light, slightly uneven table top with sensor noise (BGR uint8)."""
    base = rng.uniform(150, 235)
    tint = rng.uniform(-12, 12, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    gradient = (rng.uniform(-25, 25) * xx + rng.uniform(-25, 25) * yy)[..., None]
    img = base + tint[None, None, :] + gradient + rng.normal(0, 4, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def rotated_rect(center: tuple[float, float], w: float, h: float, angle: float) -> np.ndarray:
    pts = cv2.boxPoints(((center[0], center[1]), (w, h), angle))
    return np.round(pts).astype(np.int32)


def blend(img: np.ndarray, mask: np.ndarray, color: np.ndarray, alpha: float) -> None:
    """Paint ``color`` over ``img`` where ``mask`` is set, with opacity ``alpha`` (in place)."""
    m = (mask > 0)[..., None] * alpha
    img[:] = np.clip(img * (1 - m) + color[None, None, :] * m, 0, 255).astype(np.uint8)


def draw_glass(img: np.ndarray, rng: Rng) -> None:
    s = img.shape[0]
    palette = [(40, 140, 40), (20, 70, 130), (200, 210, 190), (30, 100, 150)]  # green, brown, clear, amber
    color = np.array(palette[rng.integers(len(palette))], np.float32) + rng.uniform(-15, 15, 3)
    mask = np.zeros(img.shape[:2], np.uint8)
    cx, cy = rng.uniform(0.35, 0.65) * s, rng.uniform(0.4, 0.6) * s
    bw, bh = rng.uniform(0.22, 0.32) * s, rng.uniform(0.4, 0.55) * s
    ang = rng.uniform(-40, 40)
    cv2.fillPoly(mask, [rotated_rect((cx, cy), bw, bh, ang)], 255)
    rad = math.radians(ang)
    nx, ny = cx + math.sin(-rad) * bh * 0.6, cy - math.cos(rad) * bh * 0.6
    cv2.fillPoly(mask, [rotated_rect((nx, ny), bw * 0.35, bh * 0.35, ang)], 255)
    blend(img, mask, color, rng.uniform(0.55, 0.8))
    # specular highlight: a thin bright stripe along the body
    hl = np.zeros_like(mask)
    off = bw * 0.25
    centre = (cx - off * math.cos(rad), cy - off * math.sin(rad))
    cv2.fillPoly(hl, [rotated_rect(centre, bw * 0.08, bh * 0.8, ang)], 255)
    blend(img, hl, np.array([250, 250, 250], np.float32), 0.7)


def draw_paper(img: np.ndarray, rng: Rng) -> None:
    s = img.shape[0]
    mask = np.zeros(img.shape[:2], np.uint8)
    cx, cy = rng.uniform(0.35, 0.65) * s, rng.uniform(0.35, 0.65) * s
    w, h, ang = rng.uniform(0.45, 0.7) * s, rng.uniform(0.55, 0.8) * s, rng.uniform(-30, 30)
    box = rotated_rect((cx, cy), w, h, ang)
    cv2.fillPoly(mask, [box], 255)
    blend(img, mask, np.array([248, 248, 245], np.float32) - rng.uniform(0, 20), 1.0)
    # lines of "text"
    rad = math.radians(ang)
    for k in range(rng.integers(5, 10)):
        t = -0.35 + k * 0.08
        px, py = cx - math.sin(rad) * t * h, cy + math.cos(rad) * t * h
        half = w * rng.uniform(0.2, 0.38)
        p0 = (int(px - math.cos(rad) * half), int(py - math.sin(rad) * half))
        p1 = (int(px + math.cos(rad) * half), int(py + math.sin(rad) * half))
        shade = int(rng.uniform(40, 110))
        cv2.line(img, p0, p1, (shade, shade, shade), 1, cv2.LINE_AA)
    cv2.polylines(img, [box], True, (170, 170, 170), 1, cv2.LINE_AA)


def draw_cardboard(img: np.ndarray, rng: Rng) -> None:
    s = img.shape[0]
    mask = np.zeros(img.shape[:2], np.uint8)
    cx, cy = rng.uniform(0.35, 0.65) * s, rng.uniform(0.35, 0.65) * s
    w, h, ang = rng.uniform(0.5, 0.8) * s, rng.uniform(0.45, 0.75) * s, rng.uniform(-35, 35)
    box = rotated_rect((cx, cy), w, h, ang)
    cv2.fillPoly(mask, [box], 255)
    brown = np.array([60, 120, 170], np.float32) + rng.uniform(-20, 20, 3)
    blend(img, mask, brown, 1.0)
    # corrugation: parallel darker lines inside the box
    lines = np.zeros_like(img)
    rad = math.radians(ang + 90)
    step = rng.uniform(3, 6)
    for t in np.arange(-s, s, step):
        px, py = cx + math.cos(rad + math.pi / 2) * t, cy + math.sin(rad + math.pi / 2) * t
        p0 = (int(px - math.cos(rad) * s), int(py - math.sin(rad) * s))
        p1 = (int(px + math.cos(rad) * s), int(py + math.sin(rad) * s))
        cv2.line(lines, p0, p1, (1, 1, 1), 1)
    dark = (lines[..., 0] > 0) & (mask > 0)
    img[dark] = (img[dark] * 0.8).astype(np.uint8)
    if rng.random() < 0.6:  # packing tape
        tape = np.zeros_like(mask)
        cv2.fillPoly(tape, [rotated_rect((cx, cy), w * 0.15, h, ang)], 255)
        blend(img, tape & mask, np.array([150, 190, 210], np.float32), 0.6)


def draw_plastic(img: np.ndarray, rng: Rng) -> None:
    s = img.shape[0]
    palette = [(200, 120, 30), (40, 40, 210), (230, 220, 200), (60, 200, 230), (180, 60, 160)]
    color = np.array(palette[rng.integers(len(palette))], np.float32) + rng.uniform(-20, 20, 3)
    mask = np.zeros(img.shape[:2], np.uint8)
    cx, cy = rng.uniform(0.35, 0.65) * s, rng.uniform(0.35, 0.65) * s
    ax, ay = rng.uniform(0.15, 0.3) * s, rng.uniform(0.25, 0.4) * s
    ang = rng.uniform(0, 180)
    cv2.ellipse(mask, (int(cx), int(cy)), (int(ax), int(ay)), ang, 0, 360, 255, -1)
    blend(img, mask, color, rng.uniform(0.6, 0.85))
    # ridges of a bottle / crinkles of a bag: bright arcs
    for _ in range(rng.integers(3, 7)):
        r = int(rng.uniform(0.3, 1.0) * min(ax, ay))
        start = rng.uniform(0, 360)
        cv2.ellipse(img, (int(cx), int(cy)), (r, int(r * rng.uniform(0.3, 1.0))), ang, start, start + 90,
                    (245, 245, 245), 1, cv2.LINE_AA)
    cap = (int(cx + math.cos(math.radians(ang + 90)) * ay), int(cy + math.sin(math.radians(ang + 90)) * ay))
    cv2.circle(img, cap, int(s * 0.05), tuple(int(c) for c in rng.uniform(0, 255, 3)), -1)


def draw_metal(img: np.ndarray, rng: Rng) -> None:
    s = img.shape[0]
    cx, cy = rng.uniform(0.38, 0.62) * s, rng.uniform(0.38, 0.62) * s
    w, h, ang = rng.uniform(0.25, 0.38) * s, rng.uniform(0.4, 0.6) * s, rng.uniform(-60, 60)
    # a can: a cylinder shaded across its width (metallic banding), drawn unrotated then rotated
    can = np.zeros((s, s, 3), np.float32)
    mask = np.zeros((s, s), np.uint8)
    x0, x1 = int(cx - w / 2), int(cx + w / 2)
    y0, y1 = int(cy - h / 2), int(cy + h / 2)
    xs = np.linspace(0, 1, max(1, x1 - x0))
    phase = rng.uniform(0, 1)
    band = 120 + 100 * np.abs(np.sin((xs * 2.5 + phase) * math.pi)) ** 3
    tint = rng.uniform(0.85, 1.05, 3)
    can[y0:y1, x0:x1] = band[None, :, None] * tint[None, None, :]
    mask[y0:y1, x0:x1] = 255
    cv2.ellipse(mask, (int(cx), y0), (int(w / 2), int(w / 6)), 0, 0, 360, 255, -1)
    cv2.ellipse(can, (int(cx), y0), (int(w / 2), int(w / 6)), 0, 0, 360, (190, 190, 195), -1)
    cv2.ellipse(can, (int(cx), y0), (int(w / 5), int(w / 15)), 0, 0, 360, (90, 90, 95), -1)
    rot = cv2.getRotationMatrix2D((cx, cy), ang, 1.0)
    can = cv2.warpAffine(can, rot, (s, s))
    mask = cv2.warpAffine(mask, rot, (s, s))
    m = (mask > 0)[..., None]
    img[:] = np.where(m, np.clip(can, 0, 255), img).astype(np.uint8)


def draw_trash(img: np.ndarray, rng: Rng) -> None:
    """Mixed clutter: several small dark irregular pieces, food-like stains."""
    s = img.shape[0]
    for _ in range(rng.integers(4, 9)):
        c = np.array([rng.uniform(0.2, 0.8) * s, rng.uniform(0.2, 0.8) * s])
        n = rng.integers(5, 9)
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = rng.uniform(0.03, 0.12, n) * s
        pts = np.stack([c[0] + np.cos(angles) * radii, c[1] + np.sin(angles) * radii], 1).astype(np.int32)
        color = tuple(int(v) for v in rng.uniform(20, 140, 3))
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA)
    for _ in range(rng.integers(2, 5)):  # stains
        cv2.circle(img, (int(rng.uniform(0, s)), int(rng.uniform(0, s))), int(rng.uniform(2, 8)),
                   (int(rng.uniform(30, 80)), int(rng.uniform(60, 110)), int(rng.uniform(80, 140))), -1)


DRAW: Final[dict[str, Callable[[np.ndarray, Rng], None]]] = {
    "cardboard": draw_cardboard,
    "glass": draw_glass,
    "metal": draw_metal,
    "paper": draw_paper,
    "plastic": draw_plastic,
    "trash": draw_trash,
}


def render(label: str, rng: Rng, size: int = SIZE) -> np.ndarray:
    """One BGR uint8 image of ``label``: background, object, then camera effects."""
    img = background(rng, size)
    DRAW[label](img, rng)
    gain = rng.uniform(0.75, 1.2)  # exposure
    img = np.clip(img.astype(np.float32) * gain + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.3, 1.0))
    return img


README: Final = """# SYNTHETIC waste images (not photographs)

Rendered by `tools/gen_waste_data.py --per-class {per_class} --seed {seed}{ratios}` in edge-agent.
Each image is a drawn shape and texture standing in for one TrashNet class
(cardboard, glass, metal, paper, plastic, trash) on a table-like background.
They exist to exercise and demonstrate the conversion pipeline offline; a model trained on them
says nothing about real waste photos. Regenerate instead of editing: the output is deterministic.
"""


def counts(per_class: int, trashnet_ratios: bool) -> dict[str, int]:
    if not trashnet_ratios:
        return dict.fromkeys(CLASSES, per_class)
    top = max(TRASHNET_COUNTS.values())
    return {c: max(2, round(per_class * TRASHNET_COUNTS[c] / top)) for c in CLASSES}


def generate(out: Path, per_class: int, seed: int, trashnet_ratios: bool = False, size: int = SIZE) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for ci, label in enumerate(CLASSES):
        folder = out / label
        folder.mkdir(exist_ok=True)
        for i in range(counts(per_class, trashnet_ratios)[label]):
            rng = np.random.default_rng([seed, ci, i])
            cv2.imwrite(str(folder / f"{label}_{i:04d}.png"), render(label, rng, size))
    ratios = " --trashnet-ratios" if trashnet_ratios else ""
    (out / "README.md").write_text(README.format(per_class=per_class, seed=seed, ratios=ratios), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (one sub-folder per class)")
    p.add_argument("--per-class", type=int, default=150, help="images per class (the largest class)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--size", type=int, default=SIZE, help="image side in pixels")
    p.add_argument("--trashnet-ratios", action="store_true", help="reproduce TrashNet's class imbalance")
    a = p.parse_args(argv)
    generate(a.out, a.per_class, a.seed, a.trashnet_ratios, a.size)
    print(f"wrote synthetic waste images to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
