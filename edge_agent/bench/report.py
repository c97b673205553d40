"""Writing a report: CSV rows, a PNG chart, a summary on stdout."""

from __future__ import annotations

import csv
import logging
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("bench")

# -- output -----------------------------------------------------------------------------------
def csv_rows(node: Any, path: str = "") -> Iterator[dict[str, Any]]:
    """Flatten a report: one row per statistics block or number, named by its JSON path."""
    if isinstance(node, dict):
        if "p50" in node and "max" in node:
            yield {"path": path, **{k: node[k] for k in ("n", "min", "mean", "p50", "p90", "p99", "max")}}
            return
        for k, v in node.items():
            yield from csv_rows(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from csv_rows(v, f"{path}[{i}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield {"path": path, "value": node}


def write_csv(report: dict[str, Any], path: Path) -> None:
    fields = ["path", "value", "n", "min", "mean", "p50", "p90", "p99", "max"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in csv_rows(report["results"], "results"):
            writer.writerow(row)


def write_plot(report: dict[str, Any], path: Path) -> None:
    """FPS side by side (bare invoke, agent, tutorial loop) and where a frame's time goes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None
    res = report["results"]
    panels: list[Callable[[Any], None]] = []

    def fps_panel(ax: Any) -> None:
        kinds = [k for k in ("invoke", "pipeline", "baseline") if res.get(k)]
        threads = sorted({r["threads"] for k in kinds for r in res[k]})
        width = 0.8 / max(1, len(kinds))
        names = {"invoke": "bare invoke", "pipeline": "edge-agent pipeline", "baseline": "tutorial loop"}
        for i, k in enumerate(kinds):
            vals = [statistics.median([r["fps"] for r in res[k] if r["threads"] == t] or [0]) for t in threads]
            bars = ax.bar([j + i * width for j in range(len(threads))], vals, width, label=names[k])
            ax.bar_label(bars, fmt="%.0f", fontsize=8)
        ax.set_xticks([j + width * (len(kinds) - 1) / 2 for j in range(len(threads))],
                      [f"{t} thread{'s' if t > 1 else ''}" for t in threads])
        ax.set_ylabel("frames per second (median of rounds)")
        ax.set_title("Throughput")
        ax.legend(fontsize=8)

    def stage_panel(ax: Any) -> None:
        stages = ("capture", "resize", "preprocess", "invoke", "postprocess", "publish")
        bars = []
        for k, label in (("pipeline", "agent"), ("baseline", "tutorial")):
            for t in sorted({r["threads"] for r in res.get(k) or []}):
                rows = [r for r in res[k] if r["threads"] == t]
                bars.append((f"{label}\n{t}T", {s: statistics.median([r["stages"].get(s, {}).get("mean", 0.0)
                                                                        for r in rows]) for s in stages}))
        bottom = np.zeros(len(bars))
        for s in stages:
            vals = np.array([b[1][s] for b in bars])
            ax.bar([b[0] for b in bars], vals, bottom=bottom, label=s)
            bottom += vals
        ax.set_ylabel("ms per frame (mean; the agent's capture and resize run in its reader thread)")
        ax.set_title("Where the time goes")
        ax.legend(fontsize=8)

    def compare_panel(ax: Any) -> None:
        rows = res["compare"]["rows"]
        labels = [f"{r['model']}\n{r['delegate']} {r['threads']}T" for r in rows]
        vals = [r["latency_ms"]["mean"] for r in rows]
        bars = ax.barh(labels, vals)
        ax.bar_label(bars, labels=[f"{v:.1f} ms ({r['speed_vs_first']:.2f}×)" for v, r in zip(vals, rows,
                                                                                              strict=True)],
                     fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("mean invoke latency, ms (× = speed relative to the first row)")
        ax.set_title("Models, precisions and threads")

    if any(res.get(k) for k in ("invoke", "pipeline", "baseline")):
        panels.append(fps_panel)
    if res.get("pipeline") or res.get("baseline"):
        panels.append(stage_panel)
    if res.get("compare"):
        panels.append(compare_panel)
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for panel, ax in zip(panels, axes[0], strict=True):
        panel(ax)
    fig.suptitle(f"{report['title']} — {report['machine']['cpu']} ({report['machine']['cores']} cores)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_summary(report: dict[str, Any], out: Any = None) -> None:
    out = sys.stdout if out is None else out  # looked up per call, not bound at import
    res = report["results"]
    w = out.write
    m = report["machine"]
    w(f"machine: {m['cpu']}, {m['cores']} cores, board {m['board'] or '-'}, governor {m['governor'] or '-'}, "
      f"load {m['load_avg'][0]}, {m['interpreter']['package']} {m['interpreter']['version']}\n")
    for info in report["models"].values():
        macs = f"{info['macs'] / 1e6:.1f} M MACs" if info.get("macs") else "MACs n/a"
        params = f"{info['params'] / 1e6:.2f} M params" if info.get("params") else "params n/a"
        w(f"model: {info['name']} ({info['precision']}, {info['bytes'] / 1e6:.2f} MB, {params}, {macs})\n")
    for r in res.get("invoke") or []:
        s = r["latency_ms"]
        w(f"invoke   {r['threads']}T {r['delegate']}: first {r['first_ms']:.1f} ms, min {s['min']:.2f} mean "
          f"{s['mean']:.2f} p50 {s['p50']:.2f} p90 {s['p90']:.2f} p99 {s['p99']:.2f} max {s['max']:.2f} ms, "
          f"{r['fps']:.1f} FPS\n")
    for kind in ("pipeline", "pipeline_camera", "baseline"):
        for r in res.get(kind) or []:
            st = " ".join(f"{k} {v['p50']:.2f}" for k, v in r["stages"].items())
            w(f"{kind:8} {r['threads']}T: {r['fps']:.1f} FPS; p50 ms: {st}; capture→publish p50 "
              f"{r['latency_ms']['p50']:.1f} p99 {r['latency_ms']['p99']:.1f} ms\n")
    if res.get("live"):
        lv = res["live"]
        w(f"live     {lv['threads']}T: {lv['fps_without']['median']:.1f} FPS without a viewer, "
          f"{lv['fps_with']['median']:.1f} with one (MJPEG); with/without {lv['with_vs_without']['median']:.3f} "
          f"(min {lv['with_vs_without']['min']:.3f}, {lv['with_vs_without']['rounds']} rounds; target >= "
          f"{lv['target']}); CPU per frame with/without {lv['cpu_with_vs_without']['median']:.3f}; "
          f"one JPEG {lv['encode_ms_p50']:.2f} ms: a viewer costs at most {lv['viewer_core_pct']:.2f} % of a core\n")
    for r in res.get("startup") or []:
        w(f"startup  {r['threads']}T: first prediction {r['first_prediction_s']['median']:.2f} s (median of "
          f"{r['runs']}), peak RSS {r['peak_rss_mb']['max']:.1f} MB\n")
    if res.get("compare"):
        for r in res["compare"]["rows"]:
            w(f"compare  {r['model']} {r['delegate']} {r['threads']}T: mean {r['latency_ms']['mean']:.2f} ms, "
              f"{r['fps']:.1f} FPS, {r['speed_vs_first']:.2f}× the first\n")
        for p in res["compare"]["int8_vs_float"]:
            w(f"         {p['summary']}\n")
    peer = res.get("peer")
    if peer:
        w(f"peer     CPU-bound limit {peer['limit_fps']['median']:.1f} FPS, best tutorial loop "
          f"{peer['best_tutorial_fps']['median']:.1f} FPS (medians of {peer['limit_fps']['rounds']} rounds)\n")
        for name, a in peer["agents"].items():
            w(f"peer     {name}: {a['fps']['median']:.1f} FPS, {a['vs_tutorial']['median']:.2f}× the tutorial loop, "
              f"{a['vs_limit']['median']:.2f}× the limit, {a['cpu_ms_per_prediction']['median']:.2f} CPU ms per "
              f"prediction ({a['cpu_vs_parts']['median']:.2f}× decode + invoke)\n")
    gate = res.get("gate")
    if gate:
        off, on = gate["core_pct_off"]["median"], gate["core_pct_on"]["median"]
        w(f"gate     still scene at {gate['camera_fps']:.0f} fps: {off:.1f} % of a core without the gate, {on:.1f} % "
          f"with --change-gate {gate['gate_level']}; still p50 {gate['still_latency_ms_off']['median']:.1f} "
          f"ms ungated, {gate['still_latency_ms_on']['median']:.1f} ms gated; the change frame "
          f"{gate['change_latency_ms_on']['median']:.1f} ms (scores changed: {gate['change_scores_changed']})\n")
    for t in report["targets"]:
        sp = t["spread"]
        w(f"target   {t['name']} ({t['threads']}T): {t['value']} (target {t['target']}, rounds {sp['min']}–"
          f"{sp['max']}) {'MET' if t['met'] else 'MISSED'}\n")
    for warning in report["warnings"]:
        w(f"warning: {warning}\n")
