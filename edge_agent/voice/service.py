"""The voice agent's composition root: model, audio source, publisher, in the image agent's order.

Start: load and check the model (a bad manifest fails before anything opens), open the audio
source (a missing microphone fails here with the list of devices, before we announce ourselves
online), start the publisher. Run: one hop of audio → :class:`KeywordSpotter` → maybe a command →
publish on ``voice/command``; ``ready`` after the first inference, a watchdog ping per hop. Stop
(end of file, SIGTERM, ``controls.stop``): close the source, flush and stop the publisher.
A microphone that disappears is reopened with backoff; the process lives on.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import secrets
import time
from pathlib import Path
from typing import Any, Final, Protocol

from ..config import Config
from ..errors import ConfigError, EdgeAgentError, ExitCode, PublishError, SourceError
from ..hub import Command as HubCommand
from ..hub import Hub, drain, percentile
from ..publish.base import Publisher
from ..publish.mqtt import MqttPublisher
from ..sources.base import SourceLost, reopen_with_backoff
from ..sources.wav import AudioBlock, WavSource
from .payload import SUBTOPIC, command_payload
from .recognizer import Command
from .spotter import KeywordSpotter, VoiceModel, voice_model_for

logger = logging.getLogger(__name__)

READ_WAIT_S: Final = 0.5  # how long the loop waits for audio before checking for stop
END_FLUSH_S: Final = 10.0  # at the end of a file, wait this long for the broker's acks
STOP_FLUSH_S: Final = 3.0
STATUS_EVERY_S: Final = 5.0
WAV_SUFFIXES: Final = (".wav", ".wave")


class AudioSource(Protocol):
    """What the loop needs from a microphone or a WAV file (structural: no base class)."""

    name: str
    live: bool
    overflows: int

    @property
    def ended(self) -> bool: ...

    def open(self) -> None: ...

    def read(self, count: int, timeout: float) -> AudioBlock | None: ...

    def close(self) -> None: ...


def make_audio_source(config: Config, rate: int) -> AudioSource:
    """``--source file.wav`` (paced with ``--realtime``) or ``--mic`` (``default`` when neither)."""
    s = config.source
    if s.camera is not None or s.picamera:
        raise ConfigError(f"{config.where('task')}: task '{config.task}' listens to audio; use --mic or "
                          "--source FILE.wav instead of a camera")
    if s.source:
        path = Path(s.source)
        if path.suffix.lower() not in WAV_SUFFIXES:
            raise SourceError(f"source {s.source}: the voice task reads WAV files (.wav) or a microphone (--mic)")
        return WavSource(path, rate, realtime=s.realtime)
    from ..sources.microphone import MicrophoneSource  # sounddevice only when a microphone is used

    return MicrophoneSource(s.mic or "default", rate)


class VoiceAgent:
    """One model, one audio source, one publisher; :meth:`run` until the source ends or we're told to stop."""

    def __init__(self, config: Config, model: VoiceModel, source: AudioSource, publisher: Publisher) -> None:
        self.config = config
        self.model = model
        self.source = source
        self.publisher = publisher
        self.spotter = KeywordSpotter(model)
        self.run_id = secrets.token_hex(4)
        self.seq = 0
        self.published = 0
        self.reopens = 0
        self.started = time.monotonic()
        self.commands: queue.Queue[HubCommand] | None = None  # remote control, drained between hops
        self.paused = False
        self.latencies_ms: collections.deque[float] = collections.deque(maxlen=256)

    def metrics(self) -> dict[str, Any]:
        """The numbers for ``{prefix}/{device_id}/metrics`` (read from the metrics thread)."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        lat = list(self.latencies_ms)
        return {"fps": round(self.spotter.inferences / elapsed, 2), "frames": self.spotter.inferences,
                "published": self.published, "frames_dropped": self.source.overflows,
                "last_label": None, "latency_ms": {"p50": round(percentile(lat, 50), 2),
                                                   "p95": round(percentile(lat, 95), 2)}}

    def apply_commands(self) -> None:
        """Remote control: pause/resume and the threshold apply to voice; the image-only publish
        policy settings are ignored with a log line."""
        for command in drain(self.commands):
            if command.paused is not None:
                self.paused = command.paused
            if command.threshold is not None:
                settings = self.model.settings.with_threshold(command.threshold)
                self.model = dataclasses.replace(self.model, settings=settings)
                self.spotter = KeywordSpotter(self.model)
            if command.max_rate is not None or command.on_change is not None:
                logger.info("remote control: the publish policy does not apply to voice commands")
            logger.info("remote control applied: %s", command)

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
        self.publisher.publish(SUBTOPIC, payload)
        logger.info("command %s (%.2f) at %.2f s of audio", command.label, command.score, command.time_ms / 1000)
        self.seq += 1
        self.published += 1
        return payload

    def _reopen(self, why: str, controls: Any) -> bool:
        """A live source failed: close it and reopen with backoff; False once told to stop."""
        if not reopen_with_backoff(self.source, why, controls.stop):
            return False
        self.reopens += 1
        self.spotter = KeywordSpotter(self.model)  # a gap in the audio: start the window afresh
        return True

    def reload(self, controls: Any) -> None:
        """SIGHUP: read the config again and swap model and thresholds; on any error keep going.
        The audio source, MQTT session and ``seq`` are kept."""
        controls.reload.clear()
        controls.notifier.reloading()
        if controls.reload_config is not None:
            try:
                new = controls.reload_config()
                model = voice_model_for(new)
            except EdgeAgentError as e:
                logger.error("reload failed, still running the previous config: %s", e)
            else:
                if new.source != self.config.source or new.mqtt != self.config.mqtt:
                    logger.warning("reload: source and MQTT settings take effect at the next restart")
                self.config, self.model = new, model
                self.spotter = KeywordSpotter(model)
                logger.info("reloaded: model %s, threshold %.2f", model.name, model.settings.threshold)
        controls.notifier.ready()

    def run(self, controls: Any) -> ExitCode:
        notifier = controls.notifier
        next_status = 0.0
        hops = 0
        ready = False
        while not controls.stop.is_set():
            if self.publisher.fatal:
                raise PublishError(self.publisher.fatal)
            try:
                block = self.source.read(self.spotter.stride, READ_WAIT_S)
            except SourceLost as e:
                if self.source.live and self._reopen(str(e), controls):
                    continue
                break
            if block is None:
                if self.source.ended:
                    break
                continue  # no audio, no watchdog ping: a stuck device gets us restarted
            self.apply_commands()
            if self.paused:
                notifier.watchdog()
                continue
            command = self.spotter.push(block.samples)
            if command is not None:
                self.publish(command, block)
            hops += 1
            if not ready and self.spotter.inferences:
                notifier.ready()  # the model has run on real audio: we are in service
                ready = True
            notifier.watchdog()
            if controls.reload.is_set():
                self.reload(controls)
            now = time.monotonic()
            if now >= next_status:
                notifier.status(f"{self.spotter.inferences} inferences, {self.published} commands, "
                                f"{self.source.overflows} overflows")
                next_status = now + STATUS_EVERY_S
            if controls.max_frames and hops >= controls.max_frames:
                break
        return ExitCode.OK


def run_audio(config: Config, controls: Any) -> ExitCode:
    """Build everything in order, run, tear down in reverse order (mirrors ``service.run``)."""
    from ..service import agent_info, make_publisher  # the composition root owns these

    model = voice_model_for(config)
    source = make_audio_source(config, model.spec.sample_rate)
    source.open()  # a wrong microphone or file fails here, before we announce ourselves online
    hub: Hub | None = None
    try:
        publisher = make_publisher(config)
        agent = VoiceAgent(config, model, source, publisher)
        if isinstance(publisher, MqttPublisher):  # Home Assistant's event entity, info, metrics, control
            hub = Hub(config, publisher, model.labels, agent_info(config, model), agent.metrics)
            agent.commands = hub.commands
            hub.start()
        publisher.start()
    except BaseException:
        source.close()
        raise
    try:
        code = agent.run(controls)
    finally:
        controls.notifier.stopping()
        agent.source.close()
        if hub is not None:
            hub.stop()
        if not publisher.flush(END_FLUSH_S if not controls.stop.is_set() else STOP_FLUSH_S):
            logger.warning("stopping with commands the broker has not acknowledged yet")
        publisher.stop()
    elapsed = time.monotonic() - agent.started
    audio_s = agent.spotter.time_ms / 1000
    logger.info("done: %.1f s of audio in %.1f s, %d inferences, %d commands published, %d overflows",
                audio_s, elapsed, agent.spotter.inferences, agent.published, source.overflows)
    return code
