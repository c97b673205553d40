"""``baseline``: the loop the tutorials teach, in one thread, on the same input."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_agent.manifest import ImageInput

from .common import Context, load_manifest, make_interpreter, source_info, summarize, thread_counts

logger = logging.getLogger("bench")

# -- baseline: the tutorial loop --------------------------------------------------------------
def _frames(source: Path) -> Generator[np.ndarray, None, None]:
    """Frames forever, as a tutorial reads them: VideoCapture for a video (rewound at the end),
    imread for a folder."""
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
        while True:
            for f in files:
                img = cv2.imread(str(f))
                if img is not None:
                    yield img
    cap = cv2.VideoCapture(str(source))
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            yield frame
    finally:
        cap.release()


class _TutorialSink:
    """Where the tutorial loop publishes: the same kind of sink the pipeline used."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.client: Any = None
        self.stream: io.TextIOBase | None = None
        if args.mqtt_host:
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion

            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-baseline-{os.getpid()}")
            self.client.connect(args.mqtt_host, args.mqtt_port)
            self.client.loop_start()
        else:
            self.stream = open(os.devnull, "w")  # noqa: SIM115 - closed in close()

    def publish(self, text: str) -> None:
        if self.client is not None:
            self.client.publish("edge-agent/bench-baseline/custom/prediction", text, qos=1)
        elif self.stream is not None:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()
        if self.stream is not None:
            self.stream.close()


def bench_baseline(ctx: Context, model: Path, threads: int) -> dict[str, Any]:
    """The single-threaded read → resize → normalise → invoke → publish loop from the usual
    Raspberry Pi examples, timed per stage on the same source and model."""
    a = ctx.args
    manifest = load_manifest(model)
    interp = make_interpreter(ctx, model, threads, a.edgetpu)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    _, h, w, _ = (int(x) for x in inp["shape"])
    dtype = np.dtype(inp["dtype"])
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    spec = manifest.input if manifest and manifest.input else ImageInput(w, h)
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    labels = manifest.labels if manifest else tuple(f"class_{i}" for i in range(int(np.prod(out["shape"]))))
    sink = _TutorialSink(a)
    clock = time.perf_counter
    rows: list[dict[str, float]] = []
    frames = _frames(ctx.source)
    try:
        started = clock()
        for i in range(a.warmup + a.runs):
            if i == a.warmup:
                started = clock()
            t0 = clock()
            frame = next(frames)
            captured = time.monotonic()
            t1 = clock()
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            img = cv2.resize(rgb, (w, h))
            x = (img.astype(np.float32) - mean) / std
            if dtype != np.float32:
                x = np.clip(np.round(x / in_scale + in_zero), np.iinfo(dtype).min, np.iinfo(dtype).max)
            interp.set_tensor(inp["index"], np.expand_dims(x.astype(dtype), 0))
            t2 = clock()
            interp.invoke()
            t3 = clock()
            raw = interp.get_tensor(out["index"])[0]
            scores = (raw.astype(np.float32) - out_zero) * out_scale if out_scale else raw.astype(np.float32)
            top = np.argsort(-scores)[:3]
            text = json.dumps({"label": labels[top[0]], "score": float(scores[top[0]]),
                               "top": [{"label": labels[j], "score": float(scores[j])} for j in top],
                               "ts": time.time()})
            t4 = clock()
            sink.publish(text)
            t5 = clock()
            if i >= a.warmup:
                rows.append({"capture": t1 - t0, "preprocess": t2 - t1, "invoke": t3 - t2, "postprocess": t4 - t3,
                             "publish": t5 - t4, "latency": time.monotonic() - captured})
        elapsed = clock() - started
    finally:
        frames.close()
        sink.close()
    stages = {k: summarize([r[k] * 1000 for r in rows])
              for k in ("capture", "preprocess", "invoke", "postprocess", "publish")}
    return {"threads": threads, "source": source_info(ctx.source), "frames": len(rows), "warmup": a.warmup,
            "fps": round(len(rows) / elapsed, 3) if elapsed > 0 else 0.0, "stages": stages,
            "latency_ms": summarize([r["latency"] * 1000 for r in rows])}


def mode_baseline(ctx: Context) -> dict[str, Any]:
    return {"baseline": [bench_baseline(ctx, ctx.model, t) for t in thread_counts(ctx)]}
