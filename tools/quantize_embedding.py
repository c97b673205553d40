"""The speech-embedding model as shipped (float32) against a post-training int8 copy, measured.

Three steps; the middle one runs in a SEPARATE virtual environment, because ai-edge-quantizer is
no dependency of the project (the agent only ever loads ``.tflite`` files with LiteRT)::

    # 1. calibration data: the agent's own front end over training audio → real 76x32 mel inputs
    PYTHONPATH=$PWD .venv-test/bin/python tools/quantize_embedding.py dump \\
        --data /work/data/voice26/clips --out /work/data/embq/calib.npz

    # 2. the int8 copy, in a venv with only the quantizer (it pins ai-edge-litert 2.3.0, as the project):
    #    python3 -m venv /work/data/embq/venv && /work/data/embq/venv/bin/pip install ai-edge-quantizer==0.10.0
    /work/data/embq/venv/bin/python tools/quantize_embedding.py quantize \\
        --calib /work/data/embq/calib.npz --out /work/data/embq/embedding_model.int8.tflite

    # 3. float against int8 with LiteRT, on one core
    PYTHONPATH=$PWD taskset -c 0 nice -n 15 .venv-test/bin/python tools/quantize_embedding.py measure \\
        --int8 /work/data/embq/embedding_model.int8.tflite --data /work/data/voice26/clips \\
        --out /work/data/embq/report.json

``quantize`` keeps the model's input and output float32 (the recipe alone would make them int8),
so the copy is a drop-in for ``FrontEnd.embed``; LEAKY_RELU, which the quantizer does not support,
stays float between DEQUANTIZE/QUANTIZE pairs.

``dump`` reads only training audio: clips of ``clips.tsv`` that ``testing_list.txt`` does not name,
each placed in a window of quiet as training places them, and ``_running_/train/*.wav`` (never
``_running_/eval``). ``quantize``: static int8 (weights and activations, activation ranges from the
calibration windows) by default; ``--mode dynamic`` / ``weight_only`` for the other recipes.
``measure``: (a) CPU per embedding, both models in the same run (``time.process_time`` over
``--calls`` invocations each, interleaved in blocks), and file sizes; (b) fidelity of the 96-d
vectors on held-out speech (``_running_/eval``: fine for measuring, never for calibration):
cosine similarity and relative error; (c) what the shipped head sees: ``models/voice_embedding.tflite``
on the ``testing_list.txt`` clips, each in 1.5 s of quiet at three offsets, argmax agreement and
top-1 accuracy with the float and with the int8 front end; and on held-out running speech (no
command in it), the share of windows the head calls a command and the agent's recognizer events
(false accepts at the manifest's settings), with each. Figures and decision:
models/speech_embedding/QUANTIZATION.md.

The int8 file is a derivative of the Apache-2.0 model (see models/speech_embedding/QUANTIZATION.md);
nothing here replaces the shipped ``embedding_model.tflite``. Not run by tests (minutes of CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
HEAD = REPO / "models" / "voice_embedding.tflite"
FLOOR_RMS = 3e-4  # the faint noise floor training places clips over (embed_data.FLOOR_RMS)
OFFSETS = (0.1, 0.5, 0.9)  # where in its window a test clip sits (share of the free room)


# --- step 1: calibration windows (project venv) ---------------------------------------------------------

def _recording_front(front: Any, sink: list[np.ndarray]) -> Any:
    """The front end, keeping a copy of every mel window it hands the embedding model."""
    from edge_agent.voice.embedding import FrontEnd

    class Recording(FrontEnd):
        def embed(self, frames: np.ndarray) -> np.ndarray:
            sink.append(np.array(frames, np.float32))
            return super().embed(frames)

    return Recording(front.mel, front.embedding, front.backend)


def _place(clip: np.ndarray, n: int, covered: int, where: float, seed: int) -> np.ndarray:
    """The clip inside ``n`` samples of faint noise, at ``where`` (0..1) of the room the last
    ``covered`` samples leave it: deterministic, so both models hear the same audio."""
    out = np.random.default_rng(seed).normal(0, FLOOR_RMS, n).astype(np.float32)
    clip = clip[:covered]
    lo, hi = n - covered, n - len(clip)
    start = lo + round(where * (hi - lo))
    out[start: start + len(clip)] += clip
    return out


def _window_samples() -> tuple[int, int]:
    from edge_agent.voice import embedding as emb

    spec = emb.EmbeddingSpec()
    return (emb.warm_hops() + spec.embeddings - 1) * emb.HOP_SAMPLES, spec.window_ms * emb.SAMPLE_RATE_HZ // 1000


def _testing(data: Path) -> set[str]:
    path = data / "testing_list.txt"
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def dump(data: Path, out: Path, clips: int, running_s: float, stride: int, seed: int) -> None:
    import csv

    from edge_agent.sources.wav import read_wav
    from edge_agent.voice import embedding as emb

    front = emb.FrontEnd.load(threads=1)
    frames: list[np.ndarray] = []
    rec = _recording_front(front, frames)
    held = _testing(data)
    with (data / "clips.tsv").open(newline="", encoding="utf-8") as f:
        rows = [r["path"] for r in csv.DictReader(f, delimiter="\t") if r["path"] not in held]
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(rows), size=min(clips, len(rows)), replace=False)
    n, covered = _window_samples()
    for k, i in enumerate(picked):
        x, _ = read_wav(data / rows[int(i)])
        start = len(frames)
        emb.embeddings(rec, _place(x, n, covered, float(rng.uniform()), seed * 100_003 + k))
        frames[start:] = frames[start:][-10::2]  # of the windows the head reads, every other one
    for path in sorted((data / "_running_" / "train").glob("*.wav")):
        x, _ = read_wav(path)
        start = len(frames)
        emb.embeddings(rec, x[: int(running_s * emb.SAMPLE_RATE_HZ)])
        frames[start:] = frames[start::stride]
    mel = np.stack(frames).astype(np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, mel=mel)
    print(f"dump: {len(mel)} mel windows {mel.shape[1:]} ({len(picked)} clips, "
          f"running speech {running_s:g} s per _running_/train file every {stride} hops) -> {out}")


# --- step 2: the int8 copy (quantizer venv) --------------------------------------------------------------

def quantize(calib: Path, out: Path, mode: str, model: Path) -> None:
    try:
        from ai_edge_quantizer import qtyping, quantizer, recipe
        from ai_edge_quantizer.algorithm_manager import AlgorithmName
    except ImportError:
        sys.exit("quantize: needs ai-edge-quantizer in a separate venv (pip install ai-edge-quantizer==0.10.0); "
                 "the project does not depend on it")
    mel = np.load(calib)["mel"]
    qt = quantizer.Quantizer(str(model))
    recipes = {"static": recipe.static_wi8_ai8, "dynamic": recipe.dynamic_wi8_afp32,
               "weight_only": recipe.weight_only_wi8_afp32}
    qt.load_quantization_recipe(recipes[mode]())
    for op in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
        # float in, float out (the recipe alone makes them int8): a drop-in for FrontEnd.embed
        qt.update_quantization_recipe(regex=".*", operation_name=op, algorithm_key=AlgorithmName.NO_QUANTIZE)
    calibration = None
    if qt.need_calibration:
        signature = _signature_key(model)
        name = _input_name(model, signature)
        samples = [{name: m.reshape(1, *m.shape, 1)} for m in mel]
        calibration = qt.calibrate({signature: samples}, num_threads=1)
    result = qt.quantize(calibration)
    out.parent.mkdir(parents=True, exist_ok=True)
    if result.quantized_model is None:
        sys.exit("quantize: the quantizer returned no model")
    out.write_bytes(bytes(result.quantized_model))
    source = f"{len(mel)} calibration windows" if calibration is not None else "no calibration (not needed)"
    print(f"quantize: {mode} int8, {source} -> {out} ({out.stat().st_size} bytes)")


def _signature_key(model: Path) -> str:
    from ai_edge_litert.interpreter import Interpreter

    keys = list(Interpreter(model_path=str(model)).get_signature_list())
    return keys[0] if keys else "serving_default"


def _input_name(model: Path, signature: str) -> str:
    from ai_edge_litert.interpreter import Interpreter

    sigs = Interpreter(model_path=str(model)).get_signature_list()
    return str(sigs[signature]["inputs"][0]) if signature in sigs else "input_1"


# --- step 3: float against int8 (project venv, LiteRT) ---------------------------------------------------

def _embedder(backend: Any, path: Path) -> Any:
    interp = backend.interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    return interp


def _embed(interp: Any, frames: np.ndarray) -> np.ndarray:
    from edge_agent.voice import embedding as emb

    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.set_tensor(inp["index"], frames.reshape(1, emb.EMBEDDING_FRAMES, emb.MEL_BANDS, 1).astype(np.float32))
    interp.invoke()
    return np.asarray(interp.get_tensor(out["index"]), np.float32).reshape(emb.EMBEDDING_DIM)


def _cpu(float_i: Any, int8_i: Any, mel: np.ndarray, calls: int, block: int = 100) -> dict[str, float]:
    """CPU seconds per embedding, the two models interleaved in blocks (same load for both)."""
    spent = {"float": 0.0, "int8": 0.0}
    for i in range(3):  # warm both
        _embed(float_i, mel[i % len(mel)])
        _embed(int8_i, mel[i % len(mel)])
    done = 0
    while done < calls:
        for name, interp in (("float", float_i), ("int8", int8_i)):
            t = time.process_time()
            for j in range(done, done + block):
                _embed(interp, mel[j % len(mel)])
            spent[name] += time.process_time() - t
        done += block
    return {"calls": done, "float_ms": 1000 * spent["float"] / done, "int8_ms": 1000 * spent["int8"] / done,
            "int8_over_float": spent["int8"] / spent["float"]}


def _mel_cpu(front: Any, calls: int) -> float:
    """CPU ms of one mel step (the other model of each hop, unchanged), for the per-hop total."""
    from edge_agent.voice import embedding as emb

    pcm = np.round(np.random.default_rng(0).normal(0, 3000, emb.HOP_SAMPLES + emb.MEL_CONTEXT))
    front.mel_frames(pcm)
    t = time.process_time()
    for _ in range(calls):
        front.mel_frames(pcm)
    return 1000 * (time.process_time() - t) / calls


def _held_out_windows(front: Any, data: Path, seconds: float) -> tuple[np.ndarray, list[int]]:
    from edge_agent.sources.wav import read_wav
    from edge_agent.voice import embedding as emb

    frames: list[np.ndarray] = []
    counts = []
    rec = _recording_front(front, frames)
    for path in sorted((data / "_running_" / "eval").glob("*.wav")):
        x, _ = read_wav(path)
        start = len(frames)
        emb.embeddings(rec, x[: int(seconds * emb.SAMPLE_RATE_HZ)])
        counts.append(len(frames) - start)
    return np.stack(frames), counts


def _fidelity(f: np.ndarray, q: np.ndarray) -> dict[str, float]:
    cos = np.sum(f * q, axis=1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(q, axis=1) + 1e-12)
    rel = np.linalg.norm(q - f, axis=1) / (np.linalg.norm(f, axis=1) + 1e-12)
    return {"vectors": len(f), "cosine_mean": float(cos.mean()), "cosine_p1": float(np.percentile(cos, 1)),
            "cosine_min": float(cos.min()), "rel_error_mean": float(rel.mean()),
            "rel_error_p99": float(np.percentile(rel, 99)), "rel_error_max": float(rel.max())}


def measure(int8_path: Path, data: Path, calls: int, running_s: float, out: Path | None,
            limit: int | None = None) -> dict[str, Any]:
    from edge_agent.sources.wav import read_wav
    from edge_agent.voice import embedding as emb
    from edge_agent.voice.recognizer import UNKNOWN, Recognizer
    from edge_agent.voice.spotter import EmbeddingSpotter, load_voice_model

    model = load_voice_model(HEAD, threads=1)
    spotter = EmbeddingSpotter(model)
    front = model.front
    assert front is not None
    float_path = emb.folder() / emb.EMBEDDING_FILE
    float_i, int8_i = _embedder(front.backend, float_path), _embedder(front.backend, int8_path)
    report: dict[str, Any] = {
        "backend": f"{front.backend.name} {front.backend.version}",
        "bytes": {"float": float_path.stat().st_size, "int8": int8_path.stat().st_size},
        "head_input_scale": float(model.engine.input_quant[0]),  # the head's own int8 step on each value
    }
    # (b) held-out running speech: the same mel windows through both models
    mel, counts = _held_out_windows(front, data, running_s)
    f_vec = np.stack([_embed(float_i, m) for m in mel])
    q_vec = np.stack([_embed(int8_i, m) for m in mel])
    report["fidelity_eval_running"] = {**_fidelity(f_vec, q_vec), "files": len(counts), "seconds_each": running_s}
    # (a) CPU on those real windows
    cpu = _cpu(float_i, int8_i, mel, calls)
    mel_ms = _mel_cpu(front, calls // 2)
    cpu |= {"mel_step_ms": mel_ms, "per_hop_float_ms": mel_ms + cpu["float_ms"],
            "per_hop_int8_ms": mel_ms + cpu["int8_ms"]}
    report["cpu_one_thread"] = cpu
    # (c) the head: test clips in quiet, and running speech (every window of 10 consecutive vectors)
    n_emb = model.spec.shape[0]
    labels = model.labels
    held = sorted(_testing(data))[:limit]
    n, covered = _window_samples()
    truth, f_arg, q_arg, diffs = [], [], [], []
    cf: list[np.ndarray] = []
    cq: list[np.ndarray] = []
    for k, rel_path in enumerate(held):
        x, _ = read_wav(data / rel_path)
        word = rel_path.split("/", 1)[0]
        for m, where in enumerate(OFFSETS):
            frames: list[np.ndarray] = []
            emb.embeddings(_recording_front(front, frames), _place(x, n, covered, where, k * 10 + m))
            win = np.stack(frames[-n_emb:])
            hf = np.stack([_embed(float_i, w) for w in win])
            hq = np.stack([_embed(int8_i, w) for w in win])
            cf.append(hf)
            cq.append(hq)
            sf, sq = spotter.scores(hf), spotter.scores(hq)
            diffs.append(float(np.abs(sf - sq).max()))
            truth.append(labels.index(word) if word in labels else labels.index(UNKNOWN))
            f_arg.append(int(np.argmax(sf)))
            q_arg.append(int(np.argmax(sq)))
    t, fa, qa = np.array(truth), np.array(f_arg), np.array(q_arg)
    report["fidelity_test_clips"] = _fidelity(np.concatenate(cf), np.concatenate(cq))
    report["head_test_clips"] = {
        "clips": len(held), "decisions": len(t), "offsets": list(OFFSETS),
        "argmax_agreement": float(np.mean(fa == qa)),
        "top1_float": float(np.mean(fa == t)), "top1_int8": float(np.mean(qa == t)),
        "score_abs_diff_mean": float(np.mean(diffs)), "score_abs_diff_max": float(np.max(diffs)),
    }
    commands = [i for i, label in enumerate(labels) if not label.startswith("_")]
    run_f, run_q = [], []
    events = {"float": 0, "int8": 0}
    start = 0
    for c in counts:  # every window of each file, through the agent's recognizer at the manifest's settings
        recognizers = {"float": Recognizer(labels, model.settings), "int8": Recognizer(labels, model.settings)}
        for j in range(start + n_emb, start + c + 1):
            sf, sq = spotter.scores(f_vec[j - n_emb: j]), spotter.scores(q_vec[j - n_emb: j])
            run_f.append(int(np.argmax(sf)))
            run_q.append(int(np.argmax(sq)))
            t_ms = (j - start) * model.spec.hop_ms
            for name, sc in (("float", sf), ("int8", sq)):
                events[name] += recognizers[name].update(sc, t_ms) is not None
        start += c
    rf, rq = np.array(run_f), np.array(run_q)
    hours = len(counts) * running_s / 3600
    report["head_eval_running"] = {
        "windows": len(rf), "argmax_agreement": float(np.mean(rf == rq)),
        "command_share_float": float(np.isin(rf, commands).mean()),
        "command_share_int8": float(np.isin(rq, commands).mean()),
        "recognizer_events_float": events["float"], "recognizer_events_int8": events["int8"],
        "false_accepts_per_hour_float": events["float"] / hours, "false_accepts_per_hour_int8": events["int8"] / hours,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="step", required=True)
    d = sub.add_parser("dump", help="calibration mel windows from training audio (project venv)")
    d.add_argument("--data", type=Path, required=True)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--clips", type=int, default=200)
    d.add_argument("--running-seconds", type=float, default=20.0)
    d.add_argument("--stride", type=int, default=4, help="keep every N-th window of running speech")
    d.add_argument("--seed", type=int, default=0)
    q = sub.add_parser("quantize", help="the int8 copy (separate venv with ai-edge-quantizer)")
    q.add_argument("--calib", type=Path, required=True)
    q.add_argument("--out", type=Path, required=True)
    q.add_argument("--mode", choices=("static", "dynamic", "weight_only"), default="static")
    q.add_argument("--model", type=Path, default=REPO / "models" / "speech_embedding" / "embedding_model.tflite")
    m = sub.add_parser("measure", help="float against int8 with LiteRT (project venv)")
    m.add_argument("--int8", type=Path, required=True)
    m.add_argument("--data", type=Path, required=True)
    m.add_argument("--calls", type=int, default=3000)
    m.add_argument("--running-seconds", type=float, default=60.0)
    m.add_argument("--out", type=Path)
    m.add_argument("--limit", type=int, help="only the first N test clips (a quick check)")
    o = p.parse_args(argv)
    if o.step == "dump":
        dump(o.data, o.out, o.clips, o.running_seconds, o.stride, o.seed)
    elif o.step == "quantize":
        quantize(o.calib, o.out, o.mode, o.model)
    else:
        measure(o.int8, o.data, o.calls, o.running_seconds, o.out, o.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
