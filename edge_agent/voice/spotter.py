"""The keyword model, loaded and checked once, and the sliding window that feeds it.

Two front ends, named by the manifest's ``input.frontend``: ``speech_embedding`` (the mel and
embedding models of :mod:`edge_agent.voice.embedding`, then the model as a small head on the last
embeddings: :class:`EmbeddingSpotter`) and ``log_mel`` (the first models, and any manifest that names
none: :class:`KeywordSpotter`). A model whose input does not fit its manifest's front end is
refused with one line, as is an unknown front end. :func:`make_spotter` picks the right one.

:func:`load_voice_model` refuses, with one line each, a model without a manifest (the front-end
parameters live only there), a manifest for an image model, a sha256 mismatch, an input shape
that does not match the front end, or a label count that does not match the outputs.

:class:`KeywordSpotter` keeps the last ``clip_ms`` of audio; every hop of ``stride_ms`` it
computes the log-mel of the whole window (≈0.5 ms in numpy, so no incremental bookkeeping that
could drift from what training saw), writes it quantized into the interpreter's input tensor,
invokes, and hands the posteriors to the :class:`~edge_agent.voice.recognizer.Recognizer`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .. import manifest as manifest_mod
from ..config import Config, effective_threads
from ..engine import Engine
from ..errors import ModelError
from ..manifest import Manifest
from ..preprocess import audio
from ..preprocess.audio import AudioSpec
from . import embedding as emb
from .embedding import EmbeddingSpec, FrontEnd
from .recognizer import NOT_COMMANDS, Command, Recognizer, RecognizerSettings

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class VoiceModel:
    engine: Engine
    labels: tuple[str, ...]
    spec: AudioSpec | EmbeddingSpec
    settings: RecognizerSettings
    name: str
    sha256: str
    manifest: Manifest
    front: FrontEnd | None = None  # the speech-embedding front end (None for log-mel models)

    @property
    def frontend(self) -> str:
        return emb.NAME if isinstance(self.spec, EmbeddingSpec) else emb.LOG_MEL


def recognizer_settings(manifest: Manifest, config: Config | None, where: str) -> RecognizerSettings:
    """The manifest's tuned settings; ``--threshold`` (or the config file's) wins when the user set
    it, for every command (the manifest's per-command thresholds are dropped then)."""
    try:
        settings = RecognizerSettings.from_mapping(manifest.extra.get("recognizer"))
    except (TypeError, ValueError) as e:
        raise ModelError(f"{where}: field 'recognizer': {e}") from None
    if config is not None and config.where("postprocess.threshold") != "default":
        settings = settings.with_threshold(config.postprocess.threshold)
    return settings


def load(path: Path, manifest: Manifest | None, config: Config | None) -> VoiceModel:
    """The audio checks on a manifest already read (cheap ones first), then the interpreter, built
    once and warmed up. The model loader (:mod:`edge_agent.loader`) calls this for ``kind: audio``."""
    manifest_path = manifest_mod.manifest_path_for(path)
    if manifest is None:
        raise ModelError(f"model {path}: no manifest {manifest_path.name} beside it; an audio model needs one "
                         "(it holds the front end's sample rate, window, hop and mel bins)")
    where = f"manifest {manifest_path}"
    if manifest.kind != "audio" or manifest.audio is None:
        raise ModelError(f"{where}: it describes an {manifest.kind} model, not an audio model")
    frontend = emb.frontend_of(manifest.audio)
    if frontend not in emb.FRONTENDS:
        raise ModelError(f"{where}: front end {frontend!r} is not one this agent has ({', '.join(emb.FRONTENDS)})")
    spec: AudioSpec | EmbeddingSpec = (EmbeddingSpec.from_mapping(manifest.audio, where) if frontend == emb.NAME
                                       else AudioSpec.from_mapping(manifest.audio, where))
    settings = recognizer_settings(manifest, config, where)
    if not path.exists():
        raise ModelError(f"model {path}: file not found")
    engine = Engine.load(
        path,
        threads=effective_threads(config) if config else 1,
        edgetpu=config.model.edgetpu if config else None,
        edgetpu_fallback=config.model.edgetpu_fallback if config else False,
        expected_sha256=manifest.sha256,
        kind="audio",
        logits=manifest.logits,
    )
    shape = tuple(engine.input_shape)
    want = (1, *spec.shape)
    if shape not in (want, (*want, 1)):
        made = (f"{spec.embeddings} speech embeddings of 96" if isinstance(spec, EmbeddingSpec)
                else f"{spec.frames}x{spec.mel_bins} log-mel frames")
        raise ModelError(f"{where}: its front end ({frontend}) makes {made} but the model's input is {list(shape)}; "
                         "the model and its manifest do not belong together")
    labels = manifest.labels
    if engine.num_classes != len(labels):
        raise ModelError(f"model {path}: {engine.num_classes} outputs but {len(labels)} labels")
    if not any(label not in NOT_COMMANDS for label in labels):
        raise ModelError(f"{where}: no command among the labels {list(labels)}")
    front = None
    if isinstance(spec, EmbeddingSpec):
        front = FrontEnd.load(threads=1, backend=engine.backend)
        settings = dataclasses.replace(settings, stride_ms=spec.hop_ms)  # one decision per embedding
    window_ms = spec.window_ms if isinstance(spec, EmbeddingSpec) else spec.clip_ms
    logger.info("model %s (%s front end, %s, %s, %d threads, %s input, %d Hz, %d ms window every %d ms)", path,
                frontend, engine.backend.name, engine.delegate, engine.threads, engine.input_dtype, spec.sample_rate,
                window_ms, settings.stride_ms)
    return VoiceModel(engine, labels, spec, settings, manifest.name, manifest.sha256, manifest, front)


def load_voice_model(path: Path, threads: int = 1, config: Config | None = None) -> VoiceModel:
    """For tools and tests: read the manifest beside ``path``, then :func:`load` with ``threads``."""
    manifest_path = manifest_mod.manifest_path_for(path)
    manifest = manifest_mod.load(manifest_path) if manifest_path.exists() else None
    if config is None:
        config = Config()
        config.model.threads = threads
    return load(path, manifest, config)


class KeywordSpotter:
    """Audio blocks in, :class:`Command` events out; stream time counts samples, not wall clock."""

    def __init__(self, model: VoiceModel) -> None:
        self.model = model
        spec = model.spec
        assert isinstance(spec, AudioSpec)
        self.stride = audio.samples_for(model.settings.stride_ms, spec.sample_rate)
        self._window = np.zeros(spec.clip_samples, np.float32)
        self._filled = 0  # samples in the window so far (no inference until it holds a whole clip)
        self.samples = 0  # stream samples consumed
        self.inferences = 0
        self.recognizer = Recognizer(model.labels, model.settings)
        scale, zero = model.engine.input_quant
        self._fill: Any = audio.make_fill(spec, model.engine.input_dtype, scale, zero)
        self.last_scores: np.ndarray | None = None

    @property
    def time_ms(self) -> float:
        return 1000.0 * self.samples / self.model.spec.sample_rate

    def scores(self, window: np.ndarray) -> np.ndarray:
        """One inference on a clip-length window (also used by the evaluation tool)."""
        return self.model.engine.run(lambda view: self._fill(window, view))

    def push(self, block: np.ndarray) -> Command | None:
        """Append one stride of samples; infer on the last clip; maybe announce a command."""
        n = len(block)
        if n != self.stride:
            raise ValueError(f"blocks must be one stride ({self.stride} samples), got {n}")
        self._window = np.roll(self._window, -n)
        self._window[-n:] = block
        self._filled = min(len(self._window), self._filled + n)
        self.samples += n
        if self._filled < len(self._window):
            return None
        self.last_scores = self.scores(self._window)
        self.inferences += 1
        return self.recognizer.update(self.last_scores, self.time_ms)


class EmbeddingSpotter:
    """Hops of 80 ms in, :class:`Command` events out: each hop one mel step and one embedding
    (:class:`~edge_agent.voice.embedding.EmbeddingStream`), then the head on the last
    ``spec.embeddings`` of them. Same interface as :class:`KeywordSpotter`."""

    def __init__(self, model: VoiceModel) -> None:
        spec = model.spec
        assert isinstance(spec, EmbeddingSpec) and model.front is not None
        self.model = model
        self.spec = spec
        self.stride = spec.hop_samples
        self.samples = 0
        self.inferences = 0
        self.stream = emb.EmbeddingStream(model.front)
        self._history = np.zeros(spec.shape, np.float32)
        self._filled = 0
        self.recognizer = Recognizer(model.labels, model.settings)
        self.last_scores: np.ndarray | None = None
        scale, zero = model.engine.input_quant
        self._quant = (model.engine.input_dtype, scale, zero)

    @property
    def time_ms(self) -> float:
        return 1000.0 * self.samples / self.spec.sample_rate

    def _write(self, history: np.ndarray, view: np.ndarray) -> None:
        dtype, scale, zero = self._quant
        if dtype == np.float32:
            view[...] = history.reshape(view.shape)
        else:
            info = np.iinfo(dtype)
            q = np.round(history / scale) + zero
            view[...] = np.clip(q, info.min, info.max).astype(dtype).reshape(view.shape)

    def scores(self, history: np.ndarray) -> np.ndarray:
        """The head on (embeddings, 96) vectors (also used by the evaluation tool)."""
        return self.model.engine.run(lambda view: self._write(history, view))

    def push(self, block: np.ndarray) -> Command | None:
        n = len(block)
        if n != self.stride:
            raise ValueError(f"blocks must be one hop ({self.stride} samples), got {n}")
        self.samples += n
        vector = self.stream.push(block)
        if vector is None:
            return None
        self._history = np.roll(self._history, -1, axis=0)
        self._history[-1] = vector
        self._filled = min(len(self._history), self._filled + 1)
        if self._filled < len(self._history):
            return None
        self.last_scores = self.scores(self._history)
        self.inferences += 1
        return self.recognizer.update(self.last_scores, self.time_ms)


Spotter = KeywordSpotter | EmbeddingSpotter


def make_spotter(model: VoiceModel) -> Spotter:
    """The spotter for the model's front end."""
    return EmbeddingSpotter(model) if isinstance(model.spec, EmbeddingSpec) else KeywordSpotter(model)
