"""Merge classifiers into one model that outputs the mean of their logits (``edge-agent-convert ensemble``).

Why: two keyword models trained on different data err on different words. Averaging their logits
(a geometric mean of their probabilities) keeps a command both are sure of and drops a word only
one of them mistakes for a command: on the voice task's 2-hour stream of other words, two models
with 4.5 and 2.5 false accepts per hour made 1.5 together at the recall of the better one. One file
keeps the agent, the manifest and an Edge TPU compile as they are for one model; the cost is the
members' compute added up (two 1 s keyword windows every 50 ms is still a few per cent of a core).

Pure flatbuffer surgery with ai-edge-litert's own schema (no TensorFlow), as ``logits``: every
member's operators, tensors and buffers are copied unchanged into one graph (their int8 weights
and activation scales are the ones they were measured with), all read the first member's input,
and an int8 ADD per extra member and a MUL by 1/N make the output. Members must be single-input,
single-output full-int8 classifiers with the same labels and front end whose manifests say
``"output": "logits"``. A member whose input normalisation differs a little (audio models store
the training set's mean and std) reads the first member's input through a QUANTIZE operator; the
merge refuses when that would move its input by more than :data:`MAX_INPUT_ERROR_STEPS` of its
own quantization steps.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from ..errors import ConfigError, ModelError
from ..manifest import Manifest, load, manifest_path_for, sha256_file, verify_sha256, write
from .graph import _schema
from .logits import pack, read_classifier

MAX_INPUT_ERROR_STEPS: Final = 1.0  # requantization alone is up to 0.5
INT8_RANGE: Final = (-128, 127)
MAX_MEMBERS: Final = 8


@dataclasses.dataclass(frozen=True)
class Quant:
    scale: float
    zero: int


def _quant(t: Any, what: str) -> Quant:
    q = t.quantization
    scales = list(q.scale) if q is not None and q.scale is not None else []
    zeros = list(q.zeroPoint) if q is not None and q.zeroPoint is not None else []
    if len(scales) != 1 or len(zeros) != 1:
        raise ModelError(f"{what}: not quantized per tensor (a full-int8 classifier's input and output are)")
    return Quant(float(scales[0]), int(zeros[0]))


def _params(q: Quant) -> Any:
    s = _schema()
    p = s.QuantizationParametersT()
    p.scale = [q.scale]
    p.zeroPoint = [q.zero]
    return p


def _opcode(model: Any, code: int) -> int:
    """Index of the builtin operator ``code`` in the model's table, added (version 2: int8) if missing."""
    s = _schema()
    for i, c in enumerate(model.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == code and c.customCode is None:
            return i
    c = s.OperatorCodeT()
    c.builtinCode = code
    c.deprecatedBuiltinCode = min(code, s.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    c.version = 2
    model.operatorCodes.append(c)
    return len(model.operatorCodes) - 1


def _same_code(a: Any, b: Any) -> bool:
    return (a.builtinCode, a.deprecatedBuiltinCode, a.customCode, a.version) == (
        b.builtinCode, b.deprecatedBuiltinCode, b.customCode, b.version)


def _tensor(model: Any, name: str, shape: Sequence[int], q: Quant, data: bytes | None = None) -> int:
    """A new int8 tensor (with its own buffer) in the first subgraph; returns its index."""
    s = _schema()
    b = s.BufferT()
    b.data = list(data) if data is not None else None
    model.buffers.append(b)
    t = s.TensorT()
    t.shape = list(shape)
    t.type = s.TensorType.INT8
    t.buffer = len(model.buffers) - 1
    t.name = name
    t.quantization = _params(q)
    g = model.subgraphs[0]
    g.tensors.append(t)
    return len(g.tensors) - 1


def _op(model: Any, code: int, inputs: Sequence[int], outputs: Sequence[int], options: Any = None,
        options_type: int = 0) -> Any:
    s = _schema()
    op = s.OperatorT()
    op.opcodeIndex = _opcode(model, code)
    op.inputs = list(inputs)
    op.outputs = list(outputs)
    op.builtinOptionsType = options_type
    op.builtinOptions = options
    return op


def input_error_steps(first: Quant, first_norm: tuple[float, float], member: Quant,
                      member_norm: tuple[float, float]) -> float:
    """Worst error, in the member's input quantization steps, of feeding it the first member's int8
    input through a QUANTIZE operator: requantization (≤ 0.5) plus the two normalisations'
    difference (``(x - mean) / std`` each) over the whole int8 range."""
    q = np.arange(INT8_RANGE[0], INT8_RANGE[1] + 1, dtype=np.float64)
    real_first = first.scale * (q - first.zero)
    raw = real_first * first_norm[1] + first_norm[0]
    wanted = (raw - member_norm[0]) / member_norm[1]
    got_q = np.clip(np.round(real_first / member.scale) + member.zero, *INT8_RANGE)
    got = member.scale * (got_q - member.zero)
    inside = (wanted >= member.scale * (INT8_RANGE[0] - member.zero)) & (
        wanted <= member.scale * (INT8_RANGE[1] - member.zero))
    return float(np.max(np.abs(got - wanted)[inside] / member.scale)) if inside.any() else float("inf")


def merge(members: Sequence[bytes], norms: Sequence[tuple[float, float]],
          names: Sequence[str]) -> tuple[bytes, list[float]]:
    """One .tflite whose output is the mean of the members' int8 logits; also each member's worst
    input error in steps (0 for the first). ``norms`` is each member's (mean, std) of its input."""
    s = _schema()
    models = []
    for data, name in zip(members, names, strict=True):
        m = read_classifier(data, name)
        g = m.subgraphs[0]
        if len(g.inputs) != 1:
            raise ModelError(f"{name}: has {len(g.inputs)} inputs; a classifier has one")
        for i in (g.inputs[0], g.outputs[0]):
            if g.tensors[i].type != s.TensorType.INT8:
                raise ModelError(f"{name}: input and output must be int8 (full-int8 quantization)")
        if any(b.offset for b in m.buffers or []):
            raise ModelError(f"{name}: keeps its weights outside the flatbuffer (a model over 2 GB?); not supported")
        models.append(m)
    base = models[0]
    g = base.subgraphs[0]
    shared = int(g.inputs[0])
    in_shape = list(g.tensors[shared].shape)
    out_shape = list(g.tensors[g.outputs[0]].shape)
    first_q = _quant(g.tensors[shared], f"{names[0]} input")
    outputs = [(int(g.outputs[0]), _quant(g.tensors[g.outputs[0]], f"{names[0]} output"))]
    errors = [0.0]
    for k, (m, name) in enumerate(zip(models[1:], names[1:], strict=True), start=2):
        mg = m.subgraphs[0]
        if list(mg.tensors[mg.inputs[0]].shape) != in_shape or list(mg.tensors[mg.outputs[0]].shape) != out_shape:
            raise ModelError(f"{name}: input {list(mg.tensors[mg.inputs[0]].shape)} / output "
                             f"{list(mg.tensors[mg.outputs[0]].shape)}; {names[0]} has {in_shape} / {out_shape}")
        buf_off, t_off = len(base.buffers), len(g.tensors)
        base.buffers.extend(m.buffers)
        codes = []
        for c in m.operatorCodes:
            same = [i for i, b in enumerate(base.operatorCodes) if _same_code(b, c)]
            if not same:
                base.operatorCodes.append(c)
            codes.append(same[0] if same else len(base.operatorCodes) - 1)
        for t in mg.tensors:
            t.buffer += buf_off
            t.name = f"member{k}/" + (t.name.decode() if isinstance(t.name, bytes) else str(t.name or ""))
            g.tensors.append(t)
        own_input = int(mg.inputs[0]) + t_off
        own_q = _quant(g.tensors[own_input], f"{name} input")
        err = input_error_steps(first_q, norms[0], own_q, norms[k - 1])
        if err > MAX_INPUT_ERROR_STEPS:
            raise ModelError(f"{name}: its input normalisation (mean {norms[k - 1][0]}, std {norms[k - 1][1]}) is too "
                             f"far from {names[0]}'s ({norms[0][0]}, {norms[0][1]}): up to {err:.1f} quantization "
                             f"steps off; train the members on the same front end")
        errors.append(round(err, 3))
        g.operators.append(_op(base, s.BuiltinOperator.QUANTIZE, [shared], [own_input]))
        for op in mg.operators:
            op.opcodeIndex = codes[op.opcodeIndex]
            op.inputs = [i + t_off if i >= 0 else i for i in op.inputs]
            op.outputs = [i + t_off for i in op.outputs]
            if op.intermediates is not None:
                op.intermediates = [i + t_off for i in op.intermediates]
            g.operators.append(op)
        outputs.append((int(mg.outputs[0]) + t_off, _quant(g.tensors[int(mg.outputs[0]) + t_off], f"{name} output")))
    total, acc_q = outputs[0]
    for i, (out, q) in enumerate(outputs[1:], start=2):
        scale = acc_q.scale + q.scale  # the sum's range is the two ranges added: same steps, no clipping
        zero = int(np.clip(round((acc_q.scale * acc_q.zero + q.scale * q.zero) / scale), *INT8_RANGE))
        acc_q = Quant(scale, zero)
        summed = _tensor(base, f"ensemble/sum{i}", out_shape, acc_q)
        add = s.AddOptionsT()
        g.operators.append(_op(base, s.BuiltinOperator.ADD, [total, out], [summed], add, s.BuiltinOptions.AddOptions))
        total = summed
    n = len(outputs)
    factor = _tensor(base, "ensemble/one_over_n", [1], Quant(1.0 / n / 127.0, 0), bytes([127]))
    mean = _tensor(base, "ensemble/mean_logits", out_shape, Quant(acc_q.scale / n, acc_q.zero))
    g.operators.append(_op(base, s.BuiltinOperator.MUL, [total, factor], [mean], s.MulOptionsT(),
                           s.BuiltinOptions.MulOptions))
    old_out = int(g.outputs[0])
    g.outputs = [mean]
    for sig in base.signatureDefs or []:
        for tensor in sig.outputs or []:
            if tensor.tensorIndex == old_out:
                tensor.tensorIndex = mean
    return pack(base, sum(len(d) for d in members) + 65536), errors


def _norm(m: Manifest) -> tuple[float, float]:
    """(mean, std) of the input: an audio front end stores scalars; image models must match exactly."""
    if m.audio is not None:
        return float(m.audio.get("mean", 0.0)), float(m.audio.get("std", 1.0))
    return 0.0, 1.0


def _front_end(m: Manifest) -> Any:
    if m.audio is not None:
        return {k: v for k, v in m.audio.items() if k not in ("mean", "std")}
    return m.input


def check_members(manifests: Sequence[Manifest], paths: Sequence[Path]) -> None:
    """Same task, labels and front end, logits out: what makes averaging their outputs meaningful."""
    first, where = manifests[0], paths[0]
    for m, p in zip(manifests, paths, strict=True):
        if not m.logits:
            raise ConfigError(f"model {p}: its manifest says it outputs probabilities; averaging needs logits "
                              f"(edge-agent-convert logits {p})")
        for field, a, b in (("task", m.task, first.task), ("labels", m.labels, first.labels),
                            ("front end", _front_end(m), _front_end(first))):
            if a != b:
                raise ConfigError(f"model {p}: {field} {a!r} differs from {where}'s {b!r}")


def convert_files(paths: Sequence[Path], out: Path, name: str | None = None) -> dict[str, Any]:
    """``edge-agent-convert ensemble``: members (each with its manifest) → ``out`` + manifest."""
    if not 2 <= len(paths) <= MAX_MEMBERS:
        raise ConfigError(f"ensemble: give 2 to {MAX_MEMBERS} models, not {len(paths)}")
    manifests = []
    for p in paths:
        mp = manifest_path_for(p)
        if not mp.is_file():
            raise ConfigError(f"model {p}: no manifest {mp} (labels and front end are needed to merge)")
        manifests.append(load(mp))
    check_members(manifests, paths)
    data = []
    for p, m in zip(paths, manifests, strict=True):
        try:
            verify_sha256(p, m)
            data.append(p.read_bytes())
        except OSError as e:
            raise ModelError(f"model {p}: cannot read ({e.strerror})") from None
    merged, errors = merge(data, [_norm(m) for m in manifests], [str(p) for p in paths])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(merged)
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    members: list[Mapping[str, Any]] = [
        {"file": p.name, "sha256": m.sha256, "input_error_steps": e, "metrics": dict(m.metrics),
         "provenance": dict(m.provenance)} for p, m, e in zip(paths, manifests, errors, strict=True)]
    first = manifests[0]
    manifest = dataclasses.replace(
        first, name=name or out.stem, sha256=sha256_file(out), model_file=out.name, metrics={},
        provenance={"tool": "edge-agent-convert ensemble", "created": now, "combine": "mean of logits",
                    "members": members})
    write(manifest, manifest_path_for(out))
    return {"model_file": str(out), "manifest_file": str(manifest_path_for(out)), "bytes": len(merged),
            "members": [str(p) for p in paths], "input_error_steps": errors}
