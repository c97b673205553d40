"""Flags of ``train-voice`` and ``enroll``, registered in :data:`edge_agent.convert.cli.COMMANDS`
like every subcommand. No heavy imports here: the command modules load when a command runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

Result = tuple[dict[str, Any], Callable[[Any], str]]


def _commands(text: str) -> tuple[str, ...]:
    words = tuple(c.strip() for c in text.split(",") if c.strip())
    if not words:
        raise argparse.ArgumentTypeError("give at least one command word")
    return words


def add_train_voice(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    from .data import COMMANDS
    from .model import DEFAULT_BLOCKS, DEFAULT_WIDTH
    from .train import DEFAULT_BATCH, DEFAULT_EPOCHS, DEFAULT_LR, UNKNOWN_WEIGHT_SHARE

    p = sub.add_parser("train-voice", help="Speech Commands folder → full-int8 keyword model + manifest + report",
                       description="Train a keyword-spotting model on a folder in the Speech Commands layout and "
                                   "quantize it to full int8.")
    p.add_argument("--data", type=Path, required=True, help="folder: yes/*.wav ... _background_noise_/*.wav")
    p.add_argument("--out", type=Path, required=True, help="the .tflite to write (manifest, report and the float "
                   ".keras model beside it)")
    p.add_argument("--commands", type=_commands, default=COMMANDS, help="comma-separated command words")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    p.add_argument("--lr", type=float, default=DEFAULT_LR)
    p.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="channels of the separable blocks")
    p.add_argument("--blocks", type=int, default=DEFAULT_BLOCKS, help="depthwise-separable blocks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--unknown-weight", type=float, default=UNKNOWN_WEIGHT_SHARE,
                   help="_unknown_'s total loss weight in commands' worth: higher means fewer false accepts and "
                        "more missed commands")
    p.add_argument("--name", help="model name in the manifest (default: the file's stem)")
    p.add_argument("--frontend", choices=("log_mel", "speech_embedding"), default="log_mel",
                   help="log_mel: a DS-CNN on the log-mel image (the first models); speech_embedding: a small head "
                        "on Google's speech embedding (models/speech_embedding/), --data from tools/gen_voice_data.py")
    p.add_argument("--embeddings", type=int, default=10, help="speech_embedding: vectors the head reads (80 ms each)")
    p.add_argument("--hold-out-engines", default="", help="speech_embedding: comma-separated engines left out of "
                   "training; their clips are the test set (leave-one-engine-out)")
    p.add_argument("--copies", type=int, default=1, help="speech_embedding: augmented copies of each clip")
    p.add_argument("--members", type=int, default=1, help="speech_embedding: heads trained from other seeds, "
                   "their logits averaged in one model (steadier on voices never heard; N times the training)")
    p.add_argument("--head", choices=("mlp", "conv"), default="mlp", help="speech_embedding: the head's layers "
                   "(mlp: two dense layers on the whole window; conv: convolutions over time, max-pooled)")
    p.add_argument("--jobs", type=int, default=1, help="speech_embedding: processes computing the features (cached "
                   "in DATA/_features, keyed by this too)")
    p.add_argument("--threshold", type=float, help="speech_embedding: the recognizer threshold to write "
                   "(default: tools/eval_voice.py tunes it)")
    common(p)
    p.set_defaults(progress=True)


def cmd_train_voice(a: argparse.Namespace, command: str) -> Result:
    from . import train

    if a.frontend == "speech_embedding":
        from . import embed_train

        eo = embed_train.Options(
            data=a.data, out=a.out, commands=a.commands, embeddings=a.embeddings,
            hold_out_engines=tuple(e for e in a.hold_out_engines.split(",") if e),
            epochs=a.epochs if a.epochs != train.DEFAULT_EPOCHS else embed_train.DEFAULT_EPOCHS,
            width=a.width if a.width != 64 else embed_train.DEFAULT_WIDTH, copies=a.copies, seed=a.seed,
            unknown_weight=a.unknown_weight if a.unknown_weight != train.UNKNOWN_WEIGHT_SHARE
            else embed_train.UNKNOWN_SHARE, name=a.name, command=command, threshold=a.threshold,
            jobs=a.jobs, head=a.head, members=a.members)
        return embed_train.train(eo), embed_train.format_text
    o = train.Options(data=a.data, out=a.out, commands=a.commands, epochs=a.epochs, batch=a.batch, lr=a.lr,
                      width=a.width, blocks=a.blocks, seed=a.seed, unknown_weight=a.unknown_weight, name=a.name,
                      command=command)
    return train.train(o), train.format_text


def add_enroll(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    from . import enroll, enroll_fit

    p = sub.add_parser("enroll", help="your own recordings + room sound → the voice model fine-tuned for you",
                       description="Adapt a keyword model to your voice and room: 3-10 recordings per command (a "
                                   "folder in the Speech Commands layout, or recorded now with --mic) and a few "
                                   "minutes of the room's sound; keeps full int8 and the manifest and re-tunes the "
                                   "threshold. A speech-embedding model needs no TensorFlow (it runs on the Pi); a "
                                   "log-mel model fine-tunes its float .keras model with TensorFlow.")
    p.add_argument("--model", type=Path, required=True, help="the .tflite to start from (its manifest beside it)")
    p.add_argument("--data", type=Path, required=True, help="folder: yes/*.wav ... (3-10 each), optional other "
                   "words (also not_<command>/: false accepts) in their own folders, and _background_noise_/*.wav: "
                   "the room's sound; with --mic it is recorded there first")
    p.add_argument("--out", type=Path, required=True, help="the .tflite to write (manifest and report beside)")
    p.add_argument("--mic", help="record --data first from this microphone, with prompts on the terminal")
    p.add_argument("--takes", type=int, default=5, help="--mic: recordings of each command")
    p.add_argument("--commands", type=_commands, default=(), help="--mic: record only these commands (comma-"
                   "separated; default: every command of the model)")
    p.add_argument("--pull", type=float, help="speech embedding: how strongly the "
                   "head is held to the shipped one (higher: less change; default "
                   f"{enroll.DEFAULT_PULL} for the last layer alone, 0 for two layers: the anchors hold them)")
    p.add_argument("--no-reversed", dest="reversed_negatives", action="store_false",
                   help="speech embedding: do not use the takes played backwards as negatives")
    p.add_argument("--room-seconds", type=float, default=enroll.DEFAULT_ROOM_SECONDS,
                   help="--mic: seconds of room sound to record first")
    p.add_argument("--steps", type=int, help="speech embedding: training steps (default "
                   f"{enroll_fit.DEFAULT_STEPS} for a head with two dense layers, else {enroll.DEFAULT_STEPS})")
    p.add_argument("--epochs", type=int, default=enroll.DEFAULT_EPOCHS, help="log-mel models: epochs")
    p.add_argument("--lr", type=float, default=enroll.DEFAULT_LR, help="log-mel models")
    p.add_argument("--train-layers", type=int, default=enroll.DEFAULT_TRAIN_LAYERS,
                   help="log-mel models: trainable layers from the end (the dense head is 1)")
    p.add_argument("--copies", type=int, help=f"augmented copies of each recording (default {enroll.DEFAULT_COPIES}"
                   " for a speech-embedding model, 20 for a log-mel one)")
    p.add_argument("--max-fa-per-hour", type=float, default=enroll.DEFAULT_MAX_FA_PER_HOUR,
                   help="threshold re-tuning: the lowest threshold with at most this many false accepts per hour "
                        "on the room's sound")
    p.add_argument("--replay", type=Path, help="log-mel models: a Speech Commands folder of other voices (the base "
                   "model's data) mixed in so the model does not forget them")
    p.add_argument("--replay-clips", type=int, default=enroll.DEFAULT_REPLAY_CLIPS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", help="model name in the manifest (default: the file's stem)")
    common(p)
    p.set_defaults(progress=True)


def cmd_enroll(a: argparse.Namespace, command: str) -> Result:
    from . import enroll

    o = enroll.Options(model=a.model, data=a.data, out=a.out, epochs=a.epochs, steps=a.steps, lr=a.lr,
                       train_layers=a.train_layers, copies=a.copies, max_fa_per_hour=a.max_fa_per_hour,
                       seed=a.seed, name=a.name, command=command, replay=a.replay, replay_clips=a.replay_clips,
                       mic=a.mic, takes=a.takes, room_seconds=a.room_seconds,
                       reversed_negatives=a.reversed_negatives, commands=a.commands, pull=a.pull)
    return enroll.enroll(o), enroll.format_text
