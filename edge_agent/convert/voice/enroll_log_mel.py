"""``edge-agent-convert enroll`` for a log-mel model (the first voice models): its float Keras model
fine-tuned with TensorFlow.

    DATA/yes/*.wav ... DATA/stop/*.wav    3-10 recordings of each command (any names, any PCM rate)
    DATA/<other word>/*.wav               optional: the user saying other words (→ ``_unknown_``)
    DATA/_background_noise_/*.wav         a few minutes of the room's own sound (TV, talk, kitchen)
    DATA/testing_list.txt                 optional: recordings held out from fine-tuning, measured

Fine-tunes the last ``--train-layers`` weighted layers of the float Keras model that
``train-voice`` wrote beside the model (``<stem>.keras``), everything before them frozen (their
BatchNorm statistics too), on: each recording and ``--copies`` augmented copies (the same speaker,
room and microphone chain as training), the recordings played backwards as ``_unknown_`` (the
user's own voice and room saying no command: the negatives a few recordings can give), the user's
other words, ``_silence_`` cut from the room's sound and, with ``--replay DIR``, clips of the base
model's own training data (other voices, as they are: without them a head tuned on one voice
moves the boundary for every voice). The front end (mean, std) is the base
model's: the frozen layers expect it. Then full int8 as in ``train-voice`` (same converter, same
checks), the manifest, and the threshold re-tuned (:func:`retune`): the lowest on a fixed grid at or
above :data:`THRESHOLD_FLOOR` that keeps false accepts on the room's sound within
``--max-fa-per-hour``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from pathlib import Path
from typing import Any, Final

import numpy as np

from ... import __version__
from ...errors import ConfigError, ModelError
from ...manifest import load as load_manifest
from ...manifest import manifest_path_for
from ...preprocess.audio import AudioSpec
from ...voice.recognizer import NOT_COMMANDS, SILENCE, UNKNOWN, Recognizer, RecognizerSettings
from .data import NOISE_DIR, augment, load_clip, load_noise, raw_features, scan, silence
from .train import class_weights, feature_augment, finish, utc_now

logger = logging.getLogger(__name__)

DEFAULT_EPOCHS: Final = 30
DEFAULT_LR: Final = 1e-3
DEFAULT_TRAIN_LAYERS: Final = 1  # the dense head only: minutes on a Pi-class core, nothing forgotten below it
DEFAULT_COPIES: Final = 20
DEFAULT_MAX_FA_PER_HOUR: Final = 2.0
THRESHOLD_FLOOR: Final = 0.9  # never below: a few minutes of room sound cannot vouch for a lower one
THRESHOLDS: Final = (0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998)
BATCH: Final = 32
DEFAULT_REPLAY_CLIPS: Final = 2000  # of --replay: enough other voices that the head does not forget them


@dataclasses.dataclass
class Options:
    model: Path
    data: Path
    out: Path
    epochs: int = DEFAULT_EPOCHS
    lr: float = DEFAULT_LR
    train_layers: int = DEFAULT_TRAIN_LAYERS
    copies: int = DEFAULT_COPIES
    max_fa_per_hour: float = DEFAULT_MAX_FA_PER_HOUR
    seed: int = 0
    name: str | None = None
    command: str = ""
    replay: Path | None = None  # a Speech Commands folder (the base model's data): clips mixed in as they are
    replay_clips: int = DEFAULT_REPLAY_CLIPS


def read_folder(root: Path, commands: tuple[str, ...]) -> tuple[dict[str, list[Path]], list[Path], set[str]]:
    """(word → recordings, room-sound files, held-out relative paths); checked before any decoding."""
    if not root.is_dir():
        raise ConfigError(f"data {root}: not a folder")
    words = {d.name: sorted(d.glob("*.wav")) for d in sorted(root.iterdir()) if d.is_dir() and d.name[0] != "_"}
    missing = [c for c in commands if not words.get(c)]
    if missing:
        raise ConfigError(f"data {root}: no recordings of {', '.join(missing)} (one folder of WAVs per command)")
    room = sorted((root / NOISE_DIR).glob("*.wav"))
    if not room:
        raise ConfigError(f"data {root}: {NOISE_DIR}/ with a few minutes of the room's sound is needed")
    lst = root / "testing_list.txt"
    held = {line.strip() for line in lst.read_text().splitlines() if line.strip()} if lst.exists() else set()
    return words, room, held


def retune(model_path: Path, room: list[np.ndarray], spec: AudioSpec, base: RecognizerSettings,
           max_fa_per_hour: float) -> tuple[RecognizerSettings, dict[str, Any]]:
    """The lowest threshold of :data:`THRESHOLDS` whose false accepts on the room's sound (the
    files one after another, as the agent would hear them) stay within ``max_fa_per_hour``
    (with minutes of sound that is none at all); the highest if none does."""
    from ...engine import Engine
    from ...preprocess import audio

    engine = Engine.load(model_path, threads=1, kind="audio", logits=True)
    scale, zero = engine.input_quant
    fill = audio.make_fill(spec, engine.input_dtype, scale, zero)
    stream = np.concatenate(room)
    stride = audio.samples_for(base.stride_ms, spec.sample_rate)
    ends = np.arange(spec.clip_samples, len(stream) + 1, stride)
    scores = [engine.run(functools.partial(fill, stream[e - spec.clip_samples: e])) for e in ends]
    times = ends * 1000.0 / spec.sample_rate
    hours = len(stream) / spec.sample_rate / 3600
    allowed = int(np.floor(max_fa_per_hour * hours + 1e-9))
    counts = {}
    for th in THRESHOLDS:
        s = dataclasses.replace(base, threshold=th, thresholds={})
        rec = Recognizer(engine_labels(model_path), s)
        counts[th] = sum(1 for t, p in zip(times, scores, strict=True) if rec.update(p, float(t)))
    ok = [th for th in THRESHOLDS if th >= THRESHOLD_FLOOR and counts[th] <= allowed]
    chosen = ok[0] if ok else THRESHOLDS[-1]
    return (dataclasses.replace(base, threshold=chosen, thresholds={}),
            {"room_minutes": round(hours * 60, 2), "allowed_false_accepts": allowed,
             "false_accepts_by_threshold": {str(k): v for k, v in counts.items()}, "threshold": chosen})


def room_as_recorded(path: Path, spec: AudioSpec) -> np.ndarray:
    """A room recording at the model's rate and at its own level (training normalises noise; the
    threshold must be tuned on what the microphone really hears)."""
    from ...preprocess import audio
    from ...sources.wav import read_wav

    x, rate = read_wav(path)
    return audio.resample(x, rate, spec.sample_rate) if rate != spec.sample_rate else x


def engine_labels(model_path: Path) -> tuple[str, ...]:
    return load_manifest(manifest_path_for(model_path)).labels


def enroll(o: Options) -> dict[str, Any]:
    if o.epochs < 1 or o.copies < 0 or o.train_layers < 1 or not o.lr > 0:
        raise ConfigError("--epochs and --train-layers must be at least 1, --copies not negative, --lr positive")
    if o.out.suffix != ".tflite":
        raise ConfigError(f"--out {o.out}: expected a .tflite path")
    mpath = manifest_path_for(o.model)
    if not mpath.exists():
        raise ModelError(f"model {o.model}: no manifest {mpath.name} beside it")
    base_manifest = load_manifest(mpath)
    if base_manifest.kind != "audio" or base_manifest.audio is None:
        raise ModelError(f"manifest {mpath}: not an audio model")
    keras_path = o.model.with_suffix(".keras")
    if not keras_path.exists():
        raise ModelError(f"model {o.model}: no float model {keras_path.name} beside it to fine-tune "
                         "(train-voice writes one; an ensemble or a model from elsewhere has none)")
    labels = base_manifest.labels
    commands = tuple(x for x in labels if x not in NOT_COMMANDS)
    words, room_files, held = read_folder(o.data, commands)
    spec = AudioSpec.from_mapping(base_manifest.audio, f"manifest {mpath}")
    raw_spec = dataclasses.replace(spec, mean=0.0, std=1.0)
    rng = np.random.default_rng(o.seed)
    room = load_noise(room_files, raw_spec)
    index = {name: i for i, name in enumerate(labels)}
    t0 = time.monotonic()
    xs: list[np.ndarray] = []
    ys: list[int] = []
    augmented: list[bool] = []
    x_test: list[np.ndarray] = []
    y_test: list[int] = []
    for word, paths in words.items():
        y = index.get(word, index[UNKNOWN])
        for path in paths:
            x = load_clip(path, raw_spec)
            if f"{word}/{path.name}" in held:
                x_test.append(x)
                y_test.append(y)
                continue
            variants = [(x, y)] + ([(x[::-1].copy(), index[UNKNOWN])] if word in commands else [])
            for clip, label in variants:
                for k in range(1 + o.copies):
                    xs.append(clip if k == 0 else augment(clip, room, rng, raw_spec))
                    ys.append(label)
                    augmented.append(k > 0)
    if o.replay is not None:  # the base model's own kind of data, so fine-tuning does not forget other voices
        corpus = scan(o.replay, commands)
        pool = corpus.clips["train"]
        for i in rng.permutation(len(pool))[: o.replay_clips]:
            other = pool[int(i)]
            xs.append(load_clip(other.path, raw_spec))
            ys.append(index.get(other.word, index[UNKNOWN]))
            augmented.append(False)
    n_silence = max(1, sum(1 for y in ys if y == index[commands[0]]))
    for _ in range(n_silence):
        xs.append(silence(room, rng, raw_spec))
        ys.append(index[SILENCE])
        augmented.append(False)
    x_train, y_train = np.stack(xs), np.asarray(ys, np.int64)
    f = raw_features(x_train, raw_spec)
    for i in np.flatnonzero(augmented):
        f[i] = feature_augment(f[i], rng)
    f = (f - spec.mean) / spec.std
    if not x_test:  # nothing held out: measure on the recordings themselves (and say so in the report)
        keep = ~np.asarray(augmented) & np.isin(y_train, [index[c] for c in commands])
        x_test, y_test = list(x_train[keep]), list(y_train[keep])

    from .. import _tf

    keras = _tf.keras()
    keras.utils.set_random_seed(o.seed)
    model = keras.models.load_model(keras_path, compile=False)
    weighted = [layer for layer in model.layers if layer.weights]
    for layer in model.layers:
        layer.trainable = False
    for layer in weighted[-o.train_layers:]:
        layer.trainable = True
    model.compile(optimizer=keras.optimizers.Adam(o.lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    weights = class_weights(y_train, labels, 1.0)
    history = model.fit(f[..., None], y_train, batch_size=BATCH, epochs=o.epochs, shuffle=True,
                        class_weight=weights, verbose=0)
    fit_s = time.monotonic() - t0
    o.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(o.out.with_suffix(".keras"))
    calib = f[rng.permutation(len(f))[:300]]
    base_settings = RecognizerSettings.from_mapping(base_manifest.extra.get("recognizer"))
    provenance = {
        "tool": "edge-agent-convert enroll", "tool_version": __version__, "created": utc_now(),
        "command": o.command, "dataset": str(o.data), "base_model": str(o.model),
        "base_sha256": base_manifest.sha256, "recordings": {w: len(p) for w, p in words.items()},
        "held_out": len(held), "measured_on": "testing_list.txt" if held else "the enrollment recordings (seen)",
        "train_layers": o.train_layers, "copies": o.copies, "epochs": o.epochs, "lr": o.lr,
        "replay": str(o.replay) if o.replay else None, "replay_clips": o.replay_clips if o.replay else 0,
        "seed": o.seed, "fit_seconds": round(fit_s, 1), "keras_model": o.out.with_suffix(".keras").name,
        "arch": base_manifest.provenance.get("arch"), "io_type": "int8",
    }
    result = finish(model, spec, labels, calib, np.stack(x_test), np.asarray(y_test, np.int64), o.out, o.name,
                    None, provenance, {"train_accuracy": round(float(history.history["accuracy"][-1]), 4)},
                    base_settings)
    settings, tuning = retune(o.out, [room_as_recorded(p, raw_spec) for p in room_files], spec, base_settings,
                              o.max_fa_per_hour)
    from ...manifest import load, write

    m = load(manifest_path_for(o.out))
    write(dataclasses.replace(m, extra={**m.extra, "recognizer": settings.to_json()},
                              provenance={**m.provenance, "threshold_tuning": tuning}), manifest_path_for(o.out))
    result["recognizer"] = settings.to_json()
    result["threshold_tuning"] = tuning
    result["seconds"] = round(time.monotonic() - t0, 1)
    return result


def format_text(result: dict[str, Any]) -> str:
    m, t = result["metrics"], result["threshold_tuning"]
    return (f"wrote {result['model_file']} and {result['manifest_file']} in {result['seconds']:.0f} s\n"
            f"  {result['provenance']['measured_on']}: int8 {100 * (m['int8']['top1'] or 0):.1f} % of "
            f"{m['int8']['n']} clips\n  threshold {t['threshold']} ({t['room_minutes']} min of room sound, at most "
            f"{t['allowed_false_accepts']} false accepts)")
