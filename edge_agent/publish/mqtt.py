"""MQTT publisher (paho-mqtt 2.x, callback API v2; MQTT 3.1.1 or 5) with store and forward.

Boring on purpose: a retained ``status`` of ``online`` with a last will of ``offline``, QoS 1 by
default, TLS that verifies the broker, reconnection with backoff that never blocks inference,
and every QoS ≥ 1 message kept in a spool (:mod:`.spool`) until the broker acknowledges it.

Three threads, each with one job: the caller's (``publish`` only writes to the spool), the
connection thread (connect, run paho's network loop, reconnect with backoff) and the sender
(moves spooled messages to the broker strictly in order, a small window in flight).

We run paho's network loop ourselves with ``reconnect_on_failure=False`` and build a fresh
client for every connection, because paho's automatic retry swallows the reason a connection
failed (an untrusted certificate or a refused password would be retried silently forever) and
its own queue resends stale messages out of order after a reconnect. Here a refused login or an
untrusted certificate ends the agent with one line (:attr:`MqttPublisher.fatal`), while an
unreachable broker is retried with backoff and the spool keeps every prediction.

Known paho traps handled: an exception in a callback kills paho's network loop while
``is_connected()`` still says True, so every callback is guarded and our thread watches the
loop; ``wait_for_publish()`` raises for messages queued while disconnected even after delivery,
so delivery is tracked with ``on_publish``.
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
from .spool import MemorySpool, Spool, SpoolFull

logger = logging.getLogger(__name__)

BACKOFF_MIN_S: Final = 1.0
BACKOFF_MAX_S: Final = 30.0
WINDOW: Final = 16  # spooled messages in flight at once; a reconnect resends at most this many
EARLY_ACK_TTL_S: Final = 5.0
MAX_PAYLOAD_BYTES: Final = 64 * 1024  # a prediction is < 1 KiB; anything near this is a bug

F = TypeVar("F", bound=Callable[..., Any])
Handler = Callable[[str, bytes], None]


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
    def __init__(self, cfg: MqttConfig, device_id: str, task: str, spool: Spool | None = None) -> None:
        self.cfg = cfg
        self.device_id = device_id
        self.task = task
        self.status_topic = contract.status_topic(cfg.topic_prefix, device_id)
        self.client_id = cfg.client_id or f"edge-agent-{device_id}-{task}"
        self._spool: Spool = spool if spool is not None else MemorySpool()
        self._client: mqtt.Client | None = None
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._wake = threading.Condition()
        self._lock = threading.Lock()
        self._inflight: dict[int, int] = {}  # paho mid → spool id
        self._early: dict[int, float] = {}  # mid → when acknowledged before we recorded it (or not spooled)
        self._cursor = 0  # last spool id handed to paho on this connection
        self._fatal: str | None = None
        self._threads: list[threading.Thread] = []
        self._subscriptions: dict[str, Handler] = {}
        self.on_connected: list[Callable[[], None]] = []  # e.g. discovery, info: re-sent on every connect
        self.connects = 0
        self.sent = 0
        self.acked = 0
        self.dropped = 0  # QoS 0 while offline, oversize payloads

    # -- public -------------------------------------------------------------------------------
    @property
    def fatal(self) -> str | None:
        return self._fatal

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def spool(self) -> Spool:
        return self._spool

    def start(self) -> None:
        for name, target in (("mqtt-connection", self._run), ("mqtt-sender", self._send_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Call ``handler(topic, payload)`` for messages on ``topic`` (re-subscribed on reconnect)."""
        self._subscriptions[topic] = handler
        client = self._client
        if client is not None and self.connected:
            client.subscribe(topic, qos=1)

    def publish(self, subtopic: str, payload: dict[str, Any]) -> None:
        topic = contract.device_topic(self.cfg.topic_prefix, self.device_id, subtopic)
        self.publish_raw(topic, json.dumps(payload, separators=(",", ":")), self.cfg.qos, retain=False)

    def publish_raw(self, topic: str, data: str | bytes, qos: int, retain: bool) -> None:
        """QoS ≥ 1 goes through the spool (kept until acknowledged); QoS 0 is sent now or dropped."""
        raw = data.encode() if isinstance(data, str) else data
        if len(raw) > MAX_PAYLOAD_BYTES:
            self.dropped += 1
            logger.error("not publishing %d bytes on %s: over the %d byte limit", len(raw), topic, MAX_PAYLOAD_BYTES)
            return
        if qos == 0:
            if not self.send_now(topic, raw, 0, retain):
                self.dropped += 1
            return
        try:
            self._spool.put(topic, raw, qos, retain)
        except SpoolFull as e:
            logger.error("%s; keeping predictions in memory from now on", e)
            self._spool = MemorySpool(first_id=self._cursor + 1_000_000_000)
            self._spool.put(topic, raw, qos, retain)
        with self._wake:
            self._wake.notify_all()

    def send_now(self, topic: str, data: str | bytes, qos: int, retain: bool) -> bool:
        """Send outside the spool (status, discovery, replies): only while connected."""
        client = self._client
        if client is None or not self.connected:
            return False
        info = client.publish(topic, data, qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    @property
    def pending(self) -> int:
        return self._spool.depth()

    def flush(self, timeout: float) -> bool:
        """Wait until the broker acknowledged everything spooled (or the timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending == 0 or self._fatal:
                break
            time.sleep(0.02)
        return self.pending == 0

    def stop(self, flush_timeout: float = 3.0) -> None:
        """Publish ``offline``, wait for what is in flight, disconnect cleanly. Whatever the broker
        has not acknowledged stays in the spool for the next start."""
        client = self._client
        if client is not None and self.connected:
            info = client.publish(self.status_topic, contract.STATUS_OFFLINE, qos=1, retain=True)
            deadline = time.monotonic() + flush_timeout
            while not info.is_published() and time.monotonic() < deadline and self.connected:
                time.sleep(0.02)
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if client is not None:
            client.disconnect()
        for thread in self._threads:
            thread.join(timeout=5)
        self._spool.close()

    # -- connection thread --------------------------------------------------------------------
    def _new_client(self) -> mqtt.Client:
        cfg = self.cfg
        protocol = mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol,
                             reconnect_on_failure=False)
        client.max_inflight_messages_set(WINDOW + 8)  # our window plus status and discovery
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls or cfg.ca or cfg.cert:
            client.tls_set(ca_certs=cfg.ca, certfile=cfg.cert, keyfile=cfg.key, cert_reqs=ssl.CERT_REQUIRED)
            if cfg.tls_insecure:
                client.tls_insecure_set(True)
        client.will_set(self.status_topic, contract.STATUS_OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _run(self) -> None:
        host, port = self.cfg.host, self.cfg.port
        delay = BACKOFF_MIN_S
        last_error = None
        while not self._stop.is_set():
            client = self._new_client()
            self._client = client
            try:
                client.connect(host, port, keepalive=self.cfg.keepalive)
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
            connects_before = self.connects
            try:
                client.loop_forever()
            except Exception:
                logger.exception("MQTT network loop failed; reconnecting")
            self._connected.clear()
            if self._fatal or self._stop.is_set():
                return
            delay = BACKOFF_MIN_S if self.connects > connects_before else min(delay * 2, BACKOFF_MAX_S)
            self._stop.wait(delay)

    def _give_up(self, reason: str) -> None:
        self._fatal = reason
        logger.error("%s", reason)

    # -- sender thread ------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                self._wake.wait(0.5)
            while self.connected and not self._stop.is_set():
                with self._lock:
                    room = WINDOW - len(self._inflight)
                    cursor = self._cursor
                if room <= 0:
                    break
                batch = self._spool.after(cursor, room)
                if not batch:
                    break
                for message in batch:
                    if not self._send_one(message):
                        break

    def _send_one(self, message: Any) -> bool:
        client = self._client
        if client is None or not self.connected:
            return False
        info = client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False  # connection lost: resent from the spool after the reconnect
        self.sent += 1
        with self._lock:
            self._cursor = message.id
            if self._early.pop(info.mid, None) is not None:
                self._spool.ack(message.id)
            else:
                self._inflight[info.mid] = message.id
        return True

    # -- callbacks (paho's network thread) ----------------------------------------------------
    @guarded
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._give_up(f"MQTT broker {self.cfg.host}:{self.cfg.port} refused the connection: {reason} "
                          "(check mqtt.username and the password)")
            client.disconnect()
            return
        with self._lock:  # a new session: resend everything not yet acknowledged, in order
            self._inflight.clear()
            self._early.clear()
            self._cursor = 0
        self.connects += 1
        self._connected.set()
        logger.info("MQTT connected to %s:%d", self.cfg.host, self.cfg.port)
        client.publish(self.status_topic, contract.STATUS_ONLINE, qos=1, retain=True)
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        for hook in self.on_connected:
            try:
                hook()
            except Exception:
                logger.exception("on-connect hook failed")
        with self._wake:
            self._wake.notify_all()

    @guarded
    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._stop.is_set():
            logger.warning("MQTT disconnected (%s); reconnecting, predictions are kept", reason)

    @guarded
    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            spool_id = self._inflight.pop(mid, None)
            if spool_id is None:
                # Either an ack that beat _send_one to the lock, or a message sent outside the spool
                # (status, discovery). Keep it briefly; stale entries must not match a reused mid.
                now = time.monotonic()
                self._early[mid] = now
                if len(self._early) > 64:
                    self._early = {m: t for m, t in self._early.items() if now - t < EARLY_ACK_TTL_S}
        if spool_id is not None:
            self._spool.ack(spool_id)
            self.acked += 1
            with self._wake:
                self._wake.notify_all()

    @guarded
    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        for pattern, handler in self._subscriptions.items():
            if mqtt.topic_matches_sub(pattern, message.topic):
                handler(message.topic, bytes(message.payload))
