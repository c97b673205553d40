"""The sender thread: moves spooled messages to the broker, a small window in flight, live ones
first and the backlog behind them at the replay rate (:mod:`.replay`), and settles each one with
the broker's answer.

**Refusals are visible.** On MQTT 5 a PUBACK reason code ≥ 0x80 (e.g. 135 "Not authorized" from
an ACL) means the message was not delivered: it is counted (``refused``), logged once per topic,
moved to the spool's dead-letter table (``edge-agent doctor`` shows it) and not retried. MQTT
3.1.1 cannot say: a broker that refuses a topic acknowledges and drops, so :mod:`.echo` checks
that our own first message comes back.

Delivery is tracked with ``on_publish`` (paho's ``wait_for_publish()`` raises for messages queued
while disconnected, even after delivery). The retained ``online`` goes out after the first live
message of a connection, or :data:`ONLINE_WAIT_S` after the connect. The sender never touches the
socket: paho queues what it publishes and the connection thread writes it (:mod:`.connection`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Final

import paho.mqtt.client as mqtt

from .. import contract
from .connection import Connection, reason_text
from .echo import EchoCheck
from .message import Message, Spool
from .replay import REPLAY_RATE_PER_S, REPLAYED_AFTER_S, Replay
from .throttle import Throttle

logger = logging.getLogger(__name__)

WINDOW: Final = 16  # spooled messages in flight at once; a reconnect resends at most this many
REPLAY_BURST: Final = WINDOW
EARLY_ACK_TTL_S: Final = 5.0
ONLINE_WAIT_S: Final = 3.0  # after a connect, "online" waits at most this long for a fresh prediction


class Sender:
    """Spool → broker over ``link``; it registers itself as the link's :class:`~.connection.Listener`."""

    def __init__(self, link: Connection, spool: Spool, stop: threading.Event) -> None:
        self._link = link
        self._spool = spool
        self._stop = stop
        self._wake = threading.Condition()
        self._lock = threading.Lock()
        self._log = Throttle(logger)
        self._inflight: dict[int, tuple[Message, float]] = {}  # paho mid → (message, when sent)
        # mid → (when, reason) of an acknowledgement that beat _send_one to the lock (or of a
        # message sent outside the spool); stale entries must not match a reused mid
        self._early: dict[int, tuple[float, Any]] = {}
        self._replay = Replay(REPLAY_BURST)
        self._online_due: float | None = None  # when "online" must go out at the latest; None: it went out
        self._resends: list[threading.Timer] = []  # resend_newest timers, waited for by settle()
        self._hold_until = 0.0  # monotonic: nothing spooled is handed to paho before this (see hold)
        self._hold_at_connect = 0.0  # seconds to hold from the next connect on (once)
        self.events: frozenset[str] = frozenset()  # topics of events: never repeated on purpose
        self.echo = EchoCheck(link.cfg.protocol)
        self.sent = 0
        self.acked = 0
        self.replayed = 0  # backlog messages sent behind live ones
        self.refused = 0  # MQTT 5: PUBACK reason code >= 0x80, not delivered
        self.refused_topics: dict[str, str] = {}  # topic → the broker's reason
        link.listener = self

    def wake(self) -> None:
        """Something to send (or to stop): do not wait for the next tick."""
        with self._wake:
            self._wake.notify_all()

    def oldest_sent(self, now: float) -> float:
        """When the oldest message still in flight was handed to paho (``now`` when none is)."""
        with self._lock:
            return min((sent for _, sent in self._inflight.values()), default=now)

    def run(self) -> None:
        """The sender thread's loop, until stopped."""
        while not self._stop.is_set():
            with self._wake:
                backlog = self._replay.backlog_left
                wait = 1.0 / REPLAY_RATE_PER_S if backlog and self._link.connected else 0.5
                held = self._hold_until - time.monotonic()
                self._wake.wait(min(wait, held) if held > 0 else wait)
            if self.echo.overdue():
                self._end_echo()
            due = self._online_due
            if due is not None and time.monotonic() >= max(due, self._hold_until):
                self._announce_online()
            if time.monotonic() < self._hold_until:
                continue
            while self._link.connected and not self._stop.is_set():
                if not self._pump():
                    break

    def _pump(self) -> bool:
        """Hand the next messages to paho: live ones first, then the backlog at the replay rate.
        True when something was sent (call again)."""
        with self._lock:
            room = WINDOW - len(self._inflight)
            live_from = max(self._replay.live_cursor, self._replay.backlog_end)
            backlog_from, backlog_end = self._replay.backlog_cursor, self._replay.backlog_end
            finished = self._replay.finished
        if room <= 0:
            return False
        progressed = False
        for message in self._spool.after(live_from, room):
            if not self._send_one(message, backlog=False):
                return False
            progressed = True
            room -= 1
        if room <= 0:
            return progressed
        if backlog_from >= backlog_end:
            if not finished:  # once per connection: read under the lock above, no second lock per pump
                self._backlog_done(backlog_end)
            return progressed
        allowed = self._replay.allowance(room)
        if allowed <= 0:
            return progressed
        batch = [m for m in self._spool.after(backlog_from, allowed) if m.id <= backlog_end]
        if not batch:
            self._backlog_done(backlog_end)
            return progressed
        for message in batch:
            if not self._send_one(message, backlog=True):
                return False
            self._replay.spend()
            progressed = True
        return progressed

    def hold(self, seconds: float, at_connect: bool = False) -> None:
        """Hand nothing spooled to paho for ``seconds`` (from now, or from the next connect on): a
        hub that has just been sent a discovery config subscribes to the new entity's state topic a
        moment later, and a message sent before that is lost to it. A state could be sent again
        (:meth:`resend_newest`), an event (a voice command) cannot, so the messages wait instead;
        they stay in the spool meanwhile and go out in order. ``at_connect``: applied when the next
        connection is set up, before the connection's discovery goes out."""
        if at_connect:
            self._hold_at_connect = seconds
            return
        self._hold_until = max(self._hold_until, time.monotonic() + seconds)
        self.wake()

    def resend_newest(self, delay_s: float) -> None:
        """In ``delay_s``, send the newest live message of each topic again (outside the spool): for
        a hub that has just subscribed (a first discovery, Home Assistant restarted) and would
        otherwise wait for the next change or heartbeat to have a state. Not for :attr:`events`:
        an event sent again would happen twice."""

        # only what went out before the hub could have subscribed, and nothing newer since
        before = time.monotonic() + delay_s / 2

        def send() -> None:
            with self._lock:
                newest = self._replay.newest_before(before)
            for message in (m for m in newest if m.topic not in self.events):
                self._link.send_now(message.topic, message.payload, message.qos, message.retain)

        timer = threading.Timer(delay_s, send)
        timer.daemon = True
        with self._lock:
            self._resends = [t for t in self._resends if t.is_alive()] + [timer]
        timer.start()

    def settle(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for the resends still due: a run that stops within a moment
        of a first discovery would otherwise say offline before the hub, which subscribes to a new
        entity's state topic a moment after its config, ever had the state."""
        deadline = time.monotonic() + timeout
        with self._lock:
            pending = [t for t in self._resends if t.is_alive()]
        for timer in pending:
            timer.join(max(0.0, deadline - time.monotonic()))

    def _backlog_done(self, end: int) -> None:
        """The backlog is out: send the newest live message of each replayed topic again (not an
        event's), so a hub's state is the present one, not the last replayed one."""
        with self._lock:
            latest = self._replay.finish(end)
        if latest is None:
            return
        for message in (m for m in latest if m.topic not in self.events):
            self._link.send_now(message.topic, message.payload, message.qos, message.retain)
        logger.info("replay done: %d messages from the spool sent behind the live ones", self.replayed)

    def _send_one(self, message: Message, backlog: bool) -> bool:
        client = self._link.client
        if client is None or not self._link.connected or time.monotonic() < self._hold_until:
            return False
        payload = message.payload
        if backlog:
            payload = contract.mark_replayed(payload)
        if self.echo.subscribe_first(message.topic):
            client.subscribe(message.topic, qos=0)  # sent before the PUBLISH: the echo is ours
        try:
            info = client.publish(message.topic, payload, qos=message.qos, retain=message.retain)
        except (ValueError, TypeError) as e:  # paho refuses it (topic too long, wildcard): it never will send it
            self._bury(message, f"paho refused it ({e})")
            with self._lock:
                self._replay.skipped(message, backlog)
            return True
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False  # connection lost: resent from the spool after the reconnect
        self.sent += 1
        if backlog:
            self.replayed += 1
        elif self._online_due is not None:
            self._announce_online()  # after this fresh message: the broker keeps the order
        with self._lock:
            self._replay.sent(message, backlog)
            early = self._early.pop(info.mid, None)
            if early is None:
                self._inflight[info.mid] = (message, time.monotonic())
        if early is not None:
            self._settle(message, early[1])
        return True

    def _announce_online(self) -> None:
        self._online_due = None
        client = self._link.client
        if client is not None and self._link.connected:
            client.publish(self._link.status_topic, contract.STATUS_ONLINE, qos=1, retain=True)

    def _settle(self, message: Message, reason: Any) -> None:
        """The broker's answer to one spooled message: delivered, or refused (MQTT 5)."""
        if reason is not None and getattr(reason, "is_failure", False):
            self._refused(message, reason)
        else:
            self._spool.ack(message.id)
            self.acked += 1
            self.echo.acked(message.topic)
        self.wake()

    def _refused(self, message: Message, reason: Any) -> None:
        self.refused += 1
        text = reason_text(reason)
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

    def _end_echo(self) -> None:
        if self.echo.topic is not None:
            self._link.unsubscribe_unwanted(self.echo.topic)

    # -- what the connection tells us (paho's network thread) ---------------------------------
    def new_session(self) -> None:
        with self._lock:  # resend everything not yet acknowledged, backlog behind live
            self._inflight.clear()
            self._early.clear()
            # the spool's clock, not the wall clock: after NTP steps a Pi's clock back an hour, an
            # hour-old backlog must still be the backlog (marked replayed, paced)
            self._replay.restart(self._spool.last_id_older_than(REPLAYED_AFTER_S))
            self.echo.restart()
            if self._hold_at_connect > 0:  # before the connect hooks send the discovery
                self._hold_until = time.monotonic() + self._hold_at_connect
                self._hold_at_connect = 0.0
            # "online" follows the first live message of this connection (or ONLINE_WAIT_S): a hub
            # that marks the entity available on it then shows a fresh state, not the last run's
            self._online_due = time.monotonic() + ONLINE_WAIT_S

    def ready(self) -> None:
        self.wake()

    def on_publish(self, mid: int, reason: Any) -> None:
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

    def on_message(self, topic: str) -> None:
        if self.echo.heard(topic):
            self._end_echo()
