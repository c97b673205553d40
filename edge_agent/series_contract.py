"""The MQTT contract of the sensor (series) tasks: payloads and Home Assistant entities.

Published on ``{prefix}/{device_id}/{task}/prediction`` like image predictions, with the same
envelope (:func:`~edge_agent.contract.stamp`: ``ts``, ``seq``, ``run``, ``latency_ms``,
``model``, ``device``) and ``window_ts``, the time of the last sample of the window that decided
it. A classification (activity, location) carries ``label``, ``score`` and ``top`` as image
tasks do; an anomaly model (machine, intrusion) carries ``anomaly`` (bool), ``score`` (the
reconstruction error) and ``threshold`` (calibrated on normal validation data), and ``label``
``anomaly`` or ``normal``. Extend only additively: hubs match on these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from . import contract
from .contract import iso_utc, stamp
from .postprocess import Prediction

ANOMALY_LABELS: Final = ("normal", "anomaly")
ICONS: Final = {"activity": "mdi:run", "location": "mdi:map-marker", "machine": "mdi:engine",
                "intrusion": "mdi:shield-alert"}


prediction_subtopic = contract.prediction_subtopic  # the same topics as image predictions


def is_anomaly(labels: Sequence[str]) -> bool:
    return tuple(labels) == ANOMALY_LABELS


def class_payload(*, task: str, prediction: Prediction, window_ts: float, **envelope: Any) -> dict[str, Any]:
    """A classified window: label, score and top-k, the window's last sample time, the envelope."""
    return stamp({
        "task": task,
        "label": prediction.label,
        "score": prediction.score,
        "top": [{"label": s.label, "score": s.score} for s in prediction.top],
        "window_ts": iso_utc(window_ts),
    }, **envelope)


def anomaly_payload(*, task: str, score: float, threshold: float, window_ts: float, **envelope: Any) -> dict[str, Any]:
    """An anomaly verdict: score (reconstruction error) against the calibrated threshold."""
    anomalous = bool(score > threshold)
    return stamp({
        "task": task,
        "label": ANOMALY_LABELS[1] if anomalous else ANOMALY_LABELS[0],
        "anomaly": anomalous,
        "score": round(float(score), 6),
        "threshold": round(float(threshold), 6),
        "window_ts": iso_utc(window_ts),
    }, **envelope)


def discovery(disc: str, device: str, task: str, labels: Sequence[str], state: str,
              common: dict[str, Any], expiry: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Home Assistant entities: a ``sensor`` for the label of a classifier; a ``binary_sensor``
    (device class problem) plus a ``sensor`` for the score of an anomaly model. ``expiry`` is the
    image entities' ``expire_after`` (none without a heartbeat).

    The attributes hold nothing that changes on every message (no ``seq``, no ``window_ts``): Home
    Assistant's recorder writes a ``states`` row and a ``state_attributes`` row for every distinct
    attributes set, so a heartbeat that repeats a steady state must repeat its attributes too."""
    common = {**(expiry or {}), **common}
    icon = ICONS.get(task, "mdi:chart-line")
    title = task.capitalize()
    if is_anomaly(labels):
        return [
            (f"{disc}/binary_sensor/{device}/{task}_anomaly/config", {
                "name": f"{title} anomaly", "unique_id": f"edge_agent_{device}_{task}_anomaly",
                "state_topic": state, "device_class": "problem",
                "value_template": "{{ 'ON' if value_json.anomaly else 'OFF' }}",
                "payload_on": "ON", "payload_off": "OFF",
                "json_attributes_topic": state,
                "json_attributes_template": "{{ {'score': value_json.score, "
                                            "'threshold': value_json.threshold} | tojson }}",
                "icon": icon, **common}),
            (f"{disc}/sensor/{device}/{task}_score/config", {
                "name": f"{title} anomaly score", "unique_id": f"edge_agent_{device}_{task}_score",
                "state_topic": state, "value_template": "{{ value_json.score }}", "state_class": "measurement",
                "icon": icon, **common}),
        ]
    return [(f"{disc}/sensor/{device}/{task}_label/config", {
        "name": f"{title} label", "unique_id": f"edge_agent_{device}_{task}_label",
        "state_topic": state, "value_template": "{{ value_json.label }}",
        "json_attributes_topic": state,
        "json_attributes_template": "{{ {'score': value_json.score, 'top': value_json.top} | tojson }}",
        "icon": icon, **common})]

