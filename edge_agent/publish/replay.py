"""Replay respects the present: where the sender stands in the spool on this connection.

After a (re)connect, messages spooled before it (the backlog) go out behind the live ones, at
most :data:`REPLAY_RATE_PER_S` a second, marked ``"replayed": true`` (the backlog is what was made
over :data:`REPLAYED_AFTER_S` before the connect); once the backlog is drained the newest live
message of each replayed topic is sent again, so a hub ends on the present state, not on history.
This module keeps the cursors and the pacing; :mod:`.sender` does the sending.
"""

from __future__ import annotations

import time
from typing import Final

from .message import Message

REPLAY_RATE_PER_S: Final = 50.0  # backlog messages a second, behind the live ones
# At a (re)connect, what was made longer ago than this is the backlog (sent behind live messages,
# marked replayed); anything newer, e.g. the first predictions while the first connect is under
# way, is live and goes out in order. Counted on the spool's monotonic clock, never the wall clock.
REPLAYED_AFTER_S: Final = 2.0


class Replay:
    """Cursors into the spool (ids up to :attr:`backlog_end` are the backlog), the token bucket that
    paces the backlog, and the newest message sent per topic. Not locked: the sender's lock
    guards it (the tokens are touched by the sender thread alone)."""

    def __init__(self, burst: int) -> None:
        self.burst = burst
        self.live_cursor = 0  # last live spool id handed to paho on this connection
        self.backlog_end = 0  # ids up to this were spooled before this connection: the backlog
        self.backlog_cursor = 0  # last backlog id handed to paho
        self._tokens = float(burst)
        self._tokens_at = time.monotonic()
        self._latest_live: dict[str, Message] = {}  # per topic, sent while a backlog drained
        self._newest: dict[str, Message] = {}  # per topic, the newest spooled message handed to paho
        self._newest_at: dict[str, float] = {}  # ... and when
        self._replayed_topics: set[str] = set()
        self.finished = True  # this connection's backlog is out and its end handled (finish)

    def restart(self, backlog_end: int) -> None:
        """A new connection: everything up to ``backlog_end`` is the backlog, sent again from the start."""
        self.backlog_end = backlog_end
        self.finished = backlog_end == 0
        self.backlog_cursor = 0
        self.live_cursor = backlog_end
        self._latest_live.clear()
        self._replayed_topics.clear()
        self._tokens = float(self.burst)
        self._tokens_at = time.monotonic()

    @property
    def backlog_left(self) -> bool:
        return self.backlog_cursor < self.backlog_end

    def allowance(self, room: int) -> int:
        """How many backlog messages may go now, at most ``room``: the bucket refilled at the rate."""
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._tokens_at) * REPLAY_RATE_PER_S)
        self._tokens_at = now
        return min(room, int(self._tokens))

    def spend(self) -> None:
        self._tokens -= 1

    def skipped(self, message: Message, backlog: bool) -> None:
        """A message that will never be sent (a dead letter): move past it."""
        if backlog:
            self.backlog_cursor = max(self.backlog_cursor, message.id)
        else:
            self.live_cursor = max(self.live_cursor, message.id)

    def sent(self, message: Message, backlog: bool) -> None:
        """A message handed to paho."""
        if backlog:
            self.backlog_cursor = message.id
            self._replayed_topics.add(message.topic)
        else:
            self.live_cursor = message.id
            self._newest[message.topic] = message
            self._newest_at[message.topic] = time.monotonic()
            if self.backlog_cursor < self.backlog_end:
                self._latest_live[message.topic] = message

    def finish(self, end: int) -> list[Message] | None:
        """The backlog up to ``end`` is out: the newest live message of each replayed topic, to send
        again; None when it was already finished. (Once per connection: a cursor that reached the
        end by sending is not yet a finished backlog, hence the flag.)"""
        if self.finished:
            return None
        self.finished = True
        self.backlog_cursor = self.backlog_end = end
        latest = [m for t, m in self._latest_live.items() if t in self._replayed_topics]
        self._latest_live.clear()
        self._replayed_topics.clear()
        return latest

    def newest_before(self, before: float) -> list[Message]:
        """The newest live message of each topic, of those handed to paho before monotonic ``before``."""
        return [m for t, m in self._newest.items() if self._newest_at[t] < before]
