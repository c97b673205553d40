#!/usr/bin/env python3
"""Screenshots of the live page for the README (docs/live-*.png), taken by headless chromium of
real agents: the waste model on samples/waste.mp4, the voice model on espeak-ng speech, the
activity model on a synthetic recording (tools/gen_sensor_data.py).

    python tools/live_screenshots.py --activity-csv /tmp/sensgen/activity/jogging/subj01-1.csv
"""

from __future__ import annotations

import argparse
import contextlib
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_agent.sources.wav import read_wav, write_wav  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def speech(folder: Path, words: list[str], rate: int = 16000) -> Path:
    parts = [np.zeros(rate, np.float32)]
    for i, word in enumerate(words):
        clip = folder / f"w{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(clip), word], check=True)
        subprocess.run(["sox", str(clip), "-r", str(rate), str(clip.with_suffix(".16k.wav"))], check=True)
        samples, _ = read_wav(clip.with_suffix(".16k.wav"))
        parts += [samples.astype(np.float32), np.zeros(int(1.5 * rate), np.float32)]
    out = folder / "speech.wav"
    write_wav(out, np.concatenate(parts), rate)
    return out


def shoot(args: list[str], out: Path, wait_s: float, size: str) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "edge_agent", *args, "--sink", "stdout", "--http", str(port), "--threads", "1"]
    with subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            if re.search(r"live page on", line):
                break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:  # a viewer from the start: the plots have their last seconds
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=5).read()
            time.sleep(0.5)
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(["chromium", *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=3000",
                            f"--window-size={size}", f"--screenshot={out}", f"http://127.0.0.1:{port}/"],
                           check=True, capture_output=True, timeout=120)
        proc.terminate()
    small(out)
    print(f"{out}: {out.stat().st_size // 1024} KB")


def small(png: Path) -> None:
    """128 colours (Pillow, where installed: matplotlib brings it) keep a page screenshot near 35 KB."""
    try:
        from PIL import Image
    except ImportError:
        cv2.imwrite(str(png), cv2.imread(str(png)), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        return
    image = Image.open(png).convert("RGB")
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(png, optimize=True)


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--activity-csv", type=Path, required=True, help="a recording from tools/gen_sensor_data.py")
    p.add_argument("--out", type=Path, default=REPO / "docs")
    a = p.parse_args()
    size = "1000,820"
    shoot(["--task", "waste", "--source", str(REPO / "samples" / "waste.mp4"), "--realtime", "--loop"],
          a.out / "live-image.png", 5.0, size)
    with tempfile.TemporaryDirectory() as tmp:
        wav = speech(Path(tmp), ["yes", "stop", "on", "no", "off", "stop"])
        shoot(["--task", "voice", "--source", str(wav), "--realtime"], a.out / "live-voice.png", 9.0, size)
    shoot(["--task", "activity", "--source", str(a.activity_csv), "--realtime"], a.out / "live-sensor.png", 6.0, size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
