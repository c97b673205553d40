"""The streaming recognizer on posterior sequences: one spoken word is one event."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.voice.recognizer import Command, Recognizer, RecognizerSettings

LABELS = ("yes", "no", "on", "off", "stop", "_silence_", "_unknown_")
STRIDE = 50


def posterior(label: str, score: float) -> np.ndarray:
    p = np.full(len(LABELS), (1 - score) / (len(LABELS) - 1), np.float32)
    p[LABELS.index(label)] = score
    return p


def feed(rec: Recognizer, timeline: list[tuple[str, float, int]]) -> list[Command]:
    """``timeline``: (label, score, hops) segments, one result every STRIDE ms."""
    events, t = [], 0
    for label, score, hops in timeline:
        for _ in range(hops):
            t += STRIDE
            ev = rec.update(posterior(label, score), t)
            if ev:
                events.append(ev)
    return events


def test_one_word_seen_in_many_windows_is_one_event() -> None:
    events = feed(Recognizer(LABELS), [("_silence_", 0.9, 20), ("on", 0.95, 16), ("_silence_", 0.9, 20)])
    assert [e.label for e in events] == ["on"]
    # 5 of the 6 averaged results must be "on" before the mean passes 0.7: (5 * 0.95 + 0.017) / 6 = 0.79
    assert events[0].time_ms == 20 * STRIDE + 5 * STRIDE


def test_silence_and_unknown_are_never_announced() -> None:
    events = feed(Recognizer(LABELS), [("_silence_", 1.0, 40), ("_unknown_", 1.0, 40)])
    assert events == []


def test_a_single_spike_does_not_pass_the_averaged_threshold() -> None:
    events = feed(Recognizer(LABELS), [("_silence_", 0.9, 10), ("yes", 1.0, 1), ("_silence_", 0.9, 10)])
    assert events == []


def test_two_commands_in_a_row_are_both_announced_and_a_held_word_is_not_repeated() -> None:
    rec = Recognizer(LABELS, RecognizerSettings(suppression_ms=1000))
    events = feed(rec, [("off", 0.95, 60), ("_silence_", 0.9, 10), ("yes", 0.95, 10), ("_silence_", 0.9, 30),
                        ("yes", 0.95, 10)])
    assert [e.label for e in events] == ["off", "yes", "yes"]


def test_suppression_blocks_a_second_command_too_soon() -> None:
    rec = Recognizer(LABELS, RecognizerSettings(suppression_ms=2000))
    events = feed(rec, [("on", 0.95, 8), ("_silence_", 0.9, 8), ("off", 0.95, 8)])
    assert [e.label for e in events] == ["on"]


def test_threshold_and_min_count_and_time_order_are_enforced() -> None:
    assert feed(Recognizer(LABELS, RecognizerSettings(threshold=0.96)), [("stop", 0.95, 20)]) == []
    rec = Recognizer(LABELS, RecognizerSettings(min_count=5, average_window_ms=200))  # only 4 fit in 200 ms
    assert feed(rec, [("stop", 0.99, 20)]) == []
    rec = Recognizer(LABELS)
    rec.update(posterior("yes", 0.1), 100)
    with pytest.raises(ValueError, match="time order"):
        rec.update(posterior("yes", 0.1), 50)


def test_settings_from_a_manifest_mapping_and_bad_values() -> None:
    s = RecognizerSettings.from_mapping({"threshold": 0.8, "suppression_ms": 1500, "ignored": 1})
    assert s.threshold == 0.8 and s.suppression_ms == 1500 and s.stride_ms == RecognizerSettings().stride_ms
    with pytest.raises(ValueError):
        RecognizerSettings(average_window_ms=10, stride_ms=50)


def test_a_command_can_ask_for_more_certainty_than_the_rest() -> None:
    """A manifest's ``thresholds``: "stop" (confused with "stuff") needs 0.99, others the 0.9 default."""
    s = RecognizerSettings.from_mapping({"threshold": 0.9, "thresholds": {"stop": 0.99}})
    assert s.threshold_for("stop") == 0.99 and s.threshold_for("on") == 0.9
    events = feed(Recognizer(LABELS, s), [("stop", 0.97, 20), ("_silence_", 0.9, 30), ("on", 0.97, 20),
                                          ("_silence_", 0.9, 30), ("stop", 1.0, 20)])
    assert [e.label for e in events] == ["on", "stop"]
    assert RecognizerSettings.from_mapping(s.to_json()) == s
    # A user's own threshold means every command: the per-command ones go.
    user = s.with_threshold(0.95)
    assert user.threshold_for("stop") == 0.95 and "thresholds" not in user.to_json()
    for bad in ({"stop": 1.5}, {"stop": "high"}, ["stop", 0.99]):
        with pytest.raises(ValueError, match="thresholds"):
            RecognizerSettings.from_mapping({"thresholds": bad})
