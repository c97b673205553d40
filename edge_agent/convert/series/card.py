"""The model card ``train-series`` writes beside a series model (markdown; no TensorFlow)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..report import confusion_markdown


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _float_int8_table(what: str) -> list[str]:
    """The held-out section's heading and the head of its float32 / int8 table."""
    return [f"## Held-out test sources ({what})", "", "| | float32 | int8 |", "|---|---:|---:|"]


def markdown(r: Mapping[str, Any]) -> str:
    p, m, inp, g = r["provenance"], r["metrics"], r["input"], r["graph"]
    chans = ", ".join(f"`{c['name']}`" + (f" ({c['unit']})" if c["unit"] else "") for c in inp["channels"])
    rate = f"{inp['rate_hz']:g} Hz" if inp["rate_hz"] else "event data (one record per sample, not resampled)"
    data = p["dataset"].rstrip("/")
    parent, _, folder = data.rpartition("/")
    synthetic = (f"**SYNTHETIC** data made by `python tools/gen_sensor_data.py --out {parent or '.'} --tasks {folder}"
                 f" --seed {p.get('data_seed', 0)}`" if p.get("synthetic") else "recordings")
    sp = p["split"]
    lines = [
        f"# Model card: {r['name']}",
        "",
        f"- task: `{r['name']}`, {'anomaly score vs a calibrated threshold' if r.get('anomaly') else 'classification'}"
        f"; labels {', '.join(r['labels'])}",
        f"- architecture: `{p['arch']}` ({p['hidden']} units), {m['params']:,} parameters, "
        f"{m['macs']:,} multiply-adds per window",
        f"- input: {inp['window']} samples x {len(inp['channels'])} channels at {rate}, a window every "
        f"{inp['stride']} samples; features `{inp['features']}`; channels {chans}",
        f"- data: {synthetic} in `{p['dataset']}`",
        f"- held out by **source** (seed {p['seed']}): train {', '.join(sp['train'])}; validation "
        f"{', '.join(sp['val'])}; test {', '.join(sp['test'])} — windows {sp['windows']}",
        f"- made with: `{p['command']}` ({p['keras']}, TensorFlow {p['tensorflow']})",
        "",
        "## Size and operators (full int8: int8 input and output)",
        "",
        f"- int8 `.tflite`: {m['int8_tflite_bytes'] / 1024:.1f} KiB "
        f"(float32: {m['float_tflite_bytes'] / 1024:.1f} KiB)",
        f"- int8 operators: {', '.join(f'{k} x{v}' for k, v in sorted(g['ops'].items()))}",
        f"- float32 model's operators: {', '.join(f'{k} x{v}' for k, v in sorted(r['float_graph']['ops'].items()))}"
        f" ({r['float_graph']['subgraphs']} subgraph(s))",
        f"- recurrent layers: {p['recurrent_lowering']}",
        f"- operators left in float: {', '.join(p['float_fallback_ops']) or 'none'}; activation tensor types "
        f"{g['activation_types']}" + (
            f" — the {g['empty_float_intermediates']} FLOAT32 ones are the integer LSTM kernel's empty "
            "`intermediates` (shape [0], gate-scale holders; no float data flows; the kernel runs int8 with an "
            "int16 cell state)" if g.get("empty_float_intermediates") else ""),
        f"- full integer: {'yes' if g['full_int8'] else 'NO'}",
        "",
    ]
    if r.get("anomaly"):
        f, q = m["float"], m["int8"]
        lines += [
            *_float_int8_table(f"{q['n']} windows, {q['anomalous']} anomalous"),
            f"| ROC AUC | {f['roc_auc']} | {q['roc_auc']} |",
            f"| threshold (the percentile of normal validation error) | {f['threshold']:.4g} | {q['threshold']:.4g} |",
            f"| recall at the threshold | {_pct(f['recall'])} | {_pct(q['recall'])} |",
            f"| false alarms at the threshold | {_pct(f['false_alarm_rate'])} | {_pct(q['false_alarm_rate'])} |",
            "",
            (f"int8 ROC AUC is {m['roc_auc_drop']:+.4f} below float." if m.get("roc_auc_drop") is not None else
             "No held-out faults (no anomaly/ recordings): ROC AUC and recall are not measured; the false "
             "alarm rate above is on held-out normal windows.")
            + f" The agent uses the int8 threshold: {r['anomaly']['calibration']}.",
            "",
        ]
    else:
        f, q = m["float"], m["int8"]
        lines += [
            *_float_int8_table(f"{q['n']} windows"),
            f"| top-1 | {_pct(f['top1'])} | {_pct(q['top1'])} |",
        ]
        for name in r["labels"]:
            fp, qp = f["per_class"][name], q["per_class"][name]
            lines.append(f"| {name}: precision / recall (support {qp['support']}) | {_pct(fp['precision'])} / "
                         f"{_pct(fp['recall'])} | {_pct(qp['precision'])} / {_pct(qp['recall'])} |")
        lines += ["", f"int8 top-1 is {m['top1_drop_points']:+.2f} points from float (negative = lower).", "",
                  "### Confusion matrix, int8 (rows: truth)", "", confusion_markdown(q, r["labels"]), ""]
    lines += ["## Limits", "",
              "Trained and tested on synthetic signals only: the figures show that the pipeline and the int8 "
              "conversion work, not how the model does on real sensors. Retrain on your own recordings "
              "(docs/SENSORS.md)." if p.get("synthetic") else "Figures are for the held-out sources above.", ""]
    return "\n".join(lines)
