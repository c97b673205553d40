"""Sensor samples from MQTT topics (an IMU that publishes, Zigbee2MQTT sensors): JSON messages,
a JSON path per channel (``--sensor-paths ax=accel.x,...``), on the agent's broker settings.

A message may hold one sample (an object) or several (a list of objects, e.g. an IMU that sends
its FIFO every 100 ms). When channels come from different topics, each message updates its
channels and a sample is made, at that message's time, once every channel has a value (sample
and hold). A message that is not JSON, or lacks a channel, is counted in ``bad_records``.
paho's network thread only parses and appends to a bounded buffer; the agent drains it.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import paho.mqtt.client as mqtt

from ..config import Config
from ..mqtt_client import make_client
from .series import RecordParser, Samples, take_samples

logger = logging.getLogger(__name__)

BUFFER_SAMPLES: Final = 50_000
MAX_MESSAGE_BYTES: Final = 256 * 1024


class MqttSeriesSource:
    live = True
    ended = False
    error: str | None = None

    def __init__(self, config: Config, channels: Sequence[str], parser: RecordParser,
                 topics: Mapping[str, str]) -> None:
        self.cfg = config.mqtt
        self.client_id = f"edge-agent-{config.device_id}-{config.task}-sensor"
        self.channels = tuple(channels)
        self.parser = parser
        self.by_topic: dict[str, list[str]] = collections.defaultdict(list)
        for c in self.channels:
            self.by_topic[topics[c]].append(c)
        self.name = f"mqtt {', '.join(self.by_topic)}"
        self.overflows = 0
        self.garbage = 0
        self.messages = 0
        self._held: dict[str, float] = {}
        self._buf: collections.deque[tuple[float, list[float]]] = collections.deque()
        self._lock = threading.Lock()
        self._data = threading.Event()
        self._client: mqtt.Client | None = None

    @property
    def bad_records(self) -> int:
        return self.garbage + self.parser.bad

    def open(self) -> None:
        cfg = self.cfg
        client = make_client(cfg, self.client_id)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive)
        client.loop_start()
        self._client = client
        logger.info("sensor samples from MQTT %s:%d topics %s", cfg.host, cfg.port, ", ".join(self.by_topic))

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            logger.warning("sensor MQTT connection refused: %s", reason)
            return
        for topic in self.by_topic:
            client.subscribe(topic, qos=0)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        arrival = time.monotonic()  # a sample without a time of its own: never the wall clock
        self.messages += 1
        chans = self.by_topic.get(message.topic)
        if chans is None or len(message.payload) > MAX_MESSAGE_BYTES:
            self.garbage += 1
            return
        try:
            data = json.loads(message.payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            self.garbage += 1
            return
        records = data if isinstance(data, list) else [data]
        single = len(self.by_topic) == 1
        for obj in records:
            rec = self.parser.from_json(obj, arrival) if single else self._hold(obj, chans, arrival)
            if rec is not None:
                self._append(rec)

    def _hold(self, obj: Any, chans: Sequence[str], arrival: float) -> tuple[float, list[float]] | None:
        sub = RecordParser(chans, {c: self.parser.paths[c] for c in chans}, self.parser.ts_path)
        rec = sub.from_json(obj, arrival)
        self.parser.bad += sub.bad
        if rec is None:
            return None
        self._held.update(zip(chans, rec[1], strict=True))
        if len(self._held) < len(self.channels):
            return None
        return rec[0], [self._held[c] for c in self.channels]

    def _append(self, rec: tuple[float, list[float]]) -> None:
        with self._lock:
            if len(self._buf) >= BUFFER_SAMPLES:
                self._buf.popleft()
                self.overflows += 1
            self._buf.append(rec)
        self._data.set()

    def read(self, timeout: float) -> Samples | None:
        return take_samples(self._buf, self._lock, self._data, len(self.channels), timeout)

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None


