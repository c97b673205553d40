"""``edge-agent``: flags → config → service. The only place that configures logging and turns
errors into exit codes; a user's mistake is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from . import __version__
from . import config as config_mod
from .errors import EdgeAgentError, ExitCode

if TYPE_CHECKING:  # the runtime is imported after the arguments are parsed: `--help` stays instant
    from . import runtime

logger = logging.getLogger("edge_agent")

@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag for one config field. The field's type (from the config dataclass)
    is the flag's type: text is converted and checked by the config module, so a bad value is
    one line naming the flag and the field, exactly as a bad value in the file names the file."""

    flag: str
    field: str
    help: str
    action: str = "value"  # "value", "on" (sets true), "off" (sets false)
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    optional_value: str | None = None  # --edgetpu alone means this value

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--no-").removeprefix("--").replace("-", "_")


# The one table of flags: argparse is built from it, and flags are applied to the config from it.
# Groups as --help shows them. Every flag defaults to "not given", so only what was given
# overrides the file.
FLAGS: Final[dict[str, tuple[Flag, ...]]] = {
    "task": (
        Flag("--task", "task", "built-in task (default waste)", choices=config_mod.TASKS),
        Flag("--device-id", "device_id", "this device's id in topics (default: the host name)"),
        Flag("--sink", "sink", "mqtt (default) or stdout (JSON lines, no broker)", choices=config_mod.SINKS),
        Flag("--log-level", "log_level", "logging level", choices=("debug", "info", "warning", "error")),
    ),
    "model": (
        Flag("--model", "model.path", "a .tflite file (default: the task's model in models/)"),
        Flag("--labels", "model.labels", "labels.txt, for a model without a manifest"),
        Flag("--threads", "model.threads", "threads per interpreter (default: the cores shared out among workers)"),
        Flag("--workers", "model.workers", "image tasks: interpreters inferring frames in parallel, results in "
             "order (default 1; 0: one per core)"),
        Flag("--edgetpu", "model.edgetpu", "run on a Coral Edge TPU through libedgetpu.so.1",
             metavar="usb|usb:N|pci|pci:N", optional_value=""),
        Flag("--edgetpu-fallback", "model.edgetpu_fallback",
             "if the Edge TPU is not usable, run on the CPU with a warning instead of exiting", "on"),
    ),
    "source (pick one)": (
        Flag("--camera", "source.camera", "OpenCV camera index or device path (default 0)"),
        Flag("--source", "source.source", "video file, folder of images, WAV file, or rtsp:// / http:// URL"),
        Flag("--picamera", "source.picamera", "Raspberry Pi camera via picamera2", "on"),
        Flag("--mic", "source.mic", "microphone for the voice task: default, a device name or an index"),
        Flag("--realtime", "source.realtime",
             "pace a video or WAV file at its own rate instead of as fast as possible", "on"),
        Flag("--loop", "source.loop", "replay a video file or folder forever", "on"),
        Flag("--width", "source.width", "camera frame width (default 640)"),
        Flag("--height", "source.height", "camera frame height (default 480)"),
        Flag("--fps", "source.fps", "camera frame rate"),
        Flag("--change-gate", "source.change_gate", "image tasks: skip inference while the frame's mean grey "
             "level changes less than X (0-255) from the last inferred one; the last scores stand (default 0: off)"),
    ),
    "postprocessing": (
        Flag("--threshold", "postprocess.threshold", "minimum score to publish (default 0.5)"),
        Flag("--top-k", "postprocess.top_k", "labels in 'top' (default 3)"),
        Flag("--smoothing", "postprocess.smoothing", "average scores over the last N frames (default 1)"),
        Flag("--max-rate", "postprocess.max_rate", "at most N messages per second (default 2, 0: no limit)"),
        Flag("--on-change", "postprocess.on_change",
             "publish only when the label changes, plus the heartbeat (the default)", "on"),
        Flag("--no-on-change", "postprocess.on_change", "publish every confident frame (up to --max-rate)", "off"),
        Flag("--hysteresis", "postprocess.hysteresis", "with --on-change, margin a new label needs (default 0.1)"),
        Flag("--heartbeat", "postprocess.heartbeat_s",
             "with --on-change, publish the current label again after N s without a message (default 60, 0: never)"),
    ),
    "MQTT (password: $EDGE_AGENT_MQTT_PASSWORD, --mqtt-password-file or systemd credentials)": (
        Flag("--mqtt-host", "mqtt.host", "broker host (default localhost)"),
        Flag("--mqtt-port", "mqtt.port", "broker port (default 1883)"),
        Flag("--mqtt-username", "mqtt.username", "MQTT user name"),
        Flag("--mqtt-password-file", "mqtt.password_file", "file holding the MQTT password"),
        Flag("--client-id", "mqtt.client_id", "MQTT client id (default edge-agent-<device>-<task>)"),
        Flag("--topic-prefix", "mqtt.topic_prefix", "topic prefix (default edge-agent)"),
        Flag("--qos", "mqtt.qos", "QoS of predictions (default 1)"),
        Flag("--mqtt-protocol", "mqtt.protocol", "MQTT protocol version", choices=("3.1.1", "5")),
        Flag("--tls", "mqtt.tls", "connect with TLS (verifies the broker)", "on"),
        Flag("--ca", "mqtt.ca", "CA certificate file for TLS"),
        Flag("--cert", "mqtt.cert", "client certificate file"),
        Flag("--key", "mqtt.key", "client key file"),
        Flag("--tls-insecure", "mqtt.tls_insecure",
             "do not check the broker's host name against its certificate", "on"),
    ),
    "home hub": (
        Flag("--no-discovery", "homeassistant.discovery",
             "no Home Assistant discovery (and clear this task's discovered entities)", "off"),
        Flag("--discovery-prefix", "homeassistant.prefix", "Home Assistant discovery prefix (default homeassistant)"),
        Flag("--capture", "voice.capture", "voice: keep near misses and commands marked wrong in this folder, "
             "ready for edge-agent-convert enroll (off by default)"),
        Flag("--capture-max-files", "voice.capture_max_files", "voice: files --capture keeps at most (default 500)"),
        Flag("--capture-max-mb", "voice.capture_max_mb", "voice: megabytes --capture keeps at most (default 50)"),
        Flag("--remote-control", "control.enabled", "accept settings on {prefix}/{device_id}/{task}/set", "on"),
        Flag("--metrics-interval", "metrics_interval_s", "seconds between metrics messages (default 30, 0: off)"),
        Flag("--spool", "spool.path", "SQLite file keeping predictions until the broker acknowledges them "
             "(default: $STATE_DIRECTORY or ~/.local/state/edge-agent)"),
    ),
    "live page (see what the agent sees; README: Live page)": (
        Flag("--http", "http.listen", "serve the live page on [ADDR:]PORT (ADDR default 127.0.0.1; any other "
             "address needs --http-token-file)", metavar="[ADDR:]PORT"),
        Flag("--http-token-file", "http.token_file", "file holding the live page's access token (one line)"),
        Flag("--no-snapshot", "homeassistant.snapshot", "image tasks: no retained JPEG of the frame behind each "
             "label change on {prefix}/{device_id}/{task}/snapshot", "off"),
    ),
    "sensor tasks (activity, location, machine, intrusion; replay a recording with --source FILE.csv)": (
        Flag("--serial", "sensor.serial", "serial port sending CSV or JSON lines, e.g. /dev/ttyUSB0"),
        Flag("--baud", "sensor.baud", "serial baud rate (default 115200)"),
        Flag("--sensor-columns", "sensor.columns", "column order of header-less serial CSV lines, e.g. t,ax,ay,az"),
        Flag("--sensor-topic", "sensor.topic", "MQTT topic the sensor publishes JSON samples on"),
        Flag("--sensor-paths", "sensor.paths", "JSON path per channel: ax=accel.x,ay=accel.y (optionally @TOPIC)"),
        Flag("--sensor-ts-path", "sensor.ts_path", "JSON path of each sample's time (default t, ts, time or "
             "timestamp; else the arrival time)"),
        Flag("--sensor-stale", "sensor.stale_s", "seconds without samples before the sensor counts as silent "
             "(default 0: three windows, at least 2 s)"),
    ),
}
METAVARS: Final = {int: "N", float: "X", str: None, bool: None}


def all_flags() -> Iterator[Flag]:
    for flags in FLAGS.values():
        yield from flags


def _add(group: Any, f: Flag) -> None:
    if f.action in ("on", "off"):
        group.add_argument(f.flag, dest=f.dest, action="store_const", const=f.action == "on", help=f.help)
        return
    kind = config_mod.field_type(f.field)
    extra: dict[str, Any] = {"choices": f.choices} if f.choices else {}
    if f.optional_value is not None:
        extra.update(nargs="?", const=f.optional_value)
    group.add_argument(f.flag, dest=f.dest, help=f.help, metavar=f.metavar or METAVARS.get(kind), **extra)


def build_parser() -> argparse.ArgumentParser:
    S = argparse.SUPPRESS
    p = argparse.ArgumentParser(
        prog="edge-agent",
        description="Classify camera frames, audio or sensor streams on-device and publish over MQTT.",
        argument_default=S,
    )
    p.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    p.add_argument("--config", type=Path, help="TOML config file; flags override it")
    p.add_argument("--print-config", action="store_true", default=False,
                   help="print the effective config (secrets masked) and exit")
    p.add_argument("--validate-config", action="store_true", default=False,
                   help="build everything a run builds, without running; exit 0 if usable")
    p.add_argument("--max-frames", type=int, default=0,
                   help="stop after N frames, hops or windows (0: run until the source ends)")
    p.add_argument("--list-devices", action="store_true", default=False, help="list audio input devices and exit")
    for title, flags in FLAGS.items():
        group = p.add_argument_group(title)
        for f in flags:
            _add(group, f)
    return p


def load_config(args: argparse.Namespace, environ: dict[str, str] | None = None) -> config_mod.Config:
    environ = dict(os.environ) if environ is None else environ
    cfg = config_mod.Config()
    if getattr(args, "config", None):
        config_mod.load_file(cfg, args.config)
    for f in all_flags():
        if hasattr(args, f.dest):
            config_mod.apply(cfg, {f.field: getattr(args, f.dest)}, f"flag {f.flag}")
    config_mod.load_secrets(cfg, environ)
    config_mod.validate(cfg)
    return cfg


def setup_logging(level: str) -> None:
    # Under systemd the journal stamps each line; elsewhere we add the time ourselves.
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else (
        "%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.basicConfig(level=getattr(logging, level.upper()), format=fmt, stream=sys.stderr)


def _install_signals(controls: runtime.Controls) -> None:
    """SIGTERM/SIGINT stop gracefully; SIGHUP re-reads the config and model, keeping MQTT connected."""

    def stop(signum: int, frame: Any) -> None:
        logger.info("signal %d: stopping", signum)
        controls.stop.set()

    def reload(signum: int, frame: Any) -> None:
        logger.info("SIGHUP: reloading the config")
        controls.reload.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)


def _notifier() -> runtime.Notifier:
    """systemd's sd_notify when running under it (``$NOTIFY_SOCKET``), else nothing."""
    from .sdnotify import SystemdNotifier

    return SystemdNotifier.from_environment()


# `edge-agent doctor ...`, `edge-agent install-service ...`, `edge-agent calibrate ...`: modules with main(argv) -> int
SUBCOMMANDS = {"doctor": "edge_agent.doctor", "install-service": "edge_agent.install",
               "calibrate": "edge_agent.voice.calibrate"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[argv[0]])
        return int(module.main(argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        if args.list_devices:
            from .sources.microphone import print_devices  # sounddevice is imported only here

            return int(print_devices())
        cfg = load_config(args)
        setup_logging(cfg.log_level)
        if args.print_config:
            sys.stdout.write(config_mod.render(cfg))
            return ExitCode.OK
        from . import runtime, service  # after arguments: `--help` stays instant

        if args.validate_config:
            service.validate(cfg)  # build() without running: it cannot disagree with a run
            print("config OK")
            return ExitCode.OK
        controls = runtime.Controls(max_frames=args.max_frames, reload_config=lambda: load_config(args))
        controls.notifier = _notifier()
        _install_signals(controls)
        return int(service.run(cfg, controls))
    except EdgeAgentError as e:
        print(f"edge-agent: error: {e}", file=sys.stderr)
        return int(e.exit_code)
    except KeyboardInterrupt:
        return ExitCode.OK
    except BrokenPipeError:
        # `edge-agent --sink stdout | head`: the reader left; not an error. Point stdout at
        # /dev/null so the interpreter's final flush does not complain (Python docs, SIGPIPE).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
