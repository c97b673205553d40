"""The spool in the field, on real SQLite files: it spares the disk while the broker keeps up,
heals a corrupt or foreign file, moves rows that can never be sent aside, and comes back to the
disk after a memory fallback."""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import time
from pathlib import Path

import pytest

from edge_agent.publish.spool import COMMIT_DELAY_S, DISK_RETRY_S, SqliteSpool, open_spool


def _rows(path: Path, table: str = "outbox") -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()


def test_messages_acknowledged_quickly_never_touch_the_disk(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = SqliteSpool(path)
    wal = Path(str(path) + "-wal")
    before = (path.stat().st_size, wal.stat().st_size if wal.exists() else 0)
    for _i in range(200):
        spool.ack(spool.put("t", b"x" * 400, 1, False))
    time.sleep(COMMIT_DELAY_S * 3)  # long enough for the writer to have committed anything due
    assert spool.commits == 0 and spool.depth() == 0
    assert (path.stat().st_size, wal.stat().st_size if wal.exists() else 0) == before, "the file was written"
    spool.close()
    assert _rows(path) == []


def test_unacknowledged_messages_reach_the_disk_in_group_commits(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = SqliteSpool(path)
    for i in range(100):
        spool.put("t", b"%d" % i, 1, False)
    deadline = time.monotonic() + 10
    while len(_rows(path)) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r[2] for r in _rows(path)] == [b"%d" % i for i in range(100)]
    assert 1 <= spool.commits <= 10, "a hundred rows are written in a few transactions, not one each"
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert "sqlite_sequence" not in tables, "no AUTOINCREMENT bookkeeping"
    for m in spool.after(0, 40):  # acks of rows on disk are deleted by the next group commit
        spool.ack(m.id)
    assert spool.depth() == 60
    spool.close()
    assert len(_rows(path)) == 60


def test_a_corrupt_spool_file_is_set_aside_and_a_fresh_one_started(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.sqlite"
    spool = SqliteSpool(path)
    for _i in range(3000):
        spool.put("edge-agent/pi/t/prediction", os.urandom(300), 1, False)
    spool.close()
    size = path.stat().st_size
    rng = random.Random(0)
    with path.open("r+b") as f:  # random pages overwritten, as after a power cut on a cheap SD card
        for _ in range(8):
            f.seek(rng.randrange(4096, size - 4096) // 4096 * 4096)
            f.write(os.urandom(4096))
    with caplog.at_level(logging.ERROR):
        again = SqliteSpool(path)
    lines = [r for r in caplog.records if "moved it aside" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert again.set_aside and again.set_aside[0].exists()
    assert again.depth() == 0
    again.put("t", b"new", 1, False)
    assert [m.payload for m in again.after(0, 10)] == [b"new"]
    again.close()
    assert [r[2] for r in _rows(path)] == [b"new"]


@pytest.mark.parametrize("content", ["not a database at all" * 100, "foreign"])
def test_a_foreign_file_is_set_aside(tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.sqlite"
    if content == "foreign":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, body TEXT)")
            db.execute("INSERT INTO outbox (body) VALUES ('someone else''s')")
    else:
        path.write_text(content)
    spool = SqliteSpool(path)
    assert "moved it aside" in caplog.text
    spool.put("t", b"1", 1, False)
    spool.close()
    assert len(_rows(path)) == 1


def test_the_first_spool_format_is_migrated_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with sqlite3.connect(path) as db:  # what the agent wrote before this spool
        db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB "
                   "NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL, created REAL NOT NULL)")
        db.executemany("INSERT INTO outbox (topic, payload, qos, retain, created) VALUES (?, ?, 1, 0, ?)",
                       [("t", b"old%d" % i, time.time()) for i in range(3)])
    spool = SqliteSpool(path)
    assert [m.payload for m in spool.after(0, 10)] == [b"old0", b"old1", b"old2"]
    new = spool.put("t", b"new", 1, False)
    assert new > max(m.id for m in spool.after(0, 3))
    spool.close()


def test_rows_that_can_never_be_sent_are_dead_letters_and_the_queue_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.sqlite"
    SqliteSpool(path).close()
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?)", [
            (1, "ok/1", b"a", 1, 0, time.time()),
            (2, "ok/2", None, 1, 0, time.time()),  # NULL payload
            (3, "x" * 70_000, b"c", 1, 0, time.time()),  # a topic MQTT cannot carry
            (4, "bad/+/wild", b"d", 1, 0, time.time()),
            (5, None, b"e", 1, 0, time.time()),
            (6, "ok/6", b"f", 7, 0, time.time()),  # QoS 7
            (7, "ok/7", b"g", 1, 0, time.time()),
        ])
    spool = SqliteSpool(path)
    assert [m.id for m in spool.after(0, 10)] == [1, 7]
    assert spool.dead == 5 and spool.depth() == 2
    assert [r[0] for r in _rows(path, "dead")] == [2, 3, 4, 5, 6]
    assert "dead-letter" in caplog.text
    spool.close()


def test_memory_fallback_keeps_the_bounds_and_goes_back_to_disk(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.sqlite"
    path.mkdir()  # a folder where the file should be: SQLite cannot open it (even as root)
    spool = open_spool(path, 5, 3600)
    assert "keeping predictions in memory" in caplog.text
    for i in range(8):
        spool.put("t", b"%d" % i, 1, False)
    assert spool.depth() == 5 and spool.dropped == 3
    path.rmdir()  # the disk is usable again
    assert isinstance(spool, SqliteSpool)
    spool._retry_at = 0.0  # the retry comes every DISK_RETRY_S; do not wait that long in a test
    assert DISK_RETRY_S >= 10
    with caplog.at_level(logging.INFO):
        spool.commit(0.0)
    assert "writable again" in caplog.text
    assert [r[2] for r in _rows(path)] == [b"3", b"4", b"5", b"6", b"7"]
    spool.close()
