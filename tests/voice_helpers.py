"""Real parts for the voice tests: speech from espeak-ng, and a PulseAudio server with a null sink
whose monitor is the agent's microphone (sounddevice → PortAudio → ALSA's pulse plugin)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from edge_agent.preprocess.audio import SAMPLE_RATE_HZ
from edge_agent.sources.wav import write_wav
from tests.helpers import REPO, stop_process
from tools import gen_voice_data as gen  # a script in tools/, importable from the repository root

VOICE_MODEL = REPO / "models" / "voice.tflite"
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
