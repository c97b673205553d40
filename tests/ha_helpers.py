"""A real Home Assistant for tests, in two versions: 2024.1.6 in its own venv (tools/install_ha.sh),
the newest that runs on Debian 12's Python, and 2026.11.0 (tools/install_ha_2026.sh), which needs
Python 3.14 and so runs in a Debian testing root through a ``hass`` wrapper. Either is started on a
config folder written here, its MQTT integration pointed at a test mosquitto, and what a user gets
is read back from HA's own files: the recorder database and the entity and device registries."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from tests.helpers import REPO, Broker, free_port, stop_process

START_TIMEOUT_S: Final = 240.0  # HA's first start compiles and imports a lot: generous on a loaded 2-core VM
STOP_GRACE_S: Final = 60.0

T = TypeVar("T")


@dataclass(frozen=True)
class HaVersion:
    """One Home Assistant release the suite runs against: where its install lives and how it is made."""

    id: str  # the test id
    version: str
    env: str  # the variable that moves its install
    default: Path
    install: str  # the command that makes it

    @property
    def home(self) -> Path:
        """The install: a venv (2024.1.6) or the folder of the root and its wrapper (2026.11.0)."""
        return Path(os.environ.get(self.env) or self.default)

    @property
    def hass(self) -> Path:
        return self.home / "bin" / "hass"

    @property
    def installed(self) -> bool:
        """The install scripts write their stamp only once ``hass --version`` ran in the finished install."""
        return (self.home / ".edge-agent-requirements").is_file() and self.hass.exists()

    @property
    def http_in_storage(self) -> bool:
        """HA 2026 takes its http settings from ``.storage/http``: a YAML ``http:`` block is migrated
        as a trial that, unconfirmed after 5 minutes, restarts HA on 0.0.0.0:8123."""
        return int(self.version.split(".")[0]) >= 2026


HA_2024: Final = HaVersion("ha2024", "2024.1.6", "EDGE_AGENT_HA_VENV", REPO / ".cache" / "ha-venv",
                           "bash tools/install_ha.sh")
HA_2026: Final = HaVersion("ha2026", "2026.11.0", "EDGE_AGENT_HA2026_DIR", REPO / ".cache" / "ha2026",
                           "bash tools/install_ha_2026.sh")
VERSIONS: Final = (HA_2024, HA_2026)


def hass_binary() -> Path:
    """The ``hass`` of Home Assistant 2024.1.6 (tests that run against that release only)."""
    return HA_2024.hass


def ha_installed() -> bool:
    """Whether Home Assistant 2024.1.6 is installed (tools/install_ha.sh wrote its stamp)."""
    return HA_2024.installed


def ha_required() -> bool:
    """tools/test.sh (and so CI) installs HA and sets this: a missing HA is then a failure, not a skip."""
    return os.environ.get("EDGE_AGENT_HA_REQUIRED", "") == "1"


def wait_until(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got is not None and got is not False:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Row:
    """One row of the recorder's ``states`` table, with its attributes."""

    state_id: int
    state: str
    last_updated_ts: float
    attributes_id: int | None
    attributes: dict[str, Any]


def _configuration(http_port: int, http_yaml: bool) -> str:
    # Every core setting given, so HA looks nothing up on the network; the recorder commits every
    # second so a test sees a state a moment after HA does.
    http = f"""\
http:
  server_host: 127.0.0.1
  server_port: {http_port}
""" if http_yaml else ""
    return f"""\
homeassistant:
  name: edge-agent test
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: NL
  internal_url: "http://127.0.0.1:{http_port}"
{http}recorder:
  commit_interval: 1
  auto_purge: false
logger:
  default: warning
  logs:
    homeassistant.components.mqtt: info
    homeassistant.bootstrap: info
    homeassistant.core: info
    homeassistant.config_entries: info
"""


def _http_storage(http_port: int) -> dict[str, Any]:
    """``.storage/http`` of HA 2026.11 (components/http/config.py, storage version 3): the listening
    address as the confirmed ("stable") config, the YAML migration marked done."""
    stable = {"server_host": ["127.0.0.1"], "server_port": http_port,
              "cors_allowed_origins": ["https://cast.home-assistant.io"], "login_attempts_threshold": -1,
              "ip_ban_enabled": True, "ssl_profile": "intermediate_v6", "use_x_frame_options": True,
              "created_at": "2026-01-01T00:00:00+00:00", "error": None, "error_message": None}
    return {"version": 3, "minor_version": 1, "key": "http",
            "data": {"stable": stable, "pending": None, "yaml_migration_done": True}}


def _config_entries(broker: Broker) -> dict[str, Any]:
    """``.storage/core.config_entries`` with one MQTT entry (HA's config_entries.py storage format):
    what the UI writes when a user adds the MQTT integration."""
    return {
        "version": 1, "minor_version": 1, "key": "core.config_entries",
        "data": {"entries": [{
            "entry_id": uuid.uuid4().hex, "version": 1, "minor_version": 1, "domain": "mqtt", "title": broker.host,
            "data": {"broker": broker.host, "port": broker.port, "discovery": True,
                     "discovery_prefix": "homeassistant"},
            "options": {}, "pref_disable_new_entities": False, "pref_disable_polling": False,
            "source": "user", "unique_id": None, "disabled_by": None,
        }]},
    }


class HomeAssistant:
    """One ``hass`` process of ``release`` on ``config_dir``, its MQTT integration on ``broker``."""

    def __init__(self, config_dir: Path, broker: Broker, release: HaVersion = HA_2024) -> None:
        self.release = release
        self.dir = config_dir
        self.broker = broker
        self.http_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = config_dir / "hass.out"
        self.db = config_dir / "home-assistant_v2.db"

    def write_config(self) -> None:
        (self.dir / ".storage").mkdir(parents=True, exist_ok=True)
        http_in_storage = self.release.http_in_storage
        (self.dir / "configuration.yaml").write_text(_configuration(self.http_port, not http_in_storage))
        (self.dir / ".storage" / "core.config_entries").write_text(json.dumps(_config_entries(self.broker)))
        if http_in_storage:
            (self.dir / ".storage" / "http").write_text(json.dumps(_http_storage(self.http_port)))

    def start(self, ready: Callable[[], bool]) -> HomeAssistant:
        """Start ``hass`` and wait for ``ready()`` (the caller watches HA's MQTT birth message)."""
        hass = self.release.hass
        self.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_AGENT_", "PYTHON"))}
        with self.output.open("ab") as out:
            self.proc = subprocess.Popen([str(hass), "-c", str(self.dir), "--skip-pip"], stdout=out,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.dir)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Home Assistant exited with {self.proc.returncode}: {self.log_tail()}")
            if ready() and self._table_exists("states"):
                return self
            time.sleep(0.5)
        raise RuntimeError(f"Home Assistant was not ready after {START_TIMEOUT_S:.0f} s: {self.log_tail()}")

    def stop(self) -> None:
        stop_process(self.proc, STOP_GRACE_S)
        self.proc = None

    def log_tail(self, chars: int = 4000) -> str:
        parts = []
        for path in (self.output, self.dir / "home-assistant.log"):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace")[-chars:])
        return "\n".join(parts)

    # -- what HA recorded -------------------------------------------------------------------
    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            yield con
        finally:
            con.close()

    def _table_exists(self, name: str) -> bool:
        if not self.db.exists():
            return False
        try:
            with self._db() as con:
                return con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                                   (name,)).fetchone() is not None
        except sqlite3.Error:
            return False

    def rows(self, entity_id: str) -> list[Row]:
        """Every ``states`` row of ``entity_id``, oldest first."""
        with self._db() as con:
            found = con.execute(
                "SELECT s.state_id, s.state, s.last_updated_ts, s.attributes_id, a.shared_attrs FROM states s "
                "JOIN states_meta m ON m.metadata_id = s.metadata_id "
                "LEFT JOIN state_attributes a ON a.attributes_id = s.attributes_id "
                "WHERE m.entity_id = ? ORDER BY s.state_id", (entity_id,)).fetchall()
        return [Row(i, state, ts, attrs_id, json.loads(attrs) if attrs else {}) for i, state, ts, attrs_id, attrs
                in found]

    def max_attributes_id(self) -> int:
        with self._db() as con:
            return int(con.execute("SELECT COALESCE(MAX(attributes_id), 0) FROM state_attributes").fetchone()[0])

    def wait_for_state(self, entity_id: str, state: str, timeout: float = 90, after_id: int = 0) -> Row:
        """The first row of ``entity_id`` in ``state`` (newer than ``after_id``), once the recorder has it."""
        def probe() -> Row | None:
            return next((r for r in self.rows(entity_id) if r.state == state and r.state_id > after_id), None)
        try:
            return wait_until(probe, timeout, f"{entity_id} = {state!r} in the recorder")
        except AssertionError as e:
            raise AssertionError(f"{e}; its rows: {[r.state for r in self.rows(entity_id)]}") from None

    # -- the registries ---------------------------------------------------------------------
    def _storage(self, key: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.dir / ".storage" / key).read_text())["data"]
            return data
        except (OSError, ValueError, KeyError):
            return None

    def entities(self, unique_ids: set[str], timeout: float = 90) -> dict[str, dict[str, Any]]:
        """Entity registry entries by unique_id, once all of ``unique_ids`` are saved (HA writes the
        registry about 10 s after a change)."""
        def probe() -> dict[str, dict[str, Any]] | None:
            data = self._storage("core.entity_registry")
            found = {e["unique_id"]: e for e in (data or {}).get("entities", []) if e.get("unique_id") in unique_ids}
            return found if set(found) == unique_ids else None
        return wait_until(probe, timeout, f"entities {sorted(unique_ids)} in the entity registry", interval=1)

    def unique_ids(self) -> set[str]:
        """Every unique_id in the entity registry as saved now."""
        data = self._storage("core.entity_registry")
        return {str(e.get("unique_id")) for e in (data or {}).get("entities", [])}

    def device(self, device_id: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            data = self._storage("core.device_registry")
            return next((d for d in (data or {}).get("devices", [])
                         if d.get("id") == device_id), None)
        return wait_until(probe, 60, f"device {device_id} in the device registry", interval=1)
