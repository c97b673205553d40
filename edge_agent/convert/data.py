"""Image folders: scan (one sub-folder per class), split deterministically, load through the agent's
own preprocessing.

Why here and not in TensorFlow's ``image_dataset_from_directory``: images must be decoded and
resized exactly as the agent does it (:func:`edge_agent.preprocess.image.resize`), the split must
be reproducible from a seed written into the manifest so ``evaluate`` can find the same held-out
images later, and bad folders must fail with one line that names the folder. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import cv2
import numpy as np

from ..errors import ConfigError
from ..manifest import ImageInput
from ..preprocess import image as image_pre

IMAGE_SUFFIXES: Final = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff")


@dataclasses.dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A labelled image folder: class names (sorted, as Keras' directory loaders order them)."""

    root: Path
    labels: tuple[str, ...]
    samples: tuple[Sample, ...]

    def counts(self) -> list[int]:
        return [sum(1 for s in self.samples if s.label == i) for i in range(len(self.labels))]


@dataclasses.dataclass(frozen=True)
class Split:
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    test: tuple[Sample, ...]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def is_labelled(root: Path) -> bool:
    """A folder with class sub-folders (labelled) rather than loose images (calibration only)."""
    return root.is_dir() and bool(_class_dirs(root))


def scan(root: Path) -> Dataset:
    """Read a class-per-folder layout; refuse empty classes and single-class sets."""
    if not root.exists():
        raise ConfigError(f"data folder {root}: not found")
    if not root.is_dir():
        raise ConfigError(f"data folder {root}: not a folder")
    dirs = _class_dirs(root)
    if not dirs:
        raise ConfigError(f"data folder {root}: no class sub-folders (expected {root}/<class>/<image>.jpg)")
    samples: list[Sample] = []
    for index, folder in enumerate(dirs):
        images = _images_in(folder)
        if not images:
            raise ConfigError(
                f"data folder {root}: class folder '{folder.name}' has no images "
                f"({', '.join(IMAGE_SUFFIXES[:3])} ...); add some or remove the folder"
            )
        samples.extend(Sample(p, index) for p in images)
    if len(dirs) < 2:
        raise ConfigError(
            f"data folder {root}: only one class ('{dirs[0].name}'); a classifier needs at least two class folders"
        )
    return Dataset(root, tuple(d.name for d in dirs), tuple(samples))


def scan_unlabelled(root: Path) -> list[Path]:
    """Loose images for calibration only (no accuracy can be reported on them)."""
    if not root.is_dir():
        raise ConfigError(f"calibration folder {root}: not found or not a folder")
    images = _images_in(root)
    if not images:
        raise ConfigError(f"calibration folder {root}: no images and no class sub-folders in it")
    return images


def split(ds: Dataset, seed: int, val_fraction: float, test_fraction: float) -> Split:
    """A stratified split that depends only on (file names, seed, fractions).

    Each class is shuffled with its own stream ``default_rng([seed, class_index])`` so adding
    images to one class does not reshuffle the others. Every class with at least three images
    keeps at least one image in each non-empty split, so small classes are still tested.
    """
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise ConfigError(
            f"--val-split {val_fraction} and --test-split {test_fraction} must be in [0, 1) and sum to less than 1"
        )
    train: list[Sample] = []
    val: list[Sample] = []
    test: list[Sample] = []
    for index in range(len(ds.labels)):
        items = sorted((s for s in ds.samples if s.label == index), key=lambda s: s.path.name)
        order = np.random.default_rng([seed, index]).permutation(len(items))
        items = [items[i] for i in order]
        n = len(items)
        n_test = _part(n, test_fraction)
        n_val = _part(n, val_fraction)
        if n - n_test - n_val < 1:
            raise ConfigError(
                f"data folder {ds.root}: class '{ds.labels[index]}' has only {n} image(s), "
                "too few to split into train/val/test; add images or lower --val-split/--test-split"
            )
        test.extend(items[:n_test])
        val.extend(items[n_test : n_test + n_val])
        train.extend(items[n_test + n_val :])
    return Split(tuple(train), tuple(val), tuple(test))


def _part(n: int, fraction: float) -> int:
    if fraction <= 0:
        return 0
    return max(1, round(n * fraction)) if n >= 3 else 0


def class_weights(labels: Sequence[int] | np.ndarray, num_classes: int) -> dict[int, float]:
    """Inverse-frequency weights, ``n / (k * n_c)``: a rare class (TrashNet's 137 'trash' against
    594 'paper') counts as much in the loss as a common one. Mean weight over samples is 1."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes)
    total = float(counts.sum())
    return {i: (total / (num_classes * c) if c else 0.0) for i, c in enumerate(counts.tolist())}


def read_image(path: Path) -> np.ndarray | None:
    """BGR uint8 like ``cv2.imread``, but via ``imdecode`` so odd paths work and a corrupt file
    returns None without OpenCV printing warnings."""
    try:
        raw = np.fromfile(str(path), np.uint8)
    except OSError:
        return None
    if raw.size == 0:
        return None
    return cv2.imdecode(raw, cv2.IMREAD_COLOR)


def load_images(paths: Sequence[Path], spec: ImageInput) -> np.ndarray:
    """uint8 (N, H, W, C) in the model's colour order and size, exactly as the agent resizes frames.
    Any unreadable file is an error naming it: silently dropping images skews a split."""
    out = np.empty((len(paths), spec.height, spec.width, spec.channels), np.uint8)
    bad: list[Path] = []
    for i, path in enumerate(paths):
        bgr = read_image(path)
        if bgr is None:
            bad.append(path)
            continue
        out[i] = image_pre.resize(bgr, spec)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ConfigError(f"image {bad[0]} cannot be read: corrupt or not an image{more}; fix or remove it")
    return out


def normalize(images: np.ndarray, spec: ImageInput) -> np.ndarray:
    """float32 (x - mean) / std through the shared table: what the float model sees."""
    return np.asarray(image_pre.normalize(images, spec), np.float32)


@dataclasses.dataclass(frozen=True)
class DecodeAugment:
    """What two decoders, encoders or cameras do to the same picture, drawn per training image.

    The same frame decoded by two FFmpeg builds differs by 1-2 grey levels on most pixels, a JPEG
    camera or stream adds block artefacts at its own quality, and white balance shifts colours a
    little. A model that has only seen pixel-perfect renders moves its scores for all of that; this
    teaches it not to. Applied to the resized uint8 image (the model's input), after the geometric
    augmentation: a JPEG re-encode at a random quality (with probability ``jpeg_p``), a per-channel
    gain and offset (colour jitter), then uniform integer noise in [-noise, +noise] grey levels.
    """

    noise: int = 3  # grey levels, uniform in [-noise, +noise] on every pixel and channel
    jpeg_p: float = 0.5  # share of images re-encoded as JPEG
    jpeg_quality: tuple[int, int] = (60, 95)  # inclusive range of the JPEG quality
    gain: float = 0.03  # per-channel gain in [1 - gain, 1 + gain]
    offset: float = 3.0  # per-channel offset in [-offset, +offset] grey levels

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def apply(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """uint8 (N, H, W, C) in model colour order → the augmented copy (same shape and type)."""
        out = np.empty_like(images)
        channels = images.shape[-1]
        for i, img in enumerate(images):
            work = img
            if self.jpeg_p > 0 and rng.random() < self.jpeg_p:
                quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
                work = _jpeg(work, quality)
            gain = rng.uniform(1 - self.gain, 1 + self.gain, channels)
            offset = rng.uniform(-self.offset, self.offset, channels)
            noise = rng.integers(-self.noise, self.noise + 1, work.shape) if self.noise else 0
            out[i] = np.clip(np.rint(work * gain + offset) + noise, 0, 255).astype(np.uint8)
        return out


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode one RGB (or grey) uint8 image as JPEG at ``quality``."""
    colour = img.shape[-1] == 3
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if colour else img
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return img
    dec = cv2.imdecode(buf, cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE)
    if dec is None:
        return img
    return cv2.cvtColor(dec, cv2.COLOR_BGR2RGB) if colour else dec.reshape(img.shape)


def to_pixels(x: np.ndarray, spec: ImageInput) -> np.ndarray:
    """The inverse of :func:`normalize`: float32 model input → uint8 pixels (rounded, clipped)."""
    pixels = x * np.asarray(spec.std, np.float32) + np.asarray(spec.mean, np.float32)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
