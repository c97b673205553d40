"""What a ``.tflite`` really contains, read from the flatbuffer itself (no TensorFlow needed).

Why not trust the converter's settings: "full integer" is a request, and TFLite silently keeps
an op in float when it has no int8 kernel for it (with ``TFLITE_BUILTINS`` allowed). The only
reliable check is to walk the produced graph: every operator, the type of every tensor it
touches, and whether any shape is dynamic. The Edge TPU check and the tests use the same walk.
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import Any, Final

from ..errors import ModelError

FLOAT_TYPES: Final = frozenset({"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"})
INT8_TYPES: Final = frozenset({"INT8", "UINT8"})


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:  # pragma: no cover - ai-edge-litert is a core dependency
        raise ModelError("cannot read .tflite files: pip install ai-edge-litert") from None
    return schema_py_generated


def _names(enum_cls: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if k.isupper() and isinstance(v, int)}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    constant: bool
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class OpInfo:
    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class GraphInfo:
    """One subgraph's operators and tensors, plus the summary figures the tool reports."""

    ops: tuple[OpInfo, ...]
    tensors: tuple[TensorInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    subgraphs: int

    def op_counts(self) -> dict[str, int]:
        return dict(collections.Counter(op.name for op in self.ops))

    def touches_float(self, op: OpInfo) -> bool:
        return any(self.tensors[i].dtype in FLOAT_TYPES for i in (*op.inputs, *op.outputs) if i >= 0)

    def float_ops(self) -> list[OpInfo]:
        """Operators that read or write a float tensor: they run in float on the CPU."""
        return [op for op in self.ops if self.touches_float(op)]

    def float_tensors(self) -> list[TensorInfo]:
        return [t for t in self.tensors if t.dtype in FLOAT_TYPES]

    def activation_types(self) -> dict[str, int]:
        """Types of the non-constant tensors (inputs, outputs, intermediates); int32 biases and
        shape constants are excluded because int8 kernels use them by design."""
        return dict(collections.Counter(t.dtype for t in self.tensors if not t.constant))

    def dynamic_tensors(self) -> list[TensorInfo]:
        return [t for t in self.tensors if any(d < 0 for d in t.signature)]

    def is_full_int8(self) -> bool:
        return not self.float_tensors() and set(self.activation_types()) <= INT8_TYPES

    def macs(self) -> int:
        """Multiply-adds of convolutions and fully connected layers, from the weight shapes."""
        total = 0
        for op in self.ops:
            if op.name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") or len(op.inputs) < 2:
                continue
            out = self.tensors[op.outputs[0]].shape
            weights = self.tensors[op.inputs[1]].shape
            if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                # conv weights (O, kh, kw, I), depthwise (1, kh, kw, O); output (1, H, W, O)
                total += _prod(out[1:3]) * _prod(weights)
            else:  # weights (O, I), output (rows, O)
                total += _prod(out[:-1]) * _prod(weights)
        return total

    def stored_values(self) -> int:
        """Number of constant values stored (weights, biases): the deployed parameter count,
        batch norm already folded into the convolutions."""
        return sum(_prod(t.shape) for t in self.tensors if t.constant)

    def summary(self) -> dict[str, Any]:
        return {
            "ops": self.op_counts(),
            "activation_types": self.activation_types(),
            "float_ops": [f"{op.name}#{op.index}" for op in self.float_ops()],
            "float_tensors": len(self.float_tensors()),
            "dynamic_tensors": [t.name for t in self.dynamic_tensors()],
            "full_int8": self.is_full_int8(),
            "input": _io(self.tensors[self.inputs[0]]) if self.inputs else None,
            "output": _io(self.tensors[self.outputs[0]]) if self.outputs else None,
            "macs": self.macs(),
            "stored_values": self.stored_values(),
        }


def _io(t: TensorInfo) -> dict[str, Any]:
    return {
        "dtype": t.dtype.lower(),
        "shape": list(t.shape),
        "scale": t.scale[0] if t.scale else 0.0,
        "zero_point": t.zero_point[0] if t.zero_point else 0,
    }


def _prod(dims: Any) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def read(source: Path | bytes) -> GraphInfo:
    """Parse a .tflite (path or bytes) and return its main subgraph."""
    schema = _schema()
    where = str(source) if isinstance(source, Path) else "model"
    try:
        buf = source.read_bytes() if isinstance(source, Path) else source
    except OSError as e:
        raise ModelError(f"model {where}: cannot read ({e.strerror})") from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelError(f"model {where}: not a TFLite flatbuffer (no 'TFL3' identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as e:  # a corrupt flatbuffer raises anything from struct.error to IndexError
        raise ModelError(f"model {where}: corrupt flatbuffer ({type(e).__name__})") from None
    op_names = _names(schema.BuiltinOperator)
    type_names = _names(schema.TensorType)
    codes = []
    for oc in model.operatorCodes or []:
        code = max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))
        name = op_names.get(code, f"OP_{code}")
        if name == "CUSTOM":
            custom = oc.customCode or b""
            name = f"CUSTOM:{custom.decode(errors='replace') if isinstance(custom, bytes) else custom}"
        codes.append(name)
    graph = model.subgraphs[0]
    buffers = model.buffers or []
    tensors = []
    for t in graph.tensors or []:
        b = buffers[t.buffer] if t.buffer is not None and t.buffer < len(buffers) else None
        constant = b is not None and ((b.data is not None and len(b.data) > 0) or bool(getattr(b, "offset", 0)))
        q = t.quantization
        scale = tuple(float(x) for x in (q.scale if q is not None and q.scale is not None else ()))
        zero = tuple(int(x) for x in (q.zeroPoint if q is not None and q.zeroPoint is not None else ()))
        shape = tuple(int(x) for x in (t.shape if t.shape is not None else ()))
        sig = tuple(int(x) for x in t.shapeSignature) if t.shapeSignature is not None else shape
        name = t.name.decode(errors="replace") if isinstance(t.name, bytes) else str(t.name)
        tensors.append(TensorInfo(name, type_names.get(t.type, str(t.type)), shape, sig, constant, scale, zero))
    ops = tuple(
        OpInfo(
            i,
            codes[op.opcodeIndex],
            tuple(int(x) for x in (op.inputs if op.inputs is not None else ())),
            tuple(int(x) for x in (op.outputs if op.outputs is not None else ())),
        )
        for i, op in enumerate(graph.operators or [])
    )
    return GraphInfo(
        ops=ops,
        tensors=tuple(tensors),
        inputs=tuple(int(x) for x in graph.inputs),
        outputs=tuple(int(x) for x in graph.outputs),
        subgraphs=len(model.subgraphs),
    )


def strip_names(model: bytes) -> bytes:
    """The same model with its intermediate tensor names blanked.

    The converter names every fused tensor after all the Keras ops folded into it, often several
    hundred characters each: on a 0.35 MobileNet that is ~10 % of the int8 file, carried to every
    device and used by nothing at run time. Input and output names are kept (signatures and
    debugging tools show them). Operators, shapes, buffers and quantization are untouched.
    """
    import flatbuffers

    schema = _schema()
    m = schema.ModelT.InitFromPackedBuf(model, 0)
    for sub in m.subgraphs or []:
        keep = set(sub.inputs if sub.inputs is not None else ()) | set(sub.outputs if sub.outputs is not None else ())
        for i, t in enumerate(sub.tensors or []):
            if i not in keep:
                t.name = ""
    builder = flatbuffers.Builder(len(model))
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
