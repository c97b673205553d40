"""Log lines that cannot flood the journal: the first occurrence of a repeated condition is
logged at once, later ones at most once per ``every_s``, each saying how many were held back.

A full spool at 30 predictions/s used to log a WARNING per prediction; through this it logs one
line, then one a minute with the count (``... (1800 more in the last 60 s, 5400 in all)``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Final

EVERY_S: Final = 60.0


class Throttle:
    """``throttle.log(key, level, msg, *args)``; the counts are per key (e.g. per topic)."""

    def __init__(self, logger: logging.Logger, every_s: float = EVERY_S) -> None:
        self.logger = logger
        self.every_s = every_s
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self.total: dict[str, int] = {}

    def log(self, key: str, level: int, msg: str, *args: Any, exc_info: bool = False) -> bool:
        """Log now (True) or count it for the next line (False)."""
        now = time.monotonic()
        with self._lock:
            self.total[key] = self.total.get(key, 0) + 1
            if now < self._next.get(key, 0.0):
                self._held[key] = self._held.get(key, 0) + 1
                return False
            held = self._held.pop(key, 0)
            self._next[key] = now + self.every_s
            total = self.total[key]
        if held:
            msg += " (%d more in the last %.0f s, %d in all)"
            args = (*args, held, self.every_s, total)
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True
