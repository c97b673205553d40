"""The ``{prefix}/{device_id}/voice/command`` payload: one JSON object per announced command.

Fields follow the image prediction contract where they mean the same thing (``task``, ``score``,
``ts``, ``seq``, ``run``, ``latency_ms``, ``model``, ``device``); ``command`` is the keyword and
``audio_ts`` the wall-clock time of the end of the audio window that decided it. Extend only
additively: hubs match on these names.
"""

from __future__ import annotations

from typing import Any, Final

from ..contract import VOICE_COMMAND_SUBTOPIC, iso_utc, stamp

SUBTOPIC: Final = VOICE_COMMAND_SUBTOPIC


def command_payload(
    *,
    task: str,
    command: str,
    score: float,
    audio_ts: float,
    **envelope: Any,
) -> dict[str, Any]:
    """A voice command: the keyword, its score, the end of the deciding audio window on the wall
    clock, and :func:`~edge_agent.contract.stamp`'s fields (``seq``, ``run``, ``now``,
    ``latency_ms`` from the end of that window to this publish, ``model_name``,
    ``model_sha256``, ``device_id``)."""
    return stamp({
        "task": task,
        "command": command,
        "score": round(float(score), 4),
        "audio_ts": iso_utc(audio_ts),
    }, **envelope)
