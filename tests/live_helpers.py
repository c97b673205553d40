"""Real parts for the live page tests: the agent as a subprocess with ``--http``, its log read
as it comes, plain HTTP from the standard library, and Debian's chromium in headless mode."""

from __future__ import annotations

import contextlib
import http.client
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from tests.helpers import REPO, agent_env, start_agent

WASTE_VIDEO = REPO / "samples" / "waste.mp4"
START_TIMEOUT_S = 60.0  # a loaded 2-core machine loads the model and opens the video slowly
CHROMIUM_TIMEOUT_S = 90.0
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


@dataclass
class LiveAgent:
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    out: list[str] = field(default_factory=list)  # stdout (--sink stdout: the predictions)
    host: str = ""
    port: int = 0
    link: str = ""  # the one-time link, when a token is needed

    def log(self) -> str:
        return "".join(self.lines)

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET",
            ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


def _pump(stream: object, out: list[str], seen: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        out.append(line)
        seen.put(line)


@contextlib.contextmanager
def live_agent(args: Sequence[str], env: dict[str, str] | None = None) -> Iterator[LiveAgent]:
    """The agent with ``args`` (which include ``--http``), once it said where its page is."""
    proc = start_agent(list(args), env=env or agent_env())
    agent = LiveAgent(proc)
    seen: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None and proc.stdout is not None
    pumps = [threading.Thread(target=_pump, args=(proc.stderr, agent.lines, seen), daemon=True),
             threading.Thread(target=_pump, args=(proc.stdout, agent.out, queue.Queue()), daemon=True)]
    for pump in pumps:
        pump.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = seen.get(timeout=0.2)
            except queue.Empty:
                if proc.poll() is not None:
                    break
                continue
            m = re.search(r"live page on http://\[?([^\]/]+?)\]?:(\d+)/(?:.*sign in: (\S+))?", line)
            if m:
                agent.host, agent.port, agent.link = m.group(1), int(m.group(2)), m.group(3) or ""
                break
        assert agent.port, f"the agent did not say where its page is:\n{agent.log()[-3000:]}"
        yield agent
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for pump in pumps:
            pump.join(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed (tools/test.sh installs Debian's chromium for the browser tests)")
    return path


def browser(url: str, *extra: str, budget_ms: int = 4000) -> subprocess.CompletedProcess[str]:
    """A fresh headless chromium on ``url`` (a new profile each time), JavaScript given
    ``budget_ms`` of virtual time before the result (``--dump-dom``, ``--screenshot``)."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               f"--virtual-time-budget={budget_ms}", *extra, url],
                              capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, cwd=profile)


def dom_text(dom: str, element_id: str) -> str | None:
    m = re.search(rf'id="{re.escape(element_id)}"[^>]*>([^<]*)<', dom)
    return m.group(1) if m else None
