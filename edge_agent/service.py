"""The composition root: config → model, agent, publisher, hub → the one run loop.

:func:`build` makes every part without starting any (nothing is opened but the spool), so
``--validate-config`` is :func:`build` without :func:`run` and can never disagree with a run.
:func:`run` starts them in order — open the agent's source (a wrong camera or file fails here,
before we announce ourselves online), start the hub and the publisher (it connects in the
background), run the loop — and stops them in reverse order, flushing what was accepted for
publishing. Which loader and which agent serve a kind of input is one table, :data:`KINDS`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from . import __version__, contract, loader
from .agents.base import Agent, StageHook
from .agents.image import ImageAgent
from .agents.image import load as load_image
from .agents.sensor import SensorAgent
from .agents.sensor import load as load_series
from .agents.voice import VoiceAgent
from .config import Config, spool_path
from .errors import ConfigError, EdgeAgentError, ExitCode
from .hub import Hub
from .live.server import LiveServer
from .live.wiring import attach as attach_live
from .publish.base import Publisher
from .publish.mqtt import MqttPublisher
from .publish.spool import open_spool
from .publish.stdout import StdoutPublisher
from .runtime import END_FLUSH_S, STOP_FLUSH_S, Controls, run_loop
from .sources.series_factory import SOURCE_FIELDS
from .voice.spotter import load as load_voice

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Kind:
    """How one kind of input is served: its loader (checks + interpreter) and its agent class."""

    load: loader.KindLoader
    agent: Callable[..., Agent]
    inputs: tuple[str, ...]  # the config's source fields this kind can read


KINDS: Final[dict[str, Kind]] = {
    "image": Kind(load_image, ImageAgent, ("source.camera", "source.source", "source.picamera")),
    "audio": Kind(load_voice, VoiceAgent, ("source.source", "source.mic")),
    "series": Kind(load_series, SensorAgent, SOURCE_FIELDS),
}


@dataclasses.dataclass
class Runtime:
    """Everything one run needs, built and checked, nothing started yet."""

    config: Config
    kind: str
    model: Any
    agent: Agent
    publisher: Publisher
    hub: Hub | None
    live: LiveServer | None = None  # the live page (--http); not started by build()


class NullPublisher:
    """A publisher that keeps nothing: what ``--validate-config`` builds instead of a real one (it
    opens no spool), and the bench's sink when publishing is not what it measures."""

    fatal: str | None = None

    def start(self) -> None:
        pass

    def publish(self, subtopic: str, payload: dict[str, Any]) -> None:
        pass

    def flush(self, timeout: float) -> bool:
        return True

    def stop(self) -> None:
        pass

    def healthy(self) -> bool:
        return True

    @property
    def state(self) -> str:
        return "not started"


def load_model(config: Config) -> tuple[str, Any]:
    """(kind, model) for this config: the shared checks, then the kind's own."""
    return loader.load_model(config, {name: kind.load for name, kind in KINDS.items()})


def check_inputs(config: Config, kind: str) -> None:
    """A source this kind of input cannot read is a config mistake, named before anything opens."""
    s = config.source
    given = {"source.camera": s.camera is not None, "source.source": bool(s.source),
             "source.picamera": s.picamera, "source.mic": s.mic is not None,
             "sensor.serial": bool(config.sensor.serial), "sensor.topic": bool(config.sensor.topic)}
    for field, on in given.items():
        if on and field not in KINDS[kind].inputs:
            raise ConfigError(f"{config.where(field)}: field '{field}' is not an input for task '{config.task}' "
                              f"({kind} input: {', '.join(KINDS[kind].inputs)})")


def make_publisher(config: Config) -> Publisher:
    if config.sink == "stdout":
        return StdoutPublisher()
    spool = open_spool(spool_path(config), config.spool.max_messages, config.spool.max_age_s)
    return MqttPublisher(config.mqtt, config.device_id, config.task, spool)


def agent_info(config: Config, model: Any) -> dict[str, Any]:
    """The retained ``info`` message: what runs here (any kind's model: engine, labels, name, sha256)."""
    engine = model.engine
    return {"version": __version__, "task": config.task, "device": config.device_id,
            "model": {"name": model.name, "sha256": model.sha256[:12], "file": str(engine.path),
                      "labels": list(model.labels)},
            "backend": {"name": engine.backend.name, "version": engine.backend.version,
                        "delegate": engine.delegate, "threads": engine.threads},
            "started": contract.iso_utc(time.time())}


def build(config: Config, *, dry: bool = False, hook: StageHook | None = None,
          publisher: Publisher | None = None) -> Runtime:
    """Model, agent, publisher and hub for ``config``, in the order a mistake is cheapest to find.
    ``dry`` (``--validate-config``): no spool, no broker, no hub; every check still runs."""
    kind, model = load_model(config)
    check_inputs(config, kind)
    if publisher is None:
        publisher = NullPublisher() if dry else make_publisher(config)
    agent = KINDS[kind].agent(config, model, publisher, hook=hook)
    hub: Hub | None = None
    if isinstance(publisher, MqttPublisher):  # discovery, info, metrics, remote control
        hub = Hub(config, publisher, model.labels, agent_info(config, model), agent.metrics, kind=kind)
    live = attach_live(config, kind, model, agent, publisher, hub.metrics if hub else agent.metrics,
                       agent_info(config, model))
    return Runtime(config, kind, model, agent, publisher, hub, live)


def validate(config: Config) -> None:
    """``--validate-config``: everything :func:`run` would check before opening a source."""
    build(config, dry=True)


def _reloader(rt: Runtime, controls: Controls) -> Callable[[], None]:
    """SIGHUP: read the config again and swap model and settings; on any error keep running as before."""

    def reload() -> None:
        if controls.reload_config is None:
            return
        old = rt.config
        try:
            new = controls.reload_config()
            kind, model = load_model(new)
            if kind != rt.kind:
                raise ConfigError(f"{new.where('task')}: a reload cannot change {rt.kind} input to {kind}")
            check_inputs(new, kind)
            rt.agent.reconfigure(new, model)
        except EdgeAgentError as e:
            logger.error("reload failed, still running the previous config: %s", e)
            return
        if new.mqtt != old.mqtt or new.sink != old.sink or new.device_id != old.device_id:
            logger.warning("reload: MQTT and sink settings take effect at the next restart")
        rt.config, rt.model = new, model
        logger.info("reloaded config: model %s, threshold %s", model.name, new.postprocess.threshold)

    return reload


def start(rt: Runtime) -> None:
    """Open the source first (a wrong device fails before we announce ourselves), then the hub
    and the publisher; on any failure close what was opened."""
    rt.agent.start()
    try:
        if rt.live is not None:
            rt.live.start()  # a busy port fails here, before we announce ourselves
        if rt.hub is not None:
            rt.hub.start()
        rt.publisher.start()
    except BaseException:
        if rt.live is not None:
            rt.live.stop()
        rt.agent.stop()
        raise


def shutdown(rt: Runtime, stopped: bool) -> None:
    """Reverse order: end the live page's streams, close the source, stop the hub, flush what was
    accepted, stop the publisher."""
    if rt.live is not None:
        rt.live.stop()
    rt.agent.stop()
    if rt.hub is not None:
        rt.hub.stop()
    if not rt.publisher.flush(STOP_FLUSH_S if stopped else END_FLUSH_S):
        logger.warning("stopping with messages the broker has not acknowledged yet")
    rt.publisher.stop()


def run(config: Config, controls: Controls | None = None) -> ExitCode:
    """Build everything, start it in order, run the loop, tear down in reverse order."""
    controls = controls or Controls()
    rt = build(config, hook=controls.hook)
    start(rt)
    try:
        code = run_loop(rt.agent, rt.publisher, controls, rt.hub.commands if rt.hub else None,
                        _reloader(rt, controls))
    finally:
        controls.notifier.stopping()
        shutdown(rt, controls.stop.is_set())
    logger.info("%s", rt.agent.summary())
    return code
