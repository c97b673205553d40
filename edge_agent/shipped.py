"""Where the files the project ships beside its code are: models, systemd units, sample videos.

A checkout has them at its root (``models/``, ``systemd/``, ``samples/``). A wheel installs them
as data files under ``{prefix}/share/edge-agent/`` (the venv's prefix for pip or pipx), and a
distribution package under ``/usr/share/edge-agent/``. The first of those that holds the folder
wins, so ``edge-agent --task waste`` works from any of the three without a path.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

CHECKOUT: Final = Path(__file__).resolve().parent.parent
SHARE: Final = "share/edge-agent"
SYSTEM_SHARE: Final = Path("/usr/share/edge-agent")


def candidates(folder: str) -> list[Path]:
    """Every place ``folder`` (``models``, ``systemd`` or ``samples``) may be, in order."""
    return [CHECKOUT / folder, Path(sys.prefix) / SHARE / folder, SYSTEM_SHARE / folder]


def find(folder: str, marker: str | None = None) -> Path:
    """The first candidate that exists (and holds ``marker``, when given); else the system one,
    so an error message names the place a packaged install would use."""
    for path in candidates(folder):
        if path.is_dir() and (marker is None or (path / marker).exists()):
            return path
    return SYSTEM_SHARE / folder
