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

**Clock steps.** A Raspberry Pi has no real-time clock, and NTP steps its clock after boot (back
an hour, forward a week). Nothing here compares wall-clock times: a message's age is counted on
the spool's own clock (the monotonic clock while the agent runs, carried across restarts in the
file as an age, :mod:`.spool_file`), and so is where a backlog ends
(:meth:`SqliteSpool.last_id_older_than`). A clock step neither drops a backlog as too old nor
keeps one past ``max_age_s``; a power-off does not age the spool either.

**Self-healing.** A spool file that is corrupt or foreign is set aside with one log line and a
fresh one is started (:mod:`.spool_file`); the rows still readable in a corrupt one are saved
first and sent, and the line says how many were saved and lost. A file that cannot be written
(read-only, disk full) makes the spool keep messages in memory, within the same bounds, and the
disk is tried again every :data:`DISK_RETRY_S`. A row that can never be sent is a dead letter, counted in ``dead``,
and the queue goes on.

The message type and the :class:`~.message.Spool` interface are in :mod:`.message`.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from . import spool_file
from .message import Message, Spool
from .throttle import Throttle

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGES: Final = 100_000  # ~30 MB of predictions: days of a 1 msg/s stream
DEFAULT_MAX_AGE_S: Final = 7 * 24 * 3600.0
AGE_CHECK_EVERY_S: Final = 60.0
COMMIT_DELAY_S: Final = 0.5  # a message unacknowledged this long is written to disk
COMMIT_EVERY_S: Final = 0.25  # how often the writer thread commits
LOSS_BOUND_S: Final = COMMIT_DELAY_S + COMMIT_EVERY_S  # what kill -9 / power loss can lose: the last 0.75 s
DISK_RETRY_S: Final = 60.0  # after the disk failed, try it again this often


class SqliteSpool:
    """The spool: recent messages in memory, older unacknowledged ones in SQLite at ``path``
    (``path=None``: memory only). Thread-safe; its writer thread does the group commits."""

    def __init__(self, path: Path | None, max_messages: int = DEFAULT_MAX_MESSAGES,
                 max_age_s: float = DEFAULT_MAX_AGE_S, first_id: int = 1,
                 clock: Callable[[], float] | None = None) -> None:
        self.path = path
        self.max_messages = max_messages
        self.max_age_s = max_age_s
        self.dropped = 0  # full, too old, or lost in a damaged file
        self.dead = 0
        self.salvaged = 0  # rows read back from damaged files
        self.lost = 0  # rows a damaged file held that could not be read (also in dropped)
        self.commits = 0  # group commits written: 0 while the broker keeps up
        self.set_aside: list[Path] = []
        self._log = Throttle(logger)
        self._lock = threading.RLock()
        self._clock = clock or time.monotonic  # looked up now: a test may have replaced it
        self._offset = -self._clock()  # the spool's clock, now(), starts at 0 ...
        self._clock_synced = False  # ... until a file says where it had got to
        self._mem: collections.OrderedDict[int, Message] = collections.OrderedDict()
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
            self._inherited = self._next - 1 if self.depth() else 0
            self._thread = threading.Thread(target=self._writer, name="spool-writer", daemon=True)
            self._thread.start()

    # -- the spool's clock --------------------------------------------------------------------
    def now(self) -> float:
        """The spool's clock: seconds agents have run with this spool (monotonic, never a date)."""
        return self._clock() + self._offset

    def _sync_clock(self, ran: float) -> None:
        """A file's clock read ``ran`` when it was last written: the first file sets this clock to
        it, a later one (after a memory fallback) only moves it forward. Messages in memory keep
        their ages either way."""
        delta = ran - self.now()
        if self._clock_synced and delta <= 0:
            return
        self._clock_synced = True
        self._offset += delta
        self._next_age_check += delta
        self._mem = collections.OrderedDict(
            (mid, dataclasses.replace(m, made=m.made + delta)) for mid, m in self._mem.items())

    # -- opening ------------------------------------------------------------------------------
    def _open_disk(self, first: bool = False) -> bool:
        """Open (or reopen) the file; a corrupt or foreign one is set aside and replaced."""
        assert self.path is not None
        self._retry_at = time.monotonic() + DISK_RETRY_S
        for attempt in range(2):
            try:
                opened = spool_file.connect(self.path, time.time())
                self._db, self._disk = opened.db, opened.rows
                if opened.top is not None:
                    self._next = max(self._next, opened.top + 1)
                self._sync_clock(opened.ran)
                break
            except (spool_file.Foreign, sqlite3.DatabaseError) as e:
                if attempt or (isinstance(e, sqlite3.Error) and not isinstance(e, spool_file.Foreign)
                               and not spool_file.is_corrupt(e)):
                    self._no_disk(e, first)
                    return False
                self._move_aside(str(e), salvage=not isinstance(e, spool_file.Foreign))
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

    def _move_aside(self, why: str, salvage: bool) -> None:
        """Rename a corrupt or foreign file (with its WAL) aside, for a person to look at. From a
        corrupt one, the rows still readable are saved first: they wait in memory, ahead of the
        newer messages, and the next group commit writes them to the fresh file."""
        assert self.path is not None
        waiting = self._disk - len(self._gone) if self._db is not None else None  # known while open
        if self._db is not None:
            spool_file.close(self._db)
            self._db = None
        saved = spool_file.salvage(self.path) if salvage else None
        aside = spool_file.set_aside(self.path)
        self.set_aside.append(aside)
        self._disk = 0
        gone, self._gone = self._gone, set()
        if saved is None:
            logger.error("spool %s: %s; moved it aside to %s and started a fresh one", self.path, why, aside.name)
            return
        self._sync_clock(saved.ran)
        kept = [m for m in saved.messages if m.id not in gone and m.id not in self._mem]
        self._mem = collections.OrderedDict([*((m.id, m) for m in kept), *self._mem.items()])
        if kept:
            self._next = max(self._next, kept[-1].id + 1)
        expected = waiting if waiting is not None else saved.rows
        lost = max(0, expected - len(kept)) if expected is not None else None
        counted = f"{lost} lost"
        if lost is None:  # the file's own count was on a damaged page: bound it by the unreadable ids
            ranges = ", ".join(f"{a}-{'end' if b is None else b}" for a, b in saved.unreadable[:5])
            if all(b is not None and a > spool_file.FIRST_ID for a, b in saved.unreadable):
                lost = sum(b - a + 1 for a, b in saved.unreadable if b is not None)
                counted = f"at most {lost} lost (ids {ranges} unreadable)"
            else:
                counted = f"an unknown number lost (ids {ranges} unreadable)"
        self.salvaged += len(kept)
        self.lost += lost or 0
        self.dropped += lost or 0
        logger.error("spool %s: %s; saved %d predictions from it, %s; moved it aside to %s and started a fresh "
                     "one with the saved predictions", self.path, why, len(kept), counted, aside.name)

    def _disk_failed(self, e: sqlite3.Error) -> None:
        """A read or write failed after opening: corrupt → set aside and reopen; else memory for now."""
        if spool_file.is_corrupt(e):
            self._move_aside(str(e), salvage=True)
            self._open_disk()
            return
        if self._db is not None:
            spool_file.close(self._db)
        self._no_disk(e, first=False)
        self._retry_at = time.monotonic() + DISK_RETRY_S

    # -- the queue ----------------------------------------------------------------------------
    def put(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        with self._lock:
            mid = self._next
            self._next += 1
            self._mem[mid] = Message(mid, topic, payload, qos, retain, time.time(), self.now())
            self._trim()
            return mid

    def depth(self) -> int:
        with self._lock:
            return len(self._mem) + max(0, self._disk - len(self._gone))

    def last_id(self) -> int:
        with self._lock:
            return self._next - 1

    def last_id_older_than(self, age_s: float) -> int:
        """The newest id made over ``age_s`` ago (on the spool's clock: a wall-clock step cannot
        move it) or by an earlier run (0 when none): where a backlog ends. A previous process's
        messages are always history, however recent."""
        with self._lock:
            cut = self.now() - age_s
            for mid, message in reversed(self._mem.items()):
                if message.made < cut:
                    return max(mid, self._inherited)
            if self._db is not None and self._disk:
                try:
                    top = spool_file.max_id_made_before(self._db, cut)
                except sqlite3.Error as e:
                    self._disk_failed(e)
                    return self._inherited
                return max(top or 0, self._inherited)
            return self._inherited

    def after(self, cursor: int, limit: int) -> list[Message]:
        """Up to ``limit`` messages with an id above ``cursor``, in id order: the file's (older)
        first, then memory's. Acknowledged messages are gone, so only those in flight are skipped."""
        with self._lock:
            self._trim()
            out: list[Message] = []
            if self._db is not None and self._disk - len(self._gone) > 0:
                try:
                    rows = spool_file.rows_after(self._db, cursor, limit + len(self._gone))
                except sqlite3.Error as e:
                    self._disk_failed(e)
                    rows = []
                for row in rows:
                    if row[0] in self._gone:
                        continue
                    message = spool_file.message_of(row)
                    if isinstance(message, str):
                        self._bury_row(row[0], message)
                        continue
                    out.append(message)
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
                pass
            elif self._db is not None and message_id < self._next:
                self._gone.add(message_id)

    def dead_letter(self, message: Message, reason: str) -> None:
        """Move a message that cannot be delivered out of the queue, into the ``dead`` table."""
        with self._lock:
            self.dead += 1
            in_memory = self._mem.pop(message.id, None) is not None
            if self._db is None:
                return
            try:
                if in_memory:
                    spool_file.bury_message(self._db, message, reason)
                else:
                    self._disk -= spool_file.bury_row(self._db, message.id, reason)
                    self._gone.discard(message.id)
            except sqlite3.Error as e:
                spool_file.rollback(self._db)
                self._disk_failed(e)

    def _bury_row(self, row_id: int, reason: str) -> None:
        """A row in the file that can never be sent: a dead letter, one line, the queue goes on."""
        assert self._db is not None
        self.dead += 1
        try:
            self._disk -= spool_file.bury_row(self._db, row_id, reason)
            self._gone.discard(row_id)
        except sqlite3.Error as e:
            spool_file.rollback(self._db)
            self._disk_failed(e)
            return
        self._log.log("dead", logging.ERROR, "spool %s: message %d cannot be sent (%s); moved it to the "
                      "dead-letter table 'dead'", self.path, row_id, reason)

    def _trim(self) -> None:
        """Keep within the bounds: by count on every put (cheap: the count is kept in memory),
        by age once a minute (ids grow with time, so the oldest rows go first)."""
        over = self.depth() - self.max_messages
        full = 0
        if over > 0:
            if self._db is not None and self._disk - len(self._gone) > 0:
                try:
                    n = spool_file.drop_oldest(self._db, self._gone, over)
                    self._gone.clear()
                    self._disk = spool_file.count(self._db)
                    over -= n
                    full += n
                except sqlite3.Error as e:
                    spool_file.rollback(self._db)
                    self._disk_failed(e)
            while over > 0 and self._mem:
                self._mem.popitem(last=False)
                over -= 1
                full += 1
        old = 0
        now = self.now()
        if now >= self._next_age_check:
            self._next_age_check = now + AGE_CHECK_EVERY_S
            cutoff = now - self.max_age_s
            if self._db is not None and self._disk:
                try:
                    old += spool_file.drop_made_before(self._db, cutoff)
                    self._disk = spool_file.count(self._db)
                except sqlite3.Error as e:
                    spool_file.rollback(self._db)
                    self._disk_failed(e)
            while self._mem and next(iter(self._mem.values())).made < cutoff:
                self._mem.popitem(last=False)
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
            cutoff = self.now() - older_than_s
            due: list[Message] = []
            for message in self._mem.values():
                if message.made > cutoff:
                    break
                due.append(message)
            gone = list(self._gone)
            if not due and not gone:
                return 0
            try:
                deleted = spool_file.write(self._db, due, gone, self.now())
            except sqlite3.Error as e:
                spool_file.rollback(self._db)
                self._disk_failed(e)
                return 0
            for m in due:
                del self._mem[m.id]
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
                try:  # the clock, for the next run to go on from (an age, not a date)
                    spool_file.write(self._db, [], [], self.now())
                except sqlite3.Error:
                    spool_file.rollback(self._db)
                spool_file.close(self._db)
                self._db = None


class MemorySpool(SqliteSpool):
    """The same contract in memory: survives a broker outage, not a restart."""

    def __init__(self, max_messages: int = DEFAULT_MAX_MESSAGES, max_age_s: float = DEFAULT_MAX_AGE_S,
                 first_id: int = 1, clock: Callable[[], float] | None = None) -> None:
        super().__init__(None, max_messages, max_age_s, first_id, clock)


def open_spool(path: Path | None, max_messages: int, max_age_s: float) -> Spool:
    """The spool at ``path`` (memory only when None). It never fails: a file that cannot be used
    makes it keep messages in memory, saying so once, and try the file again later."""
    if path is None:
        return MemorySpool(max_messages, max_age_s)
    return SqliteSpool(path, max_messages, max_age_s)
