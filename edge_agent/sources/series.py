"""Sensor sample sources: the interface, record parsing, and CSV / JSONL replay.

A series source yields :class:`Samples` (timestamps in seconds and one value per channel, in
the manifest's channel order); :mod:`edge_agent.preprocess.series` does the rest. Three kinds
(picked by :func:`edge_agent.sources.series_factory.make_series_source` from the config):

- ``--source FILE.csv|FILE.jsonl``: replay, as fast as possible or paced by its timestamps
  (``--realtime``), ``--loop`` to repeat;
- ``--serial /dev/ttyUSB0 --baud 115200``: CSV or JSON lines from a microcontroller
  (:mod:`.series_serial`);
- ``--sensor-topic imu/data``: JSON messages over MQTT, a JSON path per channel (:mod:`.series_mqtt`).

A record that cannot be used (not numbers, a channel missing from a live record) is counted in
``bad_records`` and dropped, never raised; a file or a header that lacks or adds a channel is an
error that names the channel, before anything runs.
"""

from __future__ import annotations

import collections
import csv
import datetime
import io
import json
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple, Protocol

import numpy as np

from ..errors import SourceError

logger = logging.getLogger(__name__)

TIME_KEYS: Final = ("t", "ts", "time", "timestamp")  # where a record's time is looked for, in order
IGNORED_COLUMNS: Final = ("label",)  # columns a recording may carry that the model does not read
MS_EPOCH_ABOVE: Final = 1e11  # a larger timestamp is in milliseconds (1e11 s is the year 5138)
REPLAY_CHUNK: Final = 1024  # samples per read when replaying as fast as possible
JSON_SUFFIXES: Final = (".jsonl", ".ndjson", ".json")


class Samples(NamedTuple):
    t: np.ndarray  # (N,) seconds
    x: np.ndarray  # (N, C) float64, manifest channel order


def take_samples(buf: collections.deque[tuple[float, list[float]]], lock: threading.Lock, data: threading.Event,
                 channels: int, timeout: float) -> Samples | None:
    """Everything a reader thread buffered since the last call, as one :class:`Samples` (the live
    sources' shared hand-off: serial and MQTT); None when nothing came within ``timeout``."""
    if not buf and not data.wait(timeout):
        return None
    with lock:
        items = list(buf)
        buf.clear()
        data.clear()
    if not items:
        return None
    t = np.array([i[0] for i in items], np.float64)
    x = np.array([i[1] for i in items], np.float64).reshape(len(items), channels)
    return Samples(t, x)


class SeriesSource(Protocol):
    """``open`` raises SourceError when it cannot start at all; ``read`` returns samples, None
    when nothing came within ``timeout`` (or the source ended), or raises SourceLost (live)."""

    name: str
    live: bool
    overflows: int  # samples dropped because the buffer between reads was full
    error: str | None  # why the source stopped for good (a header without a channel), else None

    @property
    def bad_records(self) -> int:
        """Records dropped as unusable (garbage, not numbers, a channel missing)."""
        ...

    @property
    def ended(self) -> bool: ...

    def open(self) -> None: ...

    def read(self, timeout: float) -> Samples | None: ...

    def close(self) -> None: ...


def parse_time(value: Any) -> float | None:
    """Seconds from a number (milliseconds when huge) or an ISO 8601 string; None if unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        v = float(value)
        if not math.isfinite(v):
            return None
        return v / 1000.0 if abs(v) > MS_EPOCH_ABOVE else v
    if isinstance(value, str):
        try:
            return float(value) if value.strip().lstrip("-").replace(".", "", 1).isdigit() else (
                datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return None
    return None


def dig(obj: Any, path: str) -> Any:
    """``accel.x`` / ``values.0`` into a decoded JSON object; None when absent."""
    for part in path.split(".") if path else ():
        if isinstance(obj, Mapping):
            obj = obj.get(part)
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return None
    return obj


def check_columns(names: Sequence[str], channels: Sequence[str], where: str) -> None:
    """A header must carry every channel and nothing else (time and label columns aside)."""
    have = [n for n in names if n not in TIME_KEYS and n not in IGNORED_COLUMNS]
    missing = [c for c in channels if c not in have]
    if missing:
        raise SourceError(f"{where}: missing channel '{missing[0]}' (the model reads {', '.join(channels)})")
    extra = [n for n in have if n not in channels]
    if extra:
        raise SourceError(f"{where}: extra channel '{extra[0]}' (the model reads {', '.join(channels)}; "
                          "drop the column or retrain with it)")


class RecordParser:
    """One record (a CSV row with a header, or a JSON object) → (t, values) or None (counted).

    ``paths`` maps each channel to its JSON path (default: the channel's name); the time comes
    from ``ts_path`` or the first of :data:`TIME_KEYS`, else the arrival time."""

    def __init__(self, channels: Sequence[str], paths: Mapping[str, str] | None = None, ts_path: str = "") -> None:
        self.channels = tuple(channels)
        self.paths = {c: (paths or {}).get(c, c) for c in self.channels}
        self.ts_path = ts_path
        self.bad = 0
        self._warned: set[str] = set()

    def _warn(self, what: str) -> None:
        self.bad += 1
        if what not in self._warned:
            self._warned.add(what)
            logger.warning("sensor record dropped: %s (counted in bad_records; logged once)", what)

    def from_json(self, obj: Any, arrival: float) -> tuple[float, list[float]] | None:
        if not isinstance(obj, Mapping):
            self._warn("not a JSON object")
            return None
        values = []
        for c in self.channels:
            v = dig(obj, self.paths[c])
            if v is None:
                self._warn(f"missing channel '{c}' (JSON path '{self.paths[c]}')")
                return None
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                self._warn(f"channel '{c}' is not a number")
                return None
            values.append(float(v))
        t = self._time(obj, arrival)
        return (t, values) if t is not None else None

    def _time(self, obj: Mapping[str, Any], arrival: float) -> float | None:
        keys = (self.ts_path,) if self.ts_path else TIME_KEYS
        for k in keys:
            raw = dig(obj, k)
            if raw is not None:
                t = parse_time(raw)
                if t is None:
                    self._warn(f"timestamp '{k}' is not a time")
                return t
        return arrival


def read_csv_file(path: Path, channels: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """A whole CSV recording: header checked (names the channel), bad rows counted."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise SourceError(f"source {path}: cannot read ({e.strerror})") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise SourceError(f"source {path}: empty file")
    header = [h.strip() for h in rows[0]]
    check_columns(header, channels, f"source {path}")
    tcol = next((header.index(k) for k in TIME_KEYS if k in header), None)
    if tcol is None:
        raise SourceError(f"source {path}: no time column (one of {', '.join(TIME_KEYS)}, in seconds)")
    cols = [header.index(c) for c in channels]
    ts, xs, bad = [], [], 0
    for row in rows[1:]:
        try:
            t = parse_time(float(row[tcol]))
            vals = [float(row[c]) for c in cols]
        except (ValueError, IndexError):
            bad += 1
            continue
        if t is None:
            bad += 1
            continue
        ts.append(t)
        xs.append(vals)
    return np.array(ts, np.float64), np.array(xs, np.float64).reshape(len(ts), len(cols)), bad


def read_jsonl_file(path: Path, parser: RecordParser) -> tuple[np.ndarray, np.ndarray, int]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise SourceError(f"source {path}: cannot read ({e.strerror})") from None
    ts, xs = [], []
    first = True
    for line in filter(None, (ln.strip() for ln in lines)):
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            parser.bad += 1
            continue
        if first and isinstance(obj, Mapping):  # the first record stands for the file's layout
            first = False
            missing = [c for c in parser.channels if dig(obj, parser.paths[c]) is None]
            if missing:
                raise SourceError(f"source {path}: missing channel '{missing[0]}' in the first record "
                                  f"(the model reads {', '.join(parser.channels)})")
        rec = parser.from_json(obj, math.nan)
        if rec is None or math.isnan(rec[0]):
            parser.bad += rec is not None
            continue
        ts.append(rec[0])
        xs.append(rec[1])
    return np.array(ts, np.float64), np.array(xs, np.float64).reshape(len(ts), len(parser.channels)), parser.bad


class ReplaySource:
    """A CSV or JSONL recording, as fast as possible or at the pace of its timestamps."""

    live = False

    def __init__(self, path: Path, channels: Sequence[str], realtime: bool = False, loop: bool = False,
                 parser: RecordParser | None = None) -> None:
        self.path = path
        self.name = f"replay {path}"
        self.channels = tuple(channels)
        self.realtime = realtime
        self.loop = loop
        self.parser = parser or RecordParser(channels)
        self.file_bad = 0
        self.overflows = 0
        self.error: str | None = None
        self._t = np.zeros(0)
        self._x = np.zeros((0, len(self.channels)))
        self._i = 0
        self._offset = 0.0  # added to the file's times on each loop, so time keeps increasing
        self._start_mono = 0.0

    @property
    def bad_records(self) -> int:
        return self.file_bad

    @property
    def ended(self) -> bool:
        return not self.loop and self._i >= len(self._t)

    def open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"source {self.path}: file not found")
        if self.path.suffix.lower() in JSON_SUFFIXES:
            self._t, self._x, self.file_bad = read_jsonl_file(self.path, self.parser)
        else:
            self._t, self._x, self.file_bad = read_csv_file(self.path, self.channels)
        if not len(self._t):
            raise SourceError(f"source {self.path}: no usable samples")
        self._i = 0
        self._start_mono = time.monotonic()
        logger.info("replaying %d samples from %s%s", len(self._t), self.path, " in real time" if self.realtime else "")

    def read(self, timeout: float) -> Samples | None:
        if self._i >= len(self._t):
            if not self.loop:
                return None
            span = float(self._t[-1] - self._t[0])
            step = span / max(1, len(self._t) - 1)
            self._offset += span + step
            self._i = 0
        if not self.realtime:
            j = min(len(self._t), self._i + REPLAY_CHUNK)
        else:
            elapsed = time.monotonic() - self._start_mono
            due_t = self._t[0] + elapsed - self._offset  # in the file's own times
            j = int(np.searchsorted(self._t, due_t, side="right"))
            if j <= self._i:
                wait = float(self._t[self._i] - due_t)
                time.sleep(max(0.0, min(timeout, wait)))
                return None
        t, x = self._t[self._i:j] + self._offset, self._x[self._i:j]
        self._i = j
        return Samples(t, x)

    def close(self) -> None:
        pass
