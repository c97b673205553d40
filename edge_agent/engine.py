"""The interpreter: found in ONE place, checked before use, fed with the model's own quantization.

Discovery order is ai_edge_litert → tflite_runtime → tensorflow.lite (:func:`find_backend`).
``tflite_runtime`` 2.14 was compiled against numpy 1 and fails inside ``Interpreter()`` under
numpy 2, so it is refused with one line instead of a crash. TensorFlow is only a last resort
(the agent never needs it when ai-edge-litert is installed, which is a core dependency).

Model files are untrusted input: crafted or truncated flatbuffers have crashed interpreters
upstream, so :func:`check_model_file` looks at size and the ``TFL3`` identifier, and the sha256
from the manifest is checked, before any byte reaches the interpreter.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import importlib.metadata
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np

from .errors import BackendError, ModelError
from .manifest import ImageInput, sha256_file
from .preprocess import image as image_pre

logger = logging.getLogger(__name__)

TFLITE_IDENTIFIER: Final = b"TFL3"  # flatbuffer file identifier, bytes 4..8
MIN_MODEL_BYTES: Final = 64
MAX_MODEL_BYTES: Final = 512 * 1024 * 1024  # larger than any model a Pi can run
EDGETPU_LIBRARY: Final = "libedgetpu.so.1"
BACKEND_ENV: Final = "EDGE_AGENT_INTERPRETER"  # force one backend (for diagnosis and tests)
BACKENDS: Final = ("ai_edge_litert", "tflite_runtime", "tensorflow")


@dataclasses.dataclass(frozen=True)
class Backend:
    """An interpreter package: its name and version, the Interpreter class and load_delegate."""

    name: str
    version: str
    interpreter: Any
    load_delegate: Callable[..., Any]


def _dist_version(*names: str) -> str:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def _load_backend(name: str) -> Backend:
    if name == "ai_edge_litert":
        mod = importlib.import_module("ai_edge_litert.interpreter")
        return Backend(name, _dist_version("ai-edge-litert"), mod.Interpreter, mod.load_delegate)
    if name == "tflite_runtime":
        version = _dist_version("tflite-runtime", "tflite_runtime")
        numpy_major = int(np.__version__.split(".")[0])
        if numpy_major >= 2 and version.startswith(("2.1", "2.0", "1.", "unknown")):
            raise BackendError(
                f"tflite-runtime {version} was built for numpy 1 and fails under numpy {np.__version__}; "
                "install ai-edge-litert (pip install ai-edge-litert) or pin numpy<2"
            )
        mod = importlib.import_module("tflite_runtime.interpreter")
        return Backend(name, version, mod.Interpreter, mod.load_delegate)
    if name == "tensorflow":
        tf = importlib.import_module("tensorflow")
        return Backend(name, str(tf.__version__), tf.lite.Interpreter, tf.lite.experimental.load_delegate)
    raise BackendError(f"unknown interpreter '{name}' in {BACKEND_ENV}; choose one of {', '.join(BACKENDS)}")


def find_backend() -> Backend:
    """The first interpreter package that imports, in the documented order (or the one forced by
    ``$EDGE_AGENT_INTERPRETER``)."""
    forced = os.environ.get(BACKEND_ENV)
    if forced:
        try:
            return _load_backend(forced)
        except ImportError:
            raise BackendError(f"{BACKEND_ENV}={forced} but that package is not installed") from None
    for name in BACKENDS:
        try:
            backend = _load_backend(name)
        except ImportError:
            continue
        logger.info("interpreter: %s %s", backend.name, backend.version)
        return backend
    raise BackendError("no TFLite interpreter is installed: pip install ai-edge-litert")


def check_model_file(path: Path) -> None:
    """Refuse what is obviously not a TFLite model before the interpreter parses it."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ModelError(f"model {path}: file not found") from None
    if not path.is_file():
        raise ModelError(f"model {path}: not a file")
    if size < MIN_MODEL_BYTES:
        raise ModelError(f"model {path}: only {size} bytes, too small to be a TFLite model (truncated?)")
    if size > MAX_MODEL_BYTES:
        raise ModelError(f"model {path}: {size} bytes is larger than the {MAX_MODEL_BYTES} byte limit")
    with path.open("rb") as f:
        head = f.read(8)
    if head[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(f"model {path}: not a TFLite flatbuffer (no 'TFL3' identifier)")


def parse_edgetpu(spec: str) -> dict[str, str]:
    """``usb``, ``usb:N``, ``pci``, ``pci:N`` or empty (any) → libedgetpu delegate options."""
    if spec in ("", "any", "auto"):
        return {}
    kind, _, index = spec.partition(":")
    if kind not in ("usb", "pci") or (index and not index.isdigit()):
        raise BackendError(f"--edgetpu '{spec}': expected usb, usb:N, pci or pci:N")
    return {"device": spec}


def load_edgetpu_delegate(backend: Backend, spec: str) -> Any:
    """Load libedgetpu as a delegate. A missing library is an OSError and a missing or forbidden
    device a ValueError; both become one line saying which."""
    options = parse_edgetpu(spec)
    try:
        ctypes.CDLL(EDGETPU_LIBRARY)  # check first: load_delegate's own failure path prints noise
    except OSError:
        raise BackendError(
            f"Edge TPU: {EDGETPU_LIBRARY} is not installed (apt install libedgetpu1-std from Coral's repository)"
        ) from None
    try:
        return backend.load_delegate(EDGETPU_LIBRARY, options)
    except OSError as e:
        raise BackendError(f"Edge TPU: cannot load {EDGETPU_LIBRARY}: {e}") from None
    except ValueError:
        where = spec or "any"
        raise BackendError(
            f"Edge TPU: no Coral device found ({where}), or no permission to open it "
            "(is it plugged in, and is the user in the plugdev group?)"
        ) from None


# Operators that keep state in variable tensors from one invoke to the next (the fused LSTM/RNN keep
# their hidden and cell state there; SVDF its memory; resource variables theirs). A classifier of
# windows must answer each window alone, so an engine whose model has any of them resets its
# variables before every invoke (measured: docs/SENSORS.md).
STATEFUL_OPS: Final = frozenset({
    "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_LSTM",
    "BIDIRECTIONAL_SEQUENCE_RNN", "LSTM", "RNN", "SVDF", "VAR_HANDLE", "ASSIGN_VARIABLE", "READ_VARIABLE",
})


def stateful_ops(interpreter: Any) -> tuple[str, ...]:
    """The operators of a loaded interpreter that carry state across invokes (empty: none)."""
    try:
        ops = {str(op.get("op_name", "")) for op in interpreter._get_ops_details()}
    except Exception:  # an interpreter without the listing: assume state, a reset is always safe
        return ("unknown",)
    return tuple(sorted(ops & STATEFUL_OPS))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits, in float32 (max subtracted first: no overflow)."""
    e = np.exp(logits - logits.max())
    return (e / e.sum()).astype(np.float32)


@dataclasses.dataclass
class Engine:
    """A loaded, allocated interpreter with one input and one output, warmed up once."""

    path: Path
    backend: Backend
    interpreter: Any
    input_index: int
    output_index: int
    input_shape: tuple[int, ...]
    input_dtype: np.dtype
    input_quant: tuple[float, int]
    output_quant: tuple[float, int]
    delegate: str  # "cpu" or "edgetpu:<spec>"
    threads: int
    logits: bool = False  # the output holds logits: scores() applies the softmax (manifest "output")
    stateful: tuple[str, ...] = ()  # operators with state across invokes: reset before each (STATEFUL_OPS)

    @classmethod
    def load(
        cls,
        model_path: Path,
        threads: int = 1,
        edgetpu: str | None = None,
        edgetpu_fallback: bool = False,
        expected_sha256: str | None = None,
        kind: str = "image",
        backend: Backend | None = None,
        logits: bool = False,
    ) -> Engine:
        check_model_file(model_path)
        if expected_sha256 is not None and sha256_file(model_path) != expected_sha256:
            raise ModelError(
                f"model {model_path}: sha256 does not match its manifest; "
                "the file was changed or truncated after conversion"
            )
        backend = backend or find_backend()
        delegates: list[Any] = []
        where = "cpu"
        if edgetpu is not None:
            try:
                delegates.append(load_edgetpu_delegate(backend, edgetpu))
                where = f"edgetpu:{edgetpu or 'any'}"
            except BackendError as e:
                if not edgetpu_fallback:
                    raise
                logger.warning("%s; running on the CPU instead (--edgetpu-fallback)", e)
        try:
            interp = backend.interpreter(
                model_path=str(model_path), num_threads=threads, experimental_delegates=delegates or None
            )
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"model {model_path}: the interpreter cannot load it ({first})") from None
        inputs = interp.get_input_details()
        outputs = interp.get_output_details()
        if len(inputs) != 1:
            raise ModelError(f"model {model_path}: has {len(inputs)} inputs; a classifier needs exactly one")
        if not outputs:
            raise ModelError(f"model {model_path}: has no outputs")
        inp, out = inputs[0], outputs[0]
        shape = tuple(int(x) for x in inp["shape"])
        if kind == "image" and (len(shape) != 4 or shape[0] != 1 or shape[3] not in (1, 3)):
            raise ModelError(f"model {model_path}: input shape {list(shape)} is not one image (1, H, W, 1|3)")
        dtype = np.dtype(inp["dtype"])
        if dtype not in (np.uint8, np.int8, np.float32):
            raise ModelError(f"model {model_path}: input type {dtype} is not uint8, int8 or float32")
        in_q = (float(inp["quantization"][0]), int(inp["quantization"][1]))
        if dtype != np.float32 and in_q[0] == 0.0:
            raise ModelError(f"model {model_path}: {dtype} input has no quantization parameters")
        out_q = (float(out["quantization"][0]), int(out["quantization"][1]))
        engine = cls(
            path=model_path,
            backend=backend,
            interpreter=interp,
            input_index=int(inp["index"]),
            output_index=int(out["index"]),
            input_shape=shape,
            input_dtype=dtype,
            input_quant=in_q,
            output_quant=out_q,
            delegate=where,
            threads=threads,
            logits=logits,
            stateful=stateful_ops(interp),
        )
        try:  # the smoke test: a model that loads but cannot run fails here, as one line
            engine.warm_up()
        except (ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"model {model_path}: loads but fails at its first invoke ({first})") from None
        return engine

    @property
    def num_classes(self) -> int:
        return int(np.prod(self.interpreter.get_output_details()[0]["shape"]))

    def warm_up(self) -> None:
        """First invoke is slow (allocations; on a Coral, loading the model onto the TPU): do it now."""
        self.invoke()

    def run(self, fill: Callable[[np.ndarray], None]) -> np.ndarray:
        """``fill(view)`` writes the input tensor in place; returns dequantized float32 scores.

        The view is dropped before ``invoke()``: the interpreter refuses to run while numpy
        views of its buffers are alive."""
        self.fill(fill)
        self.invoke()
        return self.scores()

    def fill(self, fill: Callable[[np.ndarray], None]) -> None:
        """``fill(view)`` writes the input tensor in place (the first step of :meth:`run`)."""
        fill(self.interpreter.tensor(self.input_index)())

    def invoke(self) -> None:
        """Run the model on the input written by :meth:`fill` (the second step of :meth:`run`): on
        that input alone, whatever ran before (a stateful model's variables are reset first)."""
        if self.stateful:
            self.interpreter.reset_all_variables()
        self.interpreter.invoke()

    def scores(self) -> np.ndarray:
        """The output, dequantized: int64 before subtracting the zero point (no uint8 wrap-around)."""
        raw = self.interpreter.get_tensor(self.output_index).reshape(-1)
        scale, zero = self.output_quant
        out = raw.astype(np.float32) if scale == 0.0 else ((raw.astype(np.int64) - zero) * scale).astype(np.float32)
        return softmax(out) if self.logits else out

    def table_for(self, spec: ImageInput) -> np.ndarray:
        """The pixel → input-value table for this model's input type and quantization."""
        scale, zero = self.input_quant if self.input_dtype != np.float32 else (0.0, 0)
        return image_pre.make_table(spec, self.input_dtype, scale, zero)

    def classify(self, rgb: np.ndarray, spec: ImageInput) -> np.ndarray:
        """Scores for one already-resized uint8 image in model colour order (a convenience for tools)."""
        fill = image_pre.make_fill(self.table_for(spec))
        return self.run(lambda view: fill(rgb, view))
