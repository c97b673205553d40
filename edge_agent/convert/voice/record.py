"""``enroll --mic NAME``: record the enrollment folder with prompts on the terminal.

First the room's own sound (``_background_noise_/room.wav``, ``--room-seconds``), which also sets
the level a spoken word must rise above; then, for each command, ``--takes`` takes: the prompt
says which word, and a take is the stretch that rises 10 dB over the room (at least 60 ms),
from 200 ms before it to 300 ms of quiet after it, at most 1.5 s. Nothing waits on the keyboard,
so a person just speaks when prompted (and a test can play the words into a null sink).
Interactive by design: this is the enroll command, never the service.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from ...errors import ConfigError
from ...sources.wav import write_wav
from ...voice.embedding import SAMPLE_RATE_HZ

FRAME: Final = 320  # 20 ms at 16 kHz
RISE: Final = 10.0  # a word's energy over the room's median: 10 dB
MIN_FRAMES: Final = 3  # 60 ms above it: a word, not a click
PRE_FRAMES: Final = 10  # 200 ms kept before it
QUIET_FRAMES: Final = 15  # 300 ms below it: the word ended
MAX_FRAMES: Final = 75  # 1.5 s at most
TAKE_TIMEOUT_S: Final = 15.0
ATTEMPTS: Final = 3
NOISE_DIR: Final = "_background_noise_"


def _open(mic: str) -> Any:
    from ...sources.microphone import MicrophoneSource

    source = MicrophoneSource(mic, SAMPLE_RATE_HZ)
    source.open()
    return source


def _read(source: Any, samples: int) -> np.ndarray:
    got: list[np.ndarray] = []
    n = 0
    while n < samples:
        block = source.read(min(FRAME, samples - n), timeout=2.0)
        if block is not None:
            got.append(block.samples)
            n += len(block.samples)
    return np.concatenate(got)[:samples]


def room_level(room: np.ndarray) -> float:
    """The room's median 20 ms energy (a floor so a silent room still needs a word to rise)."""
    frames = room[: len(room) // FRAME * FRAME].reshape(-1, FRAME)
    return max(float(np.median((frames ** 2).mean(axis=1))), 1e-8)


def next_word(source: Any, level: float, timeout_s: float = TAKE_TIMEOUT_S) -> np.ndarray | None:
    """The next stretch that rises over ``level``, or None after ``timeout_s`` without one."""
    before: list[np.ndarray] = []
    word: list[np.ndarray] = []
    loud_run = quiet_run = 0
    for _ in range(int(timeout_s * SAMPLE_RATE_HZ / FRAME)):
        frame = _read(source, FRAME)
        loud = float((frame ** 2).mean()) > RISE * level
        if not word:
            before = [*before, frame][-(PRE_FRAMES + MIN_FRAMES):]
            loud_run = loud_run + 1 if loud else 0
            if loud_run >= MIN_FRAMES:
                word = list(before)
            continue
        word.append(frame)
        quiet_run = 0 if loud else quiet_run + 1
        if quiet_run >= QUIET_FRAMES or len(word) >= MAX_FRAMES:
            return np.concatenate(word)
    return np.concatenate(word) if word else None


def record_folder(mic: str, root: Path, commands: Sequence[str], takes: int, room_seconds: float,
                  say: Callable[[str], None]) -> Path:
    """Fill ``root`` in the Speech Commands layout from the microphone; return it."""
    if not 1 <= takes <= 20 or not room_seconds >= 10:
        raise ConfigError("--takes must be 1 to 20 and --room-seconds at least 10")
    (root / NOISE_DIR).mkdir(parents=True, exist_ok=True)
    source = _open(mic)
    try:
        say(f"enroll: recording {room_seconds:.0f} s of your room as it usually is: please stay quiet")
        room = _read(source, int(room_seconds * SAMPLE_RATE_HZ))
        write_wav(root / NOISE_DIR / "room.wav", room, SAMPLE_RATE_HZ)
        level = room_level(room)
        say("enroll: room recorded")
        for word in commands:
            (root / word).mkdir(exist_ok=True)
            for k in range(1, takes + 1):
                for attempt in range(ATTEMPTS):
                    say(f'enroll: say "{word}" (take {k} of {takes})')
                    x = next_word(source, level)
                    if x is not None:
                        write_wav(root / word / f"take_{k:02d}.wav", x, SAMPLE_RATE_HZ)
                        say(f"enroll: got it ({len(x) / SAMPLE_RATE_HZ:.1f} s)")
                        break
                    say(f"enroll: nothing heard in {TAKE_TIMEOUT_S:.0f} s" +
                        ("; try again" if attempt + 1 < ATTEMPTS else ""))
                else:
                    raise ConfigError(f"microphone {mic}: no word heard over the room's sound for '{word}'; "
                                      "check the microphone (edge-agent --list-devices)")
    finally:
        source.close()
    return root
