"""A microphone through sounddevice (PortAudio): ``--mic default|NAME|INDEX``, ``--list-devices``.

PortAudio calls :meth:`MicrophoneSource._callback` on its own real-time thread with each block of
samples. The callback does the least it can — copy into a preallocated ring buffer, count
PortAudio's input overflows — and never logs, allocates much or blocks: a late callback is what
loses audio. The recognizer's thread takes samples out with :meth:`MicrophoneSource.read`,
resamples them to the model's rate and logs the overflow count when it grows. Overflows (the
recognizer or the system fell behind) are counted and logged, never fatal: a gap of a few
milliseconds is better than a dead agent.

Many USB microphones and the Pi's I2S HATs only offer 44.1 or 48 kHz: the device is opened at the
model's rate when PortAudio accepts it, else at a rate it does accept, and the stream is
resampled (:class:`~edge_agent.preprocess.audio.Resampler`).

sounddevice is imported lazily, only here, with a fix-it message: the image agent never needs it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Final, TextIO

import numpy as np

from ..errors import ExitCode, SourceError
from ..preprocess.audio import Resampler
from .base import SourceLost
from .wav import AudioBlock

logger = logging.getLogger(__name__)

INSTALL_HINT: Final = "sounddevice is not installed: pip install 'edge-agent[audio]'"
PORTAUDIO_HINT: Final = "the PortAudio library is missing: apt install libportaudio2"
FALLBACK_RATES_HZ: Final = (48_000, 44_100, 32_000, 22_050)  # tried in order when the model's is refused
RING_SECONDS: Final = 4.0  # capture kept while the recognizer is busy; older audio is dropped, counted
BLOCK_MS: Final = 20  # PortAudio callback block: small, so the ring fills smoothly
NO_AUDIO_TIMEOUT_S: Final = 3.0  # no callback for this long: the device is gone (unplugged)
OVERFLOW_LOG_EVERY_S: Final = 10.0


def parse_spec(spec: str) -> tuple[str, int | None]:
    """``"USB Audio@48000"`` → ("USB Audio", 48000): the optional ``@RATE`` pins the device's rate
    (for devices that claim rates they then deliver badly, and for tests); plain specs pass through."""
    name, sep, rate = spec.rpartition("@")
    if sep and name and rate.isdigit() and int(rate) > 0:
        return name, int(rate)
    return spec, None


def sounddevice() -> Any:
    """The ``sounddevice`` module, or a one-line fix-it error."""
    try:
        import sounddevice as sd
    except ImportError:
        raise SourceError(INSTALL_HINT) from None
    except OSError:  # sounddevice raises OSError when libportaudio.so cannot be loaded
        raise SourceError(PORTAUDIO_HINT) from None
    return sd


def input_devices(sd: Any) -> list[dict[str, Any]]:
    """Every device with at least one input channel, as sounddevice describes it."""
    try:
        devices = sd.query_devices()
    except sd.PortAudioError as e:
        raise SourceError(f"microphone: PortAudio cannot list devices ({e})") from None
    return [dict(d) for d in devices if int(d["max_input_channels"]) > 0]


def describe_devices(sd: Any) -> str:
    """``0 "pulse", 1 "default"`` — for error messages."""
    found = input_devices(sd)
    return ", ".join(f'{d["index"]} "{d["name"]}"' for d in found) or "none"


def resolve_device(sd: Any, spec: str) -> dict[str, Any]:
    """``default``, an index, an exact name, or a unique part of a name → the device's description.

    Anything else is a :class:`SourceError` that lists the input devices there are, so a user
    on a headless Pi can fix the config without another tool."""
    found = input_devices(sd)
    listing = describe_devices(sd)
    if spec == "default":
        try:
            default = sd.default.device[0]
            index = int(default) if default is not None else -1
        except (TypeError, ValueError, IndexError):
            index = -1
        if index < 0:  # PortAudio has no default input: take the first one, as arecord would
            if not found:
                raise SourceError("microphone default: no audio input devices on this machine")
            return found[0]
        matches = [d for d in found if d["index"] == index]
    elif spec.strip().isdigit():
        matches = [d for d in found if d["index"] == int(spec)]
    else:
        matches = [d for d in found if d["name"] == spec] or [
            d for d in found if spec.lower() in str(d["name"]).lower()
        ]
    if not matches:
        raise SourceError(f"microphone {spec}: no such input device (input devices: {listing})")
    if len(matches) > 1:
        names = ", ".join(f'{d["index"]} "{d["name"]}"' for d in matches)
        raise SourceError(f"microphone {spec}: matches several devices ({names}); give its index")
    return matches[0]


def choose_rate(sd: Any, device: dict[str, Any], wanted: int) -> int:
    """The model's rate if the device takes it, else the device's default or a common rate it takes."""
    candidates: list[int] = [wanted, int(device.get("default_samplerate") or 0), *FALLBACK_RATES_HZ]
    tried: list[int] = []
    for rate in candidates:
        if rate <= 0 or rate in tried:
            continue
        tried.append(rate)
        try:
            sd.check_input_settings(device=device["index"], channels=1, dtype="float32", samplerate=rate)
        except (sd.PortAudioError, ValueError):
            continue
        return rate
    raise SourceError(f'microphone {device["index"]} "{device["name"]}": accepts none of the rates '
                      f"{', '.join(str(r) for r in tried)} Hz for one float32 channel")


class RingBuffer:
    """A fixed array written by the audio callback and read by the recognizer, under one lock.

    When the reader falls more than the capacity behind, the oldest samples are overwritten and
    counted in ``dropped``: bounded memory, explicit drop policy."""

    def __init__(self, capacity: int) -> None:
        self._data = np.zeros(capacity, np.float32)
        self._write = 0  # total samples ever written
        self._read = 0  # total samples ever read
        self.dropped = 0
        self.last_write_mono = 0.0
        self._cond = threading.Condition()

    def write(self, samples: np.ndarray, mono: float) -> None:
        n = len(samples)
        cap = len(self._data)
        with self._cond:
            if n >= cap:
                samples, n = samples[-cap:], cap
            pos = self._write % cap
            first = min(n, cap - pos)
            self._data[pos: pos + first] = samples[:first]
            self._data[: n - first] = samples[first:]
            self._write += n
            if self._write - self._read > cap:
                self.dropped += self._write - self._read - cap
                self._read = self._write - cap
            self.last_write_mono = mono
            self._cond.notify()

    def take(self, timeout: float) -> tuple[np.ndarray, float]:
        """Everything not read yet (waiting up to ``timeout`` for something), and when its last
        sample arrived."""
        cap = len(self._data)
        with self._cond:
            if self._write == self._read:
                self._cond.wait(timeout)
            n = self._write - self._read
            pos = self._read % cap
            first = min(n, cap - pos)
            out = np.concatenate([self._data[pos: pos + first], self._data[: n - first]])
            self._read = self._write
            return out, self.last_write_mono


class MicrophoneSource:
    """A live audio input: blocks of the model's rate, resampled when the device needs it."""

    live = True

    def __init__(self, spec: str, rate: int) -> None:
        self.spec, self.forced_device_rate = parse_spec(spec)  # "NAME@48000" skips rate negotiation
        self.rate = rate
        self.name = f"microphone {spec}"
        self.device_rate = rate
        self.overflows = 0
        self._stream: Any = None
        self._ring: RingBuffer | None = None
        self._resampler: Resampler | None = None
        self._pending = np.zeros(0, np.float32)
        self._pending_mono = 0.0
        self._logged_overflows = 0
        self._next_overflow_log = 0.0
        self._last_audio = 0.0

    @property
    def ended(self) -> bool:
        return False  # a microphone never ends; a lost one raises SourceLost

    def open(self) -> None:
        sd = sounddevice()
        device = resolve_device(sd, self.spec)
        self.device_rate = self.forced_device_rate or choose_rate(sd, device, self.rate)
        self.name = f'microphone {device["index"]} "{device["name"]}"'
        self._ring = RingBuffer(int(RING_SECONDS * self.device_rate))
        self._resampler = Resampler(self.device_rate, self.rate)
        self._pending = np.zeros(0, np.float32)
        try:
            self._stream = sd.InputStream(
                device=device["index"], channels=1, dtype="float32", samplerate=self.device_rate,
                blocksize=self.device_rate * BLOCK_MS // 1000, callback=self._callback,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as e:
            self._stream = None
            raise SourceError(f"{self.name}: cannot open it at {self.device_rate} Hz ({e})") from None
        self._last_audio = time.monotonic()
        how = "" if self._resampler.identity else f", resampled to {self.rate} Hz"
        logger.info("%s: capturing at %d Hz%s", self.name, self.device_rate, how)

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's thread: copy and count, nothing else."""
        if status and getattr(status, "input_overflow", False):
            self.overflows += 1
        if self._ring is not None:
            self._ring.write(indata[:, 0], time.monotonic())

    def _report_overflows(self, now: float) -> None:
        lost = self.overflows + (self._ring.dropped if self._ring else 0)
        if lost > self._logged_overflows and now >= self._next_overflow_log:
            logger.warning("%s: input overflow (%d PortAudio overflows, %d samples dropped so far); "
                           "audio was lost, carrying on", self.name, self.overflows,
                           self._ring.dropped if self._ring else 0)
            self._logged_overflows = lost
            self._next_overflow_log = now + OVERFLOW_LOG_EVERY_S

    def read(self, count: int, timeout: float) -> AudioBlock | None:
        """The next ``count`` samples at the model's rate, or None if they did not come in time."""
        if self._ring is None or self._resampler is None:
            raise SourceError(f"{self.name}: not open")
        deadline = time.monotonic() + timeout
        while len(self._pending) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            raw, mono = self._ring.take(left)
            now = time.monotonic()
            if len(raw):
                self._last_audio = now
                self._pending = np.concatenate([self._pending, self._resampler.process(raw)])
                self._pending_mono = mono
            elif now - self._last_audio > NO_AUDIO_TIMEOUT_S:
                raise SourceLost(f"{self.name}: no audio for {NO_AUDIO_TIMEOUT_S:.0f} s (unplugged?)")
        self._report_overflows(time.monotonic())
        if len(self._pending) < count:
            return None
        block, self._pending = self._pending[:count], self._pending[count:]
        # the newest sample arrived at _pending_mono; this block ends len(_pending) samples earlier
        return AudioBlock(block, self._pending_mono - len(self._pending) / self.rate)

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception as e:  # closing a device that vanished can raise anything PortAudio has
                logger.debug("%s: close: %s", self.name, e)
            self._stream = None
        self._ring = None


def print_devices(stream: TextIO | None = None) -> int:
    """``edge-agent --list-devices``: the input devices, the default marked; exit code."""
    out = stream or sys.stdout
    sd = sounddevice()
    found = input_devices(sd)
    try:
        default = int(sd.default.device[0])
    except (TypeError, ValueError, IndexError):
        default = -1
    if not found:
        print("no audio input devices (is the microphone plugged in? is the user in the 'audio' group?)", file=out)
        return int(ExitCode.UNAVAILABLE)
    apis: Sequence[Any] = sd.query_hostapis()
    print("audio input devices (use --mic INDEX or --mic NAME):", file=out)
    for d in found:
        mark = "*" if d["index"] == default else " "
        api = apis[d["hostapi"]]["name"] if 0 <= int(d["hostapi"]) < len(apis) else "?"
        print(f'{mark} {d["index"]:>3}  {d["name"]}  ({api}, {d["max_input_channels"]} ch, '
              f'{float(d["default_samplerate"]):.0f} Hz default)', file=out)
    return int(ExitCode.OK)
