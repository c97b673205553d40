"""The live page (``--http``): what a person pointing a camera sees, who may see it, and that it
costs the pipeline nothing. The agent runs as a subprocess on the bundled sample video; the page
is read over plain HTTP and, for the page itself, by Debian's chromium (headless)."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.agents.image import ImageInference
from edge_agent.config import Config
from edge_agent.service import load_model
from edge_agent.sources.base import Frame
from tests.helpers import agent_env, assert_one_line_error, free_port, run_agent
from tests.live_helpers import WASTE_VIDEO, browser, dom_text, live_agent
from tests.voice_helpers import SINK_RATE_HZ, pulse_server, tone_model, tone_stream

__all__ = ["tone_model"]  # the session fixture, imported for the voice page

LIVE = ["--task", "waste", "--source", str(WASTE_VIDEO), "--realtime", "--loop", "--sink", "stdout",
        "--threads", "1"]
PROGRESS_TIMEOUT_S = 30.0


def state(agent) -> dict:  # type: ignore[no-untyped-def]
    status, _, body = agent.get("/api/state")
    assert status == 200, (status, body)
    return json.loads(body)


def wait_items(agent, more_than: int, timeout: float = PROGRESS_TIMEOUT_S) -> int:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = int(state(agent)["items"])
        if items > more_than:
            return items
        time.sleep(0.2)
    raise AssertionError(f"the pipeline made no progress past {more_than} frames in {timeout} s")


def other_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_the_page_is_on_loopback_by_default_with_security_headers() -> None:
    port = free_port()
    with live_agent([*LIVE, "--http", str(port)]) as agent:
        assert (agent.host, agent.port) == ("127.0.0.1", port)
        status, headers, body = agent.get("/")
        assert status == 200 and b'id="label"' in body
        assert headers["x-frame-options"] == "DENY"
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        # read-only: nothing but GET and HEAD
        for method in ("POST", "PUT", "DELETE"):
            assert agent.get("/api/state", method=method)[0] == 405
        # DNS rebinding: another site's name pointed at 127.0.0.1 gets nothing from a page without a token
        assert agent.get("/api/state", {"Host": f"evil.example:{port}"})[0] == 403
        assert agent.get("/api/state", {"Host": f"localhost:{port}"})[0] == 200
        data = state(agent)
        assert data["kind"] == "image" and data["model"]["model"]["name"] == "waste"
        assert {"fps", "latency_ms", "publisher"} <= set(data["health"])
        other = other_address()
        if other is not None:  # another interface of this machine is not served
            with pytest.raises(OSError):
                socket.create_connection((other, port), timeout=2).close()


def test_a_non_loopback_address_without_a_token_refuses_to_start() -> None:
    result = run_agent([*LIVE, "--http", f"0.0.0.0:{free_port()}"], timeout=60)
    assert_one_line_error(result, "http.listen", "--http-token-file")


def test_a_bad_listen_address_or_token_file_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run_agent([*LIVE, "--http", "0.0.0.0:99999"], timeout=60), "http.listen")
    short = tmp_path / "token"
    short.write_text("abc\n")
    assert_one_line_error(run_agent([*LIVE, "--http", f"0.0.0.0:{free_port()}", "--http-token-file", str(short),
                                     "--validate-config"], timeout=60), "http.token_file", "16")


def test_without_the_token_it_is_401_and_the_one_time_link_signs_in_once(tmp_path: Path) -> None:
    token = "f3c1e0a9b2d84c6e9a7b5c3d1e0f2a4b"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    with live_agent([*LIVE, "--http", f"0.0.0.0:{free_port()}", "--http-token-file", str(token_file)]) as agent:
        assert agent.link and token not in agent.log()  # the link carries a one-time code, not the token
        for _ in range(5):
            assert agent.get("/api/state")[0] == 401
        assert agent.get("/stream.mjpg")[0] == 401
        assert agent.get("/frame.jpg", {"Authorization": "Bearer " + "0" * len(token)})[0] == 401
        assert agent.get("/", {"Cookie": "edge_agent_live=wrong"})[0] == 401
        assert agent.get("/api/state", {"Authorization": f"Bearer {token}"})[0] == 200
        # the one-time link sets the cookie, once
        path = agent.link.split(str(agent.port), 1)[1]
        status, headers, _ = agent.get(path)
        assert status == 303 and headers["location"] == "/"
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
        assert agent.get("/api/state", {"Cookie": cookie})[0] == 200
        assert agent.get(path)[0] == 401  # used up
        time.sleep(0.5)
        refused = [line for line in agent.lines if "refused" in line]
        assert len(refused) == 1, refused  # eight refusals, one log line (rate-limited)


def _open_stream(port: int, rcvbuf: int = 4096) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
    sock.settimeout(30)
    return sock


def _read_until(sock: socket.socket, needle: bytes, limit: int = 4_000_000) -> bytes:
    data = b""
    while needle not in data and len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_a_stalled_viewer_never_slows_the_pipeline_and_gets_the_newest_frame() -> None:
    with live_agent([*LIVE, "--http", str(free_port())]) as agent:
        sock = _open_stream(agent.port)
        head = _read_until(sock, b"\r\n\r\n--frame\r\n")
        assert b"multipart/x-mixed-replace" in head
        # stall: read nothing while the stream's buffers fill; the pipeline goes on at its pace
        before = wait_items(agent, 0)
        time.sleep(4)
        after = wait_items(agent, before + 20)  # 4 s at the video's 10 fps: 40 frames; 20 on a loaded machine
        assert after > before + 20
        # reading again: whole JPEGs of frames the pipeline saw, not a backlog of every frame
        data = _read_until(sock, b"--frame\r\n" * 1, limit=8_000_000)
        data += _read_until(sock, b"\xff\xd9\r\n--frame\r\n")
        sock.close()
        start = data.rindex(b"\xff\xd8", 0, data.rindex(b"\xff\xd9\r\n--frame") + 2)
        end = data.index(b"\xff\xd9", start) + 2
        image = cv2.imdecode(np.frombuffer(data[start:end], np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[1] <= 480


def test_the_stream_ends_cleanly_at_sigterm() -> None:
    with live_agent([*LIVE, "--http", str(free_port())]) as agent:
        sock = _open_stream(agent.port, rcvbuf=1 << 20)
        _read_until(sock, b"\r\n--frame\r\n")
        wait_items(agent, 0)
        agent.proc.send_signal(signal.SIGTERM)
        tail = b""
        while True:
            chunk = sock.recv(65536)  # the stream ends: EOF within the socket timeout
            if not chunk:
                break
            tail = (tail + chunk)[-64:]
        sock.close()
        assert tail.endswith(b"--frame--\r\n"), tail
        assert agent.proc.wait(timeout=30) == 0
        time.sleep(0.2)
        assert "Traceback" not in agent.log(), agent.log()[-3000:]


def test_nobody_looking_costs_no_jpeg() -> None:
    with live_agent([*LIVE, "--http", str(free_port()), "--max-frames", "30"]) as agent:
        assert agent.proc.wait(timeout=60) == 0
        time.sleep(0.3)
        assert "live page closed: 0 frames encoded" in agent.log(), agent.log()[-2000:]


def _expected_label(index: int) -> str:
    """What the waste model makes of frame ``index`` of the looping sample, computed here."""
    cap = cv2.VideoCapture(str(WASTE_VIDEO))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    config = Config()
    config.task = "waste"
    config.model.threads = 1
    _, model = load_model(config)
    scores = ImageInference(model)(Frame(frames[index % len(frames)], 0.0, 0.0, index))
    return model.labels[int(np.argmax(scores))]


def test_a_real_browser_shows_the_label_of_the_frame_on_screen() -> None:
    with live_agent([*LIVE, "--http", str(free_port())]) as agent:
        wait_items(agent, 5)
        result = browser(f"http://127.0.0.1:{agent.port}/", "--dump-dom")
        dom = result.stdout
        label, index = dom_text(dom, "label"), dom_text(dom, "frame-index")
        assert label and index and index.isdigit(), (label, index, result.stderr[-2000:])
        assert label == _expected_label(int(index))
        assert 'src="frame.jpg?v=' in dom  # the frame itself is on the page


@pytest.mark.slow
def test_the_voice_page_shows_a_command_spoken_into_the_microphone(tmp_path: Path, tone_model: Path) -> None:
    """A PulseAudio null sink's monitor is the agent's microphone; words played into it show on the
    page read by a real browser: the last commands, and the score against the threshold."""
    wav = tmp_path / "words.wav"
    tone_stream(wav, ["stop", "tree", "on"], seed=11, rate=SINK_RATE_HZ)
    with pulse_server(tmp_path / "pa") as pulse, live_agent(
            ["--task", "voice", "--mic", "pulse", "--model", str(tone_model), "--sink", "stdout", "--threads", "1",
             "--http", str(free_port())], env=agent_env(**pulse.env)) as agent:
        assert "capturing at" in agent.log()
        time.sleep(1.2)  # the 1 s window fills with the monitor's silence
        played = pulse.play(wav)
        assert played.returncode == 0, played.stderr
        deadline = time.monotonic() + 20
        while len(state(agent).get("commands", [])) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        result = browser(f"http://127.0.0.1:{agent.port}/", "--dump-dom")
        commands = re.findall(r"<li[^>]*>([^<]*)</li>", result.stdout.split('id="commands"', 1)[-1].split("</ol>")[0])
        assert [c.split()[-2] for c in commands] == ["on", "stop"], (commands, result.stderr[-2000:])
        assert dom_text(result.stdout, "score") is not None and "/ 0.9" in (dom_text(result.stdout, "score") or "")


def test_the_live_bench_measures_with_and_without_a_viewer_in_one_run() -> None:
    """Every figure is there and the viewer really watched (JPEGs received): a property of the
    bench, not a speed."""
    from edge_agent.bench.cli import run as bench

    report = bench(["live", "--model", str(WASTE_VIDEO.parent.parent / "models" / "waste.tflite"), "--source",
                    str(WASTE_VIDEO), "--runs", "60", "--rounds", "2", "--quiet"])
    live = report["results"]["live"]
    assert [p["viewer"] for p in live["phases"]] == [False, True, False, True]
    assert all(p["jpegs_received"] >= 1 for p in live["phases"] if p["viewer"])
    assert all(p["jpegs_received"] == 0 for p in live["phases"] if not p["viewer"])
    assert live["with_vs_without"]["rounds"] == 2 and live["with_vs_without"]["median"] > 0
    assert live["cpu_with_vs_without"]["median"] > 0 and live["encode_ms_p50"] > 0
