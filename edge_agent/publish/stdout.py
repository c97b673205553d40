"""JSON lines on standard output: runs without any broker (the README demo, piping into jq)."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO


class StdoutPublisher:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    @property
    def fatal(self) -> str | None:
        return None

    def start(self) -> None:
        pass

    def publish(self, subtopic: str, payload: dict[str, Any]) -> None:
        self._stream.write(json.dumps(payload, separators=(",", ":")) + "\n")
        self._stream.flush()

    def flush(self, timeout: float) -> bool:
        self._stream.flush()
        return True

    def stop(self) -> None:
        self.flush(0)

    def healthy(self) -> bool:
        return True  # a write that fails raises (BrokenPipeError ends the run); nothing is held back

    @property
    def state(self) -> str:
        return "stdout"
