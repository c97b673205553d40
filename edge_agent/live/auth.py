"""Who may see the live page: nobody but this machine by default, else whoever holds the token.

The token (``--http-token-file``) comes in an ``Authorization: Bearer`` header or in a cookie. The
cookie is set by a one-time link printed at start (``/?code=...``): the code works once, so a link
left in a log or a browser history opens nothing later. Comparisons are constant-time
(:func:`hmac.compare_digest`). Refusals are counted and logged at most once per
:data:`LOG_EVERY_S`, so someone guessing cannot flood the journal.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Final

from ..errors import ConfigError

logger = logging.getLogger(__name__)

COOKIE: Final = "edge_agent_live"
LOG_EVERY_S: Final = 10.0  # at most one "refused" line this often
MIN_TOKEN_CHARS: Final = 16


def read_token(path: str, where: str) -> str:
    """The first line of the token file; a missing, empty or short one is a config error (exit 2)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: field 'http.token_file': cannot read {path} "
                          f"({getattr(e, 'strerror', None) or e})") from None
    token = lines[0].strip() if lines else ""
    if len(token) < MIN_TOKEN_CHARS or not token.isascii() or not token.isprintable() or ";" in token:
        raise ConfigError(f"{where}: field 'http.token_file': {path} must hold one line of at least "
                          f"{MIN_TOKEN_CHARS} printable ASCII characters (e.g. `openssl rand -hex 16 > {path}`)")
    return token


class Guard:
    """Checks each request; ``token`` None means no token is needed (a loopback page without one)."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self._code: str | None = secrets.token_urlsafe(18) if token else None
        self._lock = threading.Lock()
        self.refused = 0
        self._unlogged = 0
        self._next_log = 0.0

    @property
    def code(self) -> str | None:
        """The one-time code of the start link (None once used, or when no token is needed)."""
        return self._code

    def allows(self, authorization: str | None, cookie_header: str | None) -> bool:
        if self.token is None:
            return True
        offered = []
        if authorization and authorization.startswith("Bearer "):
            offered.append(authorization[len("Bearer "):].strip())
        if cookie_header:
            try:
                morsel = SimpleCookie(cookie_header).get(COOKIE)
            except CookieError:
                morsel = None
            if morsel is not None:
                offered.append(morsel.value)
        return any(hmac.compare_digest(o.encode(), self.token.encode()) for o in offered)

    def redeem(self, code: str) -> bool:
        """The one-time link: true (once) for the code printed at start."""
        with self._lock:
            if self._code is None or not hmac.compare_digest(code.encode(), self._code.encode()):
                return False
            self._code = None
            return True

    def cookie(self) -> str:
        assert self.token is not None
        return f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"

    def refuse(self, client: str) -> None:
        """Count a refused request; log a line now and then, with how many since the last."""
        with self._lock:
            self.refused += 1
            self._unlogged += 1
            now = time.monotonic()
            if now < self._next_log:
                return
            count, self._unlogged, self._next_log = self._unlogged, 0, now + LOG_EVERY_S
        logger.warning("live page: refused %d request(s) without a valid token (last from %s)", count, client)
