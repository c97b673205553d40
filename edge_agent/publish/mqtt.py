"""MQTT publisher (paho-mqtt 2.x, callback API v2; MQTT 3.1.1 or 5).

Boring on purpose: a retained ``status`` of ``online`` with a last will of ``offline``, QoS 1 by
default, TLS that verifies the broker, and reconnection with backoff that never blocks inference.

We run paho's network loop in our own thread with ``reconnect_on_failure=False`` and reconnect
ourselves, because paho's automatic retry swallows the reason a connection failed: an untrusted
certificate or a refused password would be retried silently forever. Here those end the agent
with one line (:attr:`MqttPublisher.fatal`), while an unreachable broker is retried with backoff.

Known paho traps handled here: an exception raised in a callback kills paho's network loop while
``is_connected()`` still says True, so every callback is guarded and the loop is watched by our
thread; ``wait_for_publish()`` raises for messages queued while disconnected even after they are
delivered, so delivery is tracked with ``on_publish``.
"""

from __future__ import annotations

import functools
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .. import contract
from ..config import MqttConfig

logger = logging.getLogger(__name__)

BACKOFF_MIN_S: Final = 1.0
BACKOFF_MAX_S: Final = 30.0
MAX_QUEUED_MESSAGES: Final = 100_000  # paho's own queue while offline; bounded
MAX_PAYLOAD_BYTES: Final = 64 * 1024  # a prediction is < 1 KiB; anything near this is a bug

F = TypeVar("F", bound=Callable[..., Any])


def guarded(method: F) -> F:
    """Never let an exception escape into paho's network thread."""

    @functools.wraps(method)
    def wrapper(self: MqttPublisher, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception:
            logger.exception("MQTT callback %s failed", method.__name__)
            return None

    return wrapper  # type: ignore[return-value]


class MqttPublisher:
    def __init__(self, cfg: MqttConfig, device_id: str, task: str) -> None:
        self.cfg = cfg
        self.device_id = device_id
        self.task = task
        self.status_topic = contract.status_topic(cfg.topic_prefix, device_id)
        protocol = mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311
        client_id = cfg.client_id or f"edge-agent-{device_id}-{task}"
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, reconnect_on_failure=False
        )
        self._client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
        if cfg.username is not None:
            self._client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls or cfg.ca or cfg.cert:
            self._client.tls_set(
                ca_certs=cfg.ca, certfile=cfg.cert, keyfile=cfg.key, cert_reqs=ssl.CERT_REQUIRED
            )
            if cfg.tls_insecure:
                self._client.tls_insecure_set(True)
        self._client.will_set(self.status_topic, contract.STATUS_OFFLINE, qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._unacked: set[int] = set()
        self._early_acks: set[int] = set()
        self._fatal: str | None = None
        self.sent = 0
        self.acked = 0
        self.dropped = 0
        self.connects = 0

    # -- public -------------------------------------------------------------------------------
    @property
    def fatal(self) -> str | None:
        return self._fatal

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def publish(self, subtopic: str, payload: dict[str, Any]) -> None:
        topic = contract.device_topic(self.cfg.topic_prefix, self.device_id, subtopic)
        self.publish_raw(topic, json.dumps(payload, separators=(",", ":")), self.cfg.qos, retain=False)

    def publish_raw(self, topic: str, data: str | bytes, qos: int, retain: bool) -> None:
        if len(data) > MAX_PAYLOAD_BYTES:
            self.dropped += 1
            logger.error("not publishing %d bytes on %s: over the %d byte limit", len(data), topic, MAX_PAYLOAD_BYTES)
            return
        info = self._client.publish(topic, data, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.dropped += 1
            logger.warning("MQTT publish on %s dropped: %s", topic, mqtt.error_string(info.rc))
            return
        self.sent += 1
        if qos > 0:
            with self._lock:
                if info.mid in self._early_acks:
                    self._early_acks.discard(info.mid)
                else:
                    self._unacked.add(info.mid)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._unacked)

    def flush(self, timeout: float) -> bool:
        """Wait until the broker acknowledged everything sent with QoS ≥ 1 (or the timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending == 0 or self._fatal:
                return self.pending == 0
            time.sleep(0.02)
        return self.pending == 0

    def stop(self, flush_timeout: float = 3.0) -> None:
        """Publish ``offline``, wait for what is in flight, disconnect cleanly."""
        if self._connected.is_set():
            self.publish_raw(self.status_topic, contract.STATUS_OFFLINE, qos=1, retain=True)
            self.flush(flush_timeout)
        self._stop.set()
        self._client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- connection loop ----------------------------------------------------------------------
    def _run(self) -> None:
        host, port = self.cfg.host, self.cfg.port
        delay = BACKOFF_MIN_S
        last_error = None
        while not self._stop.is_set():
            try:
                self._client.connect(host, port, keepalive=self.cfg.keepalive)
            except ssl.SSLCertVerificationError as e:
                self._give_up(f"MQTT broker {host}:{port}: TLS certificate not trusted ({e.verify_message}); "
                              "check mqtt.ca (or --tls-insecure to skip the host name check)")
                return
            except ssl.SSLError as e:
                self._give_up(f"MQTT broker {host}:{port}: TLS handshake failed ({e.reason or e}); "
                              "check mqtt.ca, mqtt.cert and mqtt.key")
                return
            except OSError as e:
                error = e.strerror or str(e) or type(e).__name__
                if error != last_error:
                    logger.warning("MQTT broker %s:%d unreachable (%s); retrying with backoff, "
                                   "predictions are kept", host, port, error)
                    last_error = error
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            last_error = None
            try:
                self._client.loop_forever()
            except Exception:
                logger.exception("MQTT network loop failed; reconnecting")
            self._connected.clear()
            if self._fatal or self._stop.is_set():
                return
            delay = BACKOFF_MIN_S if self.connects else min(delay * 2, BACKOFF_MAX_S)
            self._stop.wait(delay)

    def _give_up(self, reason: str) -> None:
        self._fatal = reason
        logger.error("%s", reason)

    # -- callbacks (paho's network thread) ----------------------------------------------------
    @guarded
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._give_up(f"MQTT broker {self.cfg.host}:{self.cfg.port} refused the connection: {reason} "
                          "(check mqtt.username and the password)")
            client.disconnect()
            return
        self.connects += 1
        self._connected.set()
        logger.info("MQTT connected to %s:%d", self.cfg.host, self.cfg.port)
        self.publish_raw(self.status_topic, contract.STATUS_ONLINE, qos=1, retain=True)

    @guarded
    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._stop.is_set():
            logger.warning("MQTT disconnected (%s); reconnecting, predictions are kept", reason)

    @guarded
    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._early_acks.add(mid)
        self.acked += 1
