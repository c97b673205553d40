"""The agent protocol: what the one run loop (:mod:`edge_agent.runtime`) needs of an agent.

An agent owns one kind of input end to end — its source, its front end, its model and what it
publishes — and nothing else. The runtime owns everything that must behave the same for every
kind of input: stop, SIGHUP reload, pause, the watchdog, the status line, remote control and
exit codes. So a new kind of input is a new agent, never a new copy of the loop::

    runtime.run_loop ──read()──▶ agent ──process(item)──▶ front end → engine → postprocess → publisher
                     ◀─ None: nothing yet / ended ─┘

The loop calls, in order: :meth:`Agent.start` once; then ``read`` → (remote control, pause) →
``process`` until ``ended`` or stop; :meth:`Agent.reconfigure` on SIGHUP; :meth:`Agent.stop` once.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from ..config import Config
from ..hub import Command


class StageHook(Protocol):
    """Per-stage timings for the bench (``tools/bench.py``). An agent given none (the service)
    takes its untimed path: the hook costs the agent one ``is None`` test per item."""

    def stage(self, name: str, ms: float) -> None:
        """One stage of the current item took ``ms`` (e.g. "wait", "resize", "invoke", "publish")."""
        ...

    def done(self, latency_ms: float) -> None:
        """The current item is finished, ``latency_ms`` after it was captured."""
        ...


class Agent(Protocol):
    """One kind of input turned into published events (structural: no base class needed)."""

    @property
    def inferences(self) -> int:
        """Model invocations so far: the loop says "ready" to the service manager after the first."""
        ...

    @property
    def ended(self) -> bool:
        """True once a finite source (a file) has nothing more, or a source failed for good."""
        ...

    @property
    def waiting(self) -> bool:
        """True while the source is not up yet and is being retried (a network camera booting):
        the loop keeps the service alive and says so, rather than getting it restarted."""
        ...

    @property
    def error(self) -> str | None:
        """Why the source stopped for good (exit 1), or None after a clean end."""
        ...

    def start(self) -> None:
        """Open the source. Raise a :class:`~edge_agent.errors.EdgeAgentError` only for what a
        person must fix (a missing file, a wrong device name); a source that is merely not there
        yet (a network camera booting) is retried by the agent itself."""
        ...

    def read(self, timeout: float, stop: threading.Event) -> Any | None:
        """The next unit of input (a frame, one hop of audio, a window of samples), or None when
        nothing came within ``timeout`` or the source ended. A live source that fails is
        reopened here, with backoff, until ``stop`` is set."""
        ...

    def process(self, item: Any) -> None:
        """Front end, engine, postprocess and, when the publish policy says so, publish."""
        ...

    def apply(self, command: Command) -> None:
        """Remote control settings other than pause (the loop handles pause for every agent)."""
        ...

    def reconfigure(self, config: Config, model: Any) -> None:
        """SIGHUP: swap config and model (already loaded and checked), keeping seq and the publisher."""
        ...

    def metrics(self) -> dict[str, Any]:
        """The numbers for ``{prefix}/{device_id}/metrics``; called from the metrics thread."""
        ...

    def status(self) -> str:
        """One short line for the service manager's status (``systemctl status``)."""
        ...

    def summary(self) -> str:
        """The last log line of a run."""
        ...

    def stop(self) -> None:
        """Close the source; called once, also after a failed start."""
        ...
