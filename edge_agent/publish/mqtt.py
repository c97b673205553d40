"""MQTT publisher (paho-mqtt 2.x, callback API v2; MQTT 3.1.1 or 5) with store and forward.

Boring on purpose: a retained ``status`` of ``online`` with a last will of ``offline``, QoS 1 by
default, TLS that verifies the broker, reconnection with backoff that never blocks inference,
and every QoS ≥ 1 message kept in a spool (:mod:`.spool`) until the broker acknowledges it.

Three threads, each with one job: the caller's (``publish`` only writes to the spool), the
connection thread (connect, run paho's network loop, reconnect with backoff) and the sender
(moves spooled messages to the broker, a small window in flight). Both of ours run under a
supervisor: an exception is logged (rate-limited) and the loop restarts; one that keeps failing,
or a thread that is gone, makes :attr:`MqttPublisher.fatal` say so, and the run loop exits on it.

We run paho's network loop ourselves with ``reconnect_on_failure=False`` and build a fresh
client for every connection, because paho's automatic retry swallows the reason a connection
failed and its own queue resends stale messages out of order after a reconnect.

**Transient or fatal.** What a restart cannot fix ends the agent with one line (exit 2): an
untrusted certificate or failed TLS handshake, and the CONNACK refusals in :data:`FATAL_CONNACK`
(unsupported protocol version, client id not valid, malformed/protocol error, bad authentication
method, will topic invalid, packet too large, ...). Everything else is retried with backoff and
reported in :attr:`state` and the metrics: an unreachable broker, and the refusals a broker gives
while it or its auth backend restarts — "bad user name or password" (3.1.1 code 4), "not
authorized" (5), "server unavailable" (3), busy, quota, rate, banned. A wrong password therefore
does not stop the unit: the agent logs an ERROR at once and every ten minutes while it lasts, and
keeps every prediction in the spool until the login works.

**Refusals are visible.** On MQTT 5 a PUBACK reason code ≥ 0x80 (e.g. 135 "Not authorized" from
an ACL) means the message was not delivered: it is counted (``refused``), logged once per topic,
moved to the spool's dead-letter table (``edge-agent doctor`` shows it) and not retried. MQTT
3.1.1 cannot say: a broker that refuses a topic acknowledges and drops. So on 3.1.1 the agent
subscribes to the topic of its first message and warns once when its own message does not come
back within :data:`ECHO_TIMEOUT_S` (an ACL that also forbids reading the topic makes the warning
a false alarm; the warning says so).

**Replay respects the present.** After a (re)connect, messages spooled before it (the backlog) go
out behind the live ones, at most :data:`REPLAY_RATE_PER_S` a second, marked ``"replayed": true``
(the backlog is what was made over :data:`REPLAYED_AFTER_S` before the connect); once the backlog
is drained the newest live message of each replayed topic is sent again, so a hub ends on the
present state, not on history.

Known paho traps handled: an exception in a callback kills paho's network loop while
``is_connected()`` still says True, so every callback is guarded and our thread watches the
loop; ``wait_for_publish()`` raises for messages queued while disconnected even after delivery,
so delivery is tracked with ``on_publish``; and ``publish()`` called from another thread while
our thread runs the loop writes to the socket *in the caller's thread* (paho only defers the write
when it owns the thread, ``loop_start``), so with TLS two threads would drive one OpenSSL object at
once (SSL_read in the loop, SSL_write in the sender; CPython releases the GIL in both), which
corrupts the heap (seen as ``malloc(): invalid size`` and SIGABRT). Only the connection thread
touches the socket: a no-op ``on_socket_register_write`` makes paho queue every packet, and
:func:`run_network_loop` uses ``Client.loop()``, whose socket pair wakes ``select`` when one is
queued.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

import paho.mqtt.client as mqtt

from .. import contract
from ..config import MqttConfig
from ..mqtt_client import make_client
from .message import Message, Spool, unsendable
from .spool import MemorySpool
from .throttle import Throttle

logger = logging.getLogger(__name__)

BACKOFF_MIN_S: Final = 1.0
BACKOFF_MAX_S: Final = 30.0
WINDOW: Final = 16  # spooled messages in flight at once; a reconnect resends at most this many
EARLY_ACK_TTL_S: Final = 5.0
MAX_PAYLOAD_BYTES: Final = 64 * 1024  # a prediction is < 1 KiB; anything near this is a bug
REPLAY_RATE_PER_S: Final = 50.0  # backlog messages a second, behind the live ones
REPLAY_BURST: Final = WINDOW
# At a (re)connect, what was made longer ago than this is the backlog (sent behind live messages,
# marked replayed); anything newer, e.g. the first predictions while the first connect is under
# way, is live and goes out in order.
REPLAYED_AFTER_S: Final = 2.0
ECHO_TIMEOUT_S: Final = 10.0  # 3.1.1: our own message must come back within this long
STUCK_S: Final = 60.0  # connected, yet the oldest message in flight is unacknowledged this long: unhealthy
ONLINE_WAIT_S: Final = 3.0  # after a connect, "online" waits at most this long for a fresh prediction
THREAD_RESTARTS: Final = 5  # a thread failing this often within THREAD_RESTART_WINDOW_S is fatal
THREAD_RESTART_WINDOW_S: Final = 60.0
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
    def wrapper(self: MqttPublisher, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception:
            self._log.log(f"callback-{method.__name__}", logging.ERROR, "MQTT callback %s failed",
                          method.__name__, exc_info=True)
            return None

    return wrapper  # type: ignore[return-value]


def _reason_text(reason: Any) -> str:
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
        self._log = Throttle(logger)
        self._inflight: dict[int, tuple[Message, float]] = {}  # paho mid → (message, when sent)
        # mid → (when, reason) of an acknowledgement that beat _send_one to the lock (or of a
        # message sent outside the spool); stale entries must not match a reused mid
        self._early: dict[int, tuple[float, Any]] = {}
        self._live_cursor = 0  # last live spool id handed to paho on this connection
        self._backlog_end = 0  # ids up to this were spooled before this connection: the backlog
        self._backlog_cursor = 0  # last backlog id handed to paho
        self._tokens = float(REPLAY_BURST)
        self._tokens_at = time.monotonic()
        self._latest_live: dict[str, Message] = {}  # per topic, sent while a backlog drained
        self._newest: dict[str, Message] = {}  # per topic, the newest spooled message handed to paho
        self._newest_at: dict[str, float] = {}  # ... and when
        self._replayed_topics: set[str] = set()
        self._fatal: str | None = None
        self._threads: list[threading.Thread] = []
        self._subscriptions: dict[str, Handler] = {}
        self.on_connected: list[Callable[[], None]] = []  # e.g. discovery, info: re-sent on every connect
        self.connects = 0
        self.sent = 0
        self.acked = 0
        self.dropped = 0  # QoS 0 while offline, oversize payloads
        self.replayed = 0  # backlog messages sent behind live ones
        self.refused = 0  # MQTT 5: PUBACK reason code >= 0x80, not delivered
        self.refused_topics: dict[str, str] = {}  # topic → the broker's reason
        self.connect_refusals = 0  # CONNACK refusals retried (bad password while an auth backend restarts)
        self.thread_restarts = 0
        self.state = "starting"  # connected / unreachable: ... / refused: ... / fatal: ...
        self.echo = "pending" if cfg.protocol != "5" else "not needed (MQTT 5 reports refusals)"
        self._echo_topic: str | None = None
        self._echo_acked_at: float | None = None
        self._echo_subscribed = False
        self._online_due: float | None = None  # when "online" must go out at the latest; None: it went out

    # -- public -------------------------------------------------------------------------------
    @property
    def fatal(self) -> str | None:
        """One line when the publisher gave up for good (the run loop raises PublishError on it)."""
        if self._fatal is None and self._threads and not self._stop.is_set():
            for thread in self._threads:
                if not thread.is_alive():
                    self._give_up(f"MQTT {thread.name} thread stopped unexpectedly; nothing would be sent")
                    break
        return self._fatal

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def spool(self) -> Spool:
        return self._spool

    def healthy(self) -> bool:
        """True while predictions leave (or are kept safely in the spool while the broker is away):
        what a service watchdog should be pinged on. False when fatal, when a thread is gone, or
        when connected yet the oldest message in flight has waited over :data:`STUCK_S`."""
        if self.fatal:
            return False
        if not self.connected:
            return True  # the spool keeps them; the connection thread retries
        now = time.monotonic()
        with self._lock:
            oldest = min((sent for _, sent in self._inflight.values()), default=now)
        return now - oldest < STUCK_S

    def metrics(self) -> dict[str, Any]:
        """What the hub adds to its metrics message (and ``doctor`` reads from the spool)."""
        spool = self._spool
        return {"mqtt_state": self.state, "sent": self.sent, "acked": self.acked, "replayed": self.replayed,
                "refused": self.refused, "refused_topics": dict(self.refused_topics),
                "dead_letters": spool.dead, "connect_refusals": self.connect_refusals,
                "thread_restarts": self.thread_restarts, "echo_check": self.echo,
                "spool_commits": getattr(spool, "commits", 0)}

    def start(self) -> None:
        for name, target in (("mqtt-connection", self._run), ("mqtt-sender", self._send_loop)):
            thread = threading.Thread(target=self._supervise, args=(name, target), name=name, daemon=True)
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
            self._log.log("oversize", logging.ERROR, "not publishing %d bytes on %s: over the %d byte limit",
                          len(raw), topic[:200], MAX_PAYLOAD_BYTES)
            return
        why = unsendable(topic, raw, qos, retain)
        if why is not None:
            self.dropped += 1
            self._log.log(f"unsendable-{why}", logging.ERROR, "not publishing on %s: %s", topic[:200], why)
            return
        if qos == 0:
            if not self.send_now(topic, raw, 0, retain):
                self.dropped += 1
            return
        self._spool.put(topic, raw, qos, retain)
        with self._wake:
            self._wake.notify_all()

    def send_now(self, topic: str, data: str | bytes, qos: int, retain: bool) -> bool:
        """Send outside the spool (status, discovery, replies): only while connected."""
        client = self._client
        if client is None or not self.connected:
            return False
        try:
            info = client.publish(topic, data, qos=qos, retain=retain)
        except (ValueError, TypeError) as e:
            self._log.log(f"send-now-{topic[:200]}", logging.ERROR, "cannot publish on %s: %s", topic[:200], e)
            return False
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
            try:
                info = client.publish(self.status_topic, contract.STATUS_OFFLINE, qos=1, retain=True)
                deadline = time.monotonic() + flush_timeout
                while not info.is_published() and time.monotonic() < deadline and self.connected:
                    time.sleep(0.02)
            except (ValueError, RuntimeError):
                pass
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if client is not None:
            client.disconnect()
        for thread in self._threads:
            thread.join(timeout=5)
        self._spool.close()

    # -- supervision --------------------------------------------------------------------------
    def _supervise(self, name: str, target: Callable[[], None]) -> None:
        """Run ``target``; an exception is logged and the loop restarted, unless it keeps failing."""
        failures: list[float] = []
        while not self._stop.is_set() and not self._fatal:
            try:
                target()
                return
            except Exception as e:
                now = time.monotonic()
                failures = [t for t in failures if now - t < THREAD_RESTART_WINDOW_S] + [now]
                self.thread_restarts += 1
                if len(failures) >= THREAD_RESTARTS:
                    logger.exception("MQTT %s failed %d times within %.0f s", name, len(failures),
                                     THREAD_RESTART_WINDOW_S)
                    self._give_up(f"MQTT {name} keeps failing ({type(e).__name__}: {e}); nothing would be sent")
                    return
                self._log.log(f"thread-{name}", logging.ERROR, "MQTT %s failed; restarting it", name,
                              exc_info=True)
                self._stop.wait(1.0)

    # -- connection thread --------------------------------------------------------------------
    def _new_client(self) -> mqtt.Client:
        client = make_client(self.cfg, self.client_id, reconnect_on_failure=False)
        client.max_inflight_messages_set(WINDOW + 8)  # our window plus status and discovery
        client.will_set(self.status_topic, contract.STATUS_OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_socket_register_write = _written_by_the_loop
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
            if self._fatal or self._stop.is_set():
                return
            delay = BACKOFF_MIN_S if self.connects > connects_before else min(delay * 2, BACKOFF_MAX_S)
            self._stop.wait(delay)

    def _give_up(self, reason: str) -> None:
        if self._fatal is None:
            self._fatal = reason
            self.state = f"fatal: {reason}"
            logger.error("%s", reason)

    # -- sender thread ------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                backlog = self._backlog_cursor < self._backlog_end
                self._wake.wait(1.0 / REPLAY_RATE_PER_S if backlog and self.connected else 0.5)
            self._check_echo()
            due = self._online_due
            if due is not None and time.monotonic() >= due:
                self._announce_online()
            while self.connected and not self._stop.is_set():
                if not self._pump():
                    break

    def _pump(self) -> bool:
        """Hand the next messages to paho: live ones first, then the backlog at the replay rate.
        True when something was sent (call again)."""
        with self._lock:
            room = WINDOW - len(self._inflight)
            live_from = max(self._live_cursor, self._backlog_end)
            backlog_from, backlog_end = self._backlog_cursor, self._backlog_end
        if room <= 0:
            return False
        progressed = False
        for message in self._spool.after(live_from, room):
            if not self._send_one(message, backlog=False):
                return False
            progressed = True
            room -= 1
        if room <= 0 or backlog_from >= backlog_end:
            return progressed
        now = time.monotonic()
        self._tokens = min(float(REPLAY_BURST), self._tokens + (now - self._tokens_at) * REPLAY_RATE_PER_S)
        self._tokens_at = now
        allowed = min(room, int(self._tokens))
        if allowed <= 0:
            return progressed
        batch = [m for m in self._spool.after(backlog_from, allowed) if m.id <= backlog_end]
        if not batch:
            self._backlog_done(backlog_end)
            return progressed
        for message in batch:
            if not self._send_one(message, backlog=True):
                return False
            self._tokens -= 1
            progressed = True
        return progressed

    def resend_newest(self, delay_s: float) -> None:
        """In ``delay_s``, send the newest live message of each topic again (outside the spool): for a
        hub that has just subscribed (a first discovery, Home Assistant restarted) and would otherwise
        wait for the next change or heartbeat to have a state."""

        # only what went out before the hub could have subscribed, and nothing newer since
        before = time.monotonic() + delay_s / 2

        def send() -> None:
            with self._lock:
                newest = [m for t, m in self._newest.items() if self._newest_at[t] < before]
            for message in newest:
                self.send_now(message.topic, message.payload, message.qos, message.retain)

        timer = threading.Timer(delay_s, send)
        timer.daemon = True
        timer.start()

    def _backlog_done(self, end: int) -> None:
        """The backlog is out: send the newest live message of each replayed topic again, so a hub's
        state is the present one, not the last replayed one."""
        with self._lock:
            if self._backlog_cursor >= end and self._backlog_end == end:
                return
            self._backlog_cursor = self._backlog_end = end
            latest = [m for t, m in self._latest_live.items() if t in self._replayed_topics]
            self._latest_live.clear()
            self._replayed_topics.clear()
        for message in latest:
            self.send_now(message.topic, message.payload, message.qos, message.retain)
        logger.info("replay done: %d messages from the spool sent behind the live ones", self.replayed)

    def _send_one(self, message: Message, backlog: bool) -> bool:
        client = self._client
        if client is None or not self.connected:
            return False
        payload = message.payload
        if backlog:
            payload = contract.mark_replayed(payload)
        if self.echo == "pending" and not self._echo_subscribed:
            self._echo_subscribed = True
            self._echo_topic = message.topic
            client.subscribe(message.topic, qos=0)  # sent before the PUBLISH: the echo is ours
        try:
            info = client.publish(message.topic, payload, qos=message.qos, retain=message.retain)
        except (ValueError, TypeError) as e:  # paho refuses it (topic too long, wildcard): it never will send it
            self._bury(message, f"paho refused it ({e})")
            with self._lock:
                if backlog:
                    self._backlog_cursor = max(self._backlog_cursor, message.id)
                else:
                    self._live_cursor = max(self._live_cursor, message.id)
            return True
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False  # connection lost: resent from the spool after the reconnect
        self.sent += 1
        if backlog:
            self.replayed += 1
        elif self._online_due is not None:
            self._announce_online()  # after this fresh message: the broker keeps the order
        with self._lock:
            if backlog:
                self._backlog_cursor = message.id
                self._replayed_topics.add(message.topic)
            else:
                self._live_cursor = message.id
                self._newest[message.topic] = message
                self._newest_at[message.topic] = time.monotonic()
                if self._backlog_cursor < self._backlog_end:
                    self._latest_live[message.topic] = message
            early = self._early.pop(info.mid, None)
            if early is None:
                self._inflight[info.mid] = (message, time.monotonic())
        if early is not None:
            self._settle(message, early[1])
        return True

    def _announce_online(self) -> None:
        self._online_due = None
        client = self._client
        if client is not None and self.connected:
            client.publish(self.status_topic, contract.STATUS_ONLINE, qos=1, retain=True)

    def _settle(self, message: Message, reason: Any) -> None:
        """The broker's answer to one spooled message: delivered, or refused (MQTT 5)."""
        if reason is not None and getattr(reason, "is_failure", False):
            self._refused(message, reason)
        else:
            self._spool.ack(message.id)
            self.acked += 1
            if message.topic == self._echo_topic and self._echo_acked_at is None:
                self._echo_acked_at = time.monotonic()
        with self._wake:
            self._wake.notify_all()

    def _refused(self, message: Message, reason: Any) -> None:
        self.refused += 1
        text = _reason_text(reason)
        first = message.topic not in self.refused_topics
        self.refused_topics[message.topic] = text
        if first:
            logger.error("MQTT broker refused the message on %s: %s; it is not delivered (check the broker's "
                         "ACL for this user). Counted in the metrics as 'refused'; the refused messages are in "
                         "the spool's dead-letter table", message.topic, text)
        self._spool.dead_letter(message, f"refused by the broker: {text}")

    def _bury(self, message: Message, reason: str) -> None:
        self._spool.dead_letter(message, reason)
        self._log.log(f"bury-{reason[:40]}", logging.ERROR, "not sending spooled message %d on %s: %s; moved it "
                      "to the spool's dead-letter table", message.id, message.topic[:200], reason)

    def _check_echo(self) -> None:
        """MQTT 3.1.1: warn once when the broker acknowledged our message but never delivered it."""
        acked = self._echo_acked_at
        if self.echo != "pending" or acked is None or time.monotonic() - acked < ECHO_TIMEOUT_S:
            return
        self.echo = "no echo"
        logger.warning("MQTT broker acknowledged the message on %s but did not deliver it back to this agent's "
                       "own subscription within %.0f s: an ACL probably refuses this topic (MQTT 3.1.1 cannot "
                       "say; set mqtt.protocol = \"5\" to have every refusal reported). If the ACL only forbids "
                       "reading the topic, this warning is a false alarm.", self._echo_topic, ECHO_TIMEOUT_S)
        self._end_echo()

    def _end_echo(self) -> None:
        client = self._client
        if client is not None and self._echo_topic is not None and self._echo_topic not in self._subscriptions:
            with contextlib.suppress(ValueError, RuntimeError):
                client.unsubscribe(self._echo_topic)

    # -- callbacks (paho's network thread) ----------------------------------------------------
    @guarded
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            where = f"MQTT broker {self.cfg.host}:{self.cfg.port}"
            text = _reason_text(reason)
            if getattr(reason, "value", None) in FATAL_CONNACK:
                self._give_up(f"{where} refused the connection: {text} (check the mqtt settings)")
            else:
                self.connect_refusals += 1
                self.state = f"refused: {text}"
                self._log.log("connack", logging.ERROR, "%s refused the connection: %s (check mqtt.username and "
                              "the password if this lasts); retrying with backoff, predictions are kept", where,
                              text)
            client.disconnect()
            return
        with self._lock:  # a new session: resend everything not yet acknowledged, backlog behind live
            self._inflight.clear()
            self._early.clear()
            self._backlog_end = self._spool.last_id_before(time.time() - REPLAYED_AFTER_S)
            self._backlog_cursor = 0
            self._live_cursor = self._backlog_end
            self._latest_live.clear()
            self._replayed_topics.clear()
            self._tokens = float(REPLAY_BURST)
            self._tokens_at = time.monotonic()
            self._echo_subscribed = False
            self._echo_acked_at = None
            # "online" follows the first live message of this connection (or ONLINE_WAIT_S): a hub
            # that marks the entity available on it then shows a fresh state, not the last run's
            self._online_due = time.monotonic() + ONLINE_WAIT_S
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
        with self._wake:
            self._wake.notify_all()

    @guarded
    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._stop.is_set():
            self.state = f"disconnected: {reason}"
            logger.warning("MQTT disconnected (%s); reconnecting, predictions are kept", reason)

    @guarded
    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            entry = self._inflight.pop(mid, None)
            if entry is None:
                # Either an ack that beat _send_one to the lock, or a message sent outside the spool
                # (status, discovery). Keep it briefly; stale entries must not match a reused mid.
                now = time.monotonic()
                self._early[mid] = (now, reason)
                if len(self._early) > 64:
                    self._early = {m: e for m, e in self._early.items() if now - e[0] < EARLY_ACK_TTL_S}
        if entry is not None:
            self._settle(entry[0], reason)

    @guarded
    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self.echo == "pending" and message.topic == self._echo_topic:
            self.echo = "ok"
            logger.debug("MQTT echo check: our own message on %s came back", message.topic)
            self._end_echo()
        for pattern, handler in self._subscriptions.items():
            if mqtt.topic_matches_sub(pattern, message.topic):
                handler(message.topic, bytes(message.payload))
