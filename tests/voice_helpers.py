"""Real parts for the voice tests: speech from espeak-ng, a fixed tone model, and a PulseAudio server
with a null sink whose monitor is the agent's microphone (sounddevice → PortAudio → ALSA's pulse plugin).

The **tone model** is what the pipeline tests run, so they test the pipeline and not how a training
run went: a real full-int8 keyword model converted by the conversion tool's own code, with weights
set in code (no training), that hears "words" made of tones, each word its own mel band
(:data:`TONE_HZ`), far from any threshold. The shipped model is retrained from time to time and its
scores on a near-threshold clip move (0.9996 one day, 0.999 the next); a test that needs it asserts
properties (each event a spoken command, at most one per word, in order), never exact scores."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.preprocess.audio import SAMPLE_RATE_HZ
from edge_agent.sources.wav import write_wav
from tests.helpers import REPO, stop_process
from tools import gen_voice_data as gen  # a script in tools/, importable from the repository root

VOICE_MODEL = REPO / "models" / "voice.tflite"
TONE_LABELS = ("yes", "no", "on", "off", "stop", "_silence_", "_unknown_")
TONE_BINS = {"yes": 8, "no": 13, "on": 18, "off": 23, "stop": 28, "tree": 33}  # mel bin of each word's tone
TONE_SECONDS = 0.4
TONE_SPEC_MEAN, TONE_SPEC_STD = -8.0, 4.0  # the tone model's front-end normalisation (its manifest's)
TONE_GAIN = 8.0  # logit per unit of (normalised) band contrast: a whole tone in the window scores ~10 vs 3
HELD_OUT_VOICE = "en-us+m3"  # a variant in gen.TEST_VARIANTS: never heard in training
SINK = "voice_sink"
SINK_RATE_HZ = 48_000  # the null sink (and so its monitor) runs at 48 kHz, like most USB microphones


def need_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (apt install espeak-ng): the voice tests synthesise their speech")


def speech_stream(path: Path, words: Sequence[str], voice: str = HELD_OUT_VOICE, seed: int = 0,
                  snr_db: float = 20.0, gap_s: tuple[float, float] = (1.8, 2.5),
                  rate: int = SAMPLE_RATE_HZ) -> list[tuple[str, float, float]]:
    """Write ``words`` spoken by ``voice`` over pink noise to a WAV; return (word, start_s, end_s)."""
    need_espeak()
    rng = np.random.default_rng(seed)
    noise = gen.make_noise("pink", 10.0, rng, rate=rate)
    stream, marks = gen.compose_stream([(w, voice) for w in words], rng, noise, gap_s=gap_s, snr_db=snr_db,
                                       rate=rate)
    write_wav(path, stream, rate)
    return marks


def _tone_hz() -> dict[str, float]:
    from edge_agent.preprocess.audio import AudioSpec, hz_to_mel

    spec = AudioSpec()
    edges = np.linspace(float(hz_to_mel(spec.fmin_hz)), float(hz_to_mel(spec.fmax_hz)), spec.mel_bins + 2)
    centre_mel = edges[1:-1]
    return {w: float(700.0 * np.expm1(centre_mel[b] / 1127.0)) for w, b in TONE_BINS.items()}


TONE_HZ = _tone_hz()  # "yes" ≈ 480 Hz ... "tree" (not a command) ≈ 3.6 kHz


def tone_word(word: str, rate: int = SAMPLE_RATE_HZ, amplitude: float = 0.3) -> np.ndarray:
    """A "word" the tone model hears: :data:`TONE_SECONDS` of its tone with 10 ms fades."""
    t = np.arange(int(TONE_SECONDS * rate)) / rate
    x = amplitude * np.sin(2 * np.pi * TONE_HZ[word] * t)
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)
    return (x * fade).astype(np.float32)


def tone_stream(path: Path, words: Sequence[str], rate: int = SAMPLE_RATE_HZ, gap_s: float = 1.6,
                lead_s: float = 1.2, seed: int = 0) -> list[tuple[str, float, float]]:
    """Tone words with ``gap_s`` of quiet pink noise between them, to a WAV; (word, start_s, end_s)."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(lead_s * rate), np.float32)]
    marks, pos = [], len(parts[0])
    for w in words:
        x = tone_word(w, rate)
        marks.append((w, pos / rate, (pos + len(x)) / rate))
        parts += [x, np.zeros(int(gap_s * rate), np.float32)]
        pos += len(x) + int(gap_s * rate)
    stream = np.concatenate(parts)
    stream = stream + 0.003 * gen.make_noise("pink", len(stream) / rate, rng, rate=rate)
    write_wav(path, np.clip(stream, -1, 1).astype(np.float32), rate)
    return marks


def build_tone_model(path: Path) -> Path:
    """The fixed tone model (see the module docstring) at ``path`` with its manifest, converted by
    ``edge-agent-convert train-voice``'s own conversion (full int8, logits out). One convolution
    over the whole (49, 40) window: command c's logit is TONE_GAIN x the mean over frames of its
    band's feature minus the window's mean feature; ``_silence_`` is a constant 3; ``_unknown_``
    listens to the "tree" band. Made once per session and reused (``path`` is checked first)."""
    if path.exists() and path.with_suffix(".json").exists():
        return path
    import warnings

    from edge_agent import manifest as manifest_mod
    from edge_agent.convert import _tf
    from edge_agent.convert.voice.model import convert
    from edge_agent.preprocess import audio
    from edge_agent.preprocess.audio import AudioSpec
    from edge_agent.voice.recognizer import RecognizerSettings

    spec = AudioSpec(mean=TONE_SPEC_MEAN, std=TONE_SPEC_STD)
    frames, bins = spec.shape
    keras = _tf.keras()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inp = keras.Input((frames, bins, 1))
        x = keras.layers.Conv2D(len(TONE_LABELS), (frames, bins), use_bias=True)(inp)
        x = keras.layers.Flatten()(x)
        model = keras.Model(inp, keras.layers.Softmax()(x), name="tone")
    w = np.zeros((frames, bins, 1, len(TONE_LABELS)), np.float32)
    for i, label in enumerate(TONE_LABELS):
        band = TONE_BINS["tree" if label == "_unknown_" else label] if label != "_silence_" else None
        if band is not None:
            w[:, :, 0, i] = -TONE_GAIN / (frames * bins)
            w[:, band, 0, i] += TONE_GAIN / frames
    bias = np.zeros(len(TONE_LABELS), np.float32)
    bias[TONE_LABELS.index("_silence_")] = 3.0
    model.layers[1].set_weights([w, bias])
    rng = np.random.default_rng(0)
    clips = [0.003 * rng.standard_normal(spec.clip_samples).astype(np.float32) for _ in range(8)]
    for word in TONE_BINS:
        for start in (0, 4000, 8000):
            c = 0.003 * rng.standard_normal(spec.clip_samples).astype(np.float32)
            tone = tone_word(word)
            c[start: start + len(tone)] += tone
            clips.append(c)
    calib = np.stack([audio.features(c, spec) for c in clips])
    _, int8_bytes, _ = convert(model, spec.shape, calib)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(int8_bytes)
    model.save(path.with_suffix(".keras"))  # what enroll fine-tunes
    manifest = manifest_mod.Manifest(
        name="tone", task="voice", labels=TONE_LABELS, sha256=manifest_mod.sha256_file(path),
        model_file=path.name, audio={k: v for k, v in spec.to_json().items() if k != "kind"},
        provenance={"made_by": "tests/voice_helpers.py build_tone_model"}, metrics={},
        extra={"recognizer": RecognizerSettings(threshold=0.9, average_window_ms=300).to_json()},
        output=manifest_mod.OUTPUT_LOGITS)
    manifest_mod.write(manifest, manifest_mod.manifest_path_for(path))
    return path


@pytest.fixture(scope="session")
def tone_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tone_model(tmp_path_factory.getbasetemp() / "tone_model" / "tone.tflite")


def assert_events_follow_the_words(events: Sequence[tuple[str, float]], marks: Sequence[tuple[str, float, float]],
                                   after_s: float = 1.5) -> None:
    """What any voice model must do, however well it was trained: every event is a command that was
    spoken, inside that word's span (start to ``after_s`` past its end), at most one per word, in
    the order spoken. (Whether it hears *every* command is a quality figure: tools/eval_voice.py.)"""
    used: list[int] = []
    for label, t_s in events:
        owners = [i for i, (w, s, e) in enumerate(marks) if s <= t_s <= e + after_s and w == label]
        assert owners, f"event {label!r} at {t_s:.2f} s matches no spoken {label!r}: {list(marks)}"
        i = owners[0]
        assert i not in used, f"two events for the word {marks[i]}: {list(events)}"
        assert not used or i > used[-1], f"events out of order: {list(events)}"
        used.append(i)


class PulseServer:
    """``pulseaudio`` in the foreground with our own script: a native socket in a temp dir and a
    48 kHz null sink as the default source's owner. As root it needs its own HOME and runtime
    path (it refuses the system instance's); it warns that it is not meant for root, and works."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.socket = workdir / "native"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "pulseaudio.log"

    @property
    def env(self) -> dict[str, str]:
        """What a client needs: our server, and the sink's monitor as the recording source."""
        return {"PULSE_SERVER": f"unix:{self.socket}", "PULSE_SOURCE": f"{SINK}.monitor", "PULSE_SINK": SINK,
                "PULSE_RUNTIME_PATH": str(self.dir / "run"), "HOME": str(self.dir)}

    def start(self) -> PulseServer:
        binary = shutil.which("pulseaudio")
        if binary is None or shutil.which("paplay") is None:
            pytest.fail("PulseAudio is not installed (apt install pulseaudio pulseaudio-utils libasound2-plugins)")
        self.dir.mkdir(parents=True, exist_ok=True)
        script = self.dir / "test.pa"
        script.write_text(
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}\n"
            f"load-module module-null-sink sink_name={SINK} rate={SINK_RATE_HZ} channels=1\n"
            f"set-default-sink {SINK}\nset-default-source {SINK}.monitor\n"
        )
        for sub in ("run", "state"):
            (self.dir / sub).mkdir(exist_ok=True)
        env = {**os.environ, **self.env, "PULSE_STATE_PATH": str(self.dir / "state")}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [binary, "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "-n", "-F", str(script)],
                stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ok = subprocess.run(["pactl", "info"], env={**os.environ, **self.env}, capture_output=True)
            if ok.returncode == 0:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"pulseaudio did not start: {self.log.read_text()[-2000:]}")

    def play(self, wav: Path) -> subprocess.CompletedProcess[bytes]:
        """Play a WAV into the null sink (blocks for its duration)."""
        return subprocess.run(["paplay", "--device", SINK, str(wav)], env={**os.environ, **self.env},
                              capture_output=True, timeout=120)

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


@contextlib.contextmanager
def pulse_server(workdir: Path) -> Iterator[PulseServer]:
    server = PulseServer(workdir)
    try:
        yield server.start()
    finally:
        server.stop()


QUIET = 0.003  # the noise floor of the embedding tests' streams


def quiet(n: int, seed: int) -> np.ndarray:
    """``n`` samples of a quiet noise floor."""
    return (QUIET * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def window_with(word: str | None, seed: int, spec: Any = None) -> np.ndarray:
    """Audio for one speech-embedding head input from a cold stream, the tone word (or nothing) in
    the middle of what the head covers."""
    from edge_agent.voice import embedding as emb

    spec = spec if spec is not None else emb.EmbeddingSpec()
    n = (emb.warm_hops() + spec.embeddings - 1) * emb.HOP_SAMPLES
    x = quiet(n, seed)
    if word is not None:
        tone = tone_word(word)
        start = n - spec.window_ms * 16 // 2 - len(tone) // 2
        x[start: start + len(tone)] += tone
    return x
