"""The frame behind each label change, for Home Assistant: a small JPEG as a retained message on
``{prefix}/{device_id}/{task}/snapshot`` (an MQTT ``image`` entity in discovery shows it).

Only a *published* label change makes one (the publish policy's, with its threshold and
hysteresis: what Home Assistant's label sensor shows), so a flapping label costs no more than the
predictions it sends. The JPEG goes straight to the broker (``send_now``), never into the SD
card's spool: one retained picture is the present, and a late one would be the past. If the
broker is away at that moment, the newest one is sent when the connection comes back.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np

from .. import contract
from . import jpeg

if TYPE_CHECKING:
    from ..postprocess import Prediction
    from ..sources.base import Frame
    from ..voice.recognizer import Command, RecognizerSettings

logger = logging.getLogger(__name__)

SNAPSHOT_MAX_WIDTH: Final = 320  # pixels: a dashboard card, a few tens of KB at most
SNAPSHOT_QUALITY: Final = 70
SNAPSHOT_SUBTOPIC: Final = "snapshot"


def snapshot_topic(prefix: str, device_id: str, task: str) -> str:
    return contract.device_topic(prefix, device_id, f"{task}/{SNAPSHOT_SUBTOPIC}")


class Sender(Protocol):
    """What a snapshot needs of the MQTT publisher (:class:`~edge_agent.publish.mqtt.MqttPublisher`)."""

    def send_now(self, topic: str, data: str | bytes, qos: int, retain: bool) -> bool: ...


class Snapshot:
    """An :class:`~edge_agent.observe.Observer` for image tasks; voice and sensor items are ignored."""

    def __init__(self, sender: Sender, topic: str) -> None:
        self.sender, self.topic = sender, topic
        self.sent = 0
        self.bytes_sent = 0
        self._label: str | None = None
        self._pending: bytes | None = None  # the newest one the broker has not had
        self._lock = threading.Lock()

    def image(self, frame: Frame, prediction: Prediction, published: bool) -> None:
        if not published or prediction.label == self._label:
            return
        self._label = prediction.label
        with self._lock:
            self._pending = jpeg.encode(frame.image, SNAPSHOT_MAX_WIDTH, SNAPSHOT_QUALITY)
        self.flush()

    def flush(self) -> None:
        """Send the pending snapshot if connected (also called on every reconnect)."""
        with self._lock:
            data = self._pending
            if data is None or not self.sender.send_now(self.topic, data, 1, True):
                return
            self._pending = None
            self.sent += 1
            self.bytes_sent += len(data)
        logger.debug("snapshot %d: %d bytes on %s", self.sent, len(data), self.topic)

    def audio(self, samples: np.ndarray, scores: np.ndarray | None, settings: RecognizerSettings,
              command: Command | None) -> None:
        pass

    def window(self, samples: np.ndarray, label: str | None, score: float | None, threshold: float | None,
               published: bool) -> None:
        pass


def discovery(disc: str, device: str, task: str, topic: str, common: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Home Assistant's MQTT ``image`` entity for the snapshot (HA 2023.7 and later)."""
    return (f"{disc}/image/{device}/{task}_snapshot/config", {
        "name": f"{task.capitalize()} snapshot", "unique_id": f"edge_agent_{device}_{task}_snapshot",
        "image_topic": topic, "content_type": "image/jpeg", "icon": "mdi:camera", **common})
