"""``edge-agent``: flags → config → service. The only place that configures logging and turns
errors into exit codes; a user's mistake is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from . import config as config_mod
from .errors import EdgeAgentError, ExitCode

logger = logging.getLogger("edge_agent")

# flag dest → config field. Flags default to SUPPRESS so only what was given overrides the file.
FLAG_FIELDS = {
    "task": "task", "device_id": "device_id", "sink": "sink", "log_level": "log_level",
    "model": "model.path", "labels": "model.labels", "threads": "model.threads", "edgetpu": "model.edgetpu",
    "edgetpu_fallback": "model.edgetpu_fallback",
    "camera": "source.camera", "source": "source.source", "picamera": "source.picamera", "loop": "source.loop",
    "mic": "source.mic", "realtime": "source.realtime",
    "width": "source.width", "height": "source.height", "fps": "source.fps",
    "threshold": "postprocess.threshold", "top_k": "postprocess.top_k", "smoothing": "postprocess.smoothing",
    "max_rate": "postprocess.max_rate", "on_change": "postprocess.on_change",
    "hysteresis": "postprocess.hysteresis", "heartbeat": "postprocess.heartbeat_s",
    "mqtt_host": "mqtt.host", "mqtt_port": "mqtt.port", "mqtt_username": "mqtt.username",
    "mqtt_password_file": "mqtt.password_file", "client_id": "mqtt.client_id", "topic_prefix": "mqtt.topic_prefix",
    "qos": "mqtt.qos", "mqtt_protocol": "mqtt.protocol", "tls": "mqtt.tls", "ca": "mqtt.ca", "cert": "mqtt.cert",
    "key": "mqtt.key", "tls_insecure": "mqtt.tls_insecure", "spool": "spool.path",
    "discovery": "homeassistant.discovery", "discovery_prefix": "homeassistant.prefix",
    "remote_control": "control.enabled", "metrics_interval": "metrics_interval_s",
}


def build_parser() -> argparse.ArgumentParser:
    S = argparse.SUPPRESS
    p = argparse.ArgumentParser(
        prog="edge-agent",
        description="Classify camera frames on-device and publish predictions over MQTT.",
        argument_default=S,
    )
    p.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    p.add_argument("--config", type=Path, help="TOML config file; flags override it")
    p.add_argument("--print-config", action="store_true", default=False,
                   help="print the effective config (secrets masked) and exit")
    p.add_argument("--validate-config", action="store_true", default=False,
                   help="check the config and model, exit 0 if usable")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: run until the source ends)")
    g = p.add_argument_group("task")
    g.add_argument("--task", choices=config_mod.TASKS, help="built-in task (default waste)")
    g.add_argument("--device-id", help="this device's id in topics (default: the host name)")
    g.add_argument("--sink", choices=config_mod.SINKS, help="mqtt (default) or stdout (JSON lines, no broker)")
    g.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    g = p.add_argument_group("model")
    g.add_argument("--model", help="a .tflite file (default: the task's model in models/)")
    g.add_argument("--labels", help="labels.txt, for a model without a manifest")
    g.add_argument("--threads", type=str, help="interpreter threads (default: one per core)")
    g.add_argument("--edgetpu", nargs="?", const="", metavar="usb|usb:N|pci|pci:N",
                   help="run on a Coral Edge TPU through libedgetpu.so.1")
    g.add_argument("--edgetpu-fallback", action="store_const", const=True,
                   help="if the Edge TPU is not usable, run on the CPU with a warning instead of exiting")
    g = p.add_argument_group("source (pick one)")
    g.add_argument("--camera", help="OpenCV camera index or device path (default 0)")
    g.add_argument("--source", help="video file, folder of images, or rtsp:// / http:// URL")
    g.add_argument("--picamera", action="store_const", const=True, help="Raspberry Pi camera via picamera2")
    g.add_argument("--mic", help="microphone for the voice task: default, a device name or an index")
    g.add_argument("--list-devices", action="store_true", default=False, help="list audio input devices and exit")
    g.add_argument("--realtime", action="store_const", const=True,
                   help="pace a video or WAV file at its own rate instead of as fast as possible")
    g.add_argument("--loop", action="store_const", const=True, help="replay a video file or folder forever")
    g.add_argument("--width", type=str, help="camera frame width (default 640)")
    g.add_argument("--height", type=str, help="camera frame height (default 480)")
    g.add_argument("--fps", type=str, help="camera frame rate")
    g = p.add_argument_group("postprocessing")
    g.add_argument("--threshold", type=str, help="minimum score to publish (default 0.5)")
    g.add_argument("--top-k", type=str, help="labels in 'top' (default 3)")
    g.add_argument("--smoothing", type=str, help="average scores over the last N frames (default 1)")
    g.add_argument("--max-rate", type=str, help="at most N messages per second (default 2, 0: no limit)")
    g.add_argument("--on-change", action="store_const", const=True,
                   help="publish only when the label changes, plus the heartbeat (the default)")
    g.add_argument("--no-on-change", dest="on_change", action="store_const", const=False,
                   help="publish every confident frame (up to --max-rate)")
    g.add_argument("--heartbeat", type=str,
                   help="with --on-change, publish the current label again after N s without a message "
                        "(default 60, 0: never)")
    g.add_argument("--hysteresis", type=str, help="with --on-change, margin a new label needs (default 0.1)")
    g = p.add_argument_group("MQTT (password: $EDGE_AGENT_MQTT_PASSWORD, --mqtt-password-file or systemd credentials)")
    g.add_argument("--mqtt-host", help="broker host (default localhost)")
    g.add_argument("--mqtt-port", type=str, help="broker port (default 1883)")
    g.add_argument("--mqtt-username")
    g.add_argument("--mqtt-password-file", help="file holding the MQTT password")
    g.add_argument("--client-id", help="MQTT client id (default edge-agent-<device>-<task>)")
    g.add_argument("--topic-prefix", help="topic prefix (default edge-agent)")
    g.add_argument("--qos", type=str, help="QoS of predictions (default 1)")
    g.add_argument("--mqtt-protocol", choices=("3.1.1", "5"))
    g.add_argument("--tls", action="store_const", const=True, help="connect with TLS (verifies the broker)")
    g.add_argument("--ca", help="CA certificate file for TLS")
    g.add_argument("--cert", help="client certificate file")
    g.add_argument("--key", help="client key file")
    g.add_argument("--tls-insecure", action="store_const", const=True,
                   help="do not check the broker's host name against its certificate")
    g = p.add_argument_group("home hub")
    g.add_argument("--no-discovery", dest="discovery", action="store_const", const=False,
                   help="no Home Assistant discovery (and clear this task's discovered entities)")
    g.add_argument("--discovery-prefix", help="Home Assistant discovery prefix (default homeassistant)")
    g.add_argument("--remote-control", action="store_const", const=True,
                   help="accept settings on {prefix}/{device_id}/{task}/set")
    g.add_argument("--metrics-interval", type=str, help="seconds between metrics messages (default 30, 0: off)")
    g.add_argument("--spool", help="SQLite file keeping predictions until the broker acknowledges them "
                   "(default: $STATE_DIRECTORY or ~/.local/state/edge-agent)")
    return p


def load_config(args: argparse.Namespace, environ: dict[str, str] | None = None) -> config_mod.Config:
    environ = dict(os.environ) if environ is None else environ
    cfg = config_mod.Config()
    if getattr(args, "config", None):
        config_mod.load_file(cfg, args.config)
    for dest, field in FLAG_FIELDS.items():
        if hasattr(args, dest):
            flag = "--" + dest.replace("_", "-")
            config_mod.apply(cfg, {field: getattr(args, dest)}, f"flag {flag}")
    config_mod.load_secrets(cfg, environ)
    config_mod.validate(cfg)
    return cfg


def setup_logging(level: str) -> None:
    # Under systemd the journal stamps each line; elsewhere we add the time ourselves.
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else (
        "%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.basicConfig(level=getattr(logging, level.upper()), format=fmt, stream=sys.stderr)


def _install_signals(controls: Any) -> None:
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


def _notifier() -> Any:
    """systemd's sd_notify when running under it (``$NOTIFY_SOCKET``), else nothing."""
    try:
        from .sdnotify import SystemdNotifier
    except ImportError:  # pragma: no cover - sdnotify lands with the service issue
        from .service import NullNotifier

        return NullNotifier()
    return SystemdNotifier.from_environment()


# `edge-agent doctor ...`, `edge-agent install-service ...`: modules with main(argv) -> int
SUBCOMMANDS = {"doctor": "edge_agent.doctor", "install-service": "edge_agent.install"}


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
        from . import service  # after arguments: `--help` stays instant

        if args.validate_config:
            service.load_model(cfg)
            print("config OK")
            return ExitCode.OK
        controls = service.Controls(max_frames=args.max_frames, reload_config=lambda: load_config(args))
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
