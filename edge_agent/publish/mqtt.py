"""MQTT publisher (paho-mqtt 2.x, callback API v2; MQTT 3.1.1 or 5) with store and forward.

Boring on purpose: a retained ``status`` of ``online`` with a last will of ``offline``, QoS 1 by
default, TLS that verifies the broker, reconnection with backoff that never blocks inference,
and every QoS ≥ 1 message kept in a spool (:mod:`.spool`) until the broker acknowledges it.

Three threads, each with one job: the caller's (``publish`` only writes to the spool), the
connection thread (:mod:`.connection`: connect, run paho's network loop, reconnect with backoff;
what is fatal and what is retried) and the sender (:mod:`.sender`: moves spooled messages to the
broker, a small window in flight, the backlog replayed behind live messages by :mod:`.replay`,
refusals made visible, on MQTT 3.1.1 by :mod:`.echo`). This module wires them together and runs
both of ours under a supervisor: an exception is logged (rate-limited) and the loop restarts; one
that keeps failing, or a thread that is gone, makes :attr:`MqttPublisher.fatal` say so, and the
run loop exits on it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import Any, Final

from .. import contract
from ..config import MqttConfig
from .connection import Connection, Handler
from .message import Spool, unsendable
from .sender import WINDOW, Sender
from .spool import MemorySpool
from .throttle import Throttle

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES: Final = 64 * 1024  # a prediction is < 1 KiB; anything near this is a bug
STUCK_S: Final = 60.0  # connected, yet the oldest message in flight is unacknowledged this long: unhealthy
THREAD_RESTARTS: Final = 5  # a thread failing this often within THREAD_RESTART_WINDOW_S is fatal
THREAD_RESTART_WINDOW_S: Final = 60.0


class MqttPublisher:
    def __init__(self, cfg: MqttConfig, device_id: str, task: str, spool: Spool | None = None) -> None:
        self.cfg = cfg
        self.device_id = device_id
        self.task = task
        self.status_topic = contract.status_topic(cfg.topic_prefix, device_id)
        self.client_id = cfg.client_id or f"edge-agent-{device_id}-{task}"
        self._spool: Spool = spool if spool is not None else MemorySpool()
        self._stop = threading.Event()
        self._log = Throttle(logger)
        # our window plus status and discovery
        self._link = Connection(cfg, self.client_id, self.status_topic, self._stop, max_inflight=WINDOW + 8)
        self._sender = Sender(self._link, self._spool, self._stop)
        self._threads: list[threading.Thread] = []
        self.on_connected: list[Callable[[], None]] = self._link.on_connected  # re-sent on every connect
        self.dropped = 0  # QoS 0 while offline, oversize payloads
        self.thread_restarts = 0

    # -- public -------------------------------------------------------------------------------
    @property
    def fatal(self) -> str | None:
        """One line when the publisher gave up for good (the run loop raises PublishError on it)."""
        if self._link.fatal is None and self._threads and not self._stop.is_set():
            for thread in self._threads:
                if not thread.is_alive():
                    self._link.give_up(f"MQTT {thread.name} thread stopped unexpectedly; nothing would be sent")
                    break
        return self._link.fatal

    @property
    def state(self) -> str:
        """connected / unreachable: ... / refused: ... / fatal: ..."""
        return self._link.state

    @property
    def connected(self) -> bool:
        return self._link.connected

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
        return now - self._sender.oldest_sent(now) < STUCK_S

    def metrics(self) -> dict[str, Any]:
        """What the hub adds to its metrics message (and ``doctor`` reads from the spool)."""
        spool, sender = self._spool, self._sender
        return {"mqtt_state": self.state, "sent": sender.sent, "acked": sender.acked, "replayed": sender.replayed,
                "refused": sender.refused, "refused_topics": dict(sender.refused_topics),
                "dead_letters": spool.dead, "connect_refusals": self._link.connect_refusals,
                "thread_restarts": self.thread_restarts, "echo_check": sender.echo.state,
                "spool_commits": getattr(spool, "commits", 0)}

    def start(self) -> None:
        for name, target in (("mqtt-connection", self._link.run), ("mqtt-sender", self._sender.run)):
            thread = threading.Thread(target=self._supervise, args=(name, target), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait_connected(self, timeout: float) -> bool:
        return self._link.wait_connected(timeout)

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Call ``handler(topic, payload)`` for messages on ``topic`` (re-subscribed on reconnect)."""
        self._link.subscribe(topic, handler)

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
        self._sender.wake()

    def send_now(self, topic: str, data: str | bytes, qos: int, retain: bool) -> bool:
        """Send outside the spool (status, discovery, replies): only while connected."""
        return self._link.send_now(topic, data, qos, retain)

    def hold(self, seconds: float, at_connect: bool = False) -> None:
        """Keep spooled messages back for ``seconds``, from now or from the next connect on (see
        :meth:`.sender.Sender.hold`); ``flush`` and ``stop`` wait it out."""
        self._sender.hold(seconds, at_connect)

    def resend_newest(self, delay_s: float) -> None:
        """In ``delay_s``, send the newest live message of each topic again (see :class:`.sender.Sender`)."""
        self._sender.resend_newest(delay_s)

    def mark_events(self, topics: Collection[str]) -> None:
        """Full topics whose messages are events: never sent a second time on purpose (the resend
        after a discovery, the present state after a replay); delivery itself stays at least once."""
        self._sender.events = frozenset(topics)

    @property
    def pending(self) -> int:
        return self._spool.depth()

    def flush(self, timeout: float) -> bool:
        """Wait until the broker acknowledged everything spooled (or the timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending == 0 or self._link.fatal:
                break
            time.sleep(0.02)
        return self.pending == 0

    def stop(self, flush_timeout: float = 3.0) -> None:
        """Send the resends still due (at most ``DISCOVERY_SETTLE_S`` after a discovery), publish
        ``offline``, wait for what is in flight, disconnect cleanly. Whatever the broker has not
        acknowledged stays in the spool for the next start."""
        client = self._link.client
        if client is not None and self.connected:
            self._sender.settle(flush_timeout)  # the state a just-subscribed hub is owed goes out first
            try:
                info = client.publish(self.status_topic, contract.STATUS_OFFLINE, qos=1, retain=True)
                deadline = time.monotonic() + flush_timeout
                while not info.is_published() and time.monotonic() < deadline and self.connected:
                    time.sleep(0.02)
            except (ValueError, RuntimeError):
                pass
        self._stop.set()
        self._sender.wake()
        if client is not None:
            client.disconnect()
        for thread in self._threads:
            thread.join(timeout=5)
        self._spool.close()

    # -- supervision --------------------------------------------------------------------------
    def _supervise(self, name: str, target: Callable[[], None]) -> None:
        """Run ``target``; an exception is logged and the loop restarted, unless it keeps failing."""
        failures: list[float] = []
        while not self._stop.is_set() and not self._link.fatal:
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
                    self._link.give_up(f"MQTT {name} keeps failing ({type(e).__name__}: {e}); nothing would be sent")
                    return
                self._log.log(f"thread-{name}", logging.ERROR, "MQTT %s failed; restarting it", name,
                              exc_info=True)
                self._stop.wait(1.0)
