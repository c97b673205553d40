"""``edge-agent calibrate --task voice --mic NAME --minutes N``: the threshold that fits this room.

It listens to the room as it is (TV on, people talking, no commands meant), runs the model's own
spotter on every 80 ms hop, and counts, for each threshold of :data:`THRESHOLDS`, the commands the
recognizer would have announced: every one is a false accept. The chosen operating point is the
lowest threshold whose rate stays within ``--max-fa-per-hour`` (a lower threshold hears more of
the commands people do say); it is written into the config file as ``[postprocess] threshold``
(which the agent already prefers over the manifest's), with the measured rate and its 95 %
interval (exact Poisson) as a comment, and the whole curve is printed.

Enrollment (:mod:`edge_agent.convert.voice.enroll`) re-tunes its threshold with the same
functions on the room sound it is given. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from ..errors import ConfigError, EdgeAgentError, ExitCode
from .recognizer import Recognizer, RecognizerSettings

THRESHOLDS: Final = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99)
DEFAULT_MAX_FA_PER_HOUR: Final = 2.0
DEFAULT_CONFIG: Final = Path("/etc/edge-agent/voice.toml")  # what `edge-agent install-service` writes
CONFIDENCE: Final = 0.95


@dataclasses.dataclass(frozen=True)
class Scored:
    """One model's scores over a stream: one row per hop the head ran, at stream time ``times_ms``."""

    labels: tuple[str, ...]
    times_ms: np.ndarray
    scores: np.ndarray
    seconds: float

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0


def score_hops(spotter: Any, hops: Sequence[np.ndarray] | Any, labels: Sequence[str], seconds: float) -> Scored:
    """Push every hop through ``spotter`` (the agent's own, so what is measured is what runs)."""
    times, rows = [], []
    for hop in hops:
        before = spotter.inferences
        spotter.push(hop)
        if spotter.inferences > before and spotter.last_scores is not None:
            times.append(spotter.time_ms)
            rows.append(np.asarray(spotter.last_scores, np.float32))
    return Scored(tuple(labels), np.asarray(times, np.float64),
                  np.stack(rows) if rows else np.zeros((0, len(labels)), np.float32), seconds)


def count_accepts(scored: Scored, settings: RecognizerSettings, threshold: float) -> int:
    """The commands the recognizer announces over ``scored`` at ``threshold`` (for every command)."""
    rec = Recognizer(scored.labels, dataclasses.replace(settings, threshold=threshold, thresholds={}))
    return sum(1 for t, p in zip(scored.times_ms, scored.scores, strict=True) if rec.update(p, float(t)))


def curve(scored: Scored, settings: RecognizerSettings,
          thresholds: Sequence[float] = THRESHOLDS) -> dict[float, int]:
    return {th: count_accepts(scored, settings, th) for th in thresholds}


def _poisson_cdf(k: int, lam: float) -> float:
    term = total = math.exp(-lam)
    for i in range(1, k + 1):
        term *= lam / i
        total += term
    return total


def poisson_interval(count: int, hours: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Garwood) interval for a rate per hour from ``count`` events in ``hours``."""
    tail = (1 - confidence) / 2

    def solve(f: Callable[[float], float], target: float) -> float:  # f decreasing in lam: f(lam) = target
        lo, hi = 0.0, 10.0 * count + 20.0
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) > target else (lo, mid)
        return (lo + hi) / 2

    low = 0.0 if count == 0 else solve(lambda lam: _poisson_cdf(count - 1, lam), 1 - tail)
    high = solve(lambda lam: _poisson_cdf(count, lam), tail)
    return low / hours, high / hours


def choose(counts: dict[float, int], hours: float, max_fa_per_hour: float) -> float:
    """The lowest threshold whose measured rate is within ``max_fa_per_hour``; the highest if none is."""
    ok = [th for th in sorted(counts) if counts[th] / hours <= max_fa_per_hour + 1e-12]
    return ok[0] if ok else max(counts)


def format_curve(counts: dict[float, int], hours: float, chosen: float) -> str:
    lines = ["threshold  false accepts  per hour"]
    for th in sorted(counts):
        mark = "  <- chosen" if th == chosen else ""
        lines.append(f"{th:9.2f}  {counts[th]:13d}  {counts[th] / hours:8.2f}{mark}")
    return "\n".join(lines)


def write_threshold(path: Path, threshold: float, note: str) -> None:
    """Set ``[postprocess] threshold`` in the TOML file (created if absent), keeping everything else,
    then read it back through the config loader so a broken file is never left behind."""
    from .. import config as config_mod

    text = path.read_text(encoding="utf-8") if path.exists() else ""
    line = f"threshold = {threshold:g}  # {note}"
    lines = text.splitlines()
    start = next((i for i, x in enumerate(lines) if x.strip() == "[postprocess]"), None)
    if start is None:
        lines += ["", "[postprocess]", line] if lines else ["[postprocess]", line]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
        found = [i for i in range(start + 1, end) if re.match(r"\s*threshold\s*=", lines[i])]
        if found:
            lines[found[0]] = line
        else:
            lines.insert(start + 1, line)
    new = "\n".join(lines) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(new, encoding="utf-8")
        config_mod.load_file(config_mod.Config(), tmp)
        tmp.replace(path)
    except OSError as e:
        raise ConfigError(f"config {path}: cannot write the threshold ({e.strerror})") from None


def result_line(counts: dict[float, int], hours: float, chosen: float) -> str:
    low, high = poisson_interval(counts[chosen], hours)
    return (f"false accepts in your room: {counts[chosen] / hours:.1f} an hour at threshold {chosen:g} "
            f"(95 % interval {low:.1f}-{high:.1f} an hour, {hours * 60:.0f} min heard)")


# -- the command --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-agent calibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="voice", choices=("voice",))
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--mic", help="the microphone to listen on (a name or index, as for the agent)")
    where.add_argument("--source", type=Path, help="a WAV file of the room instead of a microphone")
    p.add_argument("--minutes", type=float, default=30.0, help="how long to listen (microphone)")
    p.add_argument("--model", type=Path, help="the voice model (default: the config's, else the shipped one)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the TOML file the threshold is written "
                   f"into (default {DEFAULT_CONFIG})")
    p.add_argument("--max-fa-per-hour", type=float, default=DEFAULT_MAX_FA_PER_HOUR)
    p.add_argument("--dry-run", action="store_true", help="print the curve, write nothing")
    return p


def _hops(source: Any, hop: int, total: int, progress: Callable[[int], None]) -> Any:
    got = 0
    while got < total and not source.ended:
        block = source.read(hop, timeout=2.0)
        if block is None:
            continue
        got += len(block.samples)
        progress(got)
        yield block.samples


def run(a: argparse.Namespace, out: Any = None) -> dict[str, Any]:
    from .. import config as config_mod
    from ..agents.voice import make_audio_source
    from ..loader import resolve_model_path
    from .spotter import load_voice_model, make_spotter

    out = out or sys.stderr
    if not a.minutes > 0 or not a.max_fa_per_hour >= 0:
        raise ConfigError("--minutes must be positive and --max-fa-per-hour not negative")
    cfg = config_mod.Config()
    if a.config.exists():
        config_mod.load_file(cfg, a.config)
    cfg.task = "voice"
    cfg.source.mic, cfg.source.source = a.mic, (str(a.source) if a.source else None)
    cfg.source.camera, cfg.source.picamera = None, False
    model_path = a.model or resolve_model_path(cfg)
    model = load_voice_model(model_path, threads=1)
    settings = model.settings
    spotter = make_spotter(model)
    source = make_audio_source(cfg, model.spec.sample_rate)
    rate = model.spec.sample_rate
    total = int(a.minutes * 60 * rate) if a.mic else 2**62
    source.open()
    started = time.monotonic()
    minute = [0]

    def progress(samples: int) -> None:
        m = samples // (60 * rate)
        if m > minute[0]:
            minute[0] = m
            of = f" of {a.minutes:g}" if a.mic else ""
            print(f"calibrate: minute {m}{of} heard", file=out, flush=True)

    try:
        scored = score_hops(spotter, _hops(source, spotter.stride, total, progress), model.labels,
                            seconds=0.0)
    finally:
        source.close()
    seconds = spotter.time_ms / 1000.0
    scored = dataclasses.replace(scored, seconds=seconds)
    if scored.hours <= 0 or not len(scored.times_ms):
        raise ConfigError(f"calibrate: {seconds:.1f} s of audio is too little to measure anything")
    counts = curve(scored, settings)
    chosen = choose(counts, scored.hours, a.max_fa_per_hour)
    low, high = poisson_interval(counts[chosen], scored.hours)
    print(format_curve(counts, scored.hours, chosen), file=out)
    note = (f"edge-agent calibrate: {counts[chosen] / scored.hours:.2f} false accepts/h "
            f"(95 % {low:.2f}-{high:.2f}) in {seconds / 60:.1f} min")
    if not a.dry_run:
        write_threshold(a.config, chosen, note)
    line = result_line(counts, scored.hours, chosen) + ("" if a.dry_run else f"; written to {a.config}")
    print(line, flush=True)
    return {"threshold": chosen, "false_accepts": counts[chosen], "hours": scored.hours,
            "interval_per_hour": [low, high], "curve": {str(k): v for k, v in counts.items()},
            "seconds": round(time.monotonic() - started, 1)}


def main(argv: Sequence[str]) -> int:
    a = build_parser().parse_args(list(argv))
    try:
        run(a)
    except EdgeAgentError as e:
        print(f"edge-agent calibrate: error: {e}", file=sys.stderr)
        return int(e.exit_code)
    except KeyboardInterrupt:
        return ExitCode.OK
    return ExitCode.OK
