"""What the publisher hands the spool and reads back: the message, the :class:`Spool` interface,
and which messages can never be sent.

Its own module so that the spool implementations and the publisher share one definition without
the publisher importing the SQLite code it does not need.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final, Protocol

MAX_TOPIC_BYTES: Final = 65535  # MQTT's limit (a UTF-8 string with a 16-bit length)


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """``created``: the wall clock when it was made, a stamp for a person only (a Pi's clock steps);
    ``made``: the spool's own clock then (monotonic, carried across restarts), what ages are
    counted on."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created: float
    made: float = 0.0


class SpoolFull(Exception):
    """Kept for callers of the old API; the spool no longer raises it (it falls back itself)."""


class Spool(Protocol):
    """Read strictly in id (= insertion) order; a message leaves only on ``ack`` or ``dead_letter``."""

    dropped: int
    dead: int

    def put(self, topic: str, payload: bytes, qos: int, retain: bool) -> int: ...

    def after(self, cursor: int, limit: int) -> list[Message]: ...

    def ack(self, message_id: int) -> None: ...

    def dead_letter(self, message: Message, reason: str) -> None: ...

    def depth(self) -> int: ...

    def last_id(self) -> int: ...

    def last_id_older_than(self, age_s: float) -> int: ...

    def close(self) -> None: ...


def unsendable(topic: Any, payload: Any, qos: Any, retain: Any) -> str | None:
    """Why a message can never be published (None: it can). Checks what paho and MQTT refuse."""
    if not isinstance(topic, str) or not topic:
        return "no topic"
    if any(c in topic for c in "+#\x00"):
        return "a wildcard or NUL in the topic"
    if len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        return f"a topic over {MAX_TOPIC_BYTES} bytes"
    if not isinstance(payload, (bytes, str)):
        return "no payload" if payload is None else f"a payload of type {type(payload).__name__}"
    if isinstance(qos, bool) or qos not in (0, 1, 2):
        return f"QoS {qos!r}"
    if retain not in (0, 1):
        return f"retain {retain!r}"
    return None
