"""Build the reference models the benchmark compares against: MobileNet v1 1.0-224, float and full int8.

Why this exists: published Pi and Coral figures (TFLite's benchmark_model tables, Coral's model
zoo) are quoted for MobileNet v1 1.0-224, so that is the yardstick for "how fast is this
machine" and "how close to the bare interpreter is the agent". Nothing may be downloaded, so the
network is built by ``keras.applications.MobileNet(weights=None)`` — random weights, the same
graph, operators and multiply-adds (≈ 569 M) as the published model — and converted here.
Random weights make accuracy meaningless but leave the speed unchanged: the kernels do the same
work whatever the numbers are.

int8 calibration uses synthetic images (smooth colour gradients plus noise, normalised to
[-1, 1]): real photos are not needed to fix activation ranges for a speed test.

Output (git-ignored; never commit these, the int8 model is ~4 MB and the float one ~17 MB)::

    .cache/bench-models/mobilenet_v1_1.0_224_float.tflite  + .json manifest
    .cache/bench-models/mobilenet_v1_1.0_224_int8.tflite   + .json manifest

Usage: ``python tools/make_bench_models.py [--out DIR] [--force] [--calibration N]``
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np

REPO: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_agent import manifest as manifest_mod  # noqa: E402
from edge_agent.manifest import ImageInput, Manifest  # noqa: E402

DEFAULT_OUT: Final = REPO / ".cache" / "bench-models"
RESOLUTION: Final = 224  # pixels, the published v1 1.0-224 configuration
ALPHA: Final = 1.0
CLASSES: Final = 1000  # ImageNet's head: keeps params and MACs equal to the published model
CALIBRATION_IMAGES: Final = 32  # enough to fix activation ranges; conversion time grows linearly
SEED: Final = 0
NAME: Final = f"mobilenet_v1_{ALPHA:.1f}_{RESOLUTION}"

logger = logging.getLogger("make_bench_models")


def model_paths(out: Path) -> dict[str, Path]:
    """Where each precision is written: {"float": ..., "int8": ...}."""
    return {precision: out / f"{NAME}_{precision}.tflite" for precision in ("float", "int8")}


def synthetic_images(n: int, size: int, seed: int = SEED) -> Iterator[np.ndarray]:
    """Normalised float images in [-1, 1]: per-image random colour gradients plus noise, so
    calibration sees spatial structure and a realistic spread rather than pure white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    for _ in range(n):
        a, b, c = rng.uniform(-1, 1, (3, 3)).astype(np.float32)
        img = a * xx[..., None] + b * yy[..., None] + c
        img += rng.normal(0, 0.2, (size, size, 3)).astype(np.float32)
        yield np.clip(img, -1, 1)[None].astype(np.float32)


def _keras_model(tf: Any) -> Any:
    tf.keras.utils.set_random_seed(SEED)
    return tf.keras.applications.MobileNet(
        input_shape=(RESOLUTION, RESOLUTION, 3), alpha=ALPHA, weights=None, classes=CLASSES,
        include_top=True, classifier_activation="softmax",
    )


def convert(model: Any, tf: Any, precision: str, calibration: int) -> bytes:
    """Keras model → .tflite bytes; ``int8`` is full integer with int8 input and output, the
    form the agent and the Edge TPU compiler take."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x] for x in synthetic_images(calibration, RESOLUTION))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    data: bytes = converter.convert()
    return data


def write_manifest(path: Path, precision: str, calibration: int) -> None:
    """A manifest beside the model so ``edge-agent --model`` and ``bench.py pipeline`` load it
    like any converted model (1000 placeholder labels; no accuracy: the weights are random)."""
    manifest = Manifest(
        name=path.stem,
        task="custom",
        labels=tuple(f"class_{i:04d}" for i in range(CLASSES)),
        sha256=manifest_mod.sha256_file(path),
        model_file=path.name,
        input=ImageInput(RESOLUTION, RESOLUTION),
        provenance={
            "made_by": "tools/make_bench_models.py",
            "arch": "mobilenet_v1", "alpha": ALPHA, "resolution": RESOLUTION,
            "weights": "random (speed reference only)", "precision": precision,
            "calibration": f"{calibration} synthetic images" if precision == "int8" else None,
        },
    )
    manifest_mod.write(manifest, manifest_mod.manifest_path_for(path))


def build(out: Path, force: bool = False, calibration: int = CALIBRATION_IMAGES) -> dict[str, Path]:
    """Build whatever is missing (or everything with ``force``); returns the model paths."""
    paths = model_paths(out)
    todo = {p: path for p, path in paths.items() if force or not path.exists()}
    if not todo:
        logger.info("up to date: %s", ", ".join(str(p) for p in paths.values()))
        return paths
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # lazy: only this tool and the conversion package need TensorFlow

    tf.get_logger().setLevel(logging.ERROR)
    out.mkdir(parents=True, exist_ok=True)
    model = _keras_model(tf)
    for precision, path in todo.items():
        started = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = convert(model, tf, precision, calibration)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        write_manifest(path, precision, calibration)
        logger.info("wrote %s (%.1f MB) in %.0f s", path, len(data) / 1e6, time.monotonic() - started)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--force", action="store_true", help="rebuild even if the files exist")
    p.add_argument("--calibration", type=int, default=CALIBRATION_IMAGES, help="synthetic calibration images")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in build(args.out, args.force, args.calibration).values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
