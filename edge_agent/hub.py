"""The home hub side of MQTT: Home Assistant discovery, retained info, periodic metrics and the
optional remote control topic. Only used with the MQTT sink.

Discovery follows Home Assistant's MQTT discovery schema: one retained config message per
entity on ``{discovery_prefix}/{component}/{device_id}/{object_id}/config``, each with a
``unique_id``, a shared ``device`` block, ``origin`` and availability from our status topic.
It is re-sent on every (re)connect and whenever Home Assistant announces itself ``online`` on
``{discovery_prefix}/status`` (that message is not retained, so a restarted HA would otherwise
miss us). With discovery off, the task's entities are cleared with empty retained payloads.
Home Assistant listens to a new entity's state topic only a moment after its config: after this
process's first discovery and after HA comes online, live messages wait DISCOVERY_HOLD_S in the
spool (an event, a voice command, cannot be sent again the way a state can).

Remote control arrives on paho's network thread; it is validated there (strictly: unknown keys
and wrong types are rejected with one log line and a reply) and handed to the pipeline through
a queue, so the pipeline's state has a single writer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from . import __version__, contract, series_contract, tasks
from .config import Config
from .live import snapshot
from .publish.mqtt import MqttPublisher

logger = logging.getLogger(__name__)

MAX_CONTROL_BYTES: Final = 1024
EXPIRE_HEARTBEATS: Final = 3  # expire_after = this many heartbeats without a message
FAULT_OFF_DELAY_S: Final = 30  # every-frame publishing: "no fault" after this long without a message
DISCOVERY_SETTLE_S: Final = 2.0  # after discovery, the current state is sent again this much later
# After a discovery Home Assistant may not have set up yet (this process's first connect: the device
# or an entity may be new to it; HA announcing itself online), live messages wait this long
DISCOVERY_HOLD_S: Final = DISCOVERY_SETTLE_S
ORIGIN: Final = {"name": "edge-agent", "sw_version": __version__,
                 "support_url": "https://github.com/edge-agent/edge-agent"}
ICONS: Final = {"waste": "mdi:recycle", "road": "mdi:road-variant", "voice": "mdi:microphone",
                "custom": "mdi:eye"}


def board_model() -> str:
    try:
        return Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00\n ") or "Linux"
    except OSError:
        return "Linux"


def _device_block(device_id: str) -> dict[str, Any]:
    return {"identifiers": [f"edge_agent_{device_id}"], "name": f"edge-agent {device_id}",
            "manufacturer": "edge-agent", "model": board_model(), "sw_version": __version__}


def event_topics(messages: Sequence[tuple[str, dict[str, Any]]]) -> frozenset[str]:
    """The topics of ``event`` entities (a voice command): each message is something that happened,
    and sent a second time it would happen twice in Home Assistant."""
    return frozenset(payload["state_topic"] for topic, payload in messages if topic.split("/")[-4] == "event")


def discovery_messages(config: Config, labels: Sequence[str], kind: str | None = None,
                       ) -> list[tuple[str, dict[str, Any]]]:
    """(topic, config payload) for each entity of this task. ``kind`` is the model's kind of input
    (the manifest's, so a custom audio or sensor model gets the entities of its kind); by default
    the task's."""
    prefix, device, task = config.mqtt.topic_prefix, config.device_id, config.task
    spec = tasks.TASKS.get(task)
    kind = kind or (spec.kind if spec is not None else "image")
    disc = config.homeassistant.prefix
    availability = [{"topic": contract.status_topic(prefix, device), "payload_available": contract.STATUS_ONLINE,
                     "payload_not_available": contract.STATUS_OFFLINE}]
    common = {"availability": availability, "device": _device_block(device), "origin": ORIGIN,
              "qos": config.mqtt.qos}
    title = task.capitalize()
    pp = config.postprocess
    # With the heartbeat, a state older than three heartbeats is stale (the agent is gone or sees
    # nothing confident): Home Assistant shows it unavailable instead of as current.
    expiry = ({"expire_after": int(EXPIRE_HEARTBEATS * pp.heartbeat_s)} if pp.on_change and pp.heartbeat_s > 0
              else {})
    messages: list[tuple[str, dict[str, Any]]] = []
    if kind == "audio":
        topic = contract.device_topic(prefix, device, contract.VOICE_COMMAND_SUBTOPIC)
        commands = [label for label in labels if not label.startswith("_")]
        messages.append((f"{disc}/event/{device}/voice_command/config", {
            "name": "Voice command", "unique_id": f"edge_agent_{device}_voice_command",
            "state_topic": topic, "event_types": commands,
            "value_template": '{"event_type": "{{ value_json.command }}", "score": {{ value_json.score }}}',
            "icon": ICONS["voice"], **common}))
        return messages
    state = contract.prediction_topic(prefix, device, task)
    if kind == "series":
        return series_contract.discovery(disc, device, task, labels, state, common, expiry)
    messages.append((f"{disc}/sensor/{device}/{task}_label/config", {
        "name": f"{title} label", "unique_id": f"edge_agent_{device}_{task}_label",
        "state_topic": state, "value_template": "{{ value_json.label }}",
        "json_attributes_topic": state,
        # no seq or frame_ts: they change on every message, and each distinct attributes set is a
        # new row in Home Assistant's recorder
        "json_attributes_template": "{{ {'score': value_json.score, 'top': value_json.top} | tojson }}",
        "icon": ICONS.get(task, "mdi:eye"), **expiry, **common}))
    if task == "road":
        faults = [label for label in labels if label != "normal"]
        # Off when a "normal" prediction comes. With on_change a persisting fault is re-sent only at
        # the heartbeat, so an off_delay shorter than that would turn it off while it persists:
        # then the state expires after three heartbeats without a message instead (unavailable).
        fault_timeout = expiry if expiry else {"off_delay": FAULT_OFF_DELAY_S}
        messages.append((f"{disc}/binary_sensor/{device}/road_fault/config", {
            "name": "Road fault detected", "unique_id": f"edge_agent_{device}_road_fault",
            "state_topic": state, "device_class": "problem",
            "value_template": "{{ 'ON' if value_json.label in " + json.dumps(faults) + " else 'OFF' }}",
            "payload_on": "ON", "payload_off": "OFF", **fault_timeout, **common}))
    if config.homeassistant.snapshot:  # the frame behind each label change (edge_agent.live.snapshot)
        messages.append(snapshot.discovery(disc, device, task, snapshot.snapshot_topic(prefix, device, task), common))
    return messages


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return float(ordered[k])


def cpu_temperature_c() -> float | None:
    try:
        return round(int(Path("/sys/class/thermal/thermal_zone0/temp").read_text()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


# -- remote control --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Command:
    """A validated change: only the fields that were given are set."""

    threshold: float | None = None
    paused: bool | None = None
    max_rate: float | None = None
    on_change: bool | None = None
    wrong: int | None = None  # voice: the seq of a command the user marks as a false accept


class ControlError(ValueError):
    pass


def _number(value: Any, field: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (lo <= value <= hi) or value != value:
        raise ControlError(f"'{field}' must be a number from {lo:g} to {hi:g}")
    return float(value)


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ControlError(f"'{field}' must be true or false")
    return value


def parse_command(raw: bytes, task: str | None = None) -> Command:
    """Strict: a JSON object with only known keys of the right types, or ControlError."""
    if len(raw) > MAX_CONTROL_BYTES:
        raise ControlError(f"payload over {MAX_CONTROL_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ControlError("payload is not JSON") from None
    if not isinstance(data, dict) or not data:
        raise ControlError("payload must be a non-empty JSON object")
    allowed = {"threshold", "pause", "resume", "publish"} | ({"wrong"} if task == "voice" else set())
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ControlError(f"unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")
    threshold = _number(data["threshold"], "threshold", 0, 1) if "threshold" in data else None
    paused: bool | None = None
    if "pause" in data and _bool(data["pause"], "pause"):
        paused = True
    if "resume" in data and _bool(data["resume"], "resume"):
        if paused:
            raise ControlError("'pause' and 'resume' together")
        paused = False
    max_rate = on_change = None
    if "publish" in data:
        policy = data["publish"]
        if not isinstance(policy, dict):
            raise ControlError("'publish' must be an object with max_rate and/or on_change")
        extra = sorted(set(policy) - {"max_rate", "on_change"})
        if extra:
            raise ControlError(f"unknown key 'publish.{extra[0]}'")
        if "max_rate" in policy:
            max_rate = _number(policy["max_rate"], "publish.max_rate", 0, 1000)
        if "on_change" in policy:
            on_change = _bool(policy["on_change"], "publish.on_change")
    wrong = None
    if "wrong" in data:
        seq = data["wrong"]
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ControlError("'wrong' must be the seq of a command (a whole number, 0 or more)")
        wrong = seq
    return Command(threshold, paused, max_rate, on_change, wrong)


def drain(commands: queue.Queue[Command] | None) -> Iterator[Command]:
    """The remote-control commands waiting now, oldest first (none when remote control is off).
    The agents call this between frames or hops, so a command never interrupts an inference."""
    while commands is not None:
        try:
            yield commands.get_nowait()
        except queue.Empty:
            return


class Hub:
    """Attach to an :class:`MqttPublisher`; the pipeline drains :attr:`commands` and gives
    :meth:`metrics` its numbers through ``stats``."""

    def __init__(self, config: Config, publisher: MqttPublisher, labels: Sequence[str],
                 info: dict[str, Any], stats: Callable[[], dict[str, Any]], kind: str | None = None) -> None:
        self.config = config
        self.kind = kind
        self.publisher = publisher
        self.labels = tuple(labels)
        self.info = info
        self.stats = stats
        self.commands: queue.Queue[Command] = queue.Queue(maxsize=64)
        self.rejected = 0
        self.discovery_sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        # whether or not discovery is on: a command is an event for any hub
        publisher.mark_events(event_topics(discovery_messages(config, self.labels, kind)))
        prefix, device = config.mqtt.topic_prefix, config.device_id
        self.info_topic = contract.device_topic(prefix, device, "info")
        self.metrics_topic = contract.device_topic(prefix, device, "metrics")
        self.set_topic = contract.device_topic(prefix, device, f"{config.task}/set")
        self.result_topic = contract.device_topic(prefix, device, f"{config.task}/set/result")

    def start(self) -> None:
        """Register before ``publisher.start()`` so the first connect already announces us."""
        self.publisher.on_connected.append(self.announce)
        if self.config.homeassistant.discovery:
            # Home Assistant subscribes to a new entity's state topic a moment after its config
            # arrives (measured on HA 2026.11: two voice commands sent 36-60 ms after the first
            # config were never recorded). Once per process, at its first connect: a reconnect
            # finds HA's subscriptions in place.
            self.publisher.hold(DISCOVERY_HOLD_S, at_connect=True)
            self.publisher.subscribe(f"{self.config.homeassistant.prefix}/status", self._on_ha_status)
        if self.config.control.enabled:
            self.publisher.subscribe(self.set_topic, self._on_set)
        if self.config.metrics_interval_s > 0:
            self._thread = threading.Thread(target=self._metrics_loop, name="metrics", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def announce(self) -> None:
        """Discovery (or its removal) and the retained info: on every connect."""
        self.publisher.send_now(self.info_topic, json.dumps(self.info), qos=1, retain=True)
        self.send_discovery()

    def _on_ha_status(self, topic: str, payload: bytes) -> None:
        if payload.strip() == b"online":
            logger.info("Home Assistant is online: re-sending discovery")
            if self.config.homeassistant.discovery:
                self.publisher.hold(DISCOVERY_HOLD_S)  # a restarted HA is setting our entities up again
            self.send_discovery()

    def send_discovery(self) -> None:
        messages = discovery_messages(self.config, self.labels, self.kind)
        for topic, payload in messages:
            data = json.dumps(payload) if self.config.homeassistant.discovery else ""
            self.publisher.send_now(topic, data, qos=1, retain=True)
        self.discovery_sent += 1
        if self.config.homeassistant.discovery:
            # Home Assistant subscribes to a new entity's state topic a moment after its config
            # arrives; with on_change the next prediction may be a heartbeat away, so send the
            # current state again once it listens (states only: see event_topics).
            self.publisher.resend_newest(DISCOVERY_SETTLE_S)

    def _reply(self, ok: bool, detail: str) -> None:
        self.publisher.send_now(self.result_topic, json.dumps({"ok": ok, "detail": detail,
                                                                "ts": contract.iso_utc(time.time())}), 1, False)

    def _on_set(self, topic: str, payload: bytes) -> None:
        try:
            command = parse_command(payload, self.config.task)
        except ControlError as e:
            self.rejected += 1
            logger.warning("rejected a command on %s: %s", topic, e)
            self._reply(False, str(e))
            return
        try:
            self.commands.put_nowait(command)
        except queue.Full:
            self._reply(False, "busy: too many pending commands")
            return
        self._reply(True, json.dumps({k: v for k, v in dataclasses.asdict(command).items() if v is not None}))

    def metrics(self) -> dict[str, Any]:
        data = dict(self.stats())
        spool = self.publisher.spool
        data.update({"ts": contract.iso_utc(time.time()), "uptime_s": round(time.monotonic() - self._started, 1),
                     "spool_depth": spool.depth(), "spool_dropped": spool.dropped,
                     "cpu_temp_c": cpu_temperature_c(), "commands_rejected": self.rejected})
        data.update(self.publisher.metrics())
        return data

    def _metrics_loop(self) -> None:
        while not self._stop.wait(self.config.metrics_interval_s):
            try:
                self.publisher.send_now(self.metrics_topic, json.dumps(self.metrics()), qos=0, retain=False)
            except Exception:
                logger.exception("metrics failed")
