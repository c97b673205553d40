"""The speech-embedding front end: 16 kHz audio → mel model → embedding model, on LiteRT, streaming.

Two TFLite files shipped in ``models/speech_embedding/`` (copies from the ``openwakeword`` 0.5.1
wheel, byte-identical to ``wyoming-openwakeword`` 1.8.2's; their sha256 is in
``frontend.json`` beside them and checked here and by ``edge-agent doctor``):

* ``melspectrogram.tflite``: int16 PCM given as float32 → 32 mel bands every 10 ms (25 ms window);
  the result is scaled ``x / 10 + 2`` as openWakeWord does, to match Google's TensorFlow front end.
* ``embedding_model.tflite``: Google's ``speech_embedding`` (trained on a large corpus of real
  speech, Apache-2.0): 76 mel frames (0.76 s) → one 96-d vector.

Streaming as openWakeWord's ``AudioFeatures`` does it: each hop of 1,280 samples (80 ms), the mel
model runs on that hop plus the 480 samples before it (8 new frames), and the embedding model on the
last 76 frames: one mel step and one embedding per hop, never the whole window again. Training
features come from the same :class:`EmbeddingStream` run over the clip, so what the head learnt is
exactly what the agent computes. Why not the log-mel + CNN front end alone: learnt from one formant
synthesizer it did not carry to other voices; this one was trained on real speech.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Final

import numpy as np

from .. import shipped
from ..engine import Backend, find_backend
from ..errors import ModelError
from ..manifest import sha256_file

NAME: Final = "speech_embedding"
FOLDER: Final = "speech_embedding"
MEL_FILE: Final = "melspectrogram.tflite"
EMBEDDING_FILE: Final = "embedding_model.tflite"
INFO_FILE: Final = "frontend.json"
SAMPLE_RATE_HZ: Final = 16_000
HOP_SAMPLES: Final = 1280  # 80 ms: one embedding per hop
MEL_CONTEXT: Final = 480  # samples before the hop the mel model also reads (its window overlap)
MEL_FRAMES_PER_HOP: Final = 8
MEL_BANDS: Final = 32
EMBEDDING_FRAMES: Final = 76  # mel frames per embedding (0.76 s)
EMBEDDING_DIM: Final = 96
INT16_SCALE: Final = 32767.0


def folder() -> Path:
    """Where the two front-end files are (a checkout, a wheel's share/, or /usr/share)."""
    return shipped.find("models", f"{FOLDER}/{INFO_FILE}") / FOLDER


def check_files(where: Path | None = None) -> dict[str, str]:
    """The files' sha256 against ``frontend.json``; raises :class:`ModelError` with one line."""
    where = where or folder()
    info_path = where / INFO_FILE
    if not info_path.exists():
        raise ModelError(f"speech-embedding front end: {info_path} not found (the agent ships it in "
                         f"models/{FOLDER}/)")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for name, entry in info["files"].items():
        path = where / name
        if not path.exists():
            raise ModelError(f"speech-embedding front end: {path} not found")
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise ModelError(f"speech-embedding front end: {path} sha256 {digest[:12]}… is not the shipped "
                             f"{entry['sha256'][:12]}…; reinstall it")
        found[name] = digest
    return found


@dataclasses.dataclass
class FrontEnd:
    """The two interpreters, allocated once at fixed shapes (streaming: one hop each)."""

    mel: Any
    embedding: Any
    backend: Backend

    @classmethod
    def load(cls, where: Path | None = None, threads: int = 1, backend: Backend | None = None) -> FrontEnd:
        where = where or folder()
        check_files(where)
        backend = backend or find_backend()
        try:
            mel = backend.interpreter(model_path=str(where / MEL_FILE), num_threads=threads)
            mel.resize_tensor_input(mel.get_input_details()[0]["index"], [1, HOP_SAMPLES + MEL_CONTEXT], strict=True)
            mel.allocate_tensors()
            emb = backend.interpreter(model_path=str(where / EMBEDDING_FILE), num_threads=threads)
            emb.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"speech-embedding front end in {where}: the interpreter cannot load it "
                             f"({first})") from None
        return cls(mel, emb, backend)

    def mel_frames(self, pcm: np.ndarray) -> np.ndarray:
        """1,760 samples (float32 in int16 units) → (8, 32) scaled mel frames."""
        m = self.mel
        m.set_tensor(m.get_input_details()[0]["index"], pcm.reshape(1, -1).astype(np.float32))
        m.invoke()
        out = m.get_tensor(m.get_output_details()[0]["index"])
        return np.asarray(out, np.float32).reshape(-1, MEL_BANDS) / 10.0 + 2.0

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """(76, 32) mel frames → one 96-d embedding."""
        e = self.embedding
        e.set_tensor(e.get_input_details()[0]["index"], frames.reshape(1, EMBEDDING_FRAMES, MEL_BANDS, 1)
                     .astype(np.float32))
        e.invoke()
        return np.asarray(e.get_tensor(e.get_output_details()[0]["index"]), np.float32).reshape(EMBEDDING_DIM)


class EmbeddingStream:
    """Hops of 1,280 float samples (-1..1) in, one embedding per hop out (None until 76 mel frames).

    The mel buffer starts as ones, as openWakeWord's does (its value for near silence)."""

    def __init__(self, front: FrontEnd) -> None:
        self.front = front
        self._audio = np.zeros(HOP_SAMPLES + MEL_CONTEXT, np.float32)
        self._mel = np.ones((EMBEDDING_FRAMES, MEL_BANDS), np.float32)
        self._mel_filled = 0

    def push(self, hop: np.ndarray) -> np.ndarray | None:
        if len(hop) != HOP_SAMPLES:
            raise ValueError(f"hops must be {HOP_SAMPLES} samples, got {len(hop)}")
        self._audio[:MEL_CONTEXT] = self._audio[-MEL_CONTEXT:]
        self._audio[MEL_CONTEXT:] = np.clip(hop, -1.0, 1.0) * INT16_SCALE
        frames = self.front.mel_frames(np.round(self._audio))
        self._mel = np.concatenate([self._mel[len(frames):], frames])
        self._mel_filled = min(EMBEDDING_FRAMES, self._mel_filled + len(frames))
        if self._mel_filled < EMBEDDING_FRAMES:
            return None
        return self.front.embed(self._mel)


def embeddings(front: FrontEnd, audio: np.ndarray) -> np.ndarray:
    """A whole clip through a fresh stream (what training uses): (n, 96), one per full 76-frame hop.
    The audio is cut to whole hops (the tail shorter than a hop is dropped, as a stream would)."""
    stream = EmbeddingStream(front)
    out = []
    for start in range(0, len(audio) - HOP_SAMPLES + 1, HOP_SAMPLES):
        e = stream.push(audio[start: start + HOP_SAMPLES])
        if e is not None:
            out.append(e)
    return np.stack(out) if out else np.zeros((0, EMBEDDING_DIM), np.float32)


def warm_hops() -> int:
    """Hops a fresh stream needs before its first embedding (76 mel frames at 8 per hop)."""
    return -(-EMBEDDING_FRAMES // MEL_FRAMES_PER_HOP)


FRONTEND_KEY: Final = "frontend"  # the manifest's input field naming the front end
LOG_MEL: Final = "log_mel"  # the front end of models whose manifest names none (the first voice models)
FRONTENDS: Final = (LOG_MEL, NAME)
DEFAULT_EMBEDDINGS: Final = 10  # embeddings the head reads: 0.76 + 9 x 0.08 = 1.48 s of audio


def frontend_of(audio_input: Any) -> str:
    """The front end a manifest's audio ``input`` asks for (``log_mel`` when it names none)."""
    value = audio_input.get(FRONTEND_KEY, LOG_MEL) if hasattr(audio_input, "get") else LOG_MEL
    return str(value)


@dataclasses.dataclass(frozen=True)
class EmbeddingSpec:
    """The manifest's ``input`` for a head on the speech embedding: the head reads the last
    ``embeddings`` vectors (one per 80 ms hop), shape (1, embeddings, 96)."""

    embeddings: int = DEFAULT_EMBEDDINGS
    sample_rate: int = SAMPLE_RATE_HZ
    hop_ms: int = 80
    embedding_dim: int = EMBEDDING_DIM

    @property
    def shape(self) -> tuple[int, int]:
        return self.embeddings, self.embedding_dim

    @property
    def hop_samples(self) -> int:
        return HOP_SAMPLES

    @property
    def window_ms(self) -> int:
        """Audio one head input covers: the first embedding's 0.76 s plus a hop per further one."""
        return 760 + self.hop_ms * (self.embeddings - 1)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "audio", FRONTEND_KEY: NAME, **dataclasses.asdict(self)}

    @classmethod
    def from_mapping(cls, data: Any, where: str) -> EmbeddingSpec:
        fixed = {"sample_rate": SAMPLE_RATE_HZ, "hop_ms": 80, "embedding_dim": EMBEDDING_DIM}
        for key, want in fixed.items():
            if data.get(key, want) != want:
                raise ModelError(f"{where}: the speech-embedding front end runs at {fixed['sample_rate']} Hz, "
                                 f"80 ms hops, 96-d vectors; 'input.{key}' is {data.get(key)!r}")
        n = data.get("embeddings")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 64:
            raise ModelError(f"{where}: field 'input.embeddings' must be a whole number 1..64 (got {n!r})")
        return cls(embeddings=n)
