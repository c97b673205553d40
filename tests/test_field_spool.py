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


def test_a_corrupt_spool_file_is_salvaged_then_set_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A few damaged pages cost the rows on them, not the whole backlog (issue 27: 2-5 pages of ~750
    overwritten set all 5,941 queued predictions aside)."""
    path = tmp_path / "s.sqlite"
    spool = SqliteSpool(path)
    sent = {spool.put("edge-agent/pi/t/prediction", os.urandom(300), 1, False): b"" for _i in range(3000)}
    sent = {m.id: m.payload for m in spool.after(0, 3000)}
    spool.close()
    size = path.stat().st_size
    rng = random.Random(0)
    with path.open("r+b") as f:  # random pages overwritten, as after a power cut on a cheap SD card
        for _ in range(8):
            f.seek(rng.randrange(4096, size - 4096) // 4096 * 4096)
            f.write(os.urandom(4096))
    with caplog.at_level(logging.ERROR):
        again = SqliteSpool(path)
    lines = [r.getMessage() for r in caplog.records if "moved it aside" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], caplog.text
    assert again.set_aside and again.set_aside[0].exists()
    saved = again.after(0, 5000)
    assert f"saved {len(saved)} predictions from it, {3000 - len(saved)} lost" in lines[0]
    assert again.salvaged == len(saved) and again.lost == again.dropped == 3000 - len(saved)
    assert 2500 <= len(saved) < 3000, "8 damaged 4 KB blocks cost the rows on them, not the file"
    assert all(sent[m.id] == m.payload for m in saved), "what is saved is what was spooled"
    assert [m.id for m in saved] == sorted(m.id for m in saved)
    new = again.put("t", b"new", 1, False)
    assert new > saved[-1].id
    again.close()
    assert [r[0] for r in _rows(path)] == [m.id for m in saved] + [new], "the saved ones wait in the fresh file"
    third = SqliteSpool(path)
    assert third.depth() == len(saved) + 1 and not third.set_aside
    third.close()


@pytest.mark.parametrize("where", ["first-leaf", "last-leaf", "inner-page", "meta-and-leaf"])
def test_salvage_reads_past_any_damaged_page(tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture) -> None:
    """The pages a salvage finds hardest: the first and the last of the table (the search for the
    next readable row starts before all ids, or finds none after), an inner page of the B-tree
    (hundreds of rows below it), and the page that holds the file's own count."""
    path = tmp_path / "s.sqlite"
    spool = SqliteSpool(path)
    for _i in range(2000):
        spool.put("t", os.urandom(300), 1, False)
    spool.close()
    with sqlite3.connect(path) as db:  # where each page is, from SQLite's own page map
        pages = db.execute("SELECT name, pageno, pagetype FROM dbstat ORDER BY name, path").fetchall()
    leaves = [n for name, n, kind in pages if name == "outbox" and kind == "leaf"]
    inner = [n for name, n, kind in pages if name == "outbox" and kind == "internal"]
    meta = [n for name, n, _ in pages if name == "meta"]
    assert len(inner) >= 2, "a table deep enough to have inner pages below its root"
    damaged = {"first-leaf": [leaves[0]], "last-leaf": [leaves[-1]], "inner-page": [inner[1]],
               "meta-and-leaf": [meta[0], leaves[len(leaves) // 2]]}[where]
    with path.open("r+b") as f:
        for page in damaged:
            f.seek((page - 1) * 1024)
            f.write(random.Random(page).randbytes(1024))
    with caplog.at_level(logging.ERROR):
        again = SqliteSpool(path)
    line = next(r.getMessage() for r in caplog.records if "moved it aside" in r.getMessage())
    saved = again.after(0, 5000)
    assert 0 < len(saved) < 2000 and again.salvaged == len(saved)
    if where == "meta-and-leaf":  # the count is gone with its page: the line names what could not be read
        assert f"at most {again.lost} lost (ids " in line and "unreadable)" in line, line
        assert again.lost >= 2000 - len(saved)
    else:
        assert again.lost == 2000 - len(saved) and f"{again.lost} lost" in line, line
    again.close()


def test_a_spool_damaged_while_open_is_salvaged_with_exact_counts(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.sqlite"
    spool = SqliteSpool(path)
    for _i in range(2000):
        spool.put("t", os.urandom(300), 1, False)
    spool.commit(0.0)
    for m in spool.after(0, 100):  # acknowledged: must not come back from the salvage
        spool.ack(m.id)
    assert spool._db is not None  # the card fails under the running agent: its pages on disk and not in
    spool._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL, and not in SQLite's page cache either
    with path.open("r+b") as f:
        for page in (300, 301, 900):  # leaf pages in the middle of the table
            f.seek(page * 1024)
            f.write(random.Random(page).randbytes(1024))
    spool._db.execute("PRAGMA shrink_memory")
    with caplog.at_level(logging.ERROR):
        remaining = [m.id for m in spool.after(100, 5000)]
    assert "saved" in caplog.text and "moved it aside" in caplog.text, caplog.text
    assert 100 not in remaining and min(remaining) > 100
    assert spool.lost > 0 and len(remaining) + spool.lost == 1900, "every row is counted: saved or lost"
    spool.close()


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
        db.executemany("INSERT INTO outbox (id, topic, payload, qos, retain, created) VALUES (?, ?, ?, ?, ?, ?)", [
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


def test_rows_stored_as_text_that_is_not_utf8_are_dead_letters_one_by_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """What a bit flip in a row header does: a BLOB payload read as TEXT that is not UTF-8. Before,
    the whole read failed, the spool fell back to memory and none of the backlog was sent."""
    path = tmp_path / "s.sqlite"
    SqliteSpool(path).close()
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO outbox (id, topic, payload, qos, retain, created) VALUES (?, 't', ?, 1, 0, ?)",
                       [(i, b"p%d" % i, time.time()) for i in range(1, 101)])
        db.execute("UPDATE outbox SET payload = CAST(X'C328FF' AS TEXT) WHERE id IN (10, 60)")
        db.execute("UPDATE outbox SET topic = CAST(X'74FE2F' AS TEXT) WHERE id = 30")
    spool = SqliteSpool(path)
    with caplog.at_level(logging.ERROR):
        got = [m.id for m in spool.after(0, 200)]
    assert got == [i for i in range(1, 101) if i not in (10, 30, 60)]
    assert spool.dead == 3 and spool.depth() == 97
    assert "keeping predictions in memory" not in caplog.text
    assert "text that is not UTF-8" in caplog.text
    spool.close()
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT id FROM dead ORDER BY rowid")] == [10, 30, 60]


def test_doctor_shows_dead_letters_that_are_not_utf8(tmp_path: Path) -> None:
    from edge_agent import config as config_mod
    from edge_agent import doctor

    path = tmp_path / "s.sqlite"
    SqliteSpool(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO outbox (id, topic, payload, qos, retain, created) "
                   "VALUES (1, CAST(X'74FE' AS TEXT), X'7B7D', 1, 0, 0)")
    spool = SqliteSpool(path)
    assert spool.after(0, 10) == [] and spool.dead == 1
    spool.close()
    cfg = config_mod.Config()
    cfg.sink = "mqtt"
    cfg.spool.path = str(path)
    check = doctor.check_spool(cfg)
    assert check.status == doctor.WARN and "1 not delivered (dead letters)" in check.detail, check


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
