"""A serial line (``/dev/ttyUSB0``, ``/dev/ttyACM0``; a pseudo-terminal in the tests): CSV or
JSON lines from a microcontroller, read by a thread into a bounded buffer.

Each line is one sample: a JSON object (channels by name or ``--sensor-paths``, time from ``t``
/ ``ts`` or the arrival time), or CSV. A CSV header line (``t,ax,ay,az``) sets the column order
and is checked: a missing or extra channel stops the source with an error naming it. Without a
header, ``--sensor-columns`` gives the order, else the manifest's channels (with a leading time
column when there is one more field). Garbage — bytes that are not UTF-8, lines that are not
numbers, over-long lines — is counted in ``bad_records`` and dropped, never raised. An unplugged
adapter is reopened with backoff by the agent (:class:`~edge_agent.sources.base.SourceLost`).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

from ..errors import ConfigError, SourceError
from .base import SourceLost
from .series import TIME_KEYS, RecordParser, Samples, check_columns, parse_time, take_samples

logger = logging.getLogger(__name__)

MAX_LINE_BYTES: Final = 4096  # a longer "line" is noise on the wire, not a sample
BUFFER_SAMPLES: Final = 50_000  # held between reads; the oldest are dropped (counted) beyond it
READ_TIMEOUT_S: Final = 0.1
FIX_IT: Final = "the serial source needs pyserial: pip install 'edge-agent[serial]'"


def _serial() -> Any:
    try:
        import serial
    except ImportError:
        raise ConfigError(FIX_IT) from None
    return serial


class SerialSource:
    live = True

    def __init__(self, port: str, baud: int, channels: Sequence[str], parser: RecordParser | None = None,
                 columns: Sequence[str] = ()) -> None:
        self.port = port
        self.baud = baud
        self.name = f"serial {port}"
        self.channels = tuple(channels)
        self.parser = parser or RecordParser(channels)
        self.columns: tuple[str, ...] | None = tuple(columns) or None
        if self.columns:
            check_columns(self.columns, self.channels, f"{self.name}: field 'sensor.columns'")
        self.overflows = 0
        self.garbage = 0
        self.lines = 0
        self.error: str | None = None
        self._buf: collections.deque[tuple[float, list[float]]] = collections.deque()
        self._lock = threading.Lock()
        self._data = threading.Event()
        self._stop = threading.Event()
        self._lost: str | None = None
        self._thread: threading.Thread | None = None
        self._dev: Any = None

    @property
    def bad_records(self) -> int:
        return self.garbage + self.parser.bad

    @property
    def ended(self) -> bool:
        return self.error is not None

    def open(self) -> None:
        serial = _serial()
        try:
            self._dev = serial.serial_for_url(self.port, baudrate=self.baud, timeout=READ_TIMEOUT_S)
        except (serial.SerialException, OSError, ValueError) as e:
            raise SourceError(f"{self.name}: cannot open ({e})") from None
        self._lost = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="serial", daemon=True)
        self._thread.start()
        logger.info("reading %s at %d baud", self.port, self.baud)

    def read(self, timeout: float) -> Samples | None:
        if self._lost:
            why, self._lost = self._lost, None
            raise SourceLost(why)
        return take_samples(self._buf, self._lock, self._data, len(self.channels), timeout)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._dev is not None:
            with contextlib.suppress(Exception):  # closing a vanished device must not fail the stop
                self._dev.close()
            self._dev = None

    def _run(self) -> None:
        serial = _serial()
        pending = b""
        while not self._stop.is_set():
            try:
                chunk = self._dev.read(self._dev.in_waiting or 1)
            except (serial.SerialException, OSError, TypeError) as e:
                self._lost = f"{self.name}: read failed ({e})"
                self._data.set()
                return
            if not chunk:
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > MAX_LINE_BYTES:
                self.garbage += 1
                pending = b""
            for raw in lines:
                self._line(raw, time.monotonic())  # arrival: never the wall clock (it steps at boot)
                if self.error:
                    self._data.set()
                    return

    def _line(self, raw: bytes, arrival: float) -> None:
        raw = raw.strip(b"\r\x00 \t")
        if not raw:
            return
        self.lines += 1
        if len(raw) > MAX_LINE_BYTES:
            self.garbage += 1
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.garbage += 1
            return
        rec = self._parse(text, arrival)
        if rec is None:
            return
        with self._lock:
            if len(self._buf) >= BUFFER_SAMPLES:
                self._buf.popleft()
                self.overflows += 1
            self._buf.append(rec)
        self._data.set()

    def _parse(self, text: str, arrival: float) -> tuple[float, list[float]] | None:
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                self.garbage += 1
                return None
            return self.parser.from_json(obj, arrival)
        fields = [f.strip() for f in text.split(",")]
        if any(f in self.channels or f in TIME_KEYS for f in fields) and not _numeric(fields):
            try:  # a header line: the column order from now on
                check_columns(fields, self.channels, f"{self.name}: header '{text}'")
            except SourceError as e:
                self.error = str(e)
                logger.error("%s", e)
                return None
            self.columns = tuple(fields)
            return None
        try:
            values = [float(f) for f in fields]
        except ValueError:
            self.garbage += 1
            return None
        cols = self.columns
        if cols is None:
            n = len(self.channels)
            cols = self.channels if len(values) == n else ("t", *self.channels) if len(values) == n + 1 else None
        if cols is None or len(values) != len(cols):
            self.garbage += 1
            return None
        row = dict(zip(cols, values, strict=True))
        tkey = next((k for k in TIME_KEYS if k in row), None)
        t = parse_time(row[tkey]) if tkey else arrival
        if t is None:
            self.garbage += 1
            return None
        return t, [row[c] for c in self.channels]


def _numeric(fields: Sequence[str]) -> bool:
    try:
        [float(f) for f in fields]
    except ValueError:
        return False
    return True
