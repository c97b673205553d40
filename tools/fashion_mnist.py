"""Fashion-MNIST (Debian's ``dataset-fashion-mnist``, MIT) as image folders for ``edge-agent-convert``.

    python tools/fashion_mnist.py OUT [--per-class 20 50 200] [--test 2000]

writes ``OUT/train<N>/<class>/*.png`` (the first N photos of each class in the official training
set, so the 50 set holds the 20 set) and ``OUT/test/<class>/*.png`` (the first ``--test`` photos of
the official test set; 0: all 10,000). The photos stay 28x28 grey: the conversion tool upscales
them and turns grey into RGB through the agent's own preprocessing, as it would a user's photos.
Used for the "ImageNet start vs from scratch" table in docs/CONVERT.md.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path
from typing import Final

import cv2
import numpy as np

SOURCE: Final = Path("/usr/share/datasets/fashion-mnist")
CLASSES: Final = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip): unsigned-byte images (N, 28, 28) or labels (N,)."""
    raw = gzip.decompress(path.read_bytes())
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def write(folder: Path, images: np.ndarray, labels: np.ndarray, prefix: str) -> None:
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        cv2.imwrite(str(folder / CLASSES[label] / f"{prefix}{i:05d}.png"), img)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--per-class", type=int, nargs="+", default=[20, 50, 200])
    p.add_argument("--test", type=int, default=2000, help="first N official test photos (0: all 10,000)")
    a = p.parse_args()
    if not SOURCE.is_dir():
        raise SystemExit(f"{SOURCE}: not found; apt-get install dataset-fashion-mnist")
    x = read_idx(SOURCE / "train-images-idx3-ubyte.gz")
    y = read_idx(SOURCE / "train-labels-idx1-ubyte.gz")
    for n in a.per_class:
        keep = np.concatenate([np.flatnonzero(y == c)[:n] for c in range(len(CLASSES))])
        write(a.out / f"train{n}", x[keep], y[keep], "train")
    xt = read_idx(SOURCE / "t10k-images-idx3-ubyte.gz")
    yt = read_idx(SOURCE / "t10k-labels-idx1-ubyte.gz")
    n = a.test or len(xt)
    write(a.out / "test", xt[:n], yt[:n], "test")
    print(f"wrote {a.out}: train {a.per_class} per class, test {n} official test photos")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
