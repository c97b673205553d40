"""One model loader for every kind of input: find the file, read its manifest, check what every
kind shares (the file exists, a manifest or labels file is there, the task and the manifest
agree on the kind of input), then hand over to the kind's own checks and interpreter set-up.

The kinds' loaders live beside their agents (``agents/image.py``, ``voice/spotter.py``); the
composition root (:mod:`edge_agent.service`) names them in one table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import manifest as manifest_mod
from .config import Config
from .errors import ConfigError, ModelError
from .manifest import Manifest
from .tasks import TASKS, default_model

logger = logging.getLogger(__name__)

KindLoader = Callable[[Path, Manifest | None, Config], Any]


def resolve_model_path(config: Config) -> Path:
    """``--model``, else the task's shipped model."""
    if config.model.path:
        return Path(config.model.path)
    path = default_model(config.task)
    if path is None:
        raise ConfigError(f"{config.where('task')}: task '{config.task}' needs a model: give --model FILE")
    return path


def read_manifest(path: Path, config: Config) -> Manifest | None:
    """The manifest beside the model, or None when ``--labels`` stands in for it."""
    manifest_path = manifest_mod.manifest_path_for(path)
    if manifest_path.exists():
        return manifest_mod.load(manifest_path)
    if not config.model.labels:
        raise ModelError(f"model {path}: no manifest {manifest_path.name} beside it; give --labels labels.txt")
    return None


def _a(kind: str) -> str:
    """'an image model', 'an audio model', 'a series model'."""
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


def model_kind(config: Config, manifest: Manifest | None) -> str:
    """The kind of input this run handles. Without a manifest the task says it; with one, the
    manifest says it and the task only names the entities. A task the user did not name (the
    default, waste) gives way to a ``--model`` of another kind: the run becomes task ``custom``
    (so a sensor model gets sensor entities, not image ones). A built-in task the user did name
    that disagrees with the manifest is refused, one line naming both."""
    task_kind = TASKS[config.task].kind
    if manifest is None or config.task == "custom" or manifest.kind == task_kind:
        return task_kind if manifest is None else manifest.kind
    if config.model.path and config.where("task") == "default":
        logger.info("model %s is %s model: running it as task 'custom'", resolve_model_path(config), _a(manifest.kind))
        config.task = "custom"
        return manifest.kind
    raise ModelError(f"model {resolve_model_path(config)}: its manifest says it is {_a(manifest.kind)} model, but "
                     f"task '{config.task}' ({config.where('task')}) takes {_a(task_kind)} model; give --task custom "
                     "or the task of its kind")


def load_model(config: Config, loaders: Mapping[str, KindLoader]) -> tuple[str, Any]:
    """(kind, loaded model): the shared checks once, then ``loaders[kind]``."""
    path = resolve_model_path(config)
    if not path.exists() and not manifest_mod.manifest_path_for(path).exists():
        raise ModelError(f"model {path}: file not found")
    manifest = read_manifest(path, config)
    kind = model_kind(config, manifest)
    if kind not in loaders:
        raise ModelError(f"model {path}: this agent cannot run {kind} models (known: {', '.join(loaders)})")
    return kind, loaders[kind](path, manifest, config)
