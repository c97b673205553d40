"""``python -m edge_agent.bench MODE ...`` (also ``tools/bench.py``): parse, measure, write."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from edge_agent.engine import find_backend
from edge_agent.errors import EdgeAgentError

from .audio import mode_audio
from .baseline import mode_baseline
from .common import (
    DEFAULT_RUNS,
    DEFAULT_WARMUP,
    SCHEMA,
    STARTUP_REPEATS,
    Context,
    machine_info,
    machine_warnings,
    thread_counts,
)
from .compare import mode_compare
from .gate import mode_gate
from .invoke import mode_invoke
from .live import mode_live
from .peer import mode_peer
from .pipeline import mode_pipeline
from .report import print_summary, write_csv, write_plot
from .sensor import mode_sensor
from .startup import mode_startup
from .suite import mode_all, targets

logger = logging.getLogger("bench")

ModeFn = Callable[[Context], dict[str, Any]]
# Explicit table of modes: a function (Context) → results section.
MODES: Final[dict[str, ModeFn]] = {
    "audio": mode_audio,
    "peer": mode_peer,
    "gate": mode_gate,
    "live": mode_live,
    "sensor": mode_sensor,
    "invoke": mode_invoke,
    "pipeline": mode_pipeline,
    "baseline": mode_baseline,
    "startup": mode_startup,
    "compare": mode_compare,
    "all": mode_all,
}


# -- entry point ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench.py", description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", nargs="?", default="invoke", choices=sorted(MODES), help="what to measure (default invoke)")
    p.add_argument("--model", action="append", required=True, help=".tflite file (repeat for compare)")
    p.add_argument("--threads", default="1", help="interpreter threads; a list like 1,2 runs each (default 1)")
    p.add_argument("--edgetpu", nargs="?", const="", default=None, metavar="usb|pci|usb:N",
                   help="run on a Coral Edge TPU (compare: as well as the CPU)")
    p.add_argument("--source", help="video file or image folder (default: a synthetic 640x480 mp4)")
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=f"timed invokes or frames (default {DEFAULT_RUNS})")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help=f"untimed first ones (default {DEFAULT_WARMUP})")
    p.add_argument("--camera-fps", type=float, default=0.0,
                   help="pipeline: pace the video like a camera at this rate (latency as a user sees it)")
    p.add_argument("--rounds", type=int, default=1, help="all: repeat the set this many times, interleaved")
    p.add_argument("--startup-repeats", type=int, default=STARTUP_REPEATS, help="start-up measurements")
    p.add_argument("--skip-startup", action="store_true", help="all: leave out the start-up measurement")
    p.add_argument("--chunk", type=int, default=10, help="sensor: samples per push (a serial line or MQTT message)")
    p.add_argument("--workers", default="1", help="peer: the agent's --workers; a list like 1,2 runs each")
    p.add_argument("--gate-level", type=float, default=2.0,
                   help="gate: the agent's --change-gate for the gated run (default 2.0 grey levels)")
    p.add_argument("--before", type=Path, help="peer: also run the agent of this other checkout, round by round")
    p.add_argument("--mqtt-host", help="publish through this broker (pipeline and baseline)")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--title", default="", help="plot and report title")
    p.add_argument("--json", type=Path, help="write the full report here")
    p.add_argument("--csv", type=Path, help="write one row per figure here")
    p.add_argument("--plot", type=Path, help="write a PNG chart here (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no summary on stdout")
    return p


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse, measure, write; returns the report (the tests call this)."""
    args = build_parser().parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.rounds < 1 or args.startup_repeats < 1:
        raise SystemExit("bench.py: --runs, --rounds and --startup-repeats must be >= 1, --warmup >= 0")
    for m in args.model:
        if not Path(m).is_file():
            raise SystemExit(f"bench.py: model {m}: file not found")
    backend = find_backend()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        ctx = Context(args, backend, Path(tmp))
        machine = machine_info(backend)
        ctx.warnings += machine_warnings(machine)
        started = time.time()
        results = MODES[args.mode](ctx)
        after = machine_info(backend)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": args.mode,
        "title": args.title or f"bench {args.mode}: {', '.join(Path(m).name for m in args.model)}",
        "created": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "command": "python tools/bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine,
        "machine_after": {k: after[k] for k in ("temperature_c", "throttled", "load_avg")},
        "models": ctx.models,
        "settings": {"threads": thread_counts(ctx), "runs": args.runs, "warmup": args.warmup, "rounds": args.rounds,
                     "edgetpu": args.edgetpu,
                     "source": args.source if args.mode in ("invoke", "audio", "sensor", "gate") else str(ctx.source),
                     "mqtt": f"{args.mqtt_host}:{args.mqtt_port}" if args.mqtt_host else None},
        "results": results,
        "targets": targets(results),
        "warnings": ctx.warnings,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        write_csv(report, args.csv)
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        write_plot(report, args.plot)
    if not args.quiet:
        print_summary(report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        run(argv)
    except EdgeAgentError as e:
        print(f"bench.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
