"""``edge-agent --task voice --capture DIR``: the near misses and mistakes, kept for the next ``enroll``.

Off by default. What it keeps, as 16 kHz WAV files in the Speech Commands layout that
``edge-agent-convert enroll --data DIR`` reads as it is, with ``DIR/captures.csv`` (one row per
file: file, label, kind, score, threshold, time_s, seq):

* ``<command>/near_*.wav`` (kind ``near_miss``): the audio the head read when a command's averaged
  score rose to within :data:`NEAR_MARGIN` of its threshold and fell back without being announced:
  most often the command said and not heard. A command announced within :data:`REPEAT_S` after it
  adds a row of kind ``repeated`` for that file: the person said it again, so it was the command.
* ``not_<command>/wrong_*.wav`` (kind ``wrong``): an announced command marked wrong over the
  remote-control topic (``{"wrong": <seq>}``): enroll reads these as ``_unknown_``.
* ``_background_noise_/room_*.wav`` (kind ``room``): :data:`ROOM_CHUNK_S` of the room's ordinary
  sound, at most one every :data:`ROOM_EVERY_S` and :data:`ROOM_MAX_FILES` in all.

Bounded: at most ``max_files`` files and ``max_mb`` megabytes (a clip is ~50 kB); at the bound it
says so once and keeps nothing more. Nothing leaves the device. Writes go to the storage DIR is on
(an SD card: see docs/VOICE.md for what it costs).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np

from ..sources.wav import write_wav
from .recognizer import NOT_COMMANDS

logger = logging.getLogger(__name__)

NEAR_MARGIN: Final = 0.2  # a score this close under the threshold is a near miss
REPEAT_S: Final = 5.0  # a command again within this long confirms the near miss before it
CLIP_S: Final = 1.5  # audio kept per near miss or command (the head's window and a little more)
ROOM_CHUNK_S: Final = 10.0
ROOM_EVERY_S: Final = 600.0
ROOM_MAX_FILES: Final = 18  # 3 minutes of room sound: what enroll wants
RECENT_COMMANDS: Final = 32  # announced commands kept in memory for a later "wrong"
DEFAULT_MAX_FILES: Final = 500
DEFAULT_MAX_MB: Final = 50.0
CSV_NAME: Final = "captures.csv"
FIELDS: Final = ("file", "label", "kind", "score", "threshold", "time_s", "seq")


@dataclasses.dataclass
class _Episode:
    label: str
    score: float
    time_ms: float
    audio: np.ndarray


class Capture:
    """Fed by the voice agent after every hop (:meth:`hop`), every announced command
    (:meth:`command`) and every ``{"wrong": seq}`` (:meth:`wrong`)."""

    def __init__(self, root: Path, labels: Sequence[str], rate: int, max_files: int = DEFAULT_MAX_FILES,
                 max_mb: float = DEFAULT_MAX_MB) -> None:
        self.root = root
        self.labels = tuple(labels)
        self.rate = rate
        self.max_files = max_files
        self.max_bytes = int(max_mb * 1e6)
        self.commands = [i for i, x in enumerate(self.labels) if x not in NOT_COMMANDS]
        self._audio: collections.deque[np.ndarray] = collections.deque()
        self._audio_n = 0
        self._episode: _Episode | None = None
        self._near: collections.deque[tuple[str, float, str]] = collections.deque(maxlen=16)  # label, t, file
        self._recent: collections.OrderedDict[int, tuple[str, float, float, np.ndarray]] = collections.OrderedDict()
        self._room: list[np.ndarray] = []
        self._room_n = 0
        self._last_room = -ROOM_EVERY_S
        self._last_command_ms = -1e12
        self.files, self.bytes = self._existing()
        self.kept: collections.Counter[str] = collections.Counter()
        self._full_said = False
        root.mkdir(parents=True, exist_ok=True)

    def _existing(self) -> tuple[int, int]:
        """What an earlier run left counts against the bound (a restart must not reset it)."""
        if not self.root.exists():
            return 0, 0
        wavs = list(self.root.rglob("*.wav"))
        return len(wavs), sum(p.stat().st_size for p in wavs)

    # -- the audio ------------------------------------------------------------------------------
    def _recent_audio(self, seconds: float) -> np.ndarray:
        x = np.concatenate(list(self._audio)) if self._audio else np.zeros(0, np.float32)
        return x[-int(seconds * self.rate):].copy()

    def hop(self, samples: np.ndarray, averaged: np.ndarray | None, threshold_for: dict[str, float],
            time_ms: float) -> None:
        self._audio.append(np.asarray(samples, np.float32))
        self._audio_n += len(samples)
        while self._audio_n - len(self._audio[0]) >= int(CLIP_S * self.rate):
            self._audio_n -= len(self._audio.popleft())
        if averaged is None or not len(averaged):
            return
        i = max(self.commands, key=lambda k: float(averaged[k]))
        label, score = self.labels[i], float(averaged[i])
        th = threshold_for[label]
        near = th - NEAR_MARGIN <= score < th
        ep = self._episode
        if near and (ep is None or (ep.label == label and score > ep.score)):
            self._episode = _Episode(label, score, time_ms, self._recent_audio(CLIP_S))
        elif ep is not None and not near and not (ep.label == label and score >= th):
            self._episode = None
            if time_ms - self._last_command_ms > CLIP_S * 1000:  # not the rise of an announced command
                self._near_miss(ep, th)
        elif ep is not None and score >= th:
            self._episode = None  # it became a command: heard, nothing missed
        self._maybe_room(samples, score < th - NEAR_MARGIN, time_ms)

    def _maybe_room(self, samples: np.ndarray, calm: bool, time_ms: float) -> None:
        if self.kept["room"] >= ROOM_MAX_FILES or time_ms / 1000 - self._last_room < ROOM_EVERY_S:
            return
        if not calm:
            self._room, self._room_n = [], 0
            return
        self._room.append(np.asarray(samples, np.float32))
        self._room_n += len(samples)
        if self._room_n >= ROOM_CHUNK_S * self.rate:
            x = np.concatenate(self._room)
            self._room, self._room_n = [], 0
            self._last_room = time_ms / 1000
            self._write("_background_noise_", f"room_{_stamp()}", x, "", "room", 0.0, 0.0, time_ms, None)

    def _near_miss(self, ep: _Episode, threshold: float) -> None:
        name = self._write(ep.label, f"near_{_stamp()}", ep.audio, ep.label, "near_miss", ep.score, threshold,
                           ep.time_ms, None)
        if name is not None:
            self._near.append((ep.label, ep.time_ms, name))

    # -- commands and corrections ---------------------------------------------------------------
    def command(self, seq: int, label: str, score: float, threshold: float, time_ms: float) -> None:
        self._last_command_ms = time_ms
        self._recent[seq] = (label, score, time_ms, self._recent_audio(CLIP_S))
        while len(self._recent) > RECENT_COMMANDS:
            self._recent.popitem(last=False)
        for near_label, t, name in list(self._near):
            if near_label == label and 0 < time_ms - t <= REPEAT_S * 1000:
                self._row(name, label, "repeated", score, threshold, time_ms, seq)
                self._near.remove((near_label, t, name))

    def wrong(self, seq: int) -> str:
        """Keep command ``seq`` as a false accept; a line saying what happened."""
        got = self._recent.pop(seq, None)
        if got is None:
            return f"capture: command {seq} is not among the last {RECENT_COMMANDS}; nothing kept"
        label, score, time_ms, audio = got
        name = self._write(f"not_{label}", f"wrong_{seq}_{_stamp()}", audio, label, "wrong", score, 0.0, time_ms, seq)
        return f"capture: command {seq} ({label}) kept as a false accept in {name}" if name else \
            "capture: full; nothing kept"

    # -- the files ------------------------------------------------------------------------------
    def _write(self, folder: str, stem: str, audio: np.ndarray, label: str, kind: str, score: float,
               threshold: float, time_ms: float, seq: int | None) -> str | None:
        size = 44 + 2 * len(audio)
        if self.files + 1 > self.max_files or self.bytes + size > self.max_bytes:
            if not self._full_said:
                logger.warning("capture %s: full (%d files, %.1f MB): nothing more is kept until it is emptied",
                               self.root, self.files, self.bytes / 1e6)
                self._full_said = True
            return None
        name = f"{folder}/{stem}.wav"
        path = self.root / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_wav(path, audio, self.rate)
        except OSError as e:
            logger.warning("capture %s: cannot write (%s); nothing kept", path, e.strerror)
            return None
        self.files += 1
        self.bytes += size
        self.kept[kind] += 1
        self._row(name, label, kind, score, threshold, time_ms, seq)
        logger.info("capture: kept %s (%s %.2f)", name, kind, score)
        return name

    def _row(self, name: str, label: str, kind: str, score: float, threshold: float, time_ms: float,
             seq: int | None) -> None:
        path = self.root / CSV_NAME
        new = not path.exists()
        try:
            with path.open("a", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                if new:
                    w.writerow(FIELDS)
                w.writerow([name, label, kind, f"{score:.4f}", f"{threshold:.4f}", f"{time_ms / 1000:.2f}",
                            "" if seq is None else seq])
        except OSError as e:
            logger.warning("capture %s: cannot write (%s)", path, e.strerror)

    def metrics(self) -> dict[str, int]:
        return {"near_misses": self.kept["near_miss"], "wrong": self.kept["wrong"], "files": self.files}


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + f"_{time.monotonic_ns() % 1_000_000:06d}"
