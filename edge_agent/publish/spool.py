"""Store and forward: every QoS ≥ 1 message waits here until the broker acknowledges it.

Why not paho's own queue: it is unbounded by default and gone on restart, QoS 0 sent while
disconnected is dropped, and after a reconnect it can resend out of order. The spool is an
SQLite table in the state directory (WAL, so a ``kill -9`` loses nothing that was put), read
strictly in insertion order; a message is deleted only when the broker's PUBACK arrives.

It is bounded by count and age; when it must drop, it drops the oldest and counts them. If the
database cannot be written (read-only path, full disk) the publisher falls back to
:class:`MemorySpool` with one clear log line, and keeps going.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Final, Protocol

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGES: Final = 100_000  # ~30 MB of predictions: days of a 1 msg/s stream
DEFAULT_MAX_AGE_S: Final = 7 * 24 * 3600.0
AGE_CHECK_EVERY_S: Final = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created: float


class SpoolFull(Exception):
    """The spool cannot store (disk full, read-only): switch to memory."""


class Spool(Protocol):
    dropped: int

    def put(self, topic: str, payload: bytes, qos: int, retain: bool) -> int: ...

    def after(self, cursor: int, limit: int) -> list[Message]: ...

    def ack(self, message_id: int) -> None: ...

    def depth(self) -> int: ...

    def close(self) -> None: ...


class MemorySpool:
    """The same contract in memory: survives a broker outage, not a restart."""

    def __init__(self, max_messages: int = DEFAULT_MAX_MESSAGES, max_age_s: float = DEFAULT_MAX_AGE_S,
                 first_id: int = 1) -> None:
        self.max_messages = max_messages
        self.max_age_s = max_age_s
        self.dropped = 0
        self._next = first_id
        self._items: collections.OrderedDict[int, Message] = collections.OrderedDict()
        self._lock = threading.Lock()

    def put(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        with self._lock:
            mid = self._next
            self._next += 1
            self._items[mid] = Message(mid, topic, payload, qos, retain, time.time())
            self._trim()
            return mid

    def _trim(self) -> None:
        cutoff = time.time() - self.max_age_s
        while self._items and (len(self._items) > self.max_messages or next(iter(self._items.values())).created
                               < cutoff):
            self._items.popitem(last=False)
            self.dropped += 1

    def after(self, cursor: int, limit: int) -> list[Message]:
        """Acknowledged messages are gone, so only the few in flight are skipped: O(window)."""
        with self._lock:
            self._trim()
            out: list[Message] = []
            for i, message in self._items.items():
                if i > cursor:
                    out.append(message)
                    if len(out) >= limit:
                        break
            return out

    def ack(self, message_id: int) -> None:
        with self._lock:
            self._items.pop(message_id, None)

    def depth(self) -> int:
        with self._lock:
            return len(self._items)

    def close(self) -> None:
        pass


class SqliteSpool:
    """The on-disk spool. One connection shared by the publisher's threads behind a lock."""

    def __init__(self, path: Path, max_messages: int = DEFAULT_MAX_MESSAGES,
                 max_age_s: float = DEFAULT_MAX_AGE_S) -> None:
        self.path = path
        self.max_messages = max_messages
        self.max_age_s = max_age_s
        self.dropped = 0
        self._lock = threading.Lock()
        self._next_age_check = 0.0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a process kill
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
                "payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL, created REAL NOT NULL)"
            )
        except (OSError, sqlite3.Error) as e:
            raise SpoolFull(f"spool {path}: cannot open for writing ({e})") from None
        self._count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        pending = self._count
        if pending:
            logger.info("spool %s: %d predictions from before are waiting to be sent", path, pending)

    def put(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        with self._lock:
            try:
                cur = self._db.execute(
                    "INSERT INTO outbox (topic, payload, qos, retain, created) VALUES (?, ?, ?, ?, ?)",
                    (topic, payload, qos, int(retain), time.time()),
                )
                self._count += 1
                self._trim()
            except sqlite3.Error as e:
                raise SpoolFull(f"spool {self.path}: cannot write ({e})") from None
            return int(cur.lastrowid or 0)

    def _trim(self) -> None:
        """Keep within the bounds: by count on every put (cheap: the count is kept in memory),
        by age once a minute (ids grow with time, so the oldest rows go first)."""
        dropped = 0
        over = self._count - self.max_messages
        if over > 0:
            dropped += self._db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (over,)).rowcount
        now = time.time()
        if now >= self._next_age_check:
            self._next_age_check = now + AGE_CHECK_EVERY_S
            dropped += self._db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE created < ? ORDER BY id)",
                (now - self.max_age_s,)).rowcount
        if dropped > 0:
            self._count -= dropped
            self.dropped += dropped
            logger.warning("spool %s full: dropped the %d oldest predictions (%d in all)", self.path, dropped,
                           self.dropped)

    def after(self, cursor: int, limit: int) -> list[Message]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain, created FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (cursor, limit),
            ).fetchall()
        return [Message(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5]) for r in rows]

    def ack(self, message_id: int) -> None:
        with self._lock:
            try:
                self._count -= self._db.execute("DELETE FROM outbox WHERE id = ?", (message_id,)).rowcount
            except sqlite3.Error as e:  # a full disk can refuse even a delete's journal
                logger.warning("spool %s: cannot delete an acknowledged message (%s)", self.path, e)

    def depth(self) -> int:
        return self._count

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_spool(path: Path | None, max_messages: int, max_age_s: float) -> Spool:
    """The on-disk spool at ``path``, or a memory spool (with one clear line saying why)."""
    if path is None:
        return MemorySpool(max_messages, max_age_s)
    try:
        return SqliteSpool(path, max_messages, max_age_s)
    except SpoolFull as e:
        logger.error("%s; keeping predictions in memory instead (they will not survive a restart)", e)
        return MemorySpool(max_messages, max_age_s)
