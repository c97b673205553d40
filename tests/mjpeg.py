"""A real MJPEG-over-HTTP camera on 127.0.0.1 (multipart/x-mixed-replace, like IP cameras and
mjpg-streamer), which a test can pause, drop and bring back: the agent reads it through OpenCV's
FFmpeg backend exactly as it would a network camera."""

from __future__ import annotations

import http.server
import socketserver
import threading
import time

import cv2
import numpy as np

BOUNDARY = "frame"


class MjpegCamera:
    def __init__(self, fps: float = 10.0) -> None:
        self.fps = fps
        self.sending = threading.Event()
        self.sending.set()
        self.frames_sent = 0
        self.connections = 0
        self._stop = threading.Event()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def _jpeg(self, i: int) -> bytes:
        frame = np.zeros((240, 320, 3), np.uint8)
        frame[:] = ((i * 40) % 255, 80, 160)
        ok, data = cv2.imencode(".jpg", frame)
        assert ok
        return data.tobytes()

    def start(self, port: int = 0) -> MjpegCamera:
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                camera.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                i = 0
                try:
                    while not camera._stop.is_set():
                        if not camera.sending.is_set():  # frozen: keep the socket open, send nothing
                            time.sleep(0.05)
                            continue
                        jpeg = camera._jpeg(i)
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                         f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                        camera.frames_sent += 1
                        i += 1
                        time.sleep(1.0 / camera.fps)
                except (BrokenPipeError, ConnectionResetError):
                    return

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._stop.clear()
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Unplug: close the listening socket and every open stream."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
