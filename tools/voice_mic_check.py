#!/usr/bin/env python3
"""A voice from another engine speaking into the agent's microphone: PulseAudio null sink → its monitor.

    python tools/voice_mic_check.py MODEL [--engine piper --voice joe] [--piper-python PY] [agent flags ...]

Synthesises "stop yes no on off yes stop no" with the engine's voice (2.5 s apart), plays it twice
into a private PulseAudio server's null sink (the same server the microphone tests start:
tests/voice_helpers.py), runs ``edge-agent --task voice --mic pulse --sink stdout`` on its monitor
and prints what was said and what was published. A manual check (Piper lives in its own
environment, so it is not part of the test run); the model card records its result.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_agent.preprocess.audio import resample
from edge_agent.sources.wav import write_wav
from tests.helpers import agent_env, running, start_agent
from tests.voice_helpers import SINK_RATE_HZ, pulse_server
from tools import voice_engines

WORDS = ("stop", "yes", "no", "on", "off", "yes", "stop", "no")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path)
    p.add_argument("--engine", default="piper")
    p.add_argument("--voice", default="joe")
    p.add_argument("--piper-python")
    p.add_argument("--work", type=Path, default=Path("/tmp/voice_mic_check"))
    a, agent_flags = p.parse_known_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    kwargs = {"piper_python": a.piper_python} if a.piper_python else {}
    engine = voice_engines.get(a.engine, **kwargs)
    rng = np.random.default_rng(5)
    parts = [np.zeros(48_000, np.float32)]
    for w in WORDS:
        x = engine.synth(w, a.voice, rng)
        parts += [x / (np.abs(x).max() + 1e-9) * 0.5, np.zeros(40_000, np.float32)]
    audio = np.concatenate(parts)
    audio = audio + rng.normal(0, 3e-4, len(audio)).astype(np.float32)
    wav = a.work / "speech.wav"
    write_wav(wav, resample(audio, 16_000, SINK_RATE_HZ), SINK_RATE_HZ)
    with pulse_server(a.work / "pa") as pulse:
        proc = start_agent(["--task", "voice", "--mic", "pulse", "--sink", "stdout", "--threads", "1",
                            "--model", str(a.model), *agent_flags], env=agent_env(**pulse.env))
        with running(proc):
            lines: queue.Queue[str] = queue.Queue()
            assert proc.stderr is not None
            stderr = proc.stderr
            threading.Thread(target=lambda: [lines.put(line) for line in stderr], daemon=True).start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if "capturing at" in lines.get(timeout=0.5):
                        break
                except queue.Empty:
                    continue
            for _ in range(2):
                pulse.play(wav)
            time.sleep(3)
            proc.terminate()
            out, _ = proc.communicate(timeout=20)
    published = [json.loads(line)["command"] for line in out.splitlines() if line.startswith("{")]
    print(json.dumps({"said": list(WORDS) * 2, "published": published}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
