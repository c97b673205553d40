"""``invoke``: the bare interpreter on a fixed random input, like TFLite's ``benchmark_model``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import stateful_ops
from .common import Context, make_interpreter, model_info, summarize, thread_counts

logger = logging.getLogger("bench")

# -- invoke -----------------------------------------------------------------------------------
def bench_invoke(ctx: Context, model: Path, threads: int, edgetpu: str | None = None) -> dict[str, Any]:
    """benchmark_model's protocol: fixed random input, first invoke apart, warm-up, timed runs."""
    a = ctx.args
    t0 = time.perf_counter()
    interp = make_interpreter(ctx, model, threads, edgetpu)
    interp.allocate_tensors()
    load_ms = (time.perf_counter() - t0) * 1000
    info = model_info(model, interp)
    ctx.models.setdefault(str(model), info)
    inp = interp.get_input_details()[0]
    dtype = np.dtype(inp["dtype"])
    rng = np.random.default_rng(0)
    if dtype == np.float32:
        data = rng.uniform(-1, 1, inp["shape"]).astype(np.float32)
    else:
        lim = np.iinfo(dtype)
        data = rng.integers(lim.min, lim.max + 1, inp["shape"]).astype(dtype)
    interp.set_tensor(inp["index"], data)
    # a stateful model (a fused LSTM) is reset before each invoke, as the agent does: timed with it
    invoke = _invoke_alone(interp) if stateful_ops(interp) else interp.invoke
    t0 = time.perf_counter()
    invoke()
    first_ms = (time.perf_counter() - t0) * 1000
    for _ in range(a.warmup):
        invoke()
    samples = []
    clock = time.perf_counter
    for _ in range(a.runs):
        t0 = clock()
        invoke()
        samples.append((clock() - t0) * 1000)
    stats = summarize(samples)
    return {
        "model": info["name"], "precision": info["precision"], "threads": threads,
        "delegate": f"edgetpu:{edgetpu or 'any'}" if edgetpu is not None else "cpu",
        "reset_each_invoke": bool(stateful_ops(interp)), "load_ms": round(load_ms, 3),
        "first_ms": round(first_ms, 3), "warmup": a.warmup,
        "latency_ms": stats, "fps": round(1000.0 / stats["mean"], 3) if stats["mean"] else 0.0,
    }


def _invoke_alone(interp: Any) -> Any:
    def invoke() -> None:
        interp.reset_all_variables()
        interp.invoke()
    return invoke


def mode_invoke(ctx: Context) -> dict[str, Any]:
    return {"invoke": [bench_invoke(ctx, ctx.model, t, ctx.args.edgetpu) for t in thread_counts(ctx)]}
