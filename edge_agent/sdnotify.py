"""systemd's sd_notify protocol, without libsystemd: one datagram per report to ``$NOTIFY_SOCKET``.

Why our own 60 lines instead of a package: the protocol is a text datagram on an AF_UNIX socket,
and the agent must keep running on machines where python-systemd is not installed. Under
``Type=notify`` the unit is *started* only when READY=1 arrives (after the first inference, so
"active" means "classifying"), and with ``WatchdogSec=`` systemd restarts us when WATCHDOG=1
stops coming (the main loop pings once per frame, so a stuck camera or interpreter stops it).

Reports never raise: a service manager that went away must not take the agent with it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Final

logger = logging.getLogger(__name__)

# systemd says to ping at least every WatchdogSec/2. We ping every WatchdogSec/4: the main loop
# only pings when a frame arrives, so a slow frame must not push a ping past the half-way mark.
WATCHDOG_FRACTION: Final = 4
MAX_STATUS_CHARS: Final = 200  # STATUS= is shown by `systemctl status`; keep it one short line


def socket_address(value: str) -> str | bytes:
    """``$NOTIFY_SOCKET`` → an address for ``sendto``: ``@name`` is Linux's abstract namespace,
    spelled with a leading NUL byte."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between pings, or None when systemd does not watch this process.

    ``$WATCHDOG_PID`` names the process the watchdog is for: a child that inherited the
    environment must not ping on its parent's behalf."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None
    return int(usec) / 1e6 / WATCHDOG_FRACTION


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in µs, which systemd 253+ wants beside RELOADING=1 (252 ignores it)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class SystemdNotifier:
    """The :class:`edge_agent.runtime.Notifier` for systemd. With no address every report is
    dropped, so the service code never has to ask whether it runs under systemd."""

    def __init__(self, address: str | None, watchdog_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.address = address
        self.watchdog_s = watchdog_s
        self._clock = clock
        self._last_ping: float | None = None
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        if address is not None and not address.startswith(("/", "@")):
            logger.warning("NOTIFY_SOCKET=%s is not a path or an abstract socket; not notifying systemd", address)
            address = None
        return cls(address, watchdog_interval(env, os.getpid()) if address else None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    # -- the Notifier protocol ---------------------------------------------------------------
    def ready(self) -> None:
        self.send("READY=1")

    def watchdog(self) -> None:
        """Called for every frame; sends at most one ping per interval."""
        if self.watchdog_s is None:
            return
        now = self._clock()
        if self._last_ping is not None and now - self._last_ping < self.watchdog_s:
            return
        self._last_ping = now
        self.send("WATCHDOG=1")

    def status(self, text: str) -> None:
        line = " ".join(text.split())[:MAX_STATUS_CHARS]
        self.send(f"STATUS={line}")

    def reloading(self) -> None:
        self.send(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec()}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    # -- transport ---------------------------------------------------------------------------
    def send(self, message: str) -> bool:
        """One datagram; False (logged once) when it could not be delivered."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), socket_address(self.address))
        except OSError as e:
            if not self._failed:
                logger.warning("cannot notify systemd at %s: %s", self.address, e.strerror or e)
                self._failed = True
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
