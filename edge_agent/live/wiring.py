"""How the live page and the snapshot attach to a run: built with the rest (so ``--validate-config``
reads the token file too), started after the source opens, stopped first (streams end cleanly)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .. import board
from ..config import Config, http_address
from ..observe import Fanout, Observer
from ..publish.mqtt import MqttPublisher
from .auth import Guard, read_token
from .server import LiveServer
from .snapshot import Snapshot, snapshot_topic
from .view import LiveView

logger = logging.getLogger(__name__)


def attach(config: Config, kind: str, model: Any, agent: Any, publisher: Any,
           metrics: Callable[[], dict[str, Any]], info: dict[str, Any]) -> LiveServer | None:
    """Give ``agent`` its observer (the page's view, the snapshot) and return the page's server
    (not started), or None without ``--http``."""
    observers: list[Observer] = []
    server = None
    if config.http.listen:
        address = http_address(config.http.listen)
        assert address is not None  # config.validate checked it
        token = read_token(config.http.token_file, config.where("http.token_file")) if config.http.token_file else None
        channels = model.spec.names if kind == "series" else ()
        view = LiveView(kind, config.task, model.labels, channels)

        def health() -> dict[str, Any]:
            data = dict(metrics())
            data.update(publisher=publisher.state, source=agent.status(), throttled=board.throttled())
            return data

        server = LiveServer(view, address[0], address[1], Guard(token), info, health,
                            where=config.where("http.listen"))
        observers.append(view)
    if kind == "image" and isinstance(publisher, MqttPublisher):
        topic = snapshot_topic(config.mqtt.topic_prefix, config.device_id, config.task)
        if config.homeassistant.snapshot:
            snap = Snapshot(publisher, topic)
            publisher.on_connected.append(snap.flush)
            observers.append(snap)
        else:  # off means off: no picture left on the broker, no entity left in Home Assistant
            publisher.on_connected.append(lambda: _clear(publisher, config, topic))
    if observers:
        agent.observer = observers[0] if len(observers) == 1 else Fanout(observers)
    return server


def _clear(publisher: MqttPublisher, config: Config, topic: str) -> None:
    publisher.send_now(topic, "", 1, True)
    if config.homeassistant.discovery:
        disc = config.homeassistant.prefix
        publisher.send_now(f"{disc}/image/{config.device_id}/{config.task}_snapshot/config", "", 1, True)
