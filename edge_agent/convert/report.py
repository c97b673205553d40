"""Classification metrics and the human-readable conversion report (markdown + JSON).

Metrics are plain numpy on (true, predicted) label indices so the float model, the int8 model
and ``evaluate`` all report the same figures the same way. No TensorFlow here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """top-1, per-class precision / recall / support and the confusion matrix (rows: truth)."""
    t = np.asarray(y_true, np.int64)
    p = np.asarray(y_pred, np.int64)
    n = len(labels)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (t, p), 1)
    per_class = {}
    for i, name in enumerate(labels):
        tp = int(confusion[i, i])
        predicted = int(confusion[:, i].sum())
        support = int(confusion[i, :].sum())
        per_class[name] = {
            "precision": round(tp / predicted, 4) if predicted else None,
            "recall": round(tp / support, 4) if support else None,
            "support": support,
        }
    return {
        "top1": round(float((t == p).mean()), 4) if len(t) else None,
        "n": len(t),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _kib(n: int | None) -> str:
    return "n/a" if not n else f"{n / 1024:.1f} KiB"


def confusion_markdown(m: Mapping[str, Any], labels: Sequence[str]) -> str:
    head = "| true \\ predicted | " + " | ".join(labels) + " |"
    rule = "|---|" + "---:|" * len(labels)
    rows = [
        f"| **{name}** | " + " | ".join(str(v) for v in row) + " |"
        for name, row in zip(labels, m["confusion"], strict=True)
    ]
    return "\n".join([head, rule, *rows])


def markdown(result: Mapping[str, Any]) -> str:
    """The report a person reads: what was converted, what it costs, what quantization changed."""
    labels = result["labels"]
    met = result["metrics"]
    f, q = met.get("float"), met.get("int8")
    lines = [
        f"# Conversion report: {result['name']}",
        "",
        f"- model: `{result['model_file']}` ({result['io_type']} input/output, full integer: "
        f"{'yes' if result['graph']['full_int8'] else 'NO'})",
        f"- source: `{result['provenance'].get('source_model')}`",
        f"- data: `{result['provenance'].get('dataset')}` (seed {result['provenance'].get('seed')}, "
        f"split {result['provenance'].get('split', {}).get('sizes')})",
        f"- input: {result['input']['width']}x{result['input']['height']}x{result['input']['channels']} "
        f"{result['input']['color_order']}, (pixel - {result['input']['mean'][0]:g}) / {result['input']['std'][0]:g}",
        f"- command: `{result['provenance'].get('command')}`",
        "",
        "## Size and cost",
        "",
        "| | float32 .tflite | int8 .tflite |",
        "|---|---:|---:|",
        f"| file size | {_kib(met.get('float_tflite_bytes'))} | {_kib(met.get('int8_tflite_bytes'))} "
        f"({100 * met.get('size_ratio', 0):.1f} % of float) |",
        f"| parameters | {met.get('params', 0):,} | |",
        f"| multiply-adds per image | {met.get('macs', 0):,} | |",
        "",
        f"Operators: {', '.join(f'{k} x{v}' for k, v in sorted(result['graph']['ops'].items()))}",
        "",
    ]
    if f and q:
        lines += [
            f"## Accuracy on the held-out test split ({f['n']} images)",
            "",
            "| | float32 | int8 |",
            "|---|---:|---:|",
            f"| top-1 | {_pct(f['top1'])} | {_pct(q['top1'])} |",
        ]
        for name in labels:
            fp, qp = f["per_class"][name], q["per_class"][name]
            lines.append(
                f"| {name}: precision / recall | {_pct(fp['precision'])} / {_pct(fp['recall'])} | "
                f"{_pct(qp['precision'])} / {_pct(qp['recall'])} |"
            )
        lines += [
            "",
            f"int8 top-1 is {met['top1_drop_points']:+.2f} points from float (negative = lower).",
            "",
            "### Confusion matrix, int8",
            "",
            confusion_markdown(q, labels),
            "",
            "### Confusion matrix, float32",
            "",
            confusion_markdown(f, labels),
            "",
        ]
    else:
        lines += ["No labelled held-out images were given, so no accuracy is reported.", ""]
    return "\n".join(lines)


def write(result: Mapping[str, Any], md_path: Path) -> Path:
    """Write ``<name>.md`` and ``<name>.json`` (same stem); returns the JSON path."""
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(markdown(result), encoding="utf-8")
    json_path = md_path.with_suffix(".json")
    json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return json_path
