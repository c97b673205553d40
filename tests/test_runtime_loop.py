"""The one run loop's rules, driven with a scripted agent and publisher (the protocols, not mocks
of a library): when the watchdog is pinged, what the status says, which exit code ends a run."""

from __future__ import annotations

import threading
from typing import Any

from edge_agent.errors import ExitCode
from edge_agent.hub import Command
from edge_agent.runtime import Controls, run_loop


class Notes:
    def __init__(self) -> None:
        self.events: list[str] = []

    def ready(self) -> None:
        self.events.append("ready")

    def watchdog(self) -> None:
        self.events.append("watchdog")

    def status(self, text: str) -> None:
        self.events.append(f"status {text}")

    def reloading(self) -> None:
        self.events.append("reloading")

    def stopping(self) -> None:
        self.events.append("stopping")


class Script:
    """An agent whose read() returns the scripted items (None: nothing this time)."""

    def __init__(self, items: list[Any], waiting: bool = False, error: str | None = None) -> None:
        self.items, self._waiting, self._error = list(items), waiting, error
        self.processed: list[Any] = []

    inferences = property(lambda self: len(self.processed))
    ended = property(lambda self: not self.items)
    waiting = property(lambda self: self._waiting)
    error = property(lambda self: self._error)

    def read(self, timeout: float, stop: threading.Event) -> Any:
        return self.items.pop(0) if self.items else None

    def process(self, item: Any) -> None:
        self.processed.append(item)

    def apply(self, command: Command) -> None:
        pass

    def status(self) -> str:
        return f"{len(self.processed)} done"

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def reconfigure(self, config: Any, model: Any) -> None: ...
    def metrics(self) -> dict[str, Any]: return {}
    def summary(self) -> str: return ""


class Out:
    def __init__(self, healthy: bool = True) -> None:
        self._healthy, self.fatal, self.state = healthy, None, "connected"

    def healthy(self) -> bool:
        return self._healthy


def run(agent: Script, out: Out) -> tuple[ExitCode, list[str]]:
    notes = Notes()
    code = run_loop(agent, out, Controls(notifier=notes))  # type: ignore[arg-type]
    return code, notes.events


def test_the_watchdog_is_pinged_per_item_while_messages_leave() -> None:
    code, events = run(Script([1, 2, 3]), Out(healthy=True))
    assert code == ExitCode.OK and events.count("watchdog") == 3 and events[0] == "ready"
    assert "status 1 done; connected" in events


def test_no_watchdog_ping_while_the_publisher_is_stuck() -> None:
    agent = Script([1, 2, 3])
    _, events = run(agent, Out(healthy=False))
    assert agent.processed == [1, 2, 3] and "watchdog" not in events  # systemd restarts a stuck sender


def test_a_source_not_up_yet_keeps_the_service_alive_and_says_so() -> None:
    agent = Script([None, None, 1], waiting=True)
    code, events = run(agent, Out())
    assert events[:2] == ["watchdog", "status waiting for the source; 0 done"]
    assert events.count("watchdog") == 3 and code == ExitCode.OK


def test_a_source_that_failed_for_good_ends_with_exit_1() -> None:
    code, _ = run(Script([1], error="camera /dev/video0: unplugged and not back"), Out())
    assert code == ExitCode.FAILURE
