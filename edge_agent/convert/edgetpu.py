"""Check a ``.tflite`` against the Edge TPU's requirements, and compile it when the compiler exists.

The Edge TPU runs only fully int8-quantized graphs with static shapes built from a fixed set of
operators (Coral's "supported operations" table). ``edgetpu_compiler`` maps operators to the TPU
in graph order and stops at the first one it cannot map: that operator and *everything after
it* run on the CPU. So one unsupported op near the input costs the whole model; this check
reports exactly which ops would fall back before anyone owns a Coral. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

from ..errors import ModelError
from ..manifest import load, manifest_path_for, sha256_file, write
from . import graph

# Coral's documented supported operations (coral.ai/docs/edgetpu/models-intro), as TFLite builtins.
SUPPORTED_OPS: Final = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN",
    "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU",
    "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT",
    "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE",
    "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
})
COMPILER: Final = "edgetpu_compiler"
HOW_TO_GET: Final = (
    "edgetpu_compiler is not installed; it runs on x86-64 Debian/Ubuntu: add Coral's apt repository "
    "(https://coral.ai/docs/edgetpu/compiler/) and `apt install edgetpu-compiler`, or use Coral's Colab "
    "notebook, then run this command again"
)
COMPILE_TIMEOUT_S: Final = 600


def check(model_path: Path) -> dict[str, Any]:
    """Which requirements hold, and which operators would run on the CPU."""
    g = graph.read(model_path)
    problems: list[str] = []
    if g.subgraphs > 1:
        problems.append(f"{g.subgraphs} subgraphs (the Edge TPU maps only the first)")
    floats = g.float_ops()
    if floats or not g.is_full_int8():
        problems.append(f"not fully int8-quantized ({len(floats)} float op(s))")
    dynamic = g.dynamic_tensors()
    if dynamic:
        problems.append(f"{len(dynamic)} tensor(s) with dynamic shapes, e.g. {dynamic[0].name}")
    first_bad = None
    for op in g.ops:
        if op.name not in SUPPORTED_OPS or g.touches_float(op):
            first_bad = op
            break
    fallback = [] if first_bad is None else [f"{op.name}#{op.index}" for op in g.ops[first_bad.index :]]
    unsupported = sorted({op.name for op in g.ops if op.name not in SUPPORTED_OPS})
    if unsupported:
        problems.append("operators the Edge TPU does not support: " + ", ".join(unsupported))
    mapped = len(g.ops) - len(fallback)
    return {
        "model": str(model_path),
        "compatible": not problems,
        "problems": problems,
        "ops": len(g.ops),
        "ops_on_edgetpu": mapped,
        "cpu_fallback": fallback,
        "first_unsupported": None if first_bad is None else f"{first_bad.name}#{first_bad.index}",
    }


def compile_model(model_path: Path, out_dir: Path | None = None) -> dict[str, Any]:
    """Run ``edgetpu_compiler`` and write ``<stem>_edgetpu.tflite`` with its own manifest."""
    exe = shutil.which(COMPILER)
    if exe is None:
        return {"compiled": False, "message": HOW_TO_GET}
    out_dir = out_dir or model_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(
            [exe, "--show_operations", "--out_dir", str(out_dir), str(model_path)],
            capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        raise ModelError(f"{COMPILER} did not finish within {COMPILE_TIMEOUT_S} s on {model_path}") from None
    compiled = out_dir / f"{model_path.stem}_edgetpu.tflite"
    if proc.returncode != 0 or not compiled.is_file():
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise ModelError(f"{COMPILER} failed on {model_path}: {last[-1] if last else f'exit {proc.returncode}'}")
    result: dict[str, Any] = {"compiled": True, "model_file": str(compiled), "log": proc.stdout}
    src_manifest = manifest_path_for(model_path)
    if src_manifest.is_file():
        m = load(src_manifest)
        version = proc.stdout.splitlines()[0] if proc.stdout else COMPILER
        prov = {**m.provenance, "edgetpu_compiler": version, "compiled_from": model_path.name}
        new = dataclasses.replace(m, sha256=sha256_file(compiled), model_file=compiled.name,
                                  name=f"{m.name}_edgetpu", provenance=prov, extra={**m.extra, "edgetpu": True})
        write(new, manifest_path_for(compiled))
        result["manifest_file"] = str(manifest_path_for(compiled))
    return result


def format_text(report: dict[str, Any]) -> str:
    verdict = "Edge TPU compatible" if report["compatible"] else "NOT fully Edge TPU compatible"
    lines = [f"{report['model']}: {verdict}"]
    lines += [f"  - {p}" for p in report["problems"]]
    lines.append(f"  {report['ops_on_edgetpu']}/{report['ops']} operators would run on the Edge TPU")
    if report["cpu_fallback"]:
        cpu = ", ".join(report["cpu_fallback"])
        lines.append(f"  from {report['first_unsupported']} on, these run on the CPU: {cpu}")
    comp = report.get("compile")
    if comp:
        lines.append(f"  wrote {comp['model_file']}" if comp["compiled"] else f"  {comp['message']}")
    return "\n".join(lines)
