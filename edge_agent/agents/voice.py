"""The voice agent: audio from a microphone or WAV file → keyword spotter → one event per command.

Every hop of audio goes to the spotter for the model's front end (:func:`~edge_agent.voice.spotter.make_spotter`),
which infers on the last second or so; an announced command is published on ``voice/command``. A microphone that
disappears is reopened with backoff here (the process lives on); a WAV file's end ends the run.
The run loop (:mod:`edge_agent.runtime`) drives it.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Final, Protocol

from ..config import Config
from ..errors import ConfigError, SourceError
from ..hub import Command as HubCommand
from ..hub import percentile
from ..observe import Observer
from ..publish.base import Publisher
from ..sources.base import SourceLost, reopen_with_backoff
from ..sources.wav import AudioBlock, WavSource
from ..voice.capture import Capture
from ..voice.payload import SUBTOPIC, command_payload
from ..voice.recognizer import Command
from ..voice.spotter import VoiceModel, make_spotter
from .base import StageHook

logger = logging.getLogger(__name__)

WAV_SUFFIXES: Final = (".wav", ".wave")
LATENCY_WINDOW: Final = 256  # recent audio → publish latencies kept for the metrics percentiles


class AudioSource(Protocol):
    """What the agent needs from a microphone or a WAV file (structural: no base class)."""

    name: str
    live: bool
    overflows: int

    @property
    def ended(self) -> bool: ...

    def open(self) -> None: ...

    def read(self, count: int, timeout: float) -> AudioBlock | None: ...

    def close(self) -> None: ...


def make_audio_source(config: Config, rate: int) -> AudioSource:
    """``--source file.wav`` (paced with ``--realtime``) or ``--mic`` (``default`` when neither).
    Nothing is opened here, so ``--validate-config`` can build one without touching a device."""
    s = config.source
    if s.camera is not None or s.picamera:
        field = "source.camera" if s.camera is not None else "source.picamera"
        raise ConfigError(f"{config.where(field)}: task '{config.task}' listens to audio; use --mic or "
                          "--source FILE.wav instead of a camera")
    if s.source:
        path = Path(s.source)
        if path.suffix.lower() not in WAV_SUFFIXES:
            raise SourceError(f"source {s.source}: the voice task reads WAV files (.wav) or a microphone (--mic)")
        return WavSource(path, rate, realtime=s.realtime)
    from ..sources.microphone import MicrophoneSource  # sounddevice only when a microphone is used

    return MicrophoneSource(s.mic or "default", rate)


def _make_capture(config: Config, model: VoiceModel) -> Capture | None:
    """``--capture DIR`` (off by default): near misses and corrections for the next enroll."""
    if not config.voice.capture:
        return None
    return Capture(Path(config.voice.capture), model.labels, model.spec.sample_rate,
                   config.voice.capture_max_files, config.voice.capture_max_mb)


class VoiceAgent:
    """One keyword model, one audio source, one publisher."""

    observer: Observer | None = None  # the live page (edge_agent.observe); None: nobody

    def __init__(self, config: Config, model: VoiceModel, publisher: Publisher,
                 hook: StageHook | None = None) -> None:
        self.config = config
        self.model = model
        self.publisher = publisher
        self.hook = hook
        self.source = make_audio_source(config, model.spec.sample_rate)
        self.spotter = make_spotter(model)
        self.run_id = secrets.token_hex(4)
        self.seq = 0
        self.published = 0
        self.reopens = 0
        self.started = time.monotonic()
        self.latencies_ms: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self._ended = False
        self._error: str | None = None
        self.marked_wrong = 0  # commands marked {"wrong": seq}: the running false-accept count
        self.capture = _make_capture(config, model)

    # -- the Agent protocol --------------------------------------------------------------------
    @property
    def inferences(self) -> int:
        return self.spotter.inferences

    @property
    def ended(self) -> bool:
        return self._ended or self.source.ended

    @property
    def waiting(self) -> bool:
        return False  # a microphone is there at start or the start fails; a lost one is reopened in read()

    @property
    def error(self) -> str | None:
        return self._error

    def start(self) -> None:
        self.source.open()  # a wrong microphone or file fails here, before we announce ourselves online

    def read(self, timeout: float, stop: threading.Event) -> AudioBlock | None:
        try:
            return self.source.read(self.spotter.stride, timeout)
        except SourceLost as e:
            if not self.source.live:
                self._ended, self._error = True, str(e)
                return None
            if reopen_with_backoff(self.source, str(e), stop):
                self.reopens += 1
                self.spotter = make_spotter(self.model)  # a gap in the audio: start the window afresh
            return None

    def process(self, item: Any) -> None:
        block: AudioBlock = item
        hook = self.hook
        t0 = time.perf_counter()
        inferences = self.spotter.inferences
        command = self.spotter.push(block.samples)
        if hook is not None:
            hook.stage("infer", (time.perf_counter() - t0) * 1000)
        if self.capture is not None:
            averaged = self.spotter.recognizer.average() if self.spotter.inferences > inferences else None
            self.capture.hop(block.samples, averaged, self._thresholds(), self.spotter.time_ms)
        if command is not None:
            self.publish(command, block)
        if self.observer is not None:
            self.observer.audio(block.samples, self.spotter.last_scores, self.model.settings, command)
        if hook is not None:
            hook.done((time.monotonic() - block.end_mono) * 1000)

    def apply(self, command: HubCommand) -> None:
        """The threshold applies to voice; the image-only publish policy settings are ignored."""
        if command.threshold is not None:
            settings = self.model.settings.with_threshold(command.threshold)
            self.model = dataclasses.replace(self.model, settings=settings)
            self.spotter = make_spotter(self.model)
        if command.wrong is not None:
            self.marked_wrong += 1
            if self.capture is not None:
                logger.info("%s", self.capture.wrong(command.wrong))
            else:
                logger.info("remote control: command %d marked wrong (counted; --capture keeps its audio)",
                            command.wrong)
        if command.max_rate is not None or command.on_change is not None:
            logger.info("remote control: the publish policy does not apply to voice commands")

    def reconfigure(self, config: Config, model: Any) -> None:
        """The audio source and MQTT session are kept (they change at the next restart)."""
        if config.source != self.config.source or config.mqtt != self.config.mqtt:
            logger.warning("reload: source and MQTT settings take effect at the next restart")
        self.config, self.model = config, model
        self.spotter = make_spotter(model)

    def metrics(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        lat = list(self.latencies_ms)
        return {"fps": round(self.spotter.inferences / elapsed, 2), "frames": self.spotter.inferences,
                "published": self.published, "frames_dropped": self.source.overflows,
                "last_label": None, "latency_ms": {"p50": round(percentile(lat, 50), 2),
                                                   "p95": round(percentile(lat, 95), 2)},
                "voice": self._voice_metrics()}

    def _thresholds(self) -> dict[str, float]:
        return {label: self.model.settings.threshold_for(label) for label in self.model.labels}

    def _voice_metrics(self) -> dict[str, Any]:
        """The operating point and the running false-accept estimate (commands marked wrong per hour
        of audio heard), plus what --capture kept."""
        hours = self.spotter.time_ms / 3.6e6
        out: dict[str, Any] = {"threshold": self.model.settings.threshold, "marked_wrong": self.marked_wrong,
                               "false_accepts_per_hour": round(self.marked_wrong / hours, 3) if hours > 0 else None,
                               "hours_heard": round(hours, 4)}
        if self.capture is not None:
            out["capture"] = self.capture.metrics()
        return out

    def status(self) -> str:
        return (f"{self.spotter.inferences} inferences, {self.published} commands, "
                f"{self.source.overflows} overflows")

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        return (f"done: {self.spotter.time_ms / 1000:.1f} s of audio in {elapsed:.1f} s, "
                f"{self.spotter.inferences} inferences, {self.published} commands published, "
                f"{self.source.overflows} overflows")

    def stop(self) -> None:
        self.source.close()

    # -- one command ---------------------------------------------------------------------------
    def publish(self, command: Command, block: AudioBlock) -> dict[str, Any]:
        now_mono, now = time.monotonic(), time.time()
        latency_ms = (now_mono - block.end_mono) * 1000.0
        self.latencies_ms.append(latency_ms)
        payload = command_payload(
            task=self.config.task,
            command=command.label,
            score=command.score,
            seq=self.seq,
            run=self.run_id,
            audio_ts=now - (now_mono - block.end_mono),
            now=now,
            latency_ms=latency_ms,
            model_name=self.model.name,
            model_sha256=self.model.sha256,
            device_id=self.config.device_id,
        )
        if not self.source.live:  # a file: where in it, so a person can check it against what was said
            payload["offset_s"] = round(command.time_ms / 1000.0, 3)
        self.publisher.publish(SUBTOPIC, payload)
        if self.capture is not None:
            self.capture.command(self.seq, command.label, command.score,
                                 self.model.settings.threshold_for(command.label), command.time_ms)
        logger.info("command %s (%.2f) at %.2f s of audio", command.label, command.score, command.time_ms / 1000)
        self.seq += 1
        self.published += 1
        return payload
