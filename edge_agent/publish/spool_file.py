"""The spool's SQLite file: its schema, opening and checking it, the one migration, setting a
bad file aside, and every statement the spool runs on it, dead letters included.

Plain functions on a connection; the state (what is in memory, how many rows the file holds)
stays with :class:`~.spool.SqliteSpool`, which decides what to do when a function here raises
:class:`sqlite3.Error` (a function that opens a transaction leaves it to :func:`rollback`).

**Self-healing.** A file that is corrupt ("database disk image is malformed", not a database)
or foreign (tables that are not ours) is renamed aside (:func:`set_aside`) and a fresh one is
started. A row that can never be sent (a NULL payload, a topic the broker or paho refuses) is
moved to the ``dead`` table (a dead letter), at most :data:`DEAD_MAX_ROWS` of them, for
``edge-agent doctor`` to show.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from .message import Message, unsendable

DEAD_MAX_ROWS: Final = 1000  # dead letters kept for a person to look at (edge-agent doctor)
SCHEMA_VERSION: Final = 2
PAGE_BYTES: Final = 1024  # predictions are ~0.4 KB; SQLite's 4 KB default writes more per commit
COLUMNS: Final = ("id", "topic", "payload", "qos", "retain", "created")
# No NOT NULL and no AUTOINCREMENT: rows are checked when read (a bad row is a dead letter, not a
# crash) and ids come from memory.
OUTBOX_SQL: Final = "CREATE TABLE outbox (id INTEGER PRIMARY KEY, topic, payload, qos, retain, created)"
DEAD_SQL: Final = ("CREATE TABLE IF NOT EXISTS dead (id INTEGER, topic, payload, qos, retain, created, "
                   "reason TEXT, moved REAL)")
CORRUPT_ERRORS: Final = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


class Foreign(Exception):
    """The file is a database, but not a spool of ours."""


def is_corrupt(e: sqlite3.Error) -> bool:
    return getattr(e, "sqlite_errorname", "") in CORRUPT_ERRORS or type(e) is sqlite3.DatabaseError


def connect(path: Path) -> tuple[sqlite3.Connection, int, int | None]:
    """Open and check the spool at ``path`` (a new one when the file is empty or absent): the
    connection, the rows in ``outbox`` and their highest id (None when there are none). Raises
    :class:`Foreign`, :class:`sqlite3.Error` or :class:`OSError`; the connection is closed then."""
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
            migrate_v1(db)
        else:
            raise Foreign(f"not an edge-agent spool (tables: {', '.join(sorted(tables))}; version {version})")
        rows = count(db)
        top = db.execute("SELECT MAX(id) FROM outbox").fetchone()[0]
    except BaseException:
        db.close()
        raise
    return db, rows, top if isinstance(top, int) else None


def migrate_v1(db: sqlite3.Connection) -> None:
    """The first spool format: the same columns, with AUTOINCREMENT and NOT NULL."""
    db.execute("BEGIN")
    db.execute("ALTER TABLE outbox RENAME TO outbox_v1")
    db.execute(OUTBOX_SQL)
    db.execute("INSERT INTO outbox SELECT id, topic, payload, qos, retain, created FROM outbox_v1")
    db.execute("DROP TABLE outbox_v1")
    db.execute(DEAD_SQL)
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


def max_id_before(db: sqlite3.Connection, ts: float) -> int | None:
    top = db.execute("SELECT MAX(id) FROM outbox WHERE created < ?", (ts,)).fetchone()[0]
    return int(top) if isinstance(top, int) else None


def rows_after(db: sqlite3.Connection, cursor: int, limit: int) -> list[tuple[Any, ...]]:
    """Up to ``limit`` raw rows with an id above ``cursor``, in id order (check them with :func:`message_of`)."""
    return db.execute("SELECT id, topic, payload, qos, retain, created FROM outbox WHERE id > ? ORDER BY id "
                      "LIMIT ?", (cursor, limit)).fetchall()


def message_of(row: tuple[Any, ...]) -> Message | str:
    """The message in a row, or why it can never be sent (a NULL payload, a bad topic, ...)."""
    reason = unsendable(row[1], row[2], row[3], row[4])
    if reason is None and not isinstance(row[5], (int, float)):
        reason = f"created {row[5]!r}"
    if reason is not None:
        return reason
    payload = row[2].encode() if isinstance(row[2], str) else bytes(row[2])
    return Message(row[0], row[1], payload, row[3], bool(row[4]), float(row[5]))


def write(db: sqlite3.Connection, due: Iterable[Message], gone: Iterable[int]) -> int:
    """One group commit: insert ``due``, delete the acknowledged ``gone``; how many were deleted."""
    db.execute("BEGIN")
    db.executemany("INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?)",
                   [(m.id, m.topic, m.payload, m.qos, int(m.retain), m.created) for m in due])
    deleted = db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in gone]).rowcount
    db.execute("COMMIT")
    return int(deleted)


def drop_oldest(db: sqlite3.Connection, gone: Iterable[int], n: int) -> int:
    """Delete the acknowledged ``gone``, then the ``n`` oldest rows, in one transaction; how many of
    those ``n`` went."""
    db.execute("BEGIN")
    for rid in gone:
        db.execute("DELETE FROM outbox WHERE id = ?", (rid,))
    dropped = db.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)",
                         (n,)).rowcount
    db.execute("COMMIT")
    return int(dropped)


def drop_older(db: sqlite3.Connection, cutoff: float) -> int:
    """Delete the rows created before wall-clock ``cutoff``; how many."""
    return int(db.execute("DELETE FROM outbox WHERE created < ?", (cutoff,)).rowcount)


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
    trim_dead(db)
    db.execute("COMMIT")
    return int(moved)


def trim_dead(db: sqlite3.Connection) -> None:
    """Keep the newest :data:`DEAD_MAX_ROWS` dead letters."""
    db.execute("DELETE FROM dead WHERE rowid IN (SELECT rowid FROM dead ORDER BY rowid DESC "
               "LIMIT -1 OFFSET ?)", (DEAD_MAX_ROWS,))
