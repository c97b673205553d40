"""Which sensor source a config names: replay, serial line or MQTT topics (one of them)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from ..config import Config
from ..errors import ConfigError
from .series import RecordParser, ReplaySource, SeriesSource


def parse_paths(text: str, channels: Sequence[str], default_topic: str | None,
                where: str) -> tuple[dict[str, str], dict[str, str]]:
    """``ax=accel.x,temp=temperature@zigbee2mqtt/t1`` → (channel → JSON path, channel → topic)."""
    paths: dict[str, str] = {}
    topics: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, rest = part.partition("=")
        if not sep or name not in channels:
            raise ConfigError(f"{where}: field 'sensor.paths': '{part}' is not CHANNEL=PATH[@TOPIC] with a channel "
                              f"among {', '.join(channels)}")
        path, _, topic = rest.partition("@")
        paths[name] = path
        if topic:
            topics[name] = topic
    for c in channels:
        paths.setdefault(c, c)
        if c not in topics:
            if not default_topic:
                raise ConfigError(f"{where}: channel '{c}' has no topic: give --sensor-topic or '{c}=PATH@TOPIC'")
            topics[c] = default_topic
    return paths, topics


SOURCE_FIELDS: Final = ("source.source", "sensor.serial", "sensor.topic")  # the inputs a series task can read


def make_series_source(config: Config, channels: Sequence[str]) -> SeriesSource:
    """The one input the config names; a camera or microphone is refused with the right flags."""
    s, sensor = config.source, config.sensor
    if s.camera is not None or s.picamera or s.mic is not None:
        raise ConfigError(f"{config.where('task')}: task '{config.task}' reads sensor samples; use --source "
                          "FILE.csv|FILE.jsonl, --serial PORT or --sensor-topic TOPIC instead of a camera or "
                          "microphone")
    given = (s.source, sensor.serial, sensor.topic or "@" in sensor.paths)
    chosen = [f for f, v in zip(SOURCE_FIELDS, given, strict=True) if v]
    if len(chosen) > 1:
        raise ConfigError(f"{config.where(chosen[-1])}: field '{chosen[-1]}' must be the only input (pick one of "
                          "--source, --serial, --sensor-topic)")
    if not chosen:
        raise ConfigError(f"{config.where('task')}: task '{config.task}' needs an input: --source FILE.csv, "
                          "--serial /dev/ttyUSB0 or --sensor-topic TOPIC")
    paths, _ = (parse_paths(sensor.paths, channels, "-", config.where("sensor.paths"))
                if sensor.paths else ({}, {}))
    parser = RecordParser(channels, paths, sensor.ts_path)
    if s.source:
        return ReplaySource(Path(s.source), channels, realtime=s.realtime, loop=s.loop, parser=parser)
    if sensor.serial:
        from .series_serial import SerialSource  # pyserial only when a serial line is used

        columns = tuple(c.strip() for c in sensor.columns.split(",") if c.strip())
        return SerialSource(sensor.serial, sensor.baud, channels, parser, columns)
    from .series_mqtt import MqttSeriesSource

    paths, topics = parse_paths(sensor.paths, channels, sensor.topic, config.where("sensor.paths"))
    return MqttSeriesSource(config, channels, RecordParser(channels, paths, sensor.ts_path), topics)
