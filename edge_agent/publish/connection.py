"""The connection to the broker: one thread connects, runs paho's network loop and reconnects
with backoff, and it is the only thread that touches the socket.

We run paho's network loop ourselves with ``reconnect_on_failure=False`` and build a fresh
client for every connection, because paho's automatic retry swallows the reason a connection
failed and its own queue resends stale messages out of order after a reconnect.

**Transient or fatal.** What a restart cannot fix ends the agent with one line (exit 2): an
untrusted certificate or failed TLS handshake, and the CONNACK refusals in :data:`FATAL_CONNACK`
(unsupported protocol version, client id not valid, malformed/protocol error, bad authentication
method, will topic invalid, packet too large, ...). Everything else is retried with backoff and
reported in :attr:`Connection.state` and the metrics: an unreachable broker, and the refusals a
broker gives while it or its auth backend restarts — "bad user name or password" (3.1.1 code 4),
"not authorized" (5), "server unavailable" (3), busy, quota, rate, banned. A wrong password
therefore does not stop the unit: the agent logs an ERROR at once and every ten minutes while it
lasts, and keeps every prediction in the spool until the login works.

Known paho traps handled: an exception in a callback kills paho's network loop while
``is_connected()`` still says True, so every callback is guarded and our thread watches the
loop; ``wait_for_publish()`` raises for messages queued while disconnected even after delivery,
so delivery is tracked with ``on_publish`` (see :mod:`.sender`); and ``publish()`` called from
another thread while our thread runs the loop writes to the socket *in the caller's thread* (paho
only defers the write when it owns the thread, ``loop_start``), so with TLS two threads would
drive one OpenSSL object at once (SSL_read in the loop, SSL_write in the sender; CPython releases
the GIL in both), which corrupts the heap (seen as ``malloc(): invalid size`` and SIGABRT). Only
the connection thread touches the socket: a no-op ``on_socket_register_write`` makes paho queue
every packet, and :func:`run_network_loop` uses ``Client.loop()``, whose socket pair wakes
``select`` when one is queued.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeVar

import paho.mqtt.client as mqtt

from .. import contract
from ..config import MqttConfig
from ..mqtt_client import make_client
from .throttle import Throttle

logger = logging.getLogger(__name__)

BACKOFF_MIN_S: Final = 1.0
BACKOFF_MAX_S: Final = 30.0
REFUSED_LOG_EVERY_S: Final = 600.0
# CONNACK reason codes (paho maps 3.1.1's 1..5 to 0x84, 0x85, 0x88, 0x86, 0x87) that a restart or a
# retry cannot fix: a person must change the config. Every other refusal is retried with backoff.
FATAL_CONNACK: Final = frozenset({
    0x81,  # malformed packet
    0x82,  # protocol error
    0x84,  # unsupported protocol version (3.1.1: 1)
    0x85,  # client identifier not valid (3.1.1: 2)
    0x8C,  # bad authentication method
    0x90,  # topic name invalid (our last will)
    0x95,  # packet too large
    0x99,  # payload format invalid
    0x9A,  # retain not supported (the retained status)
    0x9B,  # QoS not supported
})

F = TypeVar("F", bound=Callable[..., Any])
Handler = Callable[[str, bytes], None]


def guarded(method: F) -> F:
    """Never let an exception escape into paho's network thread."""

    @functools.wraps(method)
    def wrapper(self: Connection, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception:
            self._log.log(f"callback-{method.__name__}", logging.ERROR, "MQTT callback %s failed",
                          method.__name__, exc_info=True)
            return None

    return wrapper  # type: ignore[return-value]


def reason_text(reason: Any) -> str:
    value = getattr(reason, "value", None)
    return f"{reason} ({value})" if value is not None else str(reason)


def _written_by_the_loop(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Registered so that paho queues packets instead of writing them in the publishing thread."""


def run_network_loop(client: mqtt.Client, timeout: float = 1.0) -> mqtt.MQTTErrorCode:
    """paho's ``loop_forever`` without its reconnect, in the calling thread, until the connection
    ends. ``Client.loop()`` (unlike ``loop_forever``) makes the socket pair that wakes ``select``
    when another thread queues a packet, so queued publishes go out at once, written here."""
    rc = mqtt.MQTT_ERR_SUCCESS
    while rc == mqtt.MQTT_ERR_SUCCESS:
        rc = client.loop(timeout)
    return rc


class Listener(Protocol):
    """What the connection tells the sender, from paho's network (= the connection) thread."""

    def new_session(self) -> None:
        """A CONNACK accepted; nothing is sent on the connection yet: forget what was in flight."""

    def ready(self) -> None:
        """Connected, subscribed, the on-connect hooks run: send."""

    def on_publish(self, mid: int, reason: Any) -> None:
        """The broker's answer to message ``mid``."""

    def on_message(self, topic: str) -> None:
        """A message arrived on ``topic`` (before the subscription's handler sees it)."""


class Connection:
    """One broker connection at a time, a fresh paho client for each: :attr:`client` is the
    current one (None before the first connect); :attr:`state` and :attr:`fatal` say how it goes."""

    def __init__(self, cfg: MqttConfig, client_id: str, status_topic: str, stop: threading.Event,
                 max_inflight: int) -> None:
        self.cfg = cfg
        self.client_id = client_id
        self.status_topic = status_topic
        self.listener: Listener | None = None
        self.client: mqtt.Client | None = None
        self.on_connected: list[Callable[[], None]] = []  # e.g. discovery, info: re-sent on every connect
        self.connects = 0
        self.connect_refusals = 0  # CONNACK refusals retried (bad password while an auth backend restarts)
        self.state = "starting"  # connected / unreachable: ... / refused: ... / fatal: ...
        self.fatal: str | None = None
        self._stop = stop
        self._max_inflight = max_inflight
        self._connected = threading.Event()
        self._log = Throttle(logger)
        self._refusal_log = Throttle(logger, REFUSED_LOG_EVERY_S)  # a refused login: at once, then every 10 min
        self._subscriptions: dict[str, Handler] = {}

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Call ``handler(topic, payload)`` for messages on ``topic`` (re-subscribed on reconnect)."""
        self._subscriptions[topic] = handler
        client = self.client
        if client is not None and self.connected:
            client.subscribe(topic, qos=1)

    def unsubscribe_unwanted(self, topic: str) -> None:
        """Drop a subscription no handler asked for (the echo check's)."""
        client = self.client
        if client is not None and topic not in self._subscriptions:
            with contextlib.suppress(ValueError, RuntimeError):
                client.unsubscribe(topic)

    def send_now(self, topic: str, data: str | bytes, qos: int, retain: bool) -> bool:
        """Send outside the spool (status, discovery, replies): only while connected."""
        client = self.client
        if client is None or not self.connected:
            return False
        try:
            info = client.publish(topic, data, qos=qos, retain=retain)
        except (ValueError, TypeError) as e:
            self._log.log(f"send-now-{topic[:200]}", logging.ERROR, "cannot publish on %s: %s", topic[:200], e)
            return False
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def give_up(self, reason: str) -> None:
        if self.fatal is None:
            self.fatal = reason
            self.state = f"fatal: {reason}"
            logger.error("%s", reason)

    # -- the connection thread ----------------------------------------------------------------
    def _new_client(self) -> mqtt.Client:
        client = make_client(self.cfg, self.client_id, reconnect_on_failure=False)
        client.max_inflight_messages_set(self._max_inflight)
        client.will_set(self.status_topic, contract.STATUS_OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_socket_register_write = _written_by_the_loop
        return client

    def run(self) -> None:
        """Connect, run the network loop, reconnect with backoff; until stopped or fatal."""
        host, port = self.cfg.host, self.cfg.port
        delay = BACKOFF_MIN_S
        last_error = None
        while not self._stop.is_set():
            client = self._new_client()
            self.client = client
            try:
                client.connect(host, port, keepalive=self.cfg.keepalive)
            except ssl.SSLCertVerificationError as e:
                self.give_up(f"MQTT broker {host}:{port}: TLS certificate not trusted ({e.verify_message}); "
                             "check mqtt.ca (or --tls-insecure to skip the host name check)")
                return
            except ssl.SSLError as e:
                self.give_up(f"MQTT broker {host}:{port}: TLS handshake failed ({e.reason or e}); "
                             "check mqtt.ca, mqtt.cert and mqtt.key")
                return
            except OSError as e:
                error = e.strerror or str(e) or type(e).__name__
                self.state = f"unreachable: {error}"
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
                run_network_loop(client)
            except Exception:
                self._log.log("loop", logging.ERROR, "MQTT network loop failed; reconnecting", exc_info=True)
            self._connected.clear()
            if self.fatal or self._stop.is_set():
                return
            delay = BACKOFF_MIN_S if self.connects > connects_before else min(delay * 2, BACKOFF_MAX_S)
            self._stop.wait(delay)

    # -- callbacks (paho's network thread) ----------------------------------------------------
    @guarded
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            where = f"MQTT broker {self.cfg.host}:{self.cfg.port}"
            text = reason_text(reason)
            if getattr(reason, "value", None) in FATAL_CONNACK:
                self.give_up(f"{where} refused the connection: {text} (check the mqtt settings)")
            else:
                self.connect_refusals += 1
                self.state = f"refused: {text}"
                self._refusal_log.log("connack", logging.ERROR, "%s refused the connection: %s (check "
                                      "mqtt.username and the password if this lasts); retrying with backoff, "
                                      "predictions are kept", where, text)
            client.disconnect()
            return
        listener = self.listener
        if listener is not None:  # a new session: resend everything not yet acknowledged
            listener.new_session()
        self.connects += 1
        self.state = "connected"
        self._connected.set()
        logger.info("MQTT connected to %s:%d", self.cfg.host, self.cfg.port)
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        for hook in self.on_connected:
            try:
                hook()
            except Exception:
                logger.exception("on-connect hook failed")
        if listener is not None:
            listener.ready()

    @guarded
    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._stop.is_set():
            self.state = f"disconnected: {reason}"
            logger.warning("MQTT disconnected (%s); reconnecting, predictions are kept", reason)

    @guarded
    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        if self.listener is not None:
            self.listener.on_publish(mid, reason)

    @guarded
    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self.listener is not None:
            self.listener.on_message(message.topic)
        for pattern, handler in self._subscriptions.items():
            if mqtt.topic_matches_sub(pattern, message.topic):
                handler(message.topic, bytes(message.payload))
