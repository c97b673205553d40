"""``audio``: the voice agent on a WAV file, through the run loop, timed through its hook."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Final

import numpy as np

from edge_agent import runtime, service
from edge_agent.config import Config

from .common import Context, summarize, thread_counts
from .pipeline import BenchHook, Recorder

logger = logging.getLogger("bench")

# -- audio (the voice agent's own objects, timed through its hook) ------------------------------
AUDIO_BENCH_S: Final = 30.0  # seconds of generated audio when no --source WAV is given


def default_wav(ctx: Context, rate: int) -> Path:
    """A WAV of quiet noise with a tone now and then: the spotter infers on every hop whatever
    the audio holds, so the content changes no timing, only what is published."""
    from edge_agent.sources.wav import write_wav

    path = ctx.workdir / "bench.wav"
    if not path.exists():
        rng = np.random.default_rng(0)
        n = int(AUDIO_BENCH_S * rate)
        audio = (0.01 * rng.standard_normal(n)).astype(np.float32)
        t = np.arange(rate // 2) / rate
        for start in range(rate, n - rate, 3 * rate):
            audio[start:start + len(t)] += (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        write_wav(path, audio, rate)
    return path


def bench_audio(ctx: Context, model: Path, threads: int) -> dict[str, Any]:
    """The voice agent on a WAV as fast as possible, through ``runtime.run_loop``: hops per
    second, the real-time factor (compute seconds per second of audio, in this run), and the
    per-hop stages (wait for audio, log-mel + invoke + recognizer) from the agent's hook."""
    from edge_agent.agents.voice import VoiceAgent
    from edge_agent.publish.stdout import StdoutPublisher

    a = ctx.args
    cfg = Config(task="voice", device_id="bench", log_level="warning", sink="stdout")
    cfg.model.path, cfg.model.threads = str(model), threads
    kind, loaded = service.load_model(cfg)
    if kind != "audio":
        raise SystemExit(f"bench.py audio: model {model}: its manifest is not an audio model's")
    cfg.source.source = str(Path(a.source) if a.source else default_wav(ctx, loaded.spec.sample_rate))
    rec = Recorder()
    hook = BenchHook(rec)
    with open(os.devnull, "w") as devnull:
        agent = VoiceAgent(cfg, loaded, StdoutPublisher(devnull), hook=hook)
        agent.start()
        try:
            started = time.perf_counter()
            runtime.run_loop(agent, agent.publisher, runtime.Controls(max_frames=a.warmup + a.runs, hook=hook))
            elapsed = time.perf_counter() - started
        finally:
            agent.stop()
    hops = rec.frames[a.warmup:]
    hop_s = loaded.settings.stride_ms / 1000
    infer = summarize([h.get("infer", 0.0) for h in hops])
    return {
        "threads": threads, "source": cfg.source.source, "hops": len(hops), "hop_ms": loaded.settings.stride_ms,
        "hops_per_s": round(len(rec.frames) / elapsed, 3) if elapsed > 0 else 0.0,
        "real_time_factor": round(infer["mean"] / 1000 / hop_s, 5) if hop_s else 0.0,
        "stages": {"wait": summarize([h.get("wait", 0.0) for h in hops]), "infer": infer},
        "latency_ms": summarize([h["latency"] for h in hops]), "commands": agent.published,
    }


def mode_audio(ctx: Context) -> dict[str, Any]:
    return {"audio": [bench_audio(ctx, ctx.model, t) for t in thread_counts(ctx)]}
