"""Built-in tasks: each names its default model in ``models/`` and its kind of input, so
``edge-agent --task waste`` needs nothing else."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Final

from . import shipped

MODELS_ENV: Final = "EDGE_AGENT_MODELS"


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str  # "image", "audio" or "series"
    model: str | None  # file name in the models folder; None: the user must give --model
    description: str


TASKS: Final = {
    "waste": TaskSpec("waste", "image", "waste.tflite",
                      "waste sorting: glass, paper, cardboard, plastic, metal, trash (TrashNet classes)"),
    "road": TaskSpec("road", "image", "road.tflite", "road surface: normal, crack, pothole"),
    "voice": TaskSpec("voice", "audio", "voice.tflite", "voice commands: yes, no, on, off, stop"),
    "custom": TaskSpec("custom", "image", None, "any classifier made with edge-agent-convert (--model)"),
    # sensor tasks (docs/SENSORS.md); their demo models are trained on synthetic data
    "activity": TaskSpec("activity", "series", "activity.tflite",
                         "human activity from a 3-axis accelerometer: walking, jogging, stairs, sitting, standing"),
    "location": TaskSpec("location", "series", "location.tflite", "indoor room from Wi-Fi signal strengths"),
    "machine": TaskSpec("machine", "series", "machine.tflite",
                        "machine fault (anomaly) from vibration and temperature"),
    "intrusion": TaskSpec("intrusion", "series", "intrusion.tflite", "network intrusion (anomaly) from flow features"),
}


def models_dir() -> Path:
    """``$EDGE_AGENT_MODELS``, else the shipped models: the checkout's ``models/``, a wheel's
    ``{prefix}/share/edge-agent/models``, or a package's ``/usr/share/edge-agent/models``."""
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV])
    return shipped.find("models")


def default_model(task: str) -> Path | None:
    spec = TASKS[task]
    return models_dir() / spec.model if spec.model else None
