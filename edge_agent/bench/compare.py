"""``compare``: invoke for several models × threads × backends, with int8-vs-float pairs."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from .common import Context, thread_counts
from .invoke import bench_invoke

logger = logging.getLogger("bench")

def _stem(name: str) -> str:
    return re.sub(r"[_-]?(float32|float|fp32|f32|int8|uint8|quant|q)$", "", name)


def int8_pairs(rows: list[dict[str, Any]], models: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Float and int8 variants of the same model (same name apart from the precision suffix, or
    the only two models given), at the same threads and delegate: speedup and accuracy cost."""
    by_key: dict[tuple[str, int, str], dict[str, dict[str, Any]]] = {}
    names = {r["model"] for r in rows}
    for r in rows:
        key = _stem(r["model"]) if len(names) > 2 else "models"
        by_key.setdefault((key, r["threads"], r["delegate"]), {})[r["precision"]] = r
    pairs = []
    for (_, threads, delegate), got in by_key.items():
        if "float" not in got or "int8" not in got:
            continue
        f, q = got["float"], got["int8"]
        speedup = f["latency_ms"]["mean"] / q["latency_ms"]["mean"]
        acc_f = models[f["path"]]["accuracy"]
        acc_q = models[q["path"]]["accuracy"]
        cost = acc_q.get("top1_drop_points")
        if cost is None and acc_f.get("top1", acc_f.get("float_top1")) is not None and \
                acc_q.get("top1", acc_q.get("int8_top1")) is not None:
            cost = round(100 * (acc_q.get("top1", acc_q.get("int8_top1")) - acc_f.get("top1", acc_f.get("float_top1"))),
                         2)
        text = f"{q['model']} (int8) is {speedup:.2f}× faster than {f['model']} (float) at {threads} thread(s) " \
               f"on {delegate}"
        text += f", top-1 {cost:+.2f} points" if cost is not None else ", accuracy cost unknown (no manifest metrics)"
        pairs.append({"float": f["model"], "int8": q["model"], "threads": threads, "delegate": delegate,
                      "speedup": round(speedup, 3), "top1_change_points": cost, "summary": text})
    return pairs


def mode_compare(ctx: Context) -> dict[str, Any]:
    """Invoke for every model × threads × backend, with ratios to the first and int8/float pairs."""
    delegates: list[str | None] = [None] + ([ctx.args.edgetpu] if ctx.args.edgetpu is not None else [])
    rows = []
    for model in ctx.args.model:
        for delegate in delegates:
            for t in thread_counts(ctx):
                row = bench_invoke(ctx, Path(model), t, delegate)
                row["path"] = str(Path(model))
                rows.append(row)
                logger.info("%s %s %d thread(s): %.2f ms mean", row["model"], row["delegate"], t,
                            row["latency_ms"]["mean"])
    ref = rows[0]["latency_ms"]["mean"]
    for r in rows:
        r["speed_vs_first"] = round(ref / r["latency_ms"]["mean"], 3)
    return {"compare": {"rows": rows, "int8_vs_float": int8_pairs(rows, ctx.models)}}
