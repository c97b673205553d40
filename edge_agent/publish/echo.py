"""MQTT 3.1.1 cannot say that a broker refused a message: a broker whose ACL refuses a topic
acknowledges the PUBLISH and drops it. So the agent subscribes to the topic of its first message
and warns once when its own message does not come back within :data:`ECHO_TIMEOUT_S` (an ACL
that also forbids reading the topic makes the warning a false alarm; the warning says so). On
MQTT 5 the PUBACK's reason code says it, and this check is not needed.
"""

from __future__ import annotations

import logging
import time
from typing import Final

logger = logging.getLogger(__name__)

ECHO_TIMEOUT_S: Final = 10.0  # 3.1.1: our own message must come back within this long


class EchoCheck:
    """The check's state; :attr:`state` is what the metrics show (``echo_check``). The sender
    asks it before each publish and on each acknowledgement; the caller unsubscribes when
    :meth:`heard` or :meth:`overdue` says the check is over."""

    def __init__(self, protocol: str) -> None:
        self.state = "pending" if protocol != "5" else "not needed (MQTT 5 reports refusals)"
        self.topic: str | None = None
        self._acked_at: float | None = None
        self._subscribed = False

    def restart(self) -> None:
        """A new connection: subscribe again before the next message and wait for its ack."""
        self._subscribed = False
        self._acked_at = None

    def subscribe_first(self, topic: str) -> bool:
        """Before publishing on ``topic``: True when the caller must subscribe to it first (once per
        connection, and before the PUBLISH, so that the message that comes back is ours)."""
        if self.state != "pending" or self._subscribed:
            return False
        self._subscribed = True
        self.topic = topic
        return True

    def acked(self, topic: str) -> None:
        """The broker acknowledged a message on ``topic``: the echo's clock starts."""
        if topic == self.topic and self._acked_at is None:
            self._acked_at = time.monotonic()

    def heard(self, topic: str) -> bool:
        """A message came in on ``topic``: True when it was our echo (the check is over)."""
        if self.state != "pending" or topic != self.topic:
            return False
        self.state = "ok"
        logger.debug("MQTT echo check: our own message on %s came back", topic)
        return True

    def overdue(self) -> bool:
        """Warn once when the broker acknowledged our message but never delivered it; True then
        (the check is over)."""
        acked = self._acked_at
        if self.state != "pending" or acked is None or time.monotonic() - acked < ECHO_TIMEOUT_S:
            return False
        self.state = "no echo"
        logger.warning("MQTT broker acknowledged the message on %s but did not deliver it back to this agent's "
                       "own subscription within %.0f s: an ACL probably refuses this topic (MQTT 3.1.1 cannot "
                       "say; set mqtt.protocol = \"5\" to have every refusal reported). If the ACL only forbids "
                       "reading the topic, this warning is a false alarm.", self.topic, ECHO_TIMEOUT_S)
        return True
