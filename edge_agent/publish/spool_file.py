"""The spool's SQLite file: its schema, opening and checking it, the one migration, setting a
bad file aside, and every statement the spool runs on it, dead letters included.

Plain functions on a connection; the state (what is in memory, how many rows the file holds)
stays with :class:`~.spool.SqliteSpool`, which decides what to do when a function here raises
:class:`sqlite3.Error` (a function that opens a transaction leaves it to :func:`rollback`).

**Self-healing.** A file that is corrupt ("database disk image is malformed", not a database)
or foreign (tables that are not ours) is renamed aside (:func:`set_aside`) and a fresh one is
started; from a corrupt one, :func:`salvage` first reads every row it still can. A row that can
never be sent (a NULL payload, a topic the broker or paho refuses, text that is not UTF-8, what a
bit flip in a row header makes of a payload) is moved to the ``dead`` table (a dead letter), at
most :data:`DEAD_MAX_ROWS` of them, for ``edge-agent doctor`` to show.

**Ages, not dates.** A Raspberry Pi has no real-time clock: it boots with the time it had at
shutdown, and NTP then steps it, by days sometimes. So no decision here compares wall-clock
stamps (``created`` is a stamp for a person). Each row also holds ``made``, a reading of the
spool's own clock, which runs with the monotonic clock while an agent runs and is saved in
``meta.ran`` at every commit; the next run goes on from there. A row's age is the time agents
ran since it was made: a power-off does not age it, and a clock step cannot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, NamedTuple

from .message import Message, unsendable

DEAD_MAX_ROWS: Final = 1000  # dead letters kept for a person to look at (edge-agent doctor)
SCHEMA_VERSION: Final = 3  # 3: ``made`` and ``meta`` (ages on the spool's clock); 2: no AUTOINCREMENT
PAGE_BYTES: Final = 1024  # predictions are ~0.4 KB; SQLite's 4 KB default writes more per commit
COLUMNS_V2: Final = ("id", "topic", "payload", "qos", "retain", "created")
COLUMNS: Final = (*COLUMNS_V2, "made")
# No NOT NULL and no AUTOINCREMENT: rows are checked when read (a bad row is a dead letter, not a
# crash) and ids come from memory.
OUTBOX_SQL: Final = "CREATE TABLE outbox (id INTEGER PRIMARY KEY, topic, payload, qos, retain, created, made)"
DEAD_SQL: Final = ("CREATE TABLE IF NOT EXISTS dead (id INTEGER, topic, payload, qos, retain, created, "
                   "reason TEXT, moved REAL)")
# one row: the spool's clock at the last commit, and how many rows outbox then held (what a
# salvage of a damaged file counts its losses against)
META_SQL: Final = "CREATE TABLE IF NOT EXISTS meta (ran REAL, rows INTEGER)"
CORRUPT_ERRORS: Final = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
FIRST_ID: Final = 0  # ids start at 1 (from memory; AUTOINCREMENT in version 1): a salvage reads from here
PROBE_LIMIT: Final = 64  # doublings past an unreadable id before the rest of the file counts as lost


class NotUtf8:
    """A TEXT value that is not UTF-8 (a bit flip in a row header turns a BLOB into TEXT): read as
    this instead of failing the whole query, so the row alone becomes a dead letter."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return f"text that is not UTF-8 ({len(self.raw)} bytes)"


def _text(raw: bytes) -> str | NotUtf8:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return NotUtf8(raw)


class Opened(NamedTuple):
    db: sqlite3.Connection
    rows: int  # in outbox
    top: int | None  # the highest id in outbox
    ran: float  # the spool's clock when the file was last written


class Salvaged(NamedTuple):
    """What :func:`salvage` read from a damaged file."""

    messages: list[Message]  # in id order
    rows: int | None  # rows the file held at its last commit, when that can still be read
    ran: float  # its clock then (or the newest row's ``made``)
    unreadable: list[tuple[int, int | None]]  # id ranges in damaged pages (None: to the end)


class Foreign(Exception):
    """The file is a database, but not a spool of ours."""


def is_corrupt(e: sqlite3.Error) -> bool:
    return getattr(e, "sqlite_errorname", "") in CORRUPT_ERRORS or type(e) is sqlite3.DatabaseError


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=5)
    db.text_factory = _text
    return db


def connect(path: Path, now_wall: float) -> Opened:
    """Open and check the spool at ``path`` (a new one when the file is empty or absent). Raises
    :class:`Foreign`, :class:`sqlite3.Error` or :class:`OSError`; the connection is closed then.
    ``now_wall`` only dates the rows of a version 2 file, which held dates, not ages."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = _connect(path)
    try:
        # a new file: small pages, so a group commit of a few predictions writes ~6 KB, not ~9 KB
        db.execute(f"PRAGMA page_size={PAGE_BYTES}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a group commit is fsynced: durable across power loss
        db.execute("PRAGMA journal_size_limit=1048576")
        check = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        if check != "ok":
            detail = " ".join(str(check).split())[:300]  # quick_check's report spans lines: one line here
            raise sqlite3.DatabaseError(f"database disk image is malformed ({detail})")
        tables = {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        columns = tuple(str(r[1]) for r in db.execute("PRAGMA table_info(outbox)")) if "outbox" in tables else ()
        ours = {"outbox", "dead", "meta"}
        if not tables:
            db.execute("BEGIN")
            db.execute(OUTBOX_SQL)
            db.execute(DEAD_SQL)
            db.execute(META_SQL)
            db.execute("INSERT INTO meta VALUES (0.0, 0)")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        elif version == SCHEMA_VERSION and columns == COLUMNS and tables <= ours:
            db.execute(DEAD_SQL)
            db.execute(META_SQL)
            if db.execute("SELECT COUNT(*) FROM meta").fetchone()[0] != 1:  # lost, or doubled by hand
                db.execute("BEGIN")
                db.execute("DELETE FROM meta")
                db.execute("INSERT INTO meta SELECT COALESCE(MAX(made), 0.0), COUNT(*) FROM outbox")
                db.execute("COMMIT")
        elif version == 2 and columns == COLUMNS_V2 and tables <= ours:
            migrate_v2(db, now_wall)
        elif version == 0 and columns == COLUMNS_V2 and tables <= ours | {"sqlite_sequence"}:
            migrate_v1(db)
            migrate_v2(db, now_wall)
        else:
            raise Foreign(f"not an edge-agent spool (tables: {', '.join(sorted(tables))}; version {version})")
        ran = clock_of(db)
        if db.execute("SELECT 1 FROM outbox WHERE typeof(made) NOT IN ('integer', 'real') LIMIT 1").fetchone():
            db.execute("UPDATE outbox SET made = ? WHERE typeof(made) NOT IN ('integer', 'real')", (ran,))
        rows = count(db)
        top = db.execute("SELECT MAX(id) FROM outbox").fetchone()[0]
    except BaseException:
        db.close()
        raise
    return Opened(db, rows, top if isinstance(top, int) else None, ran)


def clock_of(db: sqlite3.Connection) -> float:
    """The spool's clock saved in the file (the newest row's ``made`` when ``meta`` lost it)."""
    ran = None
    with contextlib.suppress(sqlite3.Error):
        row = db.execute("SELECT ran FROM meta").fetchone()
        ran = row[0] if row else None
    if not isinstance(ran, (int, float)) or not math.isfinite(ran):
        with contextlib.suppress(sqlite3.Error):
            ran = db.execute("SELECT MAX(made) FROM outbox WHERE typeof(made) IN ('integer', 'real')").fetchone()[0]
    return float(ran) if isinstance(ran, (int, float)) and math.isfinite(ran) else 0.0


def migrate_v1(db: sqlite3.Connection) -> None:
    """The first spool format: the same columns, with AUTOINCREMENT and NOT NULL."""
    db.execute("BEGIN")
    db.execute("ALTER TABLE outbox RENAME TO outbox_v1")
    db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, topic, payload, qos, retain, created)")
    db.execute("INSERT INTO outbox SELECT id, topic, payload, qos, retain, created FROM outbox_v1")
    db.execute("DROP TABLE outbox_v1")
    db.execute(DEAD_SQL)
    db.execute("PRAGMA user_version=2")
    db.execute("COMMIT")


def migrate_v2(db: sqlite3.Connection, now_wall: float) -> None:
    """Version 2 dated its rows with the wall clock: once, here, a date becomes an age (the clock
    may be wrong at this moment: an age is never negative, and what looks too old is dropped by
    the next age check with one line, not silently)."""
    db.execute("BEGIN")
    db.execute("ALTER TABLE outbox ADD COLUMN made")
    db.execute("UPDATE outbox SET made = CASE WHEN typeof(created) IN ('integer', 'real') "
               "THEN MIN(0.0, created - ?) ELSE 0.0 END", (now_wall,))
    db.execute(META_SQL)
    db.execute("INSERT INTO meta SELECT 0.0, COUNT(*) FROM outbox")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    db.execute("COMMIT")


def set_aside(path: Path) -> Path:
    """Rename a corrupt or foreign (closed) file and its WAL aside, for a person to look at; the
    new name. A rename that fails is skipped: the next open then fails and the spool says so."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        try:
            if suffix == "-shm":
                src.unlink(missing_ok=True)
            elif src.exists():
                src.replace(Path(str(aside) + suffix))
        except OSError:
            pass
    return aside


def close(db: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        db.close()


def rollback(db: sqlite3.Connection | None) -> None:
    """End a transaction a failed statement left open (quietly: the file may be gone)."""
    if db is not None and db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


def count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def max_id_made_before(db: sqlite3.Connection, made: float) -> int | None:
    """The newest id made before ``made`` on the spool's clock (None when none was)."""
    top = db.execute("SELECT MAX(id) FROM outbox WHERE made < ?", (made,)).fetchone()[0]
    return int(top) if isinstance(top, int) else None


SELECT_ROW: Final = "SELECT id, topic, payload, qos, retain, created, made FROM outbox"


def rows_after(db: sqlite3.Connection, cursor: int, limit: int) -> list[tuple[Any, ...]]:
    """Up to ``limit`` raw rows with an id above ``cursor``, in id order (check them with :func:`message_of`)."""
    return db.execute(f"{SELECT_ROW} WHERE id > ? ORDER BY id LIMIT ?", (cursor, limit)).fetchall()


def message_of(row: tuple[Any, ...]) -> Message | str:
    """The message in a row, or why it can never be sent (a NULL payload, a bad topic, text that
    is not UTF-8, ...). A ``made`` that is not a number reads as ``made_default``."""
    if isinstance(row[1], NotUtf8):
        return f"a topic of {row[1]!r}"
    if isinstance(row[2], NotUtf8):
        return f"a payload of {row[2]!r}"
    reason = unsendable(row[1], row[2], row[3], row[4])
    if reason is None and (not isinstance(row[5], (int, float)) or isinstance(row[5], bool)):
        reason = f"created {row[5]!r}"
    if reason is not None:
        return reason
    payload = row[2].encode() if isinstance(row[2], str) else bytes(row[2])
    made = row[6] if len(row) > 6 and isinstance(row[6], (int, float)) and math.isfinite(row[6]) else 0.0
    return Message(row[0], row[1], payload, row[3], bool(row[4]), float(row[5]), float(made))


def write(db: sqlite3.Connection, due: Iterable[Message], gone: Iterable[int], ran: float) -> int:
    """One group commit: insert ``due``, delete the acknowledged ``gone``, save the spool's clock
    ``ran``; how many were deleted."""
    db.execute("BEGIN")
    inserted = db.executemany("INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?, ?)",
                              [(m.id, m.topic, m.payload, m.qos, int(m.retain), m.created, m.made)
                               for m in due]).rowcount
    deleted = db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in gone]).rowcount
    db.execute("UPDATE meta SET ran = ?, rows = rows + ?", (ran, max(0, inserted) - max(0, deleted)))
    db.execute("COMMIT")
    return int(deleted)


def drop_oldest(db: sqlite3.Connection, gone: Iterable[int], n: int) -> int:
    """Delete the acknowledged ``gone``, then the ``n`` oldest rows, in one transaction; how many of
    those ``n`` went."""
    db.execute("BEGIN")
    deleted = sum(db.execute("DELETE FROM outbox WHERE id = ?", (rid,)).rowcount for rid in gone)
    dropped = db.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)",
                         (n,)).rowcount
    db.execute("UPDATE meta SET rows = rows - ?", (deleted + dropped,))
    db.execute("COMMIT")
    return int(dropped)


def drop_made_before(db: sqlite3.Connection, made: float) -> int:
    """Delete the rows made before ``made`` on the spool's clock (too old); how many."""
    db.execute("BEGIN")
    dropped = int(db.execute("DELETE FROM outbox WHERE made < ?", (made,)).rowcount)
    db.execute("UPDATE meta SET rows = rows - ?", (dropped,))
    db.execute("COMMIT")
    return dropped


def bury_message(db: sqlite3.Connection, message: Message, reason: str) -> None:
    """A message that never reached ``outbox``, straight into the ``dead`` table."""
    db.execute("BEGIN")
    db.execute("INSERT INTO dead VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (message.id, message.topic, message.payload, message.qos, int(message.retain),
                message.created, reason, time.time()))
    trim_dead(db)
    db.execute("COMMIT")


def bury_row(db: sqlite3.Connection, row_id: int, reason: str) -> int:
    """Move a row of ``outbox`` to ``dead``; how many rows left ``outbox`` (0 or 1)."""
    db.execute("BEGIN")
    db.execute("INSERT INTO dead SELECT id, topic, payload, qos, retain, created, ?, ? FROM outbox "
               "WHERE id = ?", (reason, time.time(), row_id))
    moved = db.execute("DELETE FROM outbox WHERE id = ?", (row_id,)).rowcount
    db.execute("UPDATE meta SET rows = rows - ?", (moved,))
    trim_dead(db)
    db.execute("COMMIT")
    return int(moved)


def trim_dead(db: sqlite3.Connection) -> None:
    """Keep the newest :data:`DEAD_MAX_ROWS` dead letters."""
    db.execute("DELETE FROM dead WHERE rowid IN (SELECT rowid FROM dead ORDER BY rowid DESC "
               "LIMIT -1 OFFSET ?)", (DEAD_MAX_ROWS,))


# -- salvage ----------------------------------------------------------------------------------
def salvage(path: Path) -> Salvaged:
    """Every row of a damaged spool that can still be read, in id order, and the id ranges that
    cannot. SQLite reads a table through its B-tree: a query that reaches a damaged page fails,
    but one that starts past it succeeds, so the rows are read in order and, where a read fails,
    the first id that can be read again is searched for (doubling, then bisecting). Rows that
    read but can never be sent are left out (counted as lost)."""
    messages: list[Message] = []
    unreadable: list[tuple[int, int | None]] = []
    try:
        db = _connect(path)
    except (sqlite3.Error, OSError):
        return Salvaged([], None, 0.0, [(FIRST_ID, None)])
    try:
        recorded: int | None = None
        with contextlib.suppress(sqlite3.Error):
            row = db.execute("SELECT rows FROM meta").fetchone()
            recorded = row[0] if row and isinstance(row[0], int) and row[0] >= 0 else None
        try:
            columns = tuple(str(r[1]) for r in db.execute("PRAGMA table_info(outbox)"))
        except sqlite3.Error:
            columns = ()
        if columns not in (COLUMNS, COLUMNS_V2):
            return Salvaged([], recorded, 0.0, [(FIRST_ID, None)])
        ran = clock_of(db)
        made = "made" if columns == COLUMNS else "NULL"
        select = f"SELECT id, topic, payload, qos, retain, created, {made} FROM outbox WHERE id >= ? ORDER BY id"

        def one(at: int) -> tuple[Any, ...] | None:  # LIMIT 1: never steps onto the next page
            row = db.execute(f"{select} LIMIT 1", (at,)).fetchone()
            return tuple(row) if row is not None else None

        def keep(row: tuple[Any, ...]) -> int | None:
            """Take a row; the id to read from next (None: the last possible id was read)."""
            message = message_of(row)
            if isinstance(message, Message):
                messages.append(message if row[6] is not None else dataclasses.replace(message, made=ran))
            return int(row[0]) + 1 if row[0] < (1 << 63) - 1 else None

        at: int | None = FIRST_ID
        while at is not None:
            try:  # fast: a stream of rows, until it steps onto a damaged page
                for row in db.execute(select, (at,)):
                    at = keep(tuple(row))
                    if at is None:
                        break
                break
            except sqlite3.Error:
                pass  # the stream drops the row it had read when the next one fails: read it alone
            assert at is not None
            try:
                single = one(at)
            except sqlite3.Error:
                resume = _readable_from(one, at)
                unreadable.append((at, None if resume is None else resume - 1))
                at = resume
                continue
            if single is None:
                break
            at = keep(single)
        return Salvaged(messages, recorded, ran, unreadable)
    finally:
        close(db)


def _readable_from(one: Callable[[int], object], bad: int) -> int | None:
    """The smallest id above ``bad`` from which a read succeeds (None: none does)."""
    step, lo = 1, bad
    hi: int | None = None
    for _ in range(PROBE_LIMIT):
        probe = bad + step
        if probe >= 1 << 63:
            break
        try:
            one(probe)
            hi = probe
            break
        except sqlite3.Error:
            lo = probe
            step *= 2
    if hi is None:
        return None
    while hi - lo > 1:  # reads fail from lo, succeed from hi
        mid = (lo + hi) // 2
        try:
            one(mid)
            hi = mid
        except sqlite3.Error:
            lo = mid
    return hi
