"""One small exception hierarchy, so the CLI can turn a user's mistake into one line and an exit code.

    EdgeAgentError                 anything the agent reports to a person as one line
    ├── ConfigError                a bad config file, flag or environment value (names the field)
    ├── ModelError                 a missing, corrupt or mismatched model, manifest or labels file
    ├── SourceError                a camera, video, folder or microphone that cannot be opened
    ├── BackendError               no interpreter package, or an Edge TPU that cannot be used
    ├── PublishError               the broker refused us for good (TLS trust, a protocol or client-id
    │                              refusal), or the publisher's threads keep failing
    └── InferenceError             the interpreter failed on a frame while running (exit 1, not 2)

Transient faults (a broker that is down or refuses a login while its auth backend restarts, a
network camera that is not up yet or was unplugged) are *not* errors here: they are retried with
backoff by the stage that owns them (docs/FIELD.md, "Transient or fatal").
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes a service manager can act on (systemd: RestartPreventExitStatus=2)."""

    OK = 0
    FAILURE = 1  # unexpected: a bug; systemd restarts us
    USAGE = 2  # the user's input is wrong: restarting will not help
    UNAVAILABLE = 3  # a resource that should be there is not (hardware), retry may help


class EdgeAgentError(Exception):
    """Base class: ``str(err)`` is the one line shown to the user."""

    exit_code: ExitCode = ExitCode.USAGE


class ConfigError(EdgeAgentError):
    """A config value is wrong; the message names the field and where it came from."""


class ModelError(EdgeAgentError):
    """A model, manifest or labels file is unusable; the message names the file and why."""


class SourceError(EdgeAgentError):
    """An input (camera, video, folder, microphone) cannot be opened."""


class BackendError(EdgeAgentError):
    """No usable interpreter, or a requested accelerator is unavailable."""


class PublishError(EdgeAgentError):
    """The broker refused the agent in a way retrying will not fix, or delivery cannot go on."""


class InferenceError(EdgeAgentError):
    """An interpreter failed while running (a worker of the inference pool): not the user's fault,
    so exit code 1 and systemd restarts us, with the cause in one line."""

    exit_code = ExitCode.FAILURE
