"""The one run loop, for every kind of input: one rule each for stop, SIGHUP reload, pause, the
watchdog, the status line, remote control and exit codes.

    while not stopped:  publisher failed for good? → raise (exit 2 or 1, by the error)
                        reload asked?              → reload(), then on
                        item = agent.read()        → None: ended? stop : wait again (no watchdog ping)
                        remote control             → pause here, the rest to agent.apply()
                        agent.process(item)        → "ready" after the first inference, watchdog ping

No input, no watchdog ping: a camera or microphone that hangs without failing gets the service
restarted by systemd's ``WatchdogSec``. Nor while the publisher is unhealthy (connected, yet a
message has waited too long for its acknowledgement; a dead sender thread): work that cannot
leave must not look alive. A source that is merely not up yet (``agent.waiting``: a network
camera still booting) is pinged for, and said in the status line: a restart would not help it.
An agent whose source failed for good (``agent.error``)
ends the run with exit code 1; the end of a file is exit code 0.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Final, Protocol

from .agents.base import Agent, StageHook
from .config import Config
from .errors import ExitCode, PublishError
from .hub import Command, drain
from .publish.base import Publisher

logger = logging.getLogger(__name__)

READ_WAIT_S: Final = 0.5  # how long the loop waits for input before checking for stop and reload
END_FLUSH_S: Final = 10.0  # at the end of a file, wait this long for the broker's acks
STOP_FLUSH_S: Final = 3.0  # when told to stop (SIGTERM), wait this long: systemd's stop timeout is near
STATUS_EVERY_S: Final = 5.0  # how often the service manager's status line is refreshed


class Notifier(Protocol):
    """Progress reports for a service manager (systemd's sd_notify); every method is cheap."""

    def ready(self) -> None: ...

    def watchdog(self) -> None: ...

    def status(self, text: str) -> None: ...

    def reloading(self) -> None: ...

    def stopping(self) -> None: ...


class NullNotifier:
    def ready(self) -> None:
        pass

    def watchdog(self) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def reloading(self) -> None:
        pass

    def stopping(self) -> None:
        pass


@dataclasses.dataclass
class Controls:
    """How the outside world steers a running agent: stop, reload (SIGHUP), progress reports."""

    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    reload: threading.Event = dataclasses.field(default_factory=threading.Event)
    reload_config: Callable[[], Config] | None = None
    notifier: Notifier = dataclasses.field(default_factory=NullNotifier)
    max_frames: int = 0  # stop after this many processed items (frames, hops, windows); 0: no limit
    hook: StageHook | None = None  # the bench's stage timings ("wait" is timed here)


def run_loop(agent: Agent, publisher: Publisher, controls: Controls,
             commands: queue.Queue[Command] | None = None,
             reload: Callable[[], None] | None = None) -> ExitCode:
    """Drive ``agent`` until its source ends, ``controls.stop`` is set or ``max_frames`` are done."""
    notifier, hook = controls.notifier, controls.hook
    next_status = 0.0
    processed = 0
    paused = False
    ready = False
    while not controls.stop.is_set():
        if publisher.fatal:
            raise PublishError(publisher.fatal)
        if controls.reload.is_set():
            controls.reload.clear()
            notifier.reloading()
            if reload is not None:
                reload()
            notifier.ready()
            continue
        t0 = time.perf_counter() if hook is not None else 0.0
        item = agent.read(READ_WAIT_S, controls.stop)
        if item is None:
            if agent.ended:
                break
            if agent.waiting:  # a source not up yet (a camera booting): alive, retrying, reported
                notifier.watchdog()
                now = time.monotonic()
                if now >= next_status:
                    notifier.status(f"waiting for the source; {agent.status()}")
                    next_status = now + STATUS_EVERY_S
            continue
        if hook is not None:
            hook.stage("wait", (time.perf_counter() - t0) * 1000)
        for command in drain(commands):
            if command.paused is not None:
                paused = command.paused
            agent.apply(command)
            logger.info("remote control applied: %s", command)
        if paused:
            notifier.watchdog()
            continue
        agent.process(item)
        processed += 1
        if not ready and agent.inferences:
            notifier.ready()  # the model has run on real input: we are in service
            ready = True
        if publisher.healthy():  # predictions leave, or wait safely in the spool
            notifier.watchdog()
        now = time.monotonic()
        if now >= next_status:
            notifier.status(f"{agent.status()}; {publisher.state}")
            next_status = now + STATUS_EVERY_S
        if controls.max_frames and processed >= controls.max_frames:
            break
    if agent.error:
        logger.error("%s", agent.error)
        return ExitCode.FAILURE
    return ExitCode.OK
