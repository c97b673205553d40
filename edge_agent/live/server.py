"""The live page's HTTP server: the standard library's threading server, GET only.

    /              the page (``page/index.html``; ``/?code=...``: the one-time link sets the cookie)
    /app.js /app.css
    /api/state     what the page draws, as JSON (:meth:`LiveView.state` + health + model)
    /frame.jpg     the newest frame, scaled down (image tasks)
    /stream.mjpg   the same as MJPEG (multipart/x-mixed-replace): VLC, a second screen

Each viewer is served from its own thread; a stream's socket has a small send buffer and a send
timeout, so a stalled viewer holds only its own thread and is dropped after
:data:`STALL_TIMEOUT_S`, and gets the newest frame when it reads again. At stop every stream
ends with the closing boundary before the server closes.
"""

from __future__ import annotations

import http.server
import importlib.resources
import json
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Final

from ..config import is_loopback
from ..errors import ConfigError
from .auth import Guard
from .view import LiveView

logger = logging.getLogger(__name__)

STREAM_FPS: Final = 5.0  # MJPEG frames a second at most: enough to aim a camera
STREAM_SNDBUF: Final = 64 * 1024  # bytes: a stalled viewer blocks after a few frames, not a few seconds
STALL_TIMEOUT_S: Final = 10.0  # a viewer that reads nothing for this long is dropped
STOP_WAIT_S: Final = 2.0  # at stop, how long streams get to send their closing boundary
HEALTH_EVERY_S: Final = 1.0  # health numbers are gathered at most this often, however many viewers
BOUNDARY: Final = "frame"
STATIC: Final = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript"),
                 "/app.css": ("app.css", "text/css")}
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def page_file(name: str) -> bytes:
    return importlib.resources.files(__package__).joinpath("page", name).read_bytes()


def loopback_host(host: str | None) -> bool:
    """Whether a request's Host header names this machine (127.0.0.1, [::1], localhost, any port).
    No Host at all (an HTTP/1.0 client) is fine: a browser always sends one, so rebinding cannot omit it."""
    if not host:
        return True
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return is_loopback(name.strip("[]"))


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a stalled viewer's thread never holds up the agent's exit
    live: LiveServer


class LiveServer:
    """Serves one :class:`LiveView`. Built (and its token read) before the run; :meth:`start`
    binds, so a busy port is a config error (exit 2) before anything is announced."""

    def __init__(self, view: LiveView, host: str, port: int, guard: Guard, info: dict[str, Any],
                 health: Callable[[], dict[str, Any]], where: str = "flag --http") -> None:
        self.view, self.host, self.port, self.guard, self.info = view, host, port, guard, info
        self._health_fn = health
        self._health: tuple[float, dict[str, Any]] = (-HEALTH_EVERY_S, {})
        self._health_lock = threading.Lock()
        self.where = where
        self.stop_event = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        _Server.address_family = family
        try:
            server = _Server((self.host, self.port), Handler)
        except OSError as e:
            raise ConfigError(f"{self.where}: field 'http.listen': cannot listen on {self.host}:{self.port} "
                              f"({e.strerror or e})") from None
        server.live = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.25},
                                        name="live-http", daemon=True)
        self._thread.start()
        level = max(logging.INFO, logger.getEffectiveLevel())  # shown at any --log-level: the link is needed
        if self.guard.code is not None:
            logger.log(level, "live page on %s — open once to sign in: %s?code=%s", self.url, self.url,
                       self.guard.code)
        else:
            logger.log(level, "live page on %s", self.url)

    def stop(self) -> None:
        """Streams end with their closing boundary, then the server closes."""
        self.stop_event.set()
        self.view.close()
        if self._server is None:
            return
        self._server.shutdown()
        deadline = time.monotonic() + STOP_WAIT_S
        while self.view.streams and time.monotonic() < deadline:
            time.sleep(0.02)
        self._server.server_close()
        logger.info("live page closed: %d frames encoded for viewers, %d requests refused",
                    self.view.encoded, self.guard.refused)

    def health(self) -> dict[str, Any]:
        with self._health_lock:
            at, data = self._health
            now = time.monotonic()
            if now - at >= HEALTH_EVERY_S:
                try:
                    data = self._health_fn()
                except Exception as e:  # a health number must never break the page
                    data = {"error": str(e)}
                self._health = (now, data)
            return data


class Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    server_version = "edge-agent"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("live page: %s " + format, self.client_address[0], *args)

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _refuse_method(self) -> None:
        self._send(405, b"read-only: the live page changes nothing (remote control is on MQTT)\n",
                   "text/plain; charset=utf-8", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        live = self.server.live
        url = urllib.parse.urlsplit(self.path)
        code = urllib.parse.parse_qs(url.query).get("code", [""])[0]
        if url.path == "/" and code and live.guard.redeem(code):
            self._send(303, b"", "text/plain", {"Location": "/", "Set-Cookie": live.guard.cookie()})
            return
        if live.guard.token is None and not loopback_host(self.headers.get("Host")):
            # without a token only this machine may look: a page on another site that points its own
            # name at 127.0.0.1 (DNS rebinding) sends that name as Host, and gets nothing
            self._send(403, b"forbidden: open the page as http://127.0.0.1:PORT/ or http://localhost:PORT/\n",
                       "text/plain; charset=utf-8")
            return
        if not live.guard.allows(self.headers.get("Authorization"), self.headers.get("Cookie")):
            live.guard.refuse(self.client_address[0])
            self._send(401, b"unauthorized: a token is needed (see the one-time link in the agent's log)\n",
                       "text/plain; charset=utf-8", {"WWW-Authenticate": 'Bearer realm="edge-agent"'})
            return
        if url.path in STATIC:
            name, kind = STATIC[url.path]
            self._send(200, page_file(name), kind)
        elif url.path == "/api/state":
            live.view.seen()
            state = live.view.state()
            state.update(health=live.health(), model=live.info)
            self._send(200, json.dumps(state).encode(), "application/json")
        elif url.path == "/frame.jpg":
            live.view.seen()
            got = live.view.jpeg()
            if got is None:
                self._send(204, b"", "image/jpeg")
            else:
                self._send(200, got[1], "image/jpeg", {"X-Frame-Version": str(got[0])})
        elif url.path == "/stream.mjpg" and self.command == "GET":
            self._stream(live)
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def _stream(self, live: LiveServer) -> None:
        view = live.view
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
        self.connection.settimeout(STALL_TIMEOUT_S)
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.end_headers()
        version = 0
        try:
            with view.streaming():
                while not live.stop_event.is_set():
                    version = view.wait_frame(version, 1.0)
                    if live.stop_event.is_set():
                        break
                    got = view.jpeg()
                    if got is not None:
                        head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(got[1])}\r\n\r\n"
                        self.wfile.write(head.encode() + got[1] + b"\r\n")
                        self.wfile.flush()
                    live.stop_event.wait(1.0 / STREAM_FPS)
                self.wfile.write(f"--{BOUNDARY}--\r\n".encode())
                self.wfile.flush()
        except (TimeoutError, BrokenPipeError, ConnectionResetError) as e:
            logger.info("live page: a stream viewer at %s dropped (%s)", self.client_address[0], type(e).__name__)
        self.close_connection = True
