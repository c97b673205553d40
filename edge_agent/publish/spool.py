"""Store and forward: every QoS ≥ 1 message waits here until the broker acknowledges it.

Why not paho's own queue: it is unbounded by default and gone on restart, QoS 0 sent while
disconnected is dropped, and after a reconnect it can resend out of order. The spool is read
strictly in id (= insertion) order; a message leaves it only when the broker's PUBACK arrives.

**Sparing the SD card (group commit).** A new message is first held in memory. The spool's
writer thread commits, every :data:`COMMIT_EVERY_S`, the messages that have waited longer than
:data:`COMMIT_DELAY_S` without an acknowledgement, all in one transaction (and deletes the
acknowledged ones already on disk in the same transaction). With a healthy broker a PUBACK comes
back in milliseconds, so a message never touches the disk at all: the spool writes nothing while
the broker is up. Ids are assigned in memory (no AUTOINCREMENT bookkeeping).

**Loss bound.** Across ``kill -9`` or a power cut the agent loses at most the messages it was
given in the last :data:`LOSS_BOUND_S` (0.75 s) before the kill that the broker had not yet
acknowledged; everything older is on disk (WAL, ``synchronous=FULL``: each group commit is
fsynced, so this holds across a power cut too, given storage that honours fsync). A message
acknowledged by the broker but whose delete was not yet committed is sent again after a restart
(at least once: consumers deduplicate on ``run`` + ``seq``).

**Bounds.** At most ``max_messages`` and ``max_age_s``; when it must drop, it drops the oldest,
counts them in ``dropped`` and says why (full, or too old) in a rate-limited log line.

**Self-healing.** A spool file that is corrupt ("database disk image is malformed", not a
database) or foreign (tables that are not ours) is renamed aside with one log line and a fresh
one is started. A file that cannot be written (read-only, disk full) makes the spool keep
messages in memory, within the same bounds, and the disk is tried again every
:data:`DISK_RETRY_S`. A row that can never be sent (a NULL payload, a topic the broker or paho
refuses) is moved to the ``dead`` table (a dead letter), counted in ``dead``, and the queue goes on.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Final, Protocol

from .throttle import Throttle

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGES: Final = 100_000  # ~30 MB of predictions: days of a 1 msg/s stream
DEFAULT_MAX_AGE_S: Final = 7 * 24 * 3600.0
AGE_CHECK_EVERY_S: Final = 60.0
COMMIT_DELAY_S: Final = 0.5  # a message unacknowledged this long is written to disk
COMMIT_EVERY_S: Final = 0.25  # how often the writer thread commits
LOSS_BOUND_S: Final = COMMIT_DELAY_S + COMMIT_EVERY_S  # what kill -9 / power loss can lose: the last 0.75 s
DISK_RETRY_S: Final = 60.0  # after the disk failed, try it again this often
DEAD_MAX_ROWS: Final = 1000  # dead letters kept for a person to look at (edge-agent doctor)
MAX_TOPIC_BYTES: Final = 65535  # MQTT's limit (a UTF-8 string with a 16-bit length)
SCHEMA_VERSION: Final = 2
PAGE_BYTES: Final = 1024  # predictions are ~0.4 KB; SQLite's 4 KB default writes more per commit
COLUMNS: Final = ("id", "topic", "payload", "qos", "retain", "created")
# No NOT NULL and no AUTOINCREMENT: rows are checked when read (a bad row is a dead letter, not a
# crash) and ids come from memory.
OUTBOX_SQL: Final = "CREATE TABLE outbox (id INTEGER PRIMARY KEY, topic, payload, qos, retain, created)"
DEAD_SQL: Final = ("CREATE TABLE IF NOT EXISTS dead (id INTEGER, topic, payload, qos, retain, created, "
                   "reason TEXT, moved REAL)")
CORRUPT_ERRORS: Final = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created: float


class SpoolFull(Exception):
    """Kept for callers of the old API; the spool no longer raises it (it falls back itself)."""


class Spool(Protocol):
    dropped: int
    dead: int

    def put(self, topic: str, payload: bytes, qos: int, retain: bool) -> int: ...

    def after(self, cursor: int, limit: int) -> list[Message]: ...

    def ack(self, message_id: int) -> None: ...

    def dead_letter(self, message: Message, reason: str) -> None: ...

    def depth(self) -> int: ...

    def last_id(self) -> int: ...

    def last_id_before(self, ts: float) -> int: ...

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


class _Foreign(Exception):
    """The file is a database, but not a spool of ours."""


def _is_corrupt(e: sqlite3.Error) -> bool:
    return getattr(e, "sqlite_errorname", "") in CORRUPT_ERRORS or type(e) is sqlite3.DatabaseError


class SqliteSpool:
    """The spool: recent messages in memory, older unacknowledged ones in SQLite at ``path``
    (``path=None``: memory only). Thread-safe; its writer thread does the group commits."""

    def __init__(self, path: Path | None, max_messages: int = DEFAULT_MAX_MESSAGES,
                 max_age_s: float = DEFAULT_MAX_AGE_S, first_id: int = 1) -> None:
        self.path = path
        self.max_messages = max_messages
        self.max_age_s = max_age_s
        self.dropped = 0
        self.dead = 0
        self.commits = 0  # group commits written: 0 while the broker keeps up
        self.set_aside: list[Path] = []
        self._log = Throttle(logger)
        self._lock = threading.RLock()
        self._mem: collections.OrderedDict[int, Message] = collections.OrderedDict()
        self._mem_at: dict[int, float] = {}  # id → monotonic time of put
        self._disk = 0  # rows in the file
        self._gone: set[int] = set()  # acknowledged ids still in the file: deleted at the next commit
        self._next = first_id
        self._next_age_check = 0.0
        self._db: sqlite3.Connection | None = None
        self._retry_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inherited = 0  # the newest id of the messages from before this process
        if path is not None:
            self._open_disk(first=True)
            self._inherited = self._next - 1 if self._disk else 0
            self._thread = threading.Thread(target=self._writer, name="spool-writer", daemon=True)
            self._thread.start()

    # -- opening ------------------------------------------------------------------------------
    def _connect(self, path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=5)
        try:
            # a new file: small pages, so a group commit of a few predictions writes ~6 KB, not ~9 KB
            db.execute(f"PRAGMA page_size={PAGE_BYTES}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a group commit is fsynced: durable across power loss
            db.execute("PRAGMA journal_size_limit=1048576")
            check = db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed ({check})")
            tables = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            columns = tuple(r[1] for r in db.execute("PRAGMA table_info(outbox)")) if "outbox" in tables else ()
            ours = {"outbox", "dead"}
            if not tables:
                db.execute("BEGIN")
                db.execute(OUTBOX_SQL)
                db.execute(DEAD_SQL)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.execute("COMMIT")
            elif version == SCHEMA_VERSION and columns == COLUMNS and set(tables) <= ours:
                db.execute(DEAD_SQL)
            elif version == 0 and columns == COLUMNS and set(tables) <= ours | {"sqlite_sequence"}:
                self._migrate_v1(db)
            else:
                raise _Foreign(f"not an edge-agent spool (tables: {', '.join(sorted(tables))}; "
                               f"version {version})")
            self._disk = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            top = db.execute("SELECT MAX(id) FROM outbox").fetchone()[0]
            if isinstance(top, int):
                self._next = max(self._next, top + 1)
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _migrate_v1(db: sqlite3.Connection) -> None:
        """The first spool format: the same columns, with AUTOINCREMENT and NOT NULL."""
        db.execute("BEGIN")
        db.execute("ALTER TABLE outbox RENAME TO outbox_v1")
        db.execute(OUTBOX_SQL)
        db.execute("INSERT INTO outbox SELECT id, topic, payload, qos, retain, created FROM outbox_v1")
        db.execute("DROP TABLE outbox_v1")
        db.execute(DEAD_SQL)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")

    def _open_disk(self, first: bool = False) -> bool:
        """Open (or reopen) the file; a corrupt or foreign one is set aside and replaced."""
        assert self.path is not None
        self._retry_at = time.monotonic() + DISK_RETRY_S
        for attempt in range(2):
            try:
                self._db = self._connect(self.path)
                break
            except (_Foreign, sqlite3.DatabaseError) as e:
                if attempt or (isinstance(e, sqlite3.Error) and not isinstance(e, _Foreign) and not _is_corrupt(e)):
                    self._no_disk(e, first)
                    return False
                self._move_aside(str(e))
            except (OSError, sqlite3.Error) as e:
                self._no_disk(e, first)
                return False
        if self._disk:
            logger.info("spool %s: %d predictions from before are waiting to be sent", self.path, self._disk)
        if not first:
            logger.info("spool %s: writable again; the %d predictions kept in memory go to it", self.path,
                        len(self._mem))
        return True

    def _no_disk(self, e: BaseException, first: bool) -> None:
        self._db = None
        self._disk = 0
        self._gone.clear()
        self._log.log("no-disk", logging.ERROR, "spool %s: cannot open for writing (%s); keeping predictions in "
                      "memory (at most %d, they will not survive a restart) and trying the file again every "
                      "%.0f s", self.path, e, self.max_messages, DISK_RETRY_S)

    def _move_aside(self, why: str) -> None:
        """Rename a corrupt or foreign file (with its WAL) aside, for a person to look at."""
        assert self.path is not None
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            try:
                if suffix == "-shm":
                    src.unlink(missing_ok=True)
                elif src.exists():
                    src.replace(Path(str(aside) + suffix))
            except OSError:
                pass
        self.set_aside.append(aside)
        self._disk = 0
        self._gone.clear()
        logger.error("spool %s: %s; moved it aside to %s and started a fresh one", self.path, why, aside.name)

    def _disk_failed(self, e: sqlite3.Error) -> None:
        """A read or write failed after opening: corrupt → set aside and reopen; else memory for now."""
        if _is_corrupt(e):
            self._move_aside(str(e))
            self._open_disk()
            return
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._no_disk(e, first=False)
        self._retry_at = time.monotonic() + DISK_RETRY_S

    # -- the queue ----------------------------------------------------------------------------
    def put(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        with self._lock:
            mid = self._next
            self._next += 1
            self._mem[mid] = Message(mid, topic, payload, qos, retain, time.time())
            self._mem_at[mid] = time.monotonic()
            self._trim()
            return mid

    def depth(self) -> int:
        with self._lock:
            return len(self._mem) + max(0, self._disk - len(self._gone))

    def last_id(self) -> int:
        with self._lock:
            return self._next - 1

    def last_id_before(self, ts: float) -> int:
        """The newest id made before wall-clock ``ts`` or by an earlier run (0 when none): where a
        backlog ends. A previous process's messages are always history, however recent."""
        with self._lock:
            for mid, message in reversed(self._mem.items()):
                if message.created < ts:
                    return max(mid, self._inherited)
            if self._db is not None and self._disk:
                try:
                    top = self._db.execute("SELECT MAX(id) FROM outbox WHERE created < ?", (ts,)).fetchone()[0]
                except sqlite3.Error as e:
                    self._disk_failed(e)
                    return self._inherited
                return max(int(top) if isinstance(top, int) else 0, self._inherited)
            return self._inherited

    def after(self, cursor: int, limit: int) -> list[Message]:
        """Up to ``limit`` messages with an id above ``cursor``, in id order: the file's (older)
        first, then memory's. Acknowledged messages are gone, so only those in flight are skipped."""
        with self._lock:
            self._trim()
            out: list[Message] = []
            if self._db is not None and self._disk - len(self._gone) > 0:
                try:
                    rows = self._db.execute(
                        "SELECT id, topic, payload, qos, retain, created FROM outbox WHERE id > ? ORDER BY id "
                        "LIMIT ?", (cursor, limit + len(self._gone))).fetchall()
                except sqlite3.Error as e:
                    self._disk_failed(e)
                    rows = []
                for row in rows:
                    if row[0] in self._gone:
                        continue
                    reason = unsendable(row[1], row[2], row[3], row[4])
                    if reason is None and not isinstance(row[5], (int, float)):
                        reason = f"created {row[5]!r}"
                    if reason is not None:
                        self._bury_row(row[0], reason)
                        continue
                    payload = row[2].encode() if isinstance(row[2], str) else bytes(row[2])
                    out.append(Message(row[0], row[1], payload, row[3], bool(row[4]), float(row[5])))
                    if len(out) >= limit:
                        return out
            for mid, message in self._mem.items():
                if mid > cursor:
                    out.append(message)
                    if len(out) >= limit:
                        break
            return out

    def ack(self, message_id: int) -> None:
        with self._lock:
            if self._mem.pop(message_id, None) is not None:
                self._mem_at.pop(message_id, None)
            elif self._db is not None and message_id < self._next:
                self._gone.add(message_id)

    def dead_letter(self, message: Message, reason: str) -> None:
        """Move a message that cannot be delivered out of the queue, into the ``dead`` table."""
        with self._lock:
            self.dead += 1
            in_memory = self._mem.pop(message.id, None) is not None
            self._mem_at.pop(message.id, None)
            if self._db is None:
                return
            try:
                self._db.execute("BEGIN")
                if in_memory:
                    self._db.execute("INSERT INTO dead VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                     (message.id, message.topic, message.payload, message.qos, int(message.retain),
                                      message.created, reason, time.time()))
                else:
                    self._move_row(message.id, reason)
                self._trim_dead()
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                self._rollback()
                self._disk_failed(e)

    def _move_row(self, row_id: int, reason: str) -> None:
        assert self._db is not None
        self._db.execute("INSERT INTO dead SELECT id, topic, payload, qos, retain, created, ?, ? FROM outbox "
                         "WHERE id = ?", (reason, time.time(), row_id))
        self._disk -= self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,)).rowcount
        self._gone.discard(row_id)

    def _trim_dead(self) -> None:
        assert self._db is not None
        self._db.execute("DELETE FROM dead WHERE rowid IN (SELECT rowid FROM dead ORDER BY rowid DESC "
                         "LIMIT -1 OFFSET ?)", (DEAD_MAX_ROWS,))

    def _bury_row(self, row_id: int, reason: str) -> None:
        """A row in the file that can never be sent: a dead letter, one line, the queue goes on."""
        assert self._db is not None
        self.dead += 1
        try:
            self._db.execute("BEGIN")
            self._move_row(row_id, reason)
            self._trim_dead()
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback()
            self._disk_failed(e)
            return
        self._log.log("dead", logging.ERROR, "spool %s: message %d cannot be sent (%s); moved it to the "
                      "dead-letter table 'dead'", self.path, row_id, reason)

    def _rollback(self) -> None:
        if self._db is not None and self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _trim(self) -> None:
        """Keep within the bounds: by count on every put (cheap: the count is kept in memory),
        by age once a minute (ids grow with time, so the oldest rows go first)."""
        over = self.depth() - self.max_messages
        full = 0
        if over > 0:
            if self._db is not None and self._disk - len(self._gone) > 0:
                try:
                    self._db.execute("BEGIN")
                    for rid in self._gone:
                        self._db.execute("DELETE FROM outbox WHERE id = ?", (rid,))
                    self._gone.clear()
                    n = self._db.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id "
                                         "LIMIT ?)", (over,)).rowcount
                    self._db.execute("COMMIT")
                    self._disk = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
                    over -= n
                    full += n
                except sqlite3.Error as e:
                    self._rollback()
                    self._disk_failed(e)
            while over > 0 and self._mem:
                mid, _ = self._mem.popitem(last=False)
                self._mem_at.pop(mid, None)
                over -= 1
                full += 1
        old = 0
        now = time.time()
        if now >= self._next_age_check:
            self._next_age_check = now + AGE_CHECK_EVERY_S
            cutoff = now - self.max_age_s
            if self._db is not None and self._disk:
                try:
                    old += self._db.execute("DELETE FROM outbox WHERE created < ?", (cutoff,)).rowcount
                    self._disk = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
                except sqlite3.Error as e:
                    self._disk_failed(e)
            while self._mem and next(iter(self._mem.values())).created < cutoff:
                mid, _ = self._mem.popitem(last=False)
                self._mem_at.pop(mid, None)
                old += 1
        self.dropped += full + old
        if full:
            self._log.log("full", logging.WARNING, "spool %s full (spool.max_messages = %d): dropped the oldest "
                          "predictions, %d in all", self.path or "in memory", self.max_messages, self.dropped)
        if old:
            self._log.log("age", logging.WARNING, "spool %s: dropped %d predictions older than spool.max_age_s = "
                          "%.0f s", self.path or "in memory", old, self.max_age_s)

    # -- the writer thread --------------------------------------------------------------------
    def _writer(self) -> None:
        while not self._stop.wait(COMMIT_EVERY_S):
            try:
                self.commit(COMMIT_DELAY_S)
            except Exception:
                self._log.log("writer", logging.ERROR, "spool %s: the writer failed; retrying", self.path,
                              exc_info=True)

    def commit(self, older_than_s: float) -> int:
        """Write the messages unacknowledged for ``older_than_s`` and delete the acknowledged ones
        in the file, in one transaction. Returns how many were written."""
        with self._lock:
            if self.path is None:
                return 0
            if self._db is None and (time.monotonic() < self._retry_at or not self._open_disk()):
                return 0
            assert self._db is not None
            cutoff = time.monotonic() - older_than_s
            due: list[Message] = []
            for mid, message in self._mem.items():
                if self._mem_at[mid] > cutoff:
                    break
                due.append(message)
            gone = list(self._gone)
            if not due and not gone:
                return 0
            try:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?)",
                                     [(m.id, m.topic, m.payload, m.qos, int(m.retain), m.created) for m in due])
                deleted = self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in gone]).rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                self._rollback()
                self._disk_failed(e)
                return 0
            for m in due:
                del self._mem[m.id]
                del self._mem_at[m.id]
            self._gone.difference_update(gone)
            self._disk += len(due) - max(0, deleted)
            self.commits += 1
            return len(due)

    def close(self) -> None:
        """Write everything not yet acknowledged (it is sent at the next start) and close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if self.path is not None:
                self._retry_at = 0.0
                self.commit(0.0)
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = None


class MemorySpool(SqliteSpool):
    """The same contract in memory: survives a broker outage, not a restart."""

    def __init__(self, max_messages: int = DEFAULT_MAX_MESSAGES, max_age_s: float = DEFAULT_MAX_AGE_S,
                 first_id: int = 1) -> None:
        super().__init__(None, max_messages, max_age_s, first_id)


def open_spool(path: Path | None, max_messages: int, max_age_s: float) -> Spool:
    """The spool at ``path`` (memory only when None). It never fails: a file that cannot be used
    makes it keep messages in memory, saying so once, and try the file again later."""
    if path is None:
        return MemorySpool(max_messages, max_age_s)
    return SqliteSpool(path, max_messages, max_age_s)
