"""The interface every publisher implements."""

from __future__ import annotations

from typing import Any, Protocol


class Publisher(Protocol):
    """``publish`` never blocks inference; ``fatal`` is a one-line reason the publisher gave up
    for good (bad credentials, untrusted broker certificate), else None."""

    @property
    def fatal(self) -> str | None: ...

    def start(self) -> None: ...

    def publish(self, subtopic: str, payload: dict[str, Any]) -> None:
        """``subtopic`` is below ``{prefix}/{device_id}/``, e.g. ``waste/prediction``."""

    def flush(self, timeout: float) -> bool: ...

    def healthy(self) -> bool:
        """Messages leave, or are kept safely until they can: what the service watchdog is pinged on."""
        ...

    @property
    def state(self) -> str:
        """One word or short line for the status: "connected", "unreachable: ...", "stdout"."""
        ...

    def stop(self) -> None: ...
