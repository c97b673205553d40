"""The spool's bounds and order, on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.publish.spool import MemorySpool, SqliteSpool, open_spool


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_spool_keeps_order_acks_and_drops_the_oldest_when_full(tmp_path: Path, kind: str) -> None:
    spool = SqliteSpool(tmp_path / "s.sqlite", max_messages=5) if kind == "sqlite" else MemorySpool(5)
    ids = [spool.put("t", f"m{i}".encode(), 1, False) for i in range(8)]
    assert spool.depth() == 5 and spool.dropped == 3
    batch = spool.after(0, 10)
    assert [m.payload for m in batch] == [b"m3", b"m4", b"m5", b"m6", b"m7"]
    spool.ack(ids[3])
    assert [m.payload for m in spool.after(ids[3], 2)] == [b"m4", b"m5"]
    assert spool.depth() == 4
    spool.close()


def test_sqlite_spool_survives_reopening_and_drops_by_age(tmp_path: Path) -> None:
    """Ages count the time agents ran, on a clock the test moves (not this machine's speed)."""
    path = tmp_path / "s.sqlite"
    ran = [0.0]
    spool = SqliteSpool(path, clock=lambda: ran[0])
    spool.put("a", b"1", 1, False)
    spool.put("b", b"2", 1, True)
    ran[0] += 30
    spool.close()
    again = SqliteSpool(path, max_age_s=60, clock=lambda: ran[0] + 1e6)  # a new process's monotonic clock
    assert again.depth() == 2
    assert [(m.topic, m.retain) for m in again.after(0, 10)] == [("a", False), ("b", True)]
    ran[0] += 61  # the next age check (once a minute) is due: they are 91 s old
    again.put("c", b"3", 1, False)
    assert [m.topic for m in again.after(0, 10)] == ["c"] and again.dropped == 2
    again.close()


def test_unopenable_spool_falls_back_to_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "dir.sqlite").mkdir()
    spool = open_spool(tmp_path / "dir.sqlite", 10, 60)
    assert "keeping predictions in memory" in caplog.text
    ids = [spool.put("t", b"%d" % i, 1, False) for i in range(12)]
    assert spool.depth() == 10 and spool.dropped == 2, "the memory fallback keeps the configured bounds"
    spool.ack(ids[2])
    assert [m.payload for m in spool.after(0, 3)] == [b"3", b"4", b"5"]
    spool.close()
