"""Make a classifier output its logits instead of its int8 softmax (``edge-agent-convert logits``).

Why: a full-int8 softmax has 256 levels, and the top one is 255/256 = 0.996. A keyword model that
is sure of a word sits there, and so does one that is nearly sure of a word that only sounds like
it ("stuff" for "stop"): no threshold can split them, because 0.996 is as high as a score goes.
The tensor feeding the softmax (the logits, int8 too, but with a scale of their own, ~0.27 per
step) still tells them apart; the engine applies the softmax in float32 (seven numbers, nothing
on the clock) when the manifest says ``"output": "logits"``, and a threshold of 0.9995 means
something again. Argmax, and so accuracy, are untouched: softmax is monotonic.

Pure flatbuffer surgery with ai-edge-litert's own schema (no TensorFlow): the final SOFTMAX
operator is removed, the graph's (and the signature's) output becomes its input. Nothing else in
the model changes: the same weights, the same quantization, the same operators on an Edge TPU.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..manifest import OUTPUT_LOGITS, load, manifest_path_for, sha256_file, write
from .graph import _schema


def read_classifier(data: bytes, where: str) -> Any:
    """The flatbuffer as the schema's object tree (``ModelT``), checked to be what a classifier
    is: one subgraph, one output. Shared by ``logits`` and ``ensemble``, which edit it."""
    s = _schema()
    try:
        model = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as e:  # a truncated or foreign file: the flatbuffer reader raises anything
        raise ModelError(f"{where}: not a readable .tflite ({type(e).__name__})") from None
    if len(model.subgraphs or []) != 1:
        raise ModelError(f"{where}: has {len(model.subgraphs or [])} subgraphs; expected one")
    outputs = [int(i) for i in model.subgraphs[0].outputs]
    if len(outputs) != 1:
        raise ModelError(f"{where}: has {len(outputs)} outputs; a classifier has one")
    return model


def pack(model: Any, size_hint: int) -> bytes:
    """``ModelT`` back to .tflite bytes."""
    import flatbuffers

    builder = flatbuffers.Builder(size_hint + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def strip_softmax(data: bytes, where: str = "model") -> bytes:
    """The same model with its final SOFTMAX removed: the output is the logits tensor."""
    s = _schema()
    model = read_classifier(data, where)
    g = model.subgraphs[0]
    out = int(g.outputs[0])
    producers = [op for op in g.operators if out in [int(i) for i in op.outputs]]
    code = model.operatorCodes[producers[0].opcodeIndex] if producers else None
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode) if code is not None else -1
    if builtin != s.BuiltinOperator.SOFTMAX:
        raise ModelError(f"{where}: its output is not made by a SOFTMAX operator (already logits?)")
    softmax = producers[0]
    logits = int(softmax.inputs[0])
    g.operators = [op for op in g.operators if op is not softmax]
    g.outputs = [logits]
    for sig in model.signatureDefs or []:
        for tensor in sig.outputs or []:
            if tensor.tensorIndex == out:
                tensor.tensorIndex = logits
    return pack(model, len(data))


def convert_file(model_path: Path, out: Path | None = None) -> dict[str, Any]:
    """``edge-agent-convert logits``: rewrite a model (and its manifest, when it has one) to output
    logits; ``out`` defaults to overwriting ``model_path``."""
    out = out or model_path
    try:
        data = model_path.read_bytes()
    except OSError as e:
        raise ModelError(f"model {model_path}: cannot read ({e.strerror})") from None
    new = strip_softmax(data, f"model {model_path}")
    src_manifest = manifest_path_for(model_path)
    m = load(src_manifest) if src_manifest.is_file() else None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(new)
    result: dict[str, Any] = {"model_file": str(out), "bytes": len(new), "output": OUTPUT_LOGITS}
    if m is not None:
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        prov = {**m.provenance, "softmax_removed": {"from_sha256": m.sha256, "at": now,
                                                    "by": "edge-agent-convert logits"}}
        write(dataclasses.replace(m, sha256=sha256_file(out), model_file=out.name, output=OUTPUT_LOGITS,
                                  provenance=prov), manifest_path_for(out))
        result["manifest_file"] = str(manifest_path_for(out))
    return result
