"""A Raspberry Pi has no real-time clock: it boots with the time it had at shutdown and NTP then
steps it, back an hour or forward a week. The spool and the sender under such steps, mid-run,
with the process's clocks under the test's control: nothing silent, nothing dropped, a backlog
still marked ``replayed`` (issue 27).

``time.time`` and ``time.monotonic`` are replaced for the whole test process (what ``faketime``
does to a process, for Python code): the wall clock steps as NTP steps it, and the monotonic
clock is moved on only to stand for time the agent ran."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.config import MqttConfig
from edge_agent.publish.mqtt import MqttPublisher
from edge_agent.publish.spool import AGE_CHECK_EVERY_S, DEFAULT_MAX_AGE_S, SqliteSpool
from tests.helpers import Broker, Subscriber, eventually

DAY_S = 24 * 3600.0


class Clocks:
    """The process's two clocks: ``wall_step`` is added to the wall clock, ``ran`` to the monotonic one."""

    def __init__(self) -> None:
        self.wall_step = 0.0
        self.ran = 0.0
        self._time, self._monotonic = time.time, time.monotonic

    def time(self) -> float:
        return self._time() + self.wall_step

    def monotonic(self) -> float:
        return self._monotonic() + self.ran


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> Clocks:
    c = Clocks()
    monkeypatch.setattr(time, "time", c.time)
    monkeypatch.setattr(time, "monotonic", c.monotonic)
    return c


def test_a_step_back_an_hour_keeps_the_backlog_and_its_ages(tmp_path: Path, clocks: Clocks,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    spool = SqliteSpool(tmp_path / "s.sqlite", max_age_s=600)
    old = [spool.put("t", b"%d" % i, 1, False) for i in range(20)]
    clocks.ran += 30
    clocks.wall_step = -3600  # NTP: the clock was an hour fast
    new = [spool.put("t", b"n%d" % i, 1, False) for i in range(5)]
    assert spool.last_id_older_than(2.0) == old[-1], "what was made 30 s ago is the backlog, whatever the date"
    clocks.ran += 580  # the first 20 are now 610 s old, the last 5 are 580 s old
    with caplog.at_level(logging.WARNING):
        spool.put("t", b"after", 1, False)
    assert [m.payload for m in spool.after(0, 100)][:5] == [b"n%d" % i for i in range(5)]
    assert spool.dropped == 20 and "dropped 20 predictions older than spool.max_age_s = 600 s" in caplog.text
    assert new[0] == old[-1] + 1
    spool.close()


def test_a_step_forward_of_eight_days_drops_nothing_and_ages_survive_a_restart(
        tmp_path: Path, clocks: Clocks, caplog: pytest.LogCaptureFixture) -> None:
    """A Pi off for a week: its clock catches up after boot. The backlog is not "too old": it
    waited while an agent ran for a minute, not for eight days. After a restart (a new monotonic
    clock), the ages go on from where they were."""
    path = tmp_path / "s.sqlite"
    spool = SqliteSpool(path)
    for i in range(20):
        spool.put("t", b"%d" % i, 1, False)
    clocks.wall_step = 8 * DAY_S
    clocks.ran += AGE_CHECK_EVERY_S + 1  # a minute of running: the age check is due
    spool.put("t", b"20", 1, False)
    assert spool.dropped == 0 and spool.depth() == 21
    spool.close()
    assert [r[0] for r in sqlite3.connect(path).execute("SELECT COUNT(*) FROM outbox")] == [21]

    clocks.ran -= 5 * DAY_S  # a reboot: the monotonic clock starts again, far below where it was
    clocks.wall_step = -30 * DAY_S  # and the clock is back in the past, before NTP
    again = SqliteSpool(path)
    assert again.depth() == 21 and again.last_id_older_than(2.0) == 21
    clocks.ran += DEFAULT_MAX_AGE_S - 2 * AGE_CHECK_EVERY_S  # the first 20 are now 7 days less a minute old
    again.put("t", b"21", 1, False)
    assert again.dropped == 0
    clocks.ran += AGE_CHECK_EVERY_S + 1
    with caplog.at_level(logging.WARNING):
        again.put("t", b"22", 1, False)
    assert again.dropped == 20, "after 7 days of running, not of dates, the oldest go, with a line"
    assert "dropped 20 predictions older than" in caplog.text
    assert [m.payload for m in again.after(0, 10)] == [b"20", b"21", b"22"]
    again.close()


def test_a_version_2_spool_keeps_its_rows_as_ages(tmp_path: Path, clocks: Clocks) -> None:
    """The previous format dated its rows: they become ages once, at the first open."""
    path = tmp_path / "s.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, topic, payload, qos, retain, created)")
        db.execute("CREATE TABLE dead (id INTEGER, topic, payload, qos, retain, created, reason TEXT, moved REAL)")
        db.execute("PRAGMA user_version=2")
        db.executemany("INSERT INTO outbox VALUES (?, 't', ?, 1, 0, ?)",
                       [(i, b"%d" % i, time.time() - 100 * (10 - i)) for i in range(1, 11)])
    spool = SqliteSpool(path, max_age_s=450)  # rows 1-5 are 500-900 s old
    assert [m.payload for m in spool.after(0, 20)] == [b"%d" % i for i in range(6, 11)]
    assert spool.dropped == 5
    spool.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3


def test_the_sender_under_clock_steps_marks_the_backlog_and_drops_nothing(
        tmp_path: Path, clocks: Clocks, broker_factory: Callable[..., Broker]) -> None:
    """Through a real broker: a backlog made before the clock stepped back an hour is still the
    backlog (marked ``replayed``, paced behind the live ones), and one made before it stepped
    forward eight days is sent, not dropped as too old."""
    broker = broker_factory(persistent=True)
    sub = Subscriber(broker, "edge-agent/clock/#", persistent=True)  # its session outlives the outages
    broker.stop()
    spool = SqliteSpool(tmp_path / "s.sqlite")
    publisher = MqttPublisher(MqttConfig(host=broker.host, port=broker.port), "clock", "custom", spool)
    publisher.start()
    try:
        for seq in range(30):
            publisher.publish("custom/prediction", {"seq": seq})
        clocks.ran += 10
        clocks.wall_step = -3600
        broker.start()
        assert publisher.wait_connected(30)
        for seq in range(30, 35):
            publisher.publish("custom/prediction", {"seq": seq})
        eventually(lambda: {p["seq"] for p in sub.payloads("/prediction")} == set(range(35)), 60, "all 35")

        broker.stop()
        eventually(lambda: not publisher.connected, 30, "the publisher to see the outage")
        for seq in range(35, 55):
            publisher.publish("custom/prediction", {"seq": seq})
        clocks.wall_step = 8 * DAY_S
        clocks.ran += AGE_CHECK_EVERY_S + 1  # a minute of running: the age check is due
        publisher.publish("custom/prediction", {"seq": 55})
        assert spool.dropped == 0
        broker.start()
        eventually(lambda: {p["seq"] for p in sub.payloads("/prediction")} == set(range(56)), 60, "all 56")
    finally:
        publisher.stop()
    payloads = sub.payloads("/prediction")
    sub.close()
    first = {}
    for p in payloads:
        first.setdefault(p["seq"], p)
    assert [s for s in range(30) if not first[s].get("replayed")] == [], "the backlog before the step back"
    assert [s for s in range(30, 35) if first[s].get("replayed")] == [], "live ones are not marked"
    assert [s for s in range(35, 55) if not first[s].get("replayed")] == [], "the backlog before the step forward"
    assert spool.dropped == 0
