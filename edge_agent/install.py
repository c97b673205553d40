"""``edge-agent install-service``: make this machine run the agent at boot, in one command.

Steps, in order (each printed as ``[result] what``):

    user        the system user ``edge-agent`` (useradd; the unit adds video, audio, plugdev)
    directory   /etc/edge-agent
    config      /etc/edge-agent/<task>.toml, an example, written only if absent
    credential  /etc/edge-agent/<task>.mqtt_password, empty, 0600 (LoadCredential= needs the file)
    unit        /etc/systemd/system/edge-agent@.service, ExecStart= pointing at this edge-agent
    udev rule   /etc/udev/rules.d/99-edge-agent-coral.rules (the Coral's two USB ids, /dev/apex_*)
    reload      udevadm control --reload-rules, systemctl daemon-reload (only when changed)
    enable      systemctl enable edge-agent@<task>.service

Running it twice changes nothing: every step compares before it writes and reports
``unchanged``. ``--dry-run`` prints what each step would do and touches nothing. ``--root DIR``
installs into a directory tree instead of ``/`` (images, tests): the user is not created there,
systemd and udev are not told, and ``systemctl --root`` does the enabling offline.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from . import config as config_mod
from . import shipped
from .errors import ExitCode
from .tasks import TASKS

UNIT_FILE: Final = "edge-agent@.service"
UDEV_FILE: Final = "99-edge-agent-coral.rules"
SHIPPED_EXEC: Final = "/opt/edge-agent/venv/bin/edge-agent"  # ExecStart= in systemd/edge-agent@.service
SERVICE_USER: Final = "edge-agent"
STATE_DIR: Final = "/var/lib/edge-agent"  # StateDirectory=edge-agent; the user's home
CONFIG_DIR: Final = "etc/edge-agent"
UNIT_DIR: Final = "etc/systemd/system"
UDEV_DIR: Final = "etc/udev/rules.d"
HIDDEN_BY_UNIT: Final = ("/home", "/root", "/run/user")  # ProtectHome=yes: the service cannot see these


class InstallError(Exception):
    """A reason not to install; one line for the user."""


@dataclasses.dataclass(frozen=True)
class Options:
    task: str
    root: Path
    executable: str
    mqtt_host: str
    enable: bool
    dry_run: bool
    http: str = ""  # --http [ADDR:]PORT: the live page, written into a new config

    @property
    def live(self) -> bool:
        """Installing into the running system, where systemd, udev and the user database are real."""
        return self.root == Path("/")

    def path(self, relative: str) -> Path:
        return self.root / relative

    @property
    def instance(self) -> str:
        return f"edge-agent@{self.task}.service"


@dataclasses.dataclass
class Step:
    """One thing to make true. ``check`` says whether it already is; ``apply`` makes it so."""

    what: str
    check: Callable[[], bool]
    apply: Callable[[], None]
    new_word: str = "created"
    same_word: str = "unchanged"
    skip: str | None = None  # why this step does not run here (shown instead of running it)


# -- content ---------------------------------------------------------------------------------

def units_dir() -> Path:
    """``systemd/`` of the checkout we run from, of the wheel's data files, or of a package."""
    found = shipped.find("systemd", UNIT_FILE)
    if not (found / UNIT_FILE).is_file():
        places = ", ".join(str(p) for p in shipped.candidates("systemd"))
        raise InstallError(f"cannot find {UNIT_FILE} in {places}")
    return found


def render_unit(template: str, executable: str) -> str:
    """The shipped unit with ExecStart= pointing at ``executable`` instead of /opt/edge-agent/venv."""
    text, count = re.subn(r"^ExecStart=\S+", lambda _: f"ExecStart={executable}", template, flags=re.M)
    if count != 1:
        raise InstallError(f"{UNIT_FILE}: expected one ExecStart= line, found {count}")
    return text


# The [source] lines of the example config, by the task's kind of input: a camera line in a voice
# config is refused by the run (and by --validate-config), so each kind gets its own.
SOURCE_LINES: Final = {
    "image": 'camera = "0"                        # /dev/video0; for the Pi camera: remove this line, picamera = true',
    "audio": 'mic = "default"                     # a device name or index: edge-agent --list-devices',
    "series": '# source = "/var/lib/edge-agent/recording.csv"  # or, instead of [sensor] below, a recording\n\n'
              '[sensor]\ntopic = "sensors/{task}"           # JSON samples on MQTT; or serial = "/dev/ttyUSB0" '
              '(docs/SENSORS.md)',
}


def http_lines(task: str, http: str) -> str:
    """The [http] table of a new config: the live page, off unless ``--http`` was given."""
    if not http:
        return "\n[http]\n# listen = \"8080\"                   # the live page on 127.0.0.1:8080 (README: Live page)\n"
    address = config_mod.http_address(http)
    token = "" if address is None or config_mod.is_loopback(address[0]) else (
        f"# token: /etc/edge-agent/{task}.http_token, handed over as the systemd credential http_token\n")
    return f"\n[http]\nlisten = \"{http}\"\n{token}"


def example_config(task: str, mqtt_host: str, http: str = "") -> str:
    """A config that works as written (it is checked by the same loader the agent uses)."""
    return f"""\
# edge-agent@{task}.service reads this file. Reload after editing: systemctl reload edge-agent@{task}
# Every key: edge-agent --print-config. Check it: edge-agent --config {'/' + CONFIG_DIR}/{task}.toml --validate-config
task = "{task}"
# device_id = "kitchen-pi"          # default: the host name

[source]
{SOURCE_LINES[TASKS[task].kind].format(task=task)}

[postprocess]
threshold = 0.5

[mqtt]
host = "{mqtt_host}"
port = 1883
# username = "edge-agent"
# The password goes in /etc/edge-agent/{task}.mqtt_password (root only); systemd hands it over
# as a credential, it never appears here, in the environment or in `ps`.
""" + http_lines(task, http)


def default_executable() -> str:
    """The ``edge-agent`` of the environment this command runs from (a venv's bin/, not resolved:
    a venv's python is a symlink to the system one)."""
    beside = Path(sys.executable).parent / "edge-agent"
    if beside.is_file():
        return str(beside)
    found = shutil.which("edge-agent")
    if found:
        return os.path.abspath(found)
    raise InstallError("cannot find the edge-agent command; give --exec /path/to/venv/bin/edge-agent")


def check_executable(executable: str) -> None:
    if not os.path.isabs(executable) or any(c.isspace() or c in "%\\\"'" for c in executable):
        raise InstallError(f"--exec {executable}: needs an absolute path without spaces, quotes or '%'")
    if executable.startswith(tuple(p + "/" for p in HIDDEN_BY_UNIT)):
        raise InstallError(f"--exec {executable}: the unit's ProtectHome=yes hides {executable.split('/')[1]}/ "
                           "from the service; create the venv in /opt/edge-agent/venv (docs/PI.md)")


# -- steps -----------------------------------------------------------------------------------

def file_step(what: str, path: Path, content: str, mode: int, keep_existing: bool = False) -> Step:
    """Write ``content`` unless it is already there. ``keep_existing``: the user owns the file
    once it exists (a config they edited must never be overwritten)."""

    def check() -> bool:
        if not path.exists():
            return False
        return keep_existing or (path.read_text(encoding="utf-8") == content and _mode(path) == mode)

    def apply() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(content, encoding="utf-8")
        tmp.chmod(mode)
        tmp.replace(path)  # atomic: systemd or udev never read half a file

    return Step(f"{what} {path}", check, apply, new_word="updated" if path.exists() else "created")


def directory_step(path: Path, mode: int) -> Step:
    def apply() -> None:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)

    return Step(f"directory {path}", lambda: path.is_dir() and _mode(path) == mode, apply)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def _run(argv: Sequence[str]) -> None:
    result = subprocess.run(list(argv), capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise InstallError(f"{' '.join(argv)} failed: {detail[-1] if detail else result.returncode}")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def user_step(opts: Options) -> Step:
    argv = ["useradd", "--system", "--user-group", "--home-dir", STATE_DIR, "--no-create-home",
            "--shell", "/usr/sbin/nologin", "--comment", "edge-agent service", SERVICE_USER]
    return Step(f"user {SERVICE_USER}: {' '.join(argv)}", lambda: _user_exists(SERVICE_USER), lambda: _run(argv),
                skip=None if opts.live else "--root: the user is created on the target")


def command_step(what: str, argv: list[str], needed: bool, skip: str | None) -> Step:
    """A command run only when ``needed`` (a file it depends on is about to be written)."""
    return Step(f"{what}: {' '.join(argv)}", lambda: not needed, lambda: _run(argv), new_word="done",
                same_word="not needed", skip=skip)


def _systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir()  # sd_booted(3)


def plan(opts: Options) -> list[Step]:
    source = units_dir()
    conf_dir = opts.path(CONFIG_DIR)
    unit_path = opts.path(UNIT_DIR) / UNIT_FILE
    udev_path = opts.path(UDEV_DIR) / UDEV_FILE
    unit = file_step("unit", unit_path, render_unit((source / UNIT_FILE).read_text(encoding="utf-8"),
                                                    opts.executable), 0o644)
    udev = file_step("udev rule", udev_path, (source / UDEV_FILE).read_text(encoding="utf-8"), 0o644)
    unit_changes, udev_changes = not unit.check(), not udev.check()  # decided before anything is written
    steps = [
        user_step(opts),
        directory_step(conf_dir, 0o755),
        file_step("config", conf_dir / f"{opts.task}.toml", example_config(opts.task, opts.mqtt_host, opts.http),
                  0o644, keep_existing=True),
        file_step("credential", conf_dir / f"{opts.task}.mqtt_password", "", 0o600, keep_existing=True),
        unit,
        udev,
        *http_token_steps(opts),
    ]
    unit_changes = unit_changes or any(not step.check() for step in steps[6:])
    no_udev = None if shutil.which("udevadm") else "udevadm is not installed"
    no_systemd = None if _systemd_running() else "systemd is not running"
    if not opts.live:
        no_udev = no_systemd = "--root: the target's udev and systemd load it at boot"
    steps.append(command_step("reload udev", ["udevadm", "control", "--reload-rules"],
                              udev_changes, no_udev))
    steps.append(command_step("reload systemd", ["systemctl", "daemon-reload"], unit_changes, no_systemd))
    if opts.enable:
        steps.append(enable_step(opts))
    return steps


def http_token_steps(opts: Options) -> list[Step]:
    """A page on a non-loopback address needs a token: a random one, root-only, handed to the
    service as the systemd credential ``http_token`` by a drop-in (config.load_secrets reads it)."""
    address = config_mod.http_address(opts.http) if opts.http else None
    if address is None or config_mod.is_loopback(address[0]):
        return []
    token_path = opts.path(CONFIG_DIR) / f"{opts.task}.http_token"
    dropin = opts.path(UNIT_DIR) / f"edge-agent@{opts.task}.service.d" / "http-token.conf"
    return [
        file_step("live page token", token_path, secrets.token_hex(16) + "\n", 0o600, keep_existing=True),
        directory_step(dropin.parent, 0o755),
        file_step("unit drop-in", dropin, f"[Service]\nLoadCredential={config_mod.HTTP_TOKEN_CREDENTIAL}:"
                  f"/{CONFIG_DIR}/{opts.task}.http_token\n", 0o644),
    ]


def enable_step(opts: Options) -> Step:
    systemctl = ["systemctl"] if opts.live else ["systemctl", f"--root={opts.root}"]

    def enabled() -> bool:
        link = opts.path(UNIT_DIR) / "multi-user.target.wants" / opts.instance
        return link.is_symlink()

    return Step(f"enable {opts.instance}: {' '.join([*systemctl, 'enable', opts.instance])}", enabled,
                lambda: _run([*systemctl, "enable", opts.instance]), new_word="enabled")


def execute(steps: list[Step], dry_run: bool, out: Callable[[str], None]) -> None:
    for step in steps:
        if step.skip:
            out(f"[skipped] {step.what} ({step.skip})")
        elif step.check():
            out(f"[{step.same_word}] {step.what}")
        elif dry_run:
            out(f"[would be {step.new_word}] {step.what}")
        else:
            step.apply()
            out(f"[{step.new_word}] {step.what}")


# -- entry point -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-agent install-service",
                                description="Install and enable edge-agent@TASK.service (systemd).")
    p.add_argument("--task", default="waste", choices=config_mod.TASKS, help="the instance and its config name")
    p.add_argument("--mqtt-host", default="localhost", help="broker host written into a new config")
    p.add_argument("--http", default="", metavar="[ADDR:]PORT", help="the live page, written into a new config; "
                   "a non-loopback ADDR also gets a random token (/etc/edge-agent/TASK.http_token)")
    p.add_argument("--exec", dest="executable", help="the edge-agent command the unit runs "
                   "(default: the one beside this Python)")
    p.add_argument("--root", type=Path, default=Path("/"), help="install into this directory tree instead of /")
    p.add_argument("--no-enable", dest="enable", action="store_false", help="install but do not enable")
    p.add_argument("--dry-run", action="store_true", help="print every step, change nothing")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        executable = args.executable or default_executable()
        check_executable(executable)
        if args.http and config_mod.http_address(args.http) is None:
            raise InstallError(f"--http {args.http}: expected [ADDR:]PORT with a port from 1 to 65535")
        opts = Options(args.task, args.root.resolve(), executable, args.mqtt_host, args.enable, args.dry_run,
                       args.http)
        if opts.live and not opts.dry_run and os.geteuid() != 0:
            raise InstallError("installing a system service needs root: sudo edge-agent install-service ...")
        execute(plan(opts), opts.dry_run, print)
    except (InstallError, OSError) as e:
        print(f"edge-agent install-service: error: {e}", file=sys.stderr)
        return ExitCode.USAGE if isinstance(e, InstallError) else ExitCode.FAILURE
    if not opts.dry_run and opts.live:
        print(f"start it: systemctl start {opts.instance}; logs: journalctl -u {opts.instance}")
    return ExitCode.OK
