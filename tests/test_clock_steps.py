"""A Raspberry Pi has no real-time clock: it boots with the time it had at shutdown, then NTP
steps it, sometimes by days. The agents' decisions run on monotonic (or media) time; the wall
clock is only a stamp in payloads. Here the wall clock steps back one hour, then forward eight
days, in the middle of a run: the heartbeat still comes every 60 s and no change is held back."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge_agent import service
from edge_agent.agents.image import ImageAgent
from edge_agent.agents.sensor import Window
from edge_agent.config import Config
from edge_agent.service import load_model
from edge_agent.sources.base import Frame
from tests.sensor_helpers import Collect, make_agent, sample_windows, tiny_models
from tests.voice_helpers import tone_model, tone_stream

__all__ = ["tone_model"]  # a fixture

HOUR, DAY = 3600.0, 86400.0


class SteppingWallClock:
    """``time.time`` for the test: real time plus an offset the test steps."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._real: Callable[[], float] = time.time

    def __call__(self) -> float:
        return self._real() + self.offset


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> SteppingWallClock:
    clock = SteppingWallClock()
    monkeypatch.setattr(time, "time", clock)
    return clock


def _step(wall: SteppingWallClock, second: int) -> None:
    if second == 10:
        wall.offset = -HOUR  # NTP corrects a clock that ran ahead
    elif second == 70:
        wall.offset = 8 * DAY  # a Pi off for a week catches up after boot


class LiveStub:
    """A live source that is never opened: the test hands the agent its items directly."""

    live = True
    name = "stub camera"
    error = None
    ended = False
    bad_records = overflows = 0

    def open(self) -> None: ...

    def close(self) -> None: ...


def test_image_agent_heartbeat_keeps_time_across_wall_clock_steps(int8_model: Path,
                                                                   wall: SteppingWallClock) -> None:
    config = Config(task="custom", device_id="pi1")
    config.model.path = str(int8_model)
    publisher = Collect()
    agent = ImageAgent(config, load_model(config)[1], publisher, source=LiveStub())  # type: ignore[arg-type]
    image = np.zeros((48, 48, 3), np.uint8)
    raw = np.array([0.9, 0.05, 0.05], np.float32)
    base = time.monotonic()
    for second in range(0, 150):
        _step(wall, second)
        agent.finish(Frame(image, time.time(), base + second, second), raw)
    # the first frame, then a heartbeat every 60 s of monotonic time, whatever the wall clock did
    assert len(publisher.messages) == 3


def test_sensor_agent_heartbeat_and_changes_keep_time_across_wall_clock_steps(wall: SteppingWallClock) -> None:
    def defaults(cfg: Config) -> None:
        cfg.postprocess.on_change, cfg.postprocess.max_rate = True, 2.0  # the shipped policy

    publisher = Collect()
    agent = make_agent(tiny_models()["activity"], defaults, publisher, source=LiveStub())
    one = sample_windows(agent.model.spec, 1, seed=1)[0]
    base = time.monotonic()
    for second in range(0, 150):
        _step(wall, second)
        agent.process(Window(one, float(second), time.time(), base + second))
    assert len(publisher.messages) == 3  # at 0, 60 and 120 s: before the fix, nothing after the step back


class SteppingAtEachCall(SteppingWallClock):
    """The wall clock steps back an hour, then forward eight days, at each look (a voice run looks
    only when it publishes: so it steps between two commands)."""

    OFFSETS = (0.0, -HOUR, 8 * DAY)

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __call__(self) -> float:
        self.offset = self.OFFSETS[min(self.calls, len(self.OFFSETS) - 1)]
        self.calls += 1
        return super().__call__()


def test_voice_agent_hears_every_command_across_wall_clock_steps(tmp_path: Path, tone_model: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    wav = tmp_path / "words.wav"
    tone_stream(wav, ["on", "off", "yes"])
    config = Config(task="voice", sink="stdout", device_id="pi1")
    config.model.path, config.source.source = str(tone_model), str(wav)
    clock = SteppingAtEachCall()
    monkeypatch.setattr(time, "time", clock)
    assert service.run(config) == 0
    commands = [json.loads(line)["command"] for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert commands == ["on", "off", "yes"] and clock.calls >= 3  # the clock did step between them
