"""The MQTT contract in one place: topic names and the prediction payload.

Hubs and scripts depend on these names (README.md, "MQTT contract"); extend only additively.
"""

from __future__ import annotations

import datetime
import json
from typing import Any, Final

from .postprocess import Prediction

STATUS_ONLINE: Final = "online"
STATUS_OFFLINE: Final = "offline"


def status_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/{device_id}/status"


def device_topic(prefix: str, device_id: str, subtopic: str) -> str:
    return f"{prefix}/{device_id}/{subtopic}"


VOICE_COMMAND_SUBTOPIC: Final = "voice/command"  # one message per announced voice command


def prediction_subtopic(task: str) -> str:
    """Below ``{prefix}/{device_id}/``: where image and sensor predictions of ``task`` go."""
    return f"{task}/prediction"


def prediction_topic(prefix: str, device_id: str, task: str) -> str:
    return device_topic(prefix, device_id, prediction_subtopic(task))


def iso_utc(ts: float) -> str:
    """ISO 8601 UTC with milliseconds: 2026-11-23T20:15:03.123Z."""
    dt = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def stamp(
    payload: dict[str, Any],
    *,
    seq: int,
    run: str,
    now: float,
    latency_ms: float,
    model_name: str,
    model_sha256: str,
    device_id: str,
) -> dict[str, Any]:
    """The fields every published event carries, image prediction or voice command alike."""
    payload.update({
        "ts": iso_utc(now),
        "seq": seq,
        "run": run,
        "latency_ms": round(latency_ms, 2),
        "model": {"name": model_name, "sha256": model_sha256[:12]},
        "device": device_id,
    })
    return payload


def prediction_payload(
    *,
    task: str,
    prediction: Prediction,
    frame_ts: float,
    **envelope: Any,
) -> dict[str, Any]:
    """An image prediction: label, score and top-k, the frame's capture time, and :func:`stamp`'s fields."""
    return stamp({
        "task": task,
        "label": prediction.label,
        "score": prediction.score,
        "top": [{"label": s.label, "score": s.score} for s in prediction.top],
        "frame_ts": iso_utc(frame_ts),
    }, **envelope)


REPLAYED: Final = "replayed"  # true on a message sent late from the spool (after an outage or a restart)


def mark_replayed(payload: bytes) -> bytes:
    """The same JSON object with ``"replayed": true`` added (other payloads are left as they are)."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return payload
    if not isinstance(data, dict):
        return payload
    data[REPLAYED] = True
    return json.dumps(data, separators=(",", ":")).encode()
