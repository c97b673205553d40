"""The machine we run on, read in one place: board, CPU, temperatures, throttling, governor.

doctor, the metrics message and the bench all report these facts; each reads them from here, so
they cannot disagree on a Pi (``/proc/device-tree/model``, ``vcgencmd get_throttled``) or off one
(none of those files: ``None``, never an exception). Every function is cheap and side-effect free.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Final

DEVICE_TREE_MODEL: Final = "/proc/device-tree/model"
THERMAL: Final = Path("/sys/class/thermal")
CPU_SYSFS: Final = Path("/sys/devices/system/cpu")
VCGENCMD_TIMEOUT_S: Final = 5.0


def read_text(path: str | Path) -> str | None:
    """A small system file, NULs and whitespace stripped; None when it is not there."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").replace("\0", "").strip()
    except OSError:
        return None


def board_model() -> str | None:
    """'Raspberry Pi 5 Model B Rev 1.0'; None off a device-tree board."""
    return read_text(DEVICE_TREE_MODEL) or None


def cpu_model() -> str:
    info = read_text("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", info, re.MULTILINE)
        if m:
            return m.group(1).strip()
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (a systemd CPUAffinity= or a container can give fewer)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def governors() -> list[str]:
    found = {read_text(p) for p in CPU_SYSFS.glob("cpu[0-9]*/cpufreq/scaling_governor")}
    return sorted(g for g in found if g)


def temperatures_c() -> dict[str, float]:
    """Every thermal zone: its type (or name) → °C."""
    temps: dict[str, float] = {}
    for zone in sorted(THERMAL.glob("thermal_zone*")):
        raw, kind = read_text(zone / "temp"), read_text(zone / "type")
        if raw and raw.lstrip("-").isdigit():
            temps[kind or zone.name] = int(raw) / 1000.0
    return temps


def hottest_c() -> float | None:
    temps = temperatures_c()
    return round(max(temps.values()), 1) if temps else None


def throttled() -> int | None:
    """Raspberry Pi firmware's throttle bits (0 = never throttled), where vcgencmd exists."""
    tool = shutil.which("vcgencmd")
    if tool is None:
        return None
    try:
        out = subprocess.run([tool, "get_throttled"], capture_output=True, text=True,
                             timeout=VCGENCMD_TIMEOUT_S).stdout
        return int(out.strip().split("=", 1)[1], 16)
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None
