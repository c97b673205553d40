"""``edge-agent doctor``: what is wrong on this machine, one line per check.

A Pi owner's questions, answered in order: which Python, numpy and interpreter (tflite-runtime
under numpy 2 is flagged: it crashes inside ``Interpreter()``); which board, how hot, throttled
or not; can the camera be opened, is there a microphone, is a Coral plugged in (by USB id, before
and after its firmware loads, or ``/dev/apex_*``) and does libedgetpu load; does the broker
accept our credentials (a real MQTT connect); are the models intact (manifest and sha256).

Each check is ``ok``, ``warn`` (worth knowing, not blocking: a Coral that the config does not
ask for), ``fail`` (the agent as configured will not work) or ``info``. The exit code is 0 only
when nothing failed, so ``edge-agent doctor && systemctl start ...`` does the right thing.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import glob
import importlib.metadata
import json
import os
import platform
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from . import config as config_mod
from . import manifest as manifest_mod
from .errors import EdgeAgentError, ExitCode
from .tasks import TASKS, default_model, models_dir

OK: Final = "ok"
WARN: Final = "warn"
FAIL: Final = "fail"
INFO: Final = "info"

CORAL_USB_IDS: Final = {("1a6e", "089a"): "Coral USB, firmware not loaded yet",
                        ("18d1", "9302"): "Coral USB, firmware loaded"}
EDGETPU_LIBRARY: Final = "libedgetpu.so.1"
HOT_C: Final = 80.0  # a Pi 4/5 starts to throttle its ARM cores at 80 °C
BROKER_TIMEOUT_S: Final = 5.0
# vcgencmd get_throttled bits (Raspberry Pi documentation, "vcgencmd")
THROTTLE_NOW: Final = {0: "under-voltage", 1: "ARM frequency capped", 2: "throttled", 3: "soft temperature limit"}
THROTTLE_SINCE_BOOT_SHIFT: Final = 16


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


# -- software --------------------------------------------------------------------------------

def check_python() -> list[Check]:
    import numpy as np

    return [Check("python", OK, f"{platform.python_version()} ({sys.executable})"),
            Check("numpy", OK, np.__version__)]


def _installed(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_interpreter() -> list[Check]:
    import numpy as np

    from .engine import find_backend

    checks = []
    try:
        backend = find_backend()
        checks.append(Check("interpreter", OK, f"{backend.name} {backend.version}"))
    except EdgeAgentError as e:
        checks.append(Check("interpreter", FAIL, str(e)))
        return checks
    old = _installed("tflite-runtime")
    if old and int(np.__version__.split(".")[0]) >= 2 and backend.name != "tflite_runtime":
        checks.append(Check("tflite-runtime", WARN, f"{old} is installed but fails under numpy {np.__version__}; "
                            f"{backend.name} is used instead (pip uninstall tflite-runtime)"))
    return checks


def check_invoke(cfg: config_mod.Config) -> Check:
    """The configured model, loaded by the agent's own loader and invoked once, in a child process:
    an interpreter that imports but crashes in ``Interpreter()`` is a FAIL here, not a dead agent."""
    from .probe import probe

    ok, line = probe(cfg)
    return Check("invoke", OK if ok else FAIL, line)


# -- board -----------------------------------------------------------------------------------

def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").replace("\0", "").strip()
    except OSError:
        return None


def check_board() -> list[Check]:
    cpuinfo = _read("/proc/cpuinfo") or ""
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
             if line.split(":", 1)[0].strip() in ("model name", "Model", "Hardware")]
    cpu = f"{platform.machine()}, {os.cpu_count()} cores" + (f", {names[0]}" if names else "")
    board = _read("/proc/device-tree/model")
    return [Check("cpu", INFO, cpu),
            Check("board", INFO, board or "not a Raspberry Pi (no /proc/device-tree/model)")]


def check_temperature() -> Check:
    temps = []
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*/temp")):
        raw = _read(zone)
        if raw and raw.lstrip("-").isdigit():
            temps.append(int(raw) / 1000.0)
    if not temps:
        return Check("temperature", INFO, "no thermal sensor in /sys/class/thermal")
    hottest = max(temps)
    if hottest >= HOT_C:
        return Check("temperature", WARN, f"{hottest:.1f} °C: the CPU throttles; add a heatsink or fan")
    return Check("temperature", OK, f"{hottest:.1f} °C")


def decode_throttled(value: int) -> tuple[list[str], list[str]]:
    """``get_throttled`` bits → (problems now, problems since boot)."""
    now = [name for bit, name in THROTTLE_NOW.items() if value & (1 << bit)]
    past = [name for bit, name in THROTTLE_NOW.items() if value & (1 << (bit + THROTTLE_SINCE_BOOT_SHIFT))]
    return now, past


def check_throttling() -> Check:
    vcgencmd = shutil.which("vcgencmd")
    if vcgencmd is None:
        return Check("throttling", INFO, "vcgencmd not available (not a Raspberry Pi)")
    try:
        out = subprocess.run([vcgencmd, "get_throttled"], capture_output=True, text=True, timeout=5).stdout
        value = int(out.strip().split("=", 1)[1], 16)
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return Check("throttling", WARN, "vcgencmd get_throttled gave no answer")
    now, past = decode_throttled(value)
    if now:
        return Check("throttling", FAIL, f"{', '.join(now)} now (0x{value:x}); use the official power supply")
    if past:
        return Check("throttling", WARN, f"{', '.join(past)} since boot (0x{value:x})")
    return Check("throttling", OK, "never throttled since boot")


# -- devices ---------------------------------------------------------------------------------

def _camera_opens(device: str) -> bool:
    import cv2

    cap = cv2.VideoCapture(device)
    try:
        return bool(cap.isOpened() and cap.read()[0])
    finally:
        cap.release()


def check_camera(cfg: config_mod.Config) -> Check:
    s = cfg.source
    if s.picamera:
        return _check_picamera()
    if s.source or s.mic is not None or TASKS[cfg.task].kind == "audio":
        return Check("camera", INFO, "not needed by this config (input: "
                     f"{s.source or 'microphone'}); cameras: {', '.join(_video_devices()) or 'none'}")
    wanted = s.camera if s.camera is not None else "0"
    device = f"/dev/video{wanted}" if wanted.isdigit() else wanted
    present = _video_devices()
    if not present:
        return Check("camera", FAIL, f"no camera: {device} is configured and there is no /dev/video* device")
    if device not in present:
        return Check("camera", FAIL, f"{device} does not exist (cameras: {', '.join(present)})")
    if not _camera_opens(device):
        return Check("camera", FAIL, f"{device} exists but gives no frame (in use, or not a capture device)")
    return Check("camera", OK, f"{device} gives frames")


def _video_devices() -> list[str]:
    return sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p))


def _check_picamera() -> Check:
    try:
        from picamera2 import Picamera2
    except ImportError:
        return Check("camera", FAIL, "picamera2 is not importable: apt install python3-picamera2 and create the "
                     "venv with --system-site-packages")
    cameras = Picamera2.global_camera_info()
    if not cameras:
        return Check("camera", FAIL, "picamera2 finds no camera (ribbon cable? camera_auto_detect=1?)")
    return Check("camera", OK, ", ".join(str(c.get("Model", "?")) for c in cameras))


def _input_devices() -> list[str] | None:
    """Input device names from sounddevice, or None when it is not installed."""
    try:
        import sounddevice
    except (ImportError, OSError):  # OSError: PortAudio itself is missing
        return None
    return [str(d["name"]) for d in sounddevice.query_devices() if d.get("max_input_channels", 0) > 0]


def check_audio(cfg: config_mod.Config) -> Check:
    needed = TASKS[cfg.task].kind == "audio" or cfg.source.mic is not None
    bad = FAIL if needed else INFO
    names = _input_devices()
    if names is None:
        cards = _read("/proc/asound/cards")
        if not cards or "no soundcards" in cards:
            return Check("audio", bad, "no sound card (/proc/asound/cards); sounddevice is not installed")
        first = [line.strip() for line in cards.splitlines() if line.strip()][:1]
        return Check("audio", WARN if needed else INFO,
                     f"sound card {first[0] if first else '?'}; pip install sounddevice to use it")
    if not names:
        return Check("audio", bad, "no audio input device")
    return Check("audio", OK, f"inputs: {', '.join(names[:4])}")


def coral_devices(usb_root: str = "/sys/bus/usb/devices", dev: str = "/dev") -> list[str]:
    """Every Coral found: USB (by vendor:product, in either firmware state) and PCIe (/dev/apex_N)."""
    found = []
    for device in sorted(glob.glob(f"{usb_root}/*/idVendor")):
        folder = os.path.dirname(device)
        ids = (_read(device) or "", _read(f"{folder}/idProduct") or "")
        if ids in CORAL_USB_IDS:
            found.append(f"{CORAL_USB_IDS[ids]} ({ids[0]}:{ids[1]}, {os.path.basename(folder)})")
    found.extend(f"Coral PCIe {p}" for p in sorted(glob.glob(f"{dev}/apex_*")))
    return found


def check_edgetpu(cfg: config_mod.Config) -> list[Check]:
    needed = cfg.model.edgetpu is not None
    bad = FAIL if needed else WARN
    why = "" if needed else " (not needed: model.edgetpu is not set)"
    corals = coral_devices()
    checks = [Check("edgetpu", OK, "; ".join(corals)) if corals else Check("edgetpu", bad, f"no Coral found{why}")]
    try:
        ctypes.CDLL(EDGETPU_LIBRARY)
        checks.append(Check("libedgetpu", OK, f"{EDGETPU_LIBRARY} loads"))
    except OSError as e:
        checks.append(Check("libedgetpu", bad, f"{EDGETPU_LIBRARY} does not load ({e}); install "
                            f"libedgetpu1-std from Coral's apt repository{why}"))
    return checks


# -- broker and models -----------------------------------------------------------------------

def probe_broker(m: config_mod.MqttConfig, timeout: float = BROKER_TIMEOUT_S) -> tuple[bool, str]:
    """A real MQTT connect with the configured credentials and TLS, then a clean disconnect.
    Its own client id, so a running agent is not kicked off the broker."""
    from .mqtt_client import make_client  # the agent's own set-up: protocol, credentials, TLS

    client = make_client(m, f"edge-agent-doctor-{os.getpid()}")
    client.connect_timeout = timeout
    answer: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        answer["reason"] = reason
        done.set()

    client.on_connect = on_connect
    where = f"{m.host}:{m.port}"
    try:
        client.connect(m.host, m.port, keepalive=10)
    except ssl.SSLError as e:
        return False, f"{where}: TLS failed ({getattr(e, 'verify_message', None) or e.reason or e})"
    except OSError as e:
        return False, f"{where}: unreachable ({e.strerror or e})"
    client.loop_start()
    try:
        if not done.wait(timeout):
            return False, f"{where}: no answer to CONNECT within {timeout:.0f} s"
        reason = answer["reason"]
        if reason.is_failure:
            return False, f"{where}: refused ({reason}); check mqtt.username and the password"
        user = f" as {m.username}" if m.username else " (anonymous)"
        return True, f"{where}: connected{user}"
    finally:
        client.disconnect()
        client.loop_stop()


def check_broker(cfg: config_mod.Config) -> Check:
    if cfg.sink != "mqtt":
        return Check("broker", INFO, f"not used (sink = {cfg.sink})")
    ok, detail = probe_broker(cfg.mqtt)
    return Check("broker", OK if ok else FAIL, detail)


def check_spool(cfg: config_mod.Config) -> Check:
    """What waits in the spool, and the dead letters: messages refused by the broker (an ACL on
    MQTT 5) or that could never be sent, with the reason, read-only."""
    import sqlite3

    if cfg.sink != "mqtt":
        return Check("spool", INFO, f"not used (sink = {cfg.sink})")
    path = config_mod.spool_path(cfg)
    if not path.exists():
        return Check("spool", INFO, f"{path}: none yet")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        db.text_factory = lambda raw: raw.decode("utf-8", "replace")  # a dead letter may be text that is not UTF-8
        try:
            waiting = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            dead = (db.execute("SELECT reason, topic, COUNT(*) FROM dead GROUP BY reason, topic ORDER BY 3 DESC")
                    .fetchall() if "dead" in tables else [])
        finally:
            db.close()
    except sqlite3.Error as e:
        return Check("spool", WARN, f"{path}: cannot read it ({e}); the agent sets a corrupt spool aside itself")
    if not dead:
        return Check("spool", OK, f"{path}: {waiting} messages waiting, no dead letters")
    total = sum(n for _, _, n in dead)
    reason, topic, n = dead[0]
    more = f"; {len(dead) - 1} other reason(s)" if len(dead) > 1 else ""
    return Check("spool", WARN, f"{path}: {waiting} waiting; {total} not delivered (dead letters), most: {n} on "
                 f"{str(topic)[:120]}: {reason}{more}")


def check_model_file(path: Path) -> Check:
    name = f"model {path.name}"
    manifest_path = manifest_mod.manifest_path_for(path)
    if not manifest_path.exists():
        return Check(name, WARN, f"no manifest {manifest_path.name}: labels and checksum cannot be checked")
    try:
        manifest = manifest_mod.load(manifest_path)
        manifest_mod.verify_sha256(path, manifest)
    except EdgeAgentError as e:
        return Check(name, FAIL, str(e))
    return Check(name, OK, f"{manifest.name}, {len(manifest.labels)} labels, sha256 {manifest.sha256[:12]} matches")


def check_models(cfg: config_mod.Config) -> list[Check]:
    """Every model in the models folder, plus the one the config runs (which must exist)."""
    folder = models_dir()
    paths = sorted(folder.glob("*.tflite"))
    wanted = Path(cfg.model.path) if cfg.model.path else default_model(cfg.task)
    if wanted is not None and wanted.resolve() not in {p.resolve() for p in paths}:
        paths.append(wanted)
    checks = [check_model_file(p) if p.exists() else Check(f"model {p.name}", FAIL, f"{p}: file not found")
              for p in paths]
    return checks or [Check("models", WARN, f"no .tflite models in {folder}")]


def check_live_page(cfg: config_mod.Config) -> Check:
    """Whether the live page is on, where, and who can open it (README: Live page)."""
    from .live.auth import read_token  # the page's modules only when asked about it

    h = cfg.http
    address = config_mod.http_address(h.listen) if h.listen else None
    if address is None:
        return Check("live page", INFO, "off (turn on with --http [ADDR:]PORT or [http] listen)")
    host, port = address
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    if not h.token_file:
        return Check("live page", OK, f"on at {url} (this machine only; a browser elsewhere: ssh -L {port}:"
                                      f"127.0.0.1:{port} this-pi)")
    try:
        read_token(h.token_file, cfg.where("http.token_file"))
    except EdgeAgentError as e:
        return Check("live page", FAIL, f"on at {url}, but {e}")
    reach = "this machine only" if config_mod.is_loopback(host) else "other machines too"
    return Check("live page", OK, f"on at {url} ({reach}; token from {h.token_file}; the one-time sign-in "
                                  "link is in the agent's log)")


def check_voice_frontend(cfg: config_mod.Config) -> Check:
    """The speech-embedding front end's two TFLite files (models/speech_embedding/) against their
    shipped sha256: a voice model whose manifest names that front end cannot run without them."""
    from .voice import embedding

    needed = TASKS[cfg.task].kind == "audio"
    try:
        found = embedding.check_files()
    except EdgeAgentError as e:
        return Check("voice front end", FAIL if needed else WARN, str(e))
    return Check("voice front end", OK, f"{embedding.NAME}: " + ", ".join(
        f"{name} sha256 {digest[:12]} matches" for name, digest in found.items()))


# -- entry point -----------------------------------------------------------------------------

def run_checks(cfg: config_mod.Config) -> list[Check]:
    steps: list[Callable[[], Check | list[Check]]] = [
        check_python, check_interpreter, lambda: check_invoke(cfg), check_board, check_temperature, check_throttling,
        lambda: check_camera(cfg), lambda: check_audio(cfg), lambda: check_edgetpu(cfg),
        lambda: check_broker(cfg), lambda: check_spool(cfg), lambda: check_models(cfg), lambda: check_live_page(cfg),
        lambda: check_voice_frontend(cfg),
    ]
    checks: list[Check] = []
    for step in steps:
        result = step()
        checks.extend(result if isinstance(result, list) else [result])
    return checks


def load(path: Path | None) -> config_mod.Config:
    cfg = config_mod.Config()
    if path is not None:
        config_mod.load_file(cfg, path)
    config_mod.load_secrets(cfg, os.environ)
    config_mod.validate(cfg)
    return cfg


def render(checks: Sequence[Check]) -> str:
    lines = [f"{c.status.upper():<5} {c.name:<15} {c.detail}" for c in checks]
    failed = sum(c.status == FAIL for c in checks)
    lines.append(f"{failed} check{'s' if failed != 1 else ''} failed" if failed else "all checks passed")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edge-agent doctor", description="Check this machine for running edge-agent.")
    p.add_argument("--config", type=Path, help="the agent's TOML config (default: built-in defaults)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    args = p.parse_args(argv)
    try:
        cfg = load(args.config)
    except EdgeAgentError as e:
        print(f"edge-agent doctor: error: {e}", file=sys.stderr)
        return int(e.exit_code)
    checks = run_checks(cfg)
    ok = not any(c.status == FAIL for c in checks)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [dataclasses.asdict(c) for c in checks]}, indent=2))
    else:
        sys.stdout.write(render(checks))
    return ExitCode.OK if ok else ExitCode.FAILURE
