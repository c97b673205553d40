"""The model manifest: a JSON file beside each model (``waste.tflite`` + ``waste.json``).

It carries everything the agent needs to feed a model exactly as it was trained — labels,
input spec, normalisation — plus provenance, metrics and the sha256 of the ``.tflite`` so a
swapped or truncated model is caught before its bytes reach the interpreter. The conversion tool
writes it (:func:`write`), the agent reads and verifies it (:func:`load`, :func:`verify_sha256`).
The format is a public contract, documented in README.md; extend it only additively.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from .errors import ModelError

SCHEMA: Final = "edge-agent/manifest@1"
RESIZE_MODES: Final = ("stretch", "center_crop", "letterbox")
COLOR_ORDERS: Final = ("RGB", "BGR", "GRAY")
OUTPUT_PROBABILITIES: Final = "probabilities"
OUTPUT_LOGITS: Final = "logits"
OUTPUT_KINDS: Final = (OUTPUT_PROBABILITIES, OUTPUT_LOGITS)


@dataclasses.dataclass(frozen=True)
class ImageInput:
    """How a camera frame becomes the model's input: real = (pixel - mean) / std, per channel."""

    width: int
    height: int
    channels: int = 3
    color_order: str = "RGB"
    resize: str = "stretch"
    mean: tuple[float, ...] = (127.5, 127.5, 127.5)
    std: tuple[float, ...] = (127.5, 127.5, 127.5)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "image", **dataclasses.asdict(self), "mean": list(self.mean), "std": list(self.std)}


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A parsed manifest. ``input`` is an :class:`ImageInput` for image models; for audio models
    ``audio`` holds the front-end parameters (sample rate, window, hop, mel bins) as a mapping."""

    name: str
    task: str
    labels: tuple[str, ...]
    sha256: str
    model_file: str
    input: ImageInput | None = None
    audio: Mapping[str, Any] | None = None
    series: Mapping[str, Any] | None = None  # a sensor model's front end (edge_agent/preprocess/series.py)
    provenance: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # What the model's output holds: "probabilities" (a softmax; every manifest before this field)
    # or "logits" (the engine applies the softmax in float32; see edge_agent/convert/logits.py).
    output: str = OUTPUT_PROBABILITIES

    @property
    def kind(self) -> str:
        if self.series is not None:
            return "series"
        return "audio" if self.audio is not None else "image"

    @property
    def logits(self) -> bool:
        """Whether the engine must apply the softmax itself (what ``Engine.load(logits=)`` takes)."""
        return self.output == OUTPUT_LOGITS

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema": SCHEMA,
            "name": self.name,
            "task": self.task,
            "kind": self.kind,
            "model_file": self.model_file,
            "sha256": self.sha256,
            "labels": list(self.labels),
            "input": self.input.to_json() if self.input else (
                {"kind": "series", **dict(self.series)} if self.series is not None
                else {"kind": "audio", **dict(self.audio or {})}),
            "provenance": dict(self.provenance),
            "metrics": dict(self.metrics),
        }
        if self.output != OUTPUT_PROBABILITIES:  # manifests without it keep their old bytes
            data["output"] = self.output
        data.update(self.extra)
        return data


def manifest_path_for(model_path: Path) -> Path:
    """``models/waste.tflite`` → ``models/waste.json``."""
    return model_path.with_suffix(".json")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _need(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise ModelError(f"{where}: missing field '{key}'")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ModelError(f"{where}: field '{key}' has the wrong type ({type(value).__name__})")
    return value


def _floats(value: Any, n: int, field: str, where: str) -> tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return (float(value),) * n
    if (isinstance(value, Sequence) and len(value) == n
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        return tuple(float(v) for v in value)
    raise ModelError(f"{where}: field 'input.{field}' must be a finite number or a list of {n} finite numbers")


def parse_image_input(data: Mapping[str, Any], where: str) -> ImageInput:
    width = _need(data, "width", int, where)
    height = _need(data, "height", int, where)
    channels = int(data.get("channels", 3))
    if not (8 <= width <= 4096 and 8 <= height <= 4096) or channels not in (1, 3):
        raise ModelError(f"{where}: input size {width}x{height}x{channels} is not a usable image size")
    color = str(data.get("color_order", "RGB")).upper()
    if color not in COLOR_ORDERS:
        raise ModelError(f"{where}: field 'input.color_order' must be one of {', '.join(COLOR_ORDERS)}")
    resize = str(data.get("resize", "stretch"))
    if resize not in RESIZE_MODES:
        raise ModelError(f"{where}: field 'input.resize' must be one of {', '.join(RESIZE_MODES)}")
    mean = _floats(data.get("mean", 127.5), channels, "mean", where)
    std = _floats(data.get("std", 127.5), channels, "std", where)
    if any(s == 0 for s in std):
        raise ModelError(f"{where}: field 'input.std' must not be zero")
    return ImageInput(width, height, channels, color, resize, mean, std)


def parse(data: Any, where: str) -> Manifest:
    """Validate a decoded manifest; every error names ``where`` (the file) and the field."""
    if not isinstance(data, dict):
        raise ModelError(f"{where}: not a JSON object")
    labels = _need(data, "labels", list, where)
    if not labels or not all(isinstance(x, str) and x for x in labels):
        raise ModelError(f"{where}: field 'labels' must be a non-empty list of names")
    sha = _need(data, "sha256", str, where).lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ModelError(f"{where}: field 'sha256' is not a sha256 hex digest")
    inp = _need(data, "input", dict, where)
    kind = inp.get("kind", data.get("kind", "image"))
    image = parse_image_input(inp, where) if kind == "image" else None
    audio = {k: v for k, v in inp.items() if k != "kind"} if kind == "audio" else None
    series = {k: v for k, v in inp.items() if k != "kind"} if kind == "series" else None
    if image is None and audio is None and series is None:
        raise ModelError(f"{where}: field 'input.kind' must be 'image', 'audio' or 'series'")
    output = data.get("output", OUTPUT_PROBABILITIES)
    if output not in OUTPUT_KINDS:
        raise ModelError(f"{where}: field 'output' must be one of {', '.join(OUTPUT_KINDS)} (got {output!r})")
    known = {"schema", "name", "task", "kind", "model_file", "sha256", "labels", "input", "provenance", "metrics",
             "output"}
    return Manifest(
        name=str(data.get("name", Path(where).stem)),
        task=str(data.get("task", "custom")),
        labels=tuple(labels),
        sha256=sha,
        model_file=str(data.get("model_file", Path(where).with_suffix(".tflite").name)),
        input=image,
        audio=audio,
        series=series,
        provenance=dict(data.get("provenance") or {}),
        metrics=dict(data.get("metrics") or {}),
        extra={k: v for k, v in data.items() if k not in known},
        output=output,
    )


def load(path: Path) -> Manifest:
    """Read and validate a manifest file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"manifest {path}: file not found") from None
    except OSError as e:
        raise ModelError(f"manifest {path}: cannot read ({e.strerror})") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        raise ModelError(f"manifest {path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    except _NonFinite as e:
        raise ModelError(f"manifest {path}: {e} is not a number JSON allows (NaN and Infinity are refused)") from None
    except RecursionError:
        raise ModelError(f"manifest {path}: nested too deeply to be a manifest") from None
    return parse(data, f"manifest {path}")


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    """``json.loads`` accepts NaN, Infinity and -Infinity by default; a manifest must not."""
    raise _NonFinite(name)


def verify_sha256(model_path: Path, manifest: Manifest) -> None:
    """Refuse a model whose bytes are not the ones the manifest describes."""
    actual = sha256_file(model_path)
    if actual != manifest.sha256:
        raise ModelError(
            f"model {model_path}: sha256 {actual[:12]}… does not match its manifest ({manifest.sha256[:12]}…); "
            "the file was changed or truncated after conversion"
        )


def write(manifest: Manifest, path: Path) -> None:
    """Write a manifest atomically (the agent may be reading the old one)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_labels(path: Path) -> tuple[str, ...]:
    """A ``labels.txt``: one label per line; ``0 cat`` / ``0: cat`` (Coral's format) also accepted."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ModelError(f"labels file {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"labels file {path}: cannot read ({e})") from None
    labels: list[str] = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        head, _, rest = line.partition(" ")
        if head.rstrip(":").isdigit() and rest.strip():
            line = rest.strip()
        labels.append(line)
    if not labels:
        raise ModelError(f"labels file {path}: no labels in it")
    return tuple(labels)
