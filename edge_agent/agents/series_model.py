"""A series (sensor) model, loaded and checked once: :func:`load` and :class:`SeriesModel`.

:func:`load` refuses, with one line naming the field, a manifest that is not a series one, a
front end the model's input does not match, a label count that does not match the outputs, and
an anomaly model without a calibrated threshold. :meth:`SeriesModel.infer` is the one inference
the agent and the conversion tool's evaluation both run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config, effective_threads
from ..engine import Engine
from ..errors import ModelError
from ..manifest import Manifest
from ..preprocess import series
from ..series_contract import ANOMALY_LABELS  # the labels of every anomaly model (the hub relies on them)

logger = logging.getLogger(__name__)



@dataclasses.dataclass(frozen=True)
class AnomalySpec:
    """``manifest["anomaly"]``: the score is the reconstruction's mean squared error on the scaled
    input; above ``threshold`` (calibrated on normal validation windows) the window is anomalous."""

    threshold: float
    score: str = "reconstruction_mse"
    calibration: str = ""

    @classmethod
    def from_mapping(cls, data: Any, where: str) -> AnomalySpec:
        if not isinstance(data, Mapping):
            raise ModelError(f"{where}: field 'anomaly' (with a calibrated 'threshold') is missing for an "
                             "anomaly model")
        thr = data.get("threshold")
        if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not math.isfinite(thr) or thr <= 0:
            raise ModelError(f"{where}: field 'anomaly.threshold' must be a positive number (got {thr!r})")
        score = str(data.get("score", "reconstruction_mse"))
        if score != "reconstruction_mse":
            raise ModelError(f"{where}: field 'anomaly.score' must be 'reconstruction_mse' (got {score!r})")
        return cls(float(thr), score, str(data.get("calibration", "")))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SeriesModel:
    engine: Engine
    spec: series.SeriesSpec
    labels: tuple[str, ...]
    name: str
    sha256: str
    manifest: Manifest
    anomaly: AnomalySpec | None = None

    def __post_init__(self) -> None:
        scale, zero = self.engine.input_quant
        self._fill: Any = series.make_fill(self.spec, self.engine.input_dtype, scale, zero)

    def infer(self, window: np.ndarray) -> np.ndarray:
        """One (W, C) window of raw samples → class scores, or for an anomaly model a single
        value: the mean squared error between the input the model saw and its reconstruction."""
        out = self.engine.run(lambda view: self._fill(window, view))
        if self.anomaly is None:
            return out
        raw = self.engine.interpreter.get_tensor(self.engine.input_index)
        if self.engine.input_dtype == np.float32:
            seen = raw.astype(np.float32)
        else:
            seen = series.dequantize(raw, *self.engine.input_quant)
        return series.reconstruction_error(seen[None], out[None]).astype(np.float32)


def load(path: Path, manifest: Manifest, config: Config | None = None, threads: int | None = None) -> SeriesModel:
    """The manifest's series checks (cheap) first, then the interpreter, built once and warmed up."""
    where = f"manifest {path.with_suffix('.json')}"
    if manifest.kind != "series" or manifest.series is None:
        raise ModelError(f"{where}: it describes an {manifest.kind} model, not a series (sensor) model")
    spec = series.SeriesSpec.from_mapping(manifest.series, where)
    anomaly = AnomalySpec.from_mapping(manifest.extra.get("anomaly"), where) if spec.output == "anomaly" else None
    if anomaly is not None and tuple(manifest.labels) != ANOMALY_LABELS:
        raise ModelError(f"{where}: field 'labels' of an anomaly model must be {list(ANOMALY_LABELS)}")
    if not path.exists():
        raise ModelError(f"model {path}: file not found")
    engine = Engine.load(
        path,
        threads=threads if threads is not None else (effective_threads(config) if config else 1),
        edgetpu=config.model.edgetpu if config else None,
        edgetpu_fallback=config.model.edgetpu_fallback if config else False,
        expected_sha256=manifest.sha256,
        kind="series",
        logits=manifest.logits,
    )
    shape = tuple(engine.input_shape)
    if shape != (1, *spec.shape):
        raise ModelError(f"{where}: field 'input': the front end makes {list(spec.shape)} ({spec.window} samples "
                         f"of {len(spec.channels)} channels, {spec.features}) but the model's input is {list(shape)}")
    if anomaly is None and engine.num_classes != len(manifest.labels):
        raise ModelError(f"{where}: field 'labels': {len(manifest.labels)} labels but the model has "
                         f"{engine.num_classes} outputs")
    if anomaly is not None and engine.num_classes != int(np.prod(spec.shape)):
        raise ModelError(f"{where}: field 'input.output' is 'anomaly' but the model's {engine.num_classes} outputs "
                         f"are not a reconstruction of its {int(np.prod(spec.shape))} inputs")
    logger.info("model %s (%s, %s, %s input, %s channels at %g Hz, window %d every %d)", path, engine.backend.name,
                engine.delegate, engine.input_dtype, ",".join(spec.names), spec.rate_hz, spec.window, spec.stride)
    return SeriesModel(engine, spec, tuple(manifest.labels), manifest.name, manifest.sha256, manifest, anomaly)
