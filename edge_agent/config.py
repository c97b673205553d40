"""Typed configuration: a TOML file, overridden by command-line flags, secrets from the environment.

Every value is checked once, here. A wrong one is reported with its dotted field name and where
it came from (the file, a flag or a variable), e.g. ``config /etc/edge-agent/waste.toml: field
'mqtt.port' must be an integer from 1 to 65535 (got 'abc')``. Unknown keys are errors too: a
typo must not silently fall back to a default.

Secrets (the MQTT password) are read at load time from ``$EDGE_AGENT_MQTT_PASSWORD``, from
``mqtt.password_file``, or from systemd's ``$CREDENTIALS_DIRECTORY/mqtt_password``; never from a
flag (``ps`` would show it) and never logged (:func:`render` masks it).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Final, Union

from .errors import ConfigError
from .tasks import TASKS as TASK_TABLE

PASSWORD_ENV: Final = "EDGE_AGENT_MQTT_PASSWORD"
CREDENTIAL_NAME: Final = "mqtt_password"
HTTP_TOKEN_CREDENTIAL: Final = "http_token"  # the live page's token, as a systemd credential
SINKS: Final = ("mqtt", "stdout")
TASKS: Final = tuple(TASK_TABLE)  # the one task table is edge_agent/tasks.py
MASK: Final = "********"
DEFAULT_HTTP_HOST: Final = "127.0.0.1"  # the live page: loopback unless told otherwise
MAX_ID_CHARS: Final = 64  # device_id, client_id: one topic level, one HA unique_id part
MAX_TOPIC_PREFIX_CHARS: Final = 200  # MQTT allows 65535 bytes per topic; a prefix needs far fewer


@dataclasses.dataclass
class ModelConfig:
    path: str | None = None  # default: the task's model in models/
    labels: str | None = None  # labels.txt, for a model without a manifest
    threads: int = 0  # per interpreter; 0 = the cores shared out among the workers
    workers: int = 1  # interpreters inferring frames in parallel (image tasks); 0 = one per core
    edgetpu: str | None = None  # "", "usb", "usb:N", "pci", "pci:N"; None = CPU
    edgetpu_fallback: bool = False


@dataclasses.dataclass
class SourceConfig:
    camera: str | None = None  # "0" or "/dev/video0"
    source: str | None = None  # video file, image folder or rtsp/http URL
    picamera: bool = False
    mic: str | None = None  # sounddevice input: "default", a name or an index (voice task)
    realtime: bool = False  # pace a WAV or video file at its own rate instead of as fast as possible
    loop: bool = False
    width: int = 640
    height: int = 480
    fps: float = 0.0  # 0 = the camera's default
    change_gate: float = 0.0  # image tasks: mean grey-level change under which a frame is not inferred; 0 = off


@dataclasses.dataclass
class PostprocessConfig:
    threshold: float = 0.5
    top_k: int = 3
    smoothing: int = 1  # frames averaged
    max_rate: float = 2.0  # messages per second at most (a ceiling), 0 = no limit
    on_change: bool = True  # publish when the label changes (plus the heartbeat); false: every frame
    hysteresis: float = 0.1
    heartbeat_s: float = 60.0  # with on_change, publish the current label again after this long; 0 = never


@dataclasses.dataclass
class MqttConfig:
    host: str = "localhost"
    port: int = 1883
    username: str | None = None
    password: str | None = None  # from the environment, a file or systemd credentials; not a flag
    password_file: str | None = None
    client_id: str | None = None  # default edge-agent-{device_id}-{task}
    topic_prefix: str = "edge-agent"
    qos: int = 1
    keepalive: int = 60
    protocol: str = "3.1.1"  # or "5"
    tls: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    tls_insecure: bool = False


@dataclasses.dataclass
class SpoolConfig:
    path: str | None = None  # default: $STATE_DIRECTORY, else ~/.local/state/edge-agent
    max_messages: int = 100_000
    max_age_s: float = 7 * 24 * 3600.0


@dataclasses.dataclass
class HomeAssistantConfig:
    discovery: bool = True
    prefix: str = "homeassistant"
    snapshot: bool = True  # image tasks: a small retained JPEG of the frame behind each label change


@dataclasses.dataclass
class HttpConfig:
    """The live page (:mod:`edge_agent.live`): off unless ``listen`` is given."""

    listen: str = ""  # "[ADDR:]PORT"; ADDR defaults to 127.0.0.1; "" = no page
    token_file: str | None = None  # required for a non-loopback ADDR: one line, the access token


@dataclasses.dataclass
class ControlConfig:
    enabled: bool = False  # accept {prefix}/{device_id}/{task}/set


@dataclasses.dataclass
class SensorConfig:
    """Sensor (series) task inputs; a CSV/JSONL replay uses source.source, realtime and loop."""

    serial: str | None = None  # serial port: /dev/ttyUSB0 (CSV or JSON lines)
    baud: int = 115200
    columns: str = ""  # column order of header-less serial CSV lines, e.g. "t,ax,ay,az"
    topic: str | None = None  # MQTT topic the sensor publishes JSON samples on
    paths: str = ""  # channel=json.path[@topic],... (default: each channel's name at the top level)
    ts_path: str = ""  # JSON path of a sample's time (default: t, ts, time or timestamp; else arrival)
    stale_s: float = 0.0  # no sample for this long: the sensor is silent (0: 3 windows, at least 2 s)


@dataclasses.dataclass
class VoiceConfig:
    """Voice task: near-miss capture for the next enrollment (edge_agent/voice/capture.py)."""

    capture: str | None = None  # folder kept for `edge-agent-convert enroll`; None = off
    capture_max_files: int = 500
    capture_max_mb: float = 50.0


@dataclasses.dataclass
class Config:
    task: str = "waste"
    device_id: str = dataclasses.field(default_factory=lambda: _default_device_id())
    sink: str = "mqtt"
    log_level: str = "info"
    metrics_interval_s: float = 30.0  # 0 = no metrics messages
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    source: SourceConfig = dataclasses.field(default_factory=SourceConfig)
    postprocess: PostprocessConfig = dataclasses.field(default_factory=PostprocessConfig)
    mqtt: MqttConfig = dataclasses.field(default_factory=MqttConfig)
    spool: SpoolConfig = dataclasses.field(default_factory=SpoolConfig)
    homeassistant: HomeAssistantConfig = dataclasses.field(default_factory=HomeAssistantConfig)
    control: ControlConfig = dataclasses.field(default_factory=ControlConfig)
    http: HttpConfig = dataclasses.field(default_factory=HttpConfig)
    sensor: SensorConfig = dataclasses.field(default_factory=SensorConfig)
    voice: VoiceConfig = dataclasses.field(default_factory=VoiceConfig)
    origin: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)  # field → where set

    def where(self, field: str) -> str:
        return self.origin.get(field, "default")


SECTIONS: Final = {"model": ModelConfig, "source": SourceConfig, "postprocess": PostprocessConfig,
                   "mqtt": MqttConfig, "spool": SpoolConfig, "homeassistant": HomeAssistantConfig,
                   "control": ControlConfig, "http": HttpConfig, "sensor": SensorConfig, "voice": VoiceConfig}


def _default_device_id() -> str:
    name = socket.gethostname().split(".")[0] or "edge-agent"
    return sanitize_id(name)


def sanitize_id(name: str) -> str:
    """MQTT topic levels and Home Assistant ids: keep ASCII letters, digits, '-' and '_' (64 at most)."""
    return "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in name)[:MAX_ID_CHARS]


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def field_type(dotted: str) -> Any:
    """The plain type (int, float, str, bool) of a dotted config field, e.g. ``mqtt.port`` → int."""
    section, _, name = dotted.rpartition(".")
    kind = _field_type(SECTIONS[section] if section else Config, name)
    if typing.get_origin(kind) in (Union, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    return kind


def _coerce(value: Any, kind: Any, field: str, where: str) -> Any:
    """Check (and for flags, convert from text) a value against a dataclass field's type."""
    optional = False
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        optional, kind = True, args[0]
    if value is None and optional:
        return None
    from_text = isinstance(value, str) and kind is not str
    try:
        if kind is bool:
            if from_text:
                lowered = value.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if isinstance(value, bool):
                return value
            raise ValueError
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            if from_text or isinstance(value, int):
                return int(value)
            raise ValueError
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            if from_text or isinstance(value, (int, float)):
                return float(value)
            raise ValueError
        if kind is str:
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                return str(value)
            raise ValueError
    except ValueError:
        name = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind]
        raise ConfigError(f"{where}: field '{field}' must be {name} (got {value!r})") from None
    raise ConfigError(f"{where}: field '{field}' has an unsupported type")


def _set(config: Config, dotted: str, value: Any, where: str) -> None:
    section, _, name = dotted.rpartition(".")
    target: Any = getattr(config, section) if section else config
    cls = type(target)
    if name not in {f.name for f in dataclasses.fields(cls)} or name == "origin":
        raise ConfigError(f"{where}: unknown field '{dotted}'")
    setattr(target, name, _coerce(value, _field_type(cls, name), dotted, where))
    config.origin[dotted] = where


def load_file(config: Config, path: Path) -> None:
    """Apply a TOML file. Unknown sections and keys are errors that name them."""
    where = f"config {path}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where}: not UTF-8 text (byte {e.start}); TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML ({e})") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply") from None
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{key}' must be a [{key}] table")
            for sub, subvalue in value.items():
                _set(config, f"{key}.{sub}", subvalue, where)
        else:
            _set(config, key, value, where)


def apply(config: Config, overrides: dict[str, Any], where: str) -> None:
    """Apply values from flags (``{"mqtt.host": "..."}``)."""
    for dotted, value in overrides.items():
        _set(config, dotted, value, where)


def _read_secret(path: Path, field: str, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"{where}: field '{field}': cannot read {path} ({e.strerror})") from None


def load_secrets(config: Config, environ: typing.Mapping[str, str]) -> None:
    """Password precedence: environment, then password_file, then systemd credentials."""
    if environ.get(PASSWORD_ENV):
        config.mqtt.password = environ[PASSWORD_ENV]
        config.origin["mqtt.password"] = f"${PASSWORD_ENV}"
    elif config.mqtt.password_file:
        config.mqtt.password = _read_secret(
            Path(config.mqtt.password_file), "mqtt.password_file", config.where("mqtt.password_file")
        )
    elif environ.get("CREDENTIALS_DIRECTORY"):
        cred = Path(environ["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME
        if cred.exists():
            config.mqtt.password = _read_secret(cred, "mqtt.password", "$CREDENTIALS_DIRECTORY")
    if not config.http.token_file and environ.get("CREDENTIALS_DIRECTORY"):
        token = Path(environ["CREDENTIALS_DIRECTORY"]) / HTTP_TOKEN_CREDENTIAL
        if token.is_file():  # the live page's token as a systemd credential (install-service --http)
            config.http.token_file = str(token)
            config.origin["http.token_file"] = "$CREDENTIALS_DIRECTORY"


def _short(value: Any) -> Any:
    """A value as an error line quotes it: a 10 MB string is cut."""
    return value[:40] + f"... ({len(value)} characters)" if isinstance(value, str) and len(value) > 60 else value


def _topic_ok(topic: str) -> bool:
    return (bool(topic) and len(topic) <= MAX_TOPIC_PREFIX_CHARS and topic.isprintable()
            and not any(ch in topic for ch in "#+") and not topic.endswith("/"))


def _check(ok: bool, config: Config, field: str, must: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{config.where(field)}: field '{field}' must be {must} (got {value!r})")


def validate(config: Config) -> None:
    """Range and consistency checks, after file and flags are merged."""
    c, m, p, s = config, config.mqtt, config.postprocess, config.source
    _check(c.task in TASKS, c, "task", "one of " + ", ".join(TASKS), c.task)
    _check(c.sink in SINKS, c, "sink", "one of " + ", ".join(SINKS), c.sink)
    _check(bool(c.device_id) and sanitize_id(c.device_id) == c.device_id, c, "device_id",
           f"1 to {MAX_ID_CHARS} ASCII letters, digits, '-' or '_'", _short(c.device_id))
    _check(c.log_level.lower() in ("debug", "info", "warning", "error"), c, "log_level",
           "debug, info, warning or error", c.log_level)
    _check(1 <= m.port <= 65535, c, "mqtt.port", "an integer from 1 to 65535", m.port)
    _check(m.qos in (0, 1, 2), c, "mqtt.qos", "0, 1 or 2", m.qos)
    _check(5 <= m.keepalive <= 3600, c, "mqtt.keepalive", "from 5 to 3600 seconds", m.keepalive)
    _check(m.protocol in ("3.1.1", "5"), c, "mqtt.protocol", "'3.1.1' or '5'", m.protocol)
    _check(_topic_ok(m.topic_prefix), c, "mqtt.topic_prefix",
           f"a topic of at most {MAX_TOPIC_PREFIX_CHARS} printable characters without + # or trailing /",
           _short(m.topic_prefix))
    _check(m.client_id is None or (1 <= len(m.client_id) <= MAX_ID_CHARS and m.client_id.isprintable()), c,
           "mqtt.client_id", f"1 to {MAX_ID_CHARS} printable characters", _short(m.client_id))
    for f in ("ca", "cert", "key"):
        value = getattr(m, f)
        _check(value is None or Path(value).is_file(), c, f"mqtt.{f}", "an existing file", value)
    _check((m.cert is None) == (m.key is None), c, "mqtt.key", "given together with mqtt.cert", m.key)
    _check(0.0 <= p.threshold <= 1.0, c, "postprocess.threshold", "from 0 to 1", p.threshold)
    _check(1 <= p.top_k <= 100, c, "postprocess.top_k", "from 1 to 100", p.top_k)
    _check(1 <= p.smoothing <= 1000, c, "postprocess.smoothing", "from 1 to 1000 frames", p.smoothing)
    _check(0.0 <= p.max_rate <= 1000, c, "postprocess.max_rate", "from 0 to 1000 per second", p.max_rate)
    _check(0.0 <= p.hysteresis <= 1.0, c, "postprocess.hysteresis", "from 0 to 1", p.hysteresis)
    _check(p.heartbeat_s == 0 or 1 <= p.heartbeat_s <= 86400, c, "postprocess.heartbeat_s",
           "0 (off) or from 1 to 86400 seconds", p.heartbeat_s)
    _check(0 <= config.model.threads <= 64, c, "model.threads", "from 0 (auto) to 64", config.model.threads)
    _check(0 <= config.model.workers <= 16, c, "model.workers", "from 0 (one per core) to 16", config.model.workers)
    _check(16 <= s.width <= 8192 and 16 <= s.height <= 8192, c, "source.width", "a frame size from 16 to 8192",
           (s.width, s.height))
    _check(s.fps >= 0, c, "source.fps", "0 or more", s.fps)
    _check(0 <= s.change_gate <= 255, c, "source.change_gate", "from 0 (off) to 255 grey levels", s.change_gate)
    _check(1 <= c.spool.max_messages <= 10_000_000, c, "spool.max_messages", "from 1 to 10000000",
           c.spool.max_messages)
    _check(c.metrics_interval_s == 0 or 1 <= c.metrics_interval_s <= 86400, c, "metrics_interval_s",
           "0 (off) or from 1 to 86400 seconds", c.metrics_interval_s)
    ha = c.homeassistant.prefix
    _check(_topic_ok(ha), c, "homeassistant.prefix",
           f"a topic of at most {MAX_TOPIC_PREFIX_CHARS} printable characters without + # or trailing /", _short(ha))
    _check(c.spool.max_age_s > 0, c, "spool.max_age_s", "more than 0 seconds", c.spool.max_age_s)
    inputs = (("source.camera", s.camera), ("source.source", s.source), ("source.picamera", s.picamera),
              ("source.mic", s.mic))
    chosen = [n for n, v in inputs if v]
    _check(len(chosen) <= 1, c, chosen[-1] if chosen else "source", "the only input (pick one of --camera, "
           "--source, --picamera, --mic)", chosen)
    validate_sensor(config)
    _check(1 <= config.voice.capture_max_files <= 1_000_000, config, "voice.capture_max_files", "from 1 to 1000000",
           config.voice.capture_max_files)
    _check(0.1 <= config.voice.capture_max_mb <= 1_000_000, config, "voice.capture_max_mb", "from 0.1 to 1000000",
           config.voice.capture_max_mb)
    validate_http(config)


def http_address(listen: str) -> tuple[str, int] | None:
    """``[ADDR:]PORT`` → (host, port); ADDR defaults to loopback. None when not of that form."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]") if sep else DEFAULT_HTTP_HOST
    if not port.isdigit() or not 1 <= int(port) <= 65535 or not host or any(c.isspace() for c in host):
        return None
    return host, int(port)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and the name localhost: only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to, it may be reachable from outside


def validate_http(config: Config) -> None:
    """A camera view is personal: off the loopback address the page needs a token file."""
    h = config.http
    if not h.listen:
        return
    address = http_address(h.listen)
    _check(address is not None, config, "http.listen", "[ADDR:]PORT with a port from 1 to 65535", _short(h.listen))
    assert address is not None
    if not is_loopback(address[0]) and not h.token_file:
        raise ConfigError(f"{config.where('http.listen')}: field 'http.listen' binds {address[0]}, which other "
                          "machines can reach: give --http-token-file FILE (one line, the access token), "
                          "or listen on 127.0.0.1")


def validate_sensor(config: Config) -> None:
    """The sensor inputs: one at most, and a usable baud rate and silence timeout."""
    c, s = config, config.sensor
    _check(50 <= s.baud <= 4_000_000, c, "sensor.baud", "from 50 to 4000000", s.baud)
    _check(s.stale_s == 0 or 0.1 <= s.stale_s <= 86400, c, "sensor.stale_s", "0 (auto) or from 0.1 to 86400 "
           "seconds", s.stale_s)
    inputs = (("source.camera", c.source.camera), ("source.source", c.source.source),
              ("source.picamera", c.source.picamera), ("source.mic", c.source.mic), ("sensor.serial", s.serial),
              ("sensor.topic", s.topic))
    chosen = [n for n, v in inputs if v]
    _check(len(chosen) <= 1, c, chosen[-1] if chosen else "source", "the only input (pick one of --source, "
           "--serial, --sensor-topic, --camera, --mic)", chosen)


def state_dir(environ: typing.Mapping[str, str] | None = None) -> Path:
    """systemd's ``$STATE_DIRECTORY`` (StateDirectory=), else the XDG state folder."""
    env = os.environ if environ is None else environ
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else Path.home() / ".local" / "state"
    return base / "edge-agent"


def spool_path(config: Config) -> Path:
    if config.spool.path:
        return Path(config.spool.path)
    return state_dir() / f"spool-{config.device_id}-{config.task}.sqlite"


def effective_workers(config: Config) -> int:
    """Interpreters inferring frames in parallel: ``model.workers``, or one per core for 0."""
    return config.model.workers or max(1, os.cpu_count() or 1)


def effective_threads(config: Config) -> int:
    """Threads of each interpreter: ``model.threads``, or the cores shared out among the workers."""
    return config.model.threads or max(1, (os.cpu_count() or 1) // effective_workers(config))


def as_dict(config: Config, mask: bool = True) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    data.pop("origin")
    if mask and data["mqtt"]["password"]:
        data["mqtt"]["password"] = MASK
    return data


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(config: Config) -> str:
    """The effective config as TOML, secrets masked, unset optional values as comments."""
    data = as_dict(config)
    lines: list[str] = []
    for key, value in data.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_toml_value(value)}")
    for section, values in data.items():
        if isinstance(values, dict):
            lines.append(f"\n[{section}]")
            for key, value in values.items():
                lines.append(f"# {key} = (unset)" if value is None else f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
