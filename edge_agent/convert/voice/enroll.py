"""``edge-agent-convert enroll``: the user's own voice in minutes, on the CPU, without TensorFlow.

    DATA/yes/*.wav ... DATA/stop/*.wav    3-10 recordings of each command (any names, any PCM rate)
    DATA/<other word>/*.wav               optional: other words, false accepts (``not_stop/``) → ``_unknown_``
    DATA/_background_noise_/*.wav         a few minutes of the room's own sound (TV, talk, kitchen)
    DATA/testing_list.txt                 optional: recordings held out from fine-tuning, measured

``--mic NAME`` records that folder first, with prompts on the terminal (:mod:`.record`); the
folder ``edge-agent --capture DIR`` fills is the same layout.

For a model on the speech-embedding front end (``input.frontend: speech_embedding``) everything
runs on LiteRT and numpy, so it runs on the Pi itself: each recording (and ``--copies`` copies at
other levels) is laid over a quiet stretch of the room's sound and goes through the agent's own
front end; every head input that holds the whole word is a positive. The int8 head's own inputs to
its last two dense layers are read back (:mod:`edge_agent.voice.head`), both layers are re-fitted
(:mod:`.enroll_fit`) against the thousands of training windows the manifest carries under
``enroll`` (the other voices, words and running speech, kept without their data) and written back
at new int8 scales. A head whose last layer is its only one re-fits that layer alone (softmax
regression pulled towards the shipped float weights). The threshold is then re-tuned on the
room's sound with the calibration code (:mod:`edge_agent.voice.calibrate`), never under the
shipped one. A log-mel model (the first voice models) is fine-tuned as before, with TensorFlow
(:mod:`.enroll_log_mel`).
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from ... import __version__
from ...errors import ConfigError, ModelError
from ...manifest import Manifest, manifest_path_for, sha256_file, write
from ...manifest import load as load_manifest
from ...voice import calibrate, head
from ...voice import embedding as emb
from ...voice.recognizer import NOT_COMMANDS, SILENCE, UNKNOWN, RecognizerSettings
from . import enroll_fit, enroll_log_mel
from .enroll_log_mel import (  # noqa: F401 (the log-mel path's constants, re-exported as before)
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    DEFAULT_MAX_FA_PER_HOUR,
    DEFAULT_REPLAY_CLIPS,
    DEFAULT_TRAIN_LAYERS,
    THRESHOLD_FLOOR,
    THRESHOLDS,
)

logger = logging.getLogger(__name__)

NOISE_DIR: Final = "_background_noise_"
MIN_TAKES: Final = 3
DEFAULT_STEPS: Final = 300
DEFAULT_COPIES: Final = 4  # speech-embedding path (the log-mel path: enroll_log_mel.DEFAULT_COPIES)
DEFAULT_ROOM_SECONDS: Final = 120.0
DEFAULT_PULL: Final = 1e-3  # weight of |W - W_shipped|^2: how far enrollment may move the head
ENROLL_KEY: Final = "enroll"  # the manifest's block with the float last layer
POSITIVE_HOPS: Final = 4  # a one-layer head's positives: the first 4 windows holding the word
POSITIVE_MARGIN_HOPS: Final = 1  # a take's positives: the windows holding the whole word, a hop to spare each side
BED_CANDIDATES: Final = 8  # room stretches looked at per take (the quietest is used)
BED_SNR_DB: Final = (10.0, 30.0)  # the take over the room at this much above it
MAX_ROOM_WINDOWS: Final = 3000
UNKNOWN_SHARE: Final = 3.0  # _unknown_'s loss weight in commands' worth (train-voice's default)
BIAS_LR: Final = 0.5  # logits per step at most: a class the head never announced can come alive


def is_embedding_model(model: Path) -> bool:
    mpath = manifest_path_for(model)
    if not mpath.exists():
        raise ModelError(f"model {model}: no manifest {mpath.name} beside it")
    m = load_manifest(mpath)
    return m.audio is not None and emb.frontend_of(m.audio) == emb.NAME


@dataclasses.dataclass
class Options:
    model: Path
    data: Path
    out: Path
    epochs: int = DEFAULT_EPOCHS  # log-mel path
    steps: int | None = None  # speech-embedding path (default: DEFAULT_STEPS, two layers enroll_fit's)
    lr: float = DEFAULT_LR
    train_layers: int = DEFAULT_TRAIN_LAYERS
    copies: int | None = None  # default: DEFAULT_COPIES, or the log-mel path's
    max_fa_per_hour: float = DEFAULT_MAX_FA_PER_HOUR
    seed: int = 0
    name: str | None = None
    command: str = ""
    replay: Path | None = None
    replay_clips: int = DEFAULT_REPLAY_CLIPS
    mic: str | None = None  # record DATA first, with prompts on the terminal
    takes: int = 5
    room_seconds: float = DEFAULT_ROOM_SECONDS
    reversed_negatives: bool = True  # each take played backwards as _unknown_ (the same voice, no word)
    commands: tuple[str, ...] = ()  # --mic: record only these (default: every command of the model)
    pull: float | None = None  # default: DEFAULT_PULL (last layer only), 0 (two layers: the anchors hold them)


def enroll(o: Options) -> dict[str, Any]:
    if o.mic is not None:
        from . import record

        labels = load_manifest(manifest_path_for(o.model)).labels if manifest_path_for(o.model).exists() else ()
        commands = tuple(x for x in labels if x not in NOT_COMMANDS)
        if not commands:
            raise ModelError(f"model {o.model}: no manifest with commands beside it")
        if o.commands:
            unknown = [c for c in o.commands if c not in commands]
            if unknown:
                raise ConfigError(f"--commands: {', '.join(unknown)} is not a command of {o.model}")
            commands = o.commands
        record.record_folder(o.mic, o.data, commands, o.takes, o.room_seconds, say=_say)
    if is_embedding_model(o.model):
        return enroll_embedding(o)
    lo = enroll_log_mel.Options(
        model=o.model, data=o.data, out=o.out, epochs=o.epochs, lr=o.lr, train_layers=o.train_layers,
        copies=enroll_log_mel.DEFAULT_COPIES if o.copies is None else o.copies, max_fa_per_hour=o.max_fa_per_hour,
        seed=o.seed, name=o.name, command=o.command, replay=o.replay, replay_clips=o.replay_clips)
    return enroll_log_mel.enroll(lo)


def format_text(result: dict[str, Any]) -> str:
    if result.get("frontend") != emb.NAME:
        from . import enroll_log_mel

        return enroll_log_mel.format_text(result)
    return "\n".join([f"wrote {result['model_file']} and {result['manifest_file']} in {result['seconds']:.0f} s",
                      *result["lines"]])


# -- the data -------------------------------------------------------------------------------------
def read_wav_16k(path: Path) -> np.ndarray:
    from ...preprocess import audio
    from ...sources.wav import read_wav

    try:
        x, rate = read_wav(path)
    except Exception as e:  # a broken file is named, and nothing else is lost
        raise ConfigError(f"data {path}: not a readable PCM WAV ({e})") from None
    return audio.resample(x, rate, emb.SAMPLE_RATE_HZ) if rate != emb.SAMPLE_RATE_HZ else x


def word_span(x: np.ndarray) -> tuple[int, int]:
    """(start, end) samples of the loudest stretch: 20 ms frames within 20 dB of the loudest."""
    frame = 320
    n = max(1, len(x) // frame)
    e = np.array([float(np.mean(x[i * frame:(i + 1) * frame] ** 2)) + 1e-12 for i in range(n)])
    loud = np.flatnonzero(e >= e.max() / 100.0)
    return int(loud[0] * frame), int(min(len(x), (loud[-1] + 1) * frame))


def _windows(vectors: np.ndarray, n: int) -> np.ndarray:
    if len(vectors) < n:
        return np.zeros((0, n, emb.EMBEDDING_DIM), np.float32)
    return np.stack([vectors[i - n: i] for i in range(n, len(vectors) + 1)])


def take_windows(front: emb.FrontEnd, take: np.ndarray, room: np.ndarray, spec: emb.EmbeddingSpec,
                 rng: np.random.Generator, gain: float, whole: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(positive windows, reversed-take windows) for one take at ``gain`` over a quiet stretch of
    the room: every head input that holds the whole word with a hop to spare on each side, as the
    stream presents them (the base model's scores plateau over exactly these; a window the word is
    only entering is not yet the word). ``whole=False``: only the first :data:`POSITIVE_HOPS` that
    hold it (a head that is one linear layer on the embeddings, which cannot hold a word wherever
    it sits in the window without holding it too long)."""
    lead = (emb.warm_hops() + spec.embeddings) * emb.HOP_SAMPLES  # the stream warm and the window full
    out = []
    for clip in (take, take[::-1].copy()):
        start, end = word_span(clip)
        tail = _window_reach(spec) + emb.HOP_SAMPLES
        n = lead + len(clip) + tail
        bed = _take_bed(room, n, rng, float(np.sqrt(np.mean((gain * clip[start:end]) ** 2))))
        bed[lead: lead + len(clip)] += gain * clip
        windows = _windows(emb.embeddings(front, bed), spec.embeddings)
        first, last = whole_word_windows(lead + start, lead + end, spec, POSITIVE_MARGIN_HOPS if whole else 0)
        last = last if whole else first + POSITIVE_HOPS - 1
        out.append(windows[max(0, first): max(0, min(len(windows), last + 1))])
    return out[0], out[1]


def _window_reach(spec: emb.EmbeddingSpec) -> int:
    """Samples of audio one head input spans: its first embedding's 0.76 s and a hop per further one."""
    return emb.EMBEDDING_FRAMES * emb.HOP_SAMPLES // emb.MEL_FRAMES_PER_HOP + (spec.embeddings - 1) * emb.HOP_SAMPLES


def whole_word_windows(start: int, end: int, spec: emb.EmbeddingSpec, margin: int = POSITIVE_MARGIN_HOPS
                       ) -> tuple[int, int]:
    """(first, last) index of the windows (``_windows`` of the stream's embeddings) that hold samples
    ``start..end`` whole, with ``margin`` hops to spare on each side (at least one window).

    Window i ends with embedding i + E - 1, which ends at sample (i + E - 1 + warm_hops) hops; it
    reaches back ``_window_reach`` samples."""
    hop, warm, e = emb.HOP_SAMPLES, emb.warm_hops(), spec.embeddings
    first = -(-end // hop) - e - warm + 1 + margin
    last = (start + _window_reach(spec)) // hop - e - warm + 1 - margin
    return first, max(first, last)


def _take_bed(room: np.ndarray, n: int, rng: np.random.Generator, word_rms: float) -> np.ndarray:
    """A stretch of the room's sound to place a take in: the quietest of a few, at 10-30 dB under
    the word. A take recorded in the room already carries the room; laid over the room's talk at
    full level it would be the word *and* other speech, and the fit would learn that the person's
    speech is the command (the room's talk is also in the fit, as ``_unknown_``)."""
    starts = rng.integers(0, max(1, len(room) - n + 1), BED_CANDIDATES)
    beds = [_room_stretch(room, n, rng) if len(room) < n else room[int(a): int(a) + n].astype(np.float32).copy()
            for a in starts]
    rms = [float(np.sqrt(np.mean(b ** 2))) + 1e-9 for b in beds]
    bed = beds[int(np.argmin(rms))]
    limit = word_rms / 10 ** (float(rng.uniform(*BED_SNR_DB)) / 20)
    return bed * min(1.0, limit / min(rms))


def _room_stretch(room: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(room) >= n:
        at = int(rng.integers(0, len(room) - n + 1))
        return room[at: at + n].astype(np.float32).copy()
    return np.resize(room, n).astype(np.float32)


@dataclasses.dataclass
class Takes:
    words: dict[str, list[Path]]
    room_files: list[Path]
    held: set[str]


def read_takes(root: Path, commands: Sequence[str]) -> Takes:
    """Checked before any decoding: at least one command with a recording, and room sound."""
    if not root.is_dir():
        raise ConfigError(f"data {root}: not a folder")
    words = {d.name: sorted(d.glob("*.wav")) for d in sorted(root.iterdir())
             if d.is_dir() and not d.name.startswith("_")}
    words = {w: p for w, p in words.items() if p}
    if not any(c in words for c in commands):
        raise ConfigError(f"data {root}: no recordings of any command ({', '.join(commands)}); one folder of WAVs "
                          "per command")
    room = sorted((root / NOISE_DIR).glob("*.wav"))
    if not room:
        raise ConfigError(f"data {root}: {NOISE_DIR}/ with a few minutes of the room's sound is needed")
    lst = root / "testing_list.txt"
    held = {line.strip() for line in lst.read_text().splitlines() if line.strip()} if lst.exists() else set()
    return Takes(words, room, held)


# -- the fit --------------------------------------------------------------------------------------
def fit_last_layer(f: np.ndarray, y: np.ndarray, w0: np.ndarray, b0: np.ndarray, pull: float, steps: int,
                   lr: float = 0.01, progress: Any = None,
                   class_share: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Class-balanced softmax regression on features ``f`` from (w0, b0), plus ``pull * |(W', b') - (W0', b0')|^2``
    (the bias held too: a balanced fit on a few takes otherwise raises every command's bias)
    (primes: on centred features at one overall scale, where one learning rate fits every head).
    Full batch, Adam, deterministic."""
    classes = w0.shape[0]
    mu = f.mean(axis=0).astype(np.float64)
    # one scale for all features, not one per feature: a feature that hardly varies in a few takes
    # (but does in other voices and words) must not get a large weight from them
    sd = max(float(f.std()), 1e-6)
    fs = (f - mu) / sd
    w_init = w0.astype(np.float64) * sd
    b_init = b0.astype(np.float64) + w0.astype(np.float64) @ mu
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    cw = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    if class_share is not None:  # _unknown_ counts as several commands, as train-voice weighs it
        cw = cw * class_share
    sw = cw[y] / cw[y].sum()
    w, b = w_init.copy(), b_init.copy()
    mw, vw, mb, vb = (np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b))
    onehot = np.eye(classes)[y]
    # Adam steps are in parameter units: scale them to the head's own logits (a head whose logits
    # are hundreds apart needs steps a hundred times larger than one whose logits are a few apart)
    spread = max(1.0, float((fs @ w_init.T + b_init).std()) / 10.0)
    lr, bias_lr = lr * spread, BIAS_LR * spread
    loss = 0.0
    for step in range(1, steps + 1):
        loss, g = enroll_fit.cross_entropy(fs @ w.T + b, y, onehot, sw)
        gw = g.T @ fs + 2 * pull * (w - w_init)
        gb = g.sum(axis=0) + 2 * pull * (b - b_init)
        decay = 0.5 * (1 + np.cos(np.pi * (step - 1) / steps))  # cosine: settles instead of wandering
        for param, grad, m, v, rate in ((w, gw, mw, vw, lr), (b, gb, mb, vb, bias_lr)):
            enroll_fit.adam_step(param, grad, m, v, rate * decay, step)
        if progress is not None and (step % max(1, steps // 5) == 0 or step == steps):
            progress(f"enroll: training step {step} of {steps}, cross-entropy {loss:.3f}")
    w_out = w / sd
    return w_out.astype(np.float32), (b - w_out @ mu).astype(np.float32), loss


def float_head(manifest: Manifest, layer: head.LastLayer) -> tuple[np.ndarray, np.ndarray, str]:
    """The float last layer the manifest carries, else the int8 one dequantized (said in the report)."""
    block = manifest.extra.get(ENROLL_KEY)
    if isinstance(block, dict) and "weights" in block and "bias" in block:
        w = np.asarray(block["weights"], np.float32)
        b = np.asarray(block["bias"], np.float32)
        if w.shape == (layer.classes, layer.weights_q.reshape(layer.classes, -1).shape[1]) and b.shape == (
                layer.classes,):
            return w, b, "the float weights the manifest carries"
        raise ModelError(f"manifest: '{ENROLL_KEY}' weights {list(w.shape)} do not fit the model's last layer")
    w, b = layer.float_weights()
    return w, b, "the int8 weights dequantized (the manifest carries no float head)"


def anchors(manifest: Manifest, labels: Sequence[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The manifest's ``enroll.anchors`` ({label: [feature vectors]}): a few of the training data's
    features before the last layer, per class, so a fit on one person's takes does not move the
    boundaries of the commands they did not record."""
    block = manifest.extra.get(ENROLL_KEY)
    raw = block.get("anchors", {}) if isinstance(block, dict) else {}
    fs, ys = [], []
    for label, vectors in raw.items():
        v = np.asarray(vectors, np.float32)
        if label not in labels or v.ndim != 2 or v.shape[1] != dim:
            raise ModelError(f"manifest: '{ENROLL_KEY}.anchors.{label}' does not fit the model ({list(v.shape)})")
        fs.append(v)
        ys += [list(labels).index(label)] * len(v)
    if not fs:
        return np.zeros((0, dim), np.float32), np.zeros(0, np.int64)
    return np.concatenate(fs), np.asarray(ys, np.int64)


def enroll_block(w: np.ndarray, b: np.ndarray, anchors: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"layer": "last", "weights": np.round(w.astype(np.float64), 6).tolist(),
                             "bias": np.round(b.astype(np.float64), 6).tolist()}
    if anchors:
        block["anchors"] = anchors
    return block


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def enroll_embedding(o: Options) -> dict[str, Any]:
    from ...voice.spotter import load_voice_model, make_spotter

    if o.out.suffix != ".tflite":
        raise ConfigError(f"--out {o.out}: expected a .tflite path")
    copies = DEFAULT_COPIES if o.copies is None else o.copies
    if copies < 0 or (o.steps is not None and o.steps < 1):
        raise ConfigError("--copies must not be negative and --steps at least 1")
    t0 = time.monotonic()
    base = load_manifest(manifest_path_for(o.model))
    spec = emb.EmbeddingSpec.from_mapping(base.audio, f"manifest {manifest_path_for(o.model)}")
    labels = base.labels
    commands = tuple(x for x in labels if x not in NOT_COMMANDS)
    if UNKNOWN not in labels:
        raise ModelError(f"model {o.model}: enroll needs an '{UNKNOWN}' label for the room and other words")
    takes = read_takes(o.data, commands)
    for c in commands:
        n = len(takes.words.get(c, []))
        if 0 < n < MIN_TAKES:
            _say(f"enroll: only {n} recording(s) of '{c}'; {MIN_TAKES}-10 work better")
    layer = head.read_last_layer(o.model)
    w0, b0, start_from = float_head(base, layer)
    hidden = head.read_hidden_layer(o.model, layer)
    deep_f, deep_y = (hidden_anchors(base, labels, int(np.prod(hidden.weights_q.shape[1:]))) if hidden is not None
                      else (np.zeros((0, 0), np.float32), np.zeros(0, np.int64)))
    two_layers = hidden is not None and len(deep_y) > 0
    front = emb.FrontEnd.load()
    rng = np.random.default_rng(o.seed)
    room = np.concatenate([read_wav_16k(p) for p in takes.room_files])
    index = {name: i for i, name in enumerate(labels)}
    xs: list[np.ndarray] = []
    ys: list[int] = []
    tested: list[tuple[str, np.ndarray]] = []
    total = sum(len(p) for p in takes.words.values())
    done = 0
    for word, paths in takes.words.items():
        y = index.get(word, index[UNKNOWN])
        for path in paths:
            take = read_wav_16k(path)
            done += 1
            _say(f"enroll: recording {done} of {total} ({word}/{path.name})")
            if f"{word}/{path.name}" in takes.held:
                tested.append((word, take))
                continue
            if word in commands:
                tested.append((word, take))
            for k in range(1 + copies):
                gain = 1.0 if k == 0 else float(10 ** rng.uniform(-0.5, 0.3))
                pos, rev = take_windows(front, take, room, spec, rng, gain, whole=two_layers)
                xs.append(pos)
                ys += [y] * len(pos)
                if word in commands and o.reversed_negatives:
                    xs.append(rev)
                    ys += [index[UNKNOWN]] * len(rev)
    _say("enroll: the room's sound")
    room_windows = _windows(emb.embeddings(front, room), spec.embeddings)
    keep = rng.permutation(len(room_windows))[:MAX_ROOM_WINDOWS]
    xs.append(room_windows[keep])
    ys += [index[UNKNOWN]] * len(keep)
    x = np.concatenate(xs)
    y_arr = np.asarray(ys, np.int64)
    _say(f"enroll: {len(y_arr)} windows through the head")
    share = np.ones(len(labels))
    share[index[UNKNOWN]] = UNKNOWN_SHARE
    o.out.parent.mkdir(parents=True, exist_ok=True)
    if two_layers and hidden is not None:  # both dense layers, against the many anchors the model carries
        method = "last two layers re-fitted on LiteRT features (numpy), int8 at new per-channel scales"
        features = np.concatenate([hidden.features(x), deep_f])
        y_arr = np.concatenate([y_arr, deep_y])
        w1, b1 = hidden.float_weights()
        w1, b1, w, b, loss = enroll_fit.fit_two_layers(
            features, y_arr, (w1, b1), (w0, b0), hidden.output_range[1],
            steps=o.steps or enroll_fit.DEFAULT_STEPS, pull=0.0 if o.pull is None else o.pull, class_share=share,
            progress=_say)
        head.patch(layer, w, b, o.out, more=((hidden, w1, b1),))
    else:
        method = "last layer re-fitted on LiteRT features (numpy), int8 at the layer's own scales"
        features = layer.features(x)
        anchor_f, anchor_y = anchors(base, labels, features.shape[1])
        if len(anchor_y):  # the classes' own examples the model carries: what keeps other voices and words
            features, y_arr = np.concatenate([features, anchor_f]), np.concatenate([y_arr, anchor_y])
        w, b, loss = fit_last_layer(features, y_arr, w0, b0, DEFAULT_PULL if o.pull is None else o.pull,
                                    o.steps or DEFAULT_STEPS, progress=_say, class_share=share)
        head.patch(layer, w, b, o.out)
    fit_s = time.monotonic() - t0

    # the threshold on the room's sound, with the calibration code, on the enrolled model
    before_settings = RecognizerSettings.from_mapping(base.extra.get("recognizer"))
    _write_manifest(o, base, labels, spec, before_settings, w, b, {})
    enrolled = load_voice_model(o.out, threads=1)
    scored = calibrate.score_hops(make_spotter(enrolled), _hop_list(room), labels, len(room) / emb.SAMPLE_RATE_HZ)
    counts = calibrate.curve(scored, before_settings)
    # never under the shipped threshold: minutes of room sound cannot vouch for a rate of 2 an hour
    # (one false accept in 2 minutes is 30 an hour), so a lower one is `edge-agent calibrate`'s to choose
    floor = before_settings.threshold
    allowed = {th: n for th, n in counts.items() if th >= floor - 1e-9}
    chosen = calibrate.choose(allowed, scored.hours, o.max_fa_per_hour) if allowed else floor
    counts.setdefault(chosen, calibrate.count_accepts(scored, before_settings, chosen))
    settings = dataclasses.replace(before_settings, threshold=chosen, thresholds={})
    heard = _takes_heard(enrolled, settings, tested, room, rng)
    tuning = {"room_minutes": round(scored.hours * 60, 2), "max_fa_per_hour": o.max_fa_per_hour,
              "false_accepts_by_threshold": {str(k): v for k, v in counts.items()}, "threshold": chosen,
              "threshold_before": before_settings.threshold}
    report = {"recordings": {w_: len(p) for w_, p in takes.words.items()}, "held_out": len(takes.held),
              "heard": heard, "started_from": start_from, "final_loss": round(loss, 4),
              "windows": len(y_arr), "fit_seconds": round(fit_s, 1), "method": method}
    mpath = _write_manifest(o, base, labels, spec, settings, w, b, {"threshold_tuning": tuning, **report})
    rate = counts[chosen] / scored.hours
    lines = [f"{word}: {k} of {n} of your takes heard" for word, (k, n) in heard.items()]
    lines.append(f"false accepts in your room: {rate:.1f} an hour at threshold {chosen:g} "
                 f"({scored.hours * 60:.1f} min of room sound)")
    return {"frontend": emb.NAME, "model_file": str(o.out), "manifest_file": str(mpath),
            "seconds": round(time.monotonic() - t0, 1), "recognizer": settings.to_json(),
            "threshold_tuning": tuning, "report": report, "lines": lines}


def _hop_list(audio: np.ndarray) -> list[np.ndarray]:
    n = len(audio) // emb.HOP_SAMPLES
    return [audio[i * emb.HOP_SAMPLES:(i + 1) * emb.HOP_SAMPLES] for i in range(n)]


def _takes_heard(model: Any, settings: RecognizerSettings, tested: list[tuple[str, np.ndarray]],
                 room: np.ndarray, rng: np.random.Generator) -> dict[str, tuple[int, int]]:
    """Each take (held-out ones when there are) through the agent's spotter over room sound at the
    chosen setting: was its word announced?"""
    from ...voice.spotter import make_spotter

    model = dataclasses.replace(model, settings=settings)
    out: dict[str, tuple[int, int]] = {}
    for word, take in tested:
        spotter = make_spotter(model)
        lead = (emb.warm_hops() + model.spec.embeddings + 2) * emb.HOP_SAMPLES  # a full window before the word
        start, end = word_span(take)
        bed = _take_bed(room, lead + len(take) + emb.SAMPLE_RATE_HZ * 2, rng,
                        float(np.sqrt(np.mean(take[start:end] ** 2))))
        bed[lead: lead + len(take)] += take
        said = {c.label for hop in _hop_list(bed) if (c := spotter.push(hop)) is not None}
        k, n = out.get(word, (0, 0))
        out[word] = (k + (word in said), n + 1)
    return out


ANCHORS_PER_CLASS: Final = 24
# training windows per class whose hidden-layer inputs the manifest carries (64 bytes each for a
# width-64 head: ~270 kB of base64 in all): the other voices, words and running speech enrollment
# keeps its boundaries against
HIDDEN_ANCHORS: Final = {"command": 200, SILENCE: 100, UNKNOWN: 2000}


def add_enroll_block(model: Path, labels: Sequence[str], w: np.ndarray, b: np.ndarray, windows: np.ndarray,
                     y: np.ndarray, seed: int = 0, per_class: int = ANCHORS_PER_CLASS) -> None:
    """What ``train-voice`` writes into a head's manifest so enrollment never needs the training
    data: the float last layer (``w``: classes x features) and, per class, ``per_class`` training
    windows' features as the int8 model computes them (the anchors). A head whose last layer is fed
    by a dense ReLU layer gets instead the inputs of that layer for many more training windows
    (:data:`HIDDEN_ANCHORS`, as int8 codes): enrollment re-fits both layers and holds on to these."""
    layer = head.read_last_layer(model)
    rng = np.random.default_rng(seed)
    hidden = head.read_hidden_layer(model, layer)
    if hidden is None:
        picked = {c: rng.permutation(np.flatnonzero(y == i))[:per_class] for i, c in enumerate(labels)}
        block = enroll_block(w, b, {c: np.round(layer.features(windows[idx]), 4).tolist()
                                    for c, idx in picked.items() if len(idx)})
    else:  # the last layer's own anchors would be stale once the layer before it is re-fitted
        block = enroll_block(w, b)
        many = {c: rng.permutation(np.flatnonzero(y == i))[:HIDDEN_ANCHORS.get(c, HIDDEN_ANCHORS["command"])]
                for i, c in enumerate(labels)}
        block["hidden_anchors"] = encode_anchors(hidden, {c: hidden.features(windows[idx])
                                                          for c, idx in many.items() if len(idx)})
    mpath = manifest_path_for(model)
    m = load_manifest(mpath)
    write(dataclasses.replace(m, extra={**m.extra, ENROLL_KEY: block}), mpath)


def encode_anchors(layer: head.LastLayer, features: dict[str, np.ndarray]) -> dict[str, Any]:
    """Features at a layer's int8 input, kept as the int8 codes they are (base64): exact, and a
    quarter of the size of numbers in the JSON."""
    scale, zero = layer.feature_scale, layer.feature_zero
    rows = {c: base64.b64encode(np.clip(np.round(f / scale) + zero, -128, 127).astype(np.int8).tobytes()).decode()
            for c, f in features.items()}
    dim = int(np.prod(layer.weights_q.shape[1:]))
    return {"scale": scale, "zero": zero, "dim": dim, "rows": rows}


def hidden_anchors(manifest: Manifest, labels: Sequence[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The manifest's ``enroll.hidden_anchors`` as (features, labels); empty when it carries none."""
    block = manifest.extra.get(ENROLL_KEY)
    raw = block.get("hidden_anchors") if isinstance(block, dict) else None
    if not isinstance(raw, dict):
        return np.zeros((0, dim), np.float32), np.zeros(0, np.int64)
    try:
        scale, zero = float(raw["scale"]), int(raw["zero"])
        fs, ys = [], []
        for label, text in raw["rows"].items():
            q = np.frombuffer(base64.b64decode(text), np.int8).reshape(-1, dim)
            fs.append((q.astype(np.float32) - zero) * scale)
            ys += [list(labels).index(label)] * len(q)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"manifest: '{ENROLL_KEY}.hidden_anchors' does not fit the model ({e})") from None
    return np.concatenate(fs), np.asarray(ys, np.int64)


def _base_block(base: Manifest) -> dict[str, Any]:
    """The base model's enroll block, kept: its hidden anchors are inputs to layers enrollment does
    not change, so the enrolled model can be enrolled again."""
    block = base.extra.get(ENROLL_KEY)
    return dict(block) if isinstance(block, dict) else {}


def _base_anchors(base: Manifest) -> dict[str, Any] | None:
    block = base.extra.get(ENROLL_KEY)
    return block.get("anchors") if isinstance(block, dict) else None


def _write_manifest(o: Options, base: Manifest, labels: Sequence[str], spec: emb.EmbeddingSpec,
                    settings: RecognizerSettings, w: np.ndarray, b: np.ndarray, report: dict[str, Any]) -> Path:
    provenance = {
        "tool": "edge-agent-convert enroll", "tool_version": __version__, "command": o.command,
        "dataset": str(o.data), "base_model": str(o.model), "base_sha256": base.sha256, "frontend": emb.NAME,
        "steps": o.steps, "pull": o.pull, "copies": DEFAULT_COPIES if o.copies is None else o.copies,
        "seed": o.seed, **report,
        "base_provenance": {k: base.provenance.get(k) for k in ("tool", "engines", "held_out_engines")
                            if k in base.provenance},
    }
    manifest = dataclasses.replace(
        base, name=o.name or o.out.stem, sha256=sha256_file(o.out), model_file=o.out.name, provenance=provenance,
        metrics={},
        extra={**base.extra, "recognizer": settings.to_json(),
               ENROLL_KEY: {**_base_block(base), **enroll_block(w, b, _base_anchors(base))}})
    del labels, spec
    path = manifest_path_for(o.out)
    write(manifest, path)
    return path
