"""A recording tells what a camera watching that scene would have told: the publish policy runs
on the media's own clock, and a run never ends with a newer label still unpublished."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from edge_agent.postprocess import Prediction, PublishPolicy
from tests.helpers import REPO, Broker, Subscriber, once_each, run_agent

WASTE = ("cardboard", "glass", "metal", "paper", "plastic", "trash")  # 20 frames each in samples/waste.mp4
ROAD = ("crack", "normal", "pothole")


def _labels(stdout: str) -> list[str]:
    return [json.loads(line)["label"] for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(("task", "labels"), [("waste", WASTE), ("road", ROAD)], ids=["waste", "road"])
def test_the_demo_prints_every_label_of_the_clip_in_order(task: str, labels: tuple[str, ...]) -> None:
    r = run_agent(["--task", task, "--source", str(REPO / "samples" / f"{task}.mp4"), "--sink", "stdout"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert _labels(r.stdout) == list(labels)


def test_an_mqtt_run_of_a_file_sends_one_message_per_change_and_ends_on_the_clips_last_label(
        broker: Broker) -> None:
    sub = Subscriber(broker, "edge-agent/#")
    r = run_agent(["--task", "waste", "--source", str(REPO / "samples" / "waste.mp4"), "--mqtt-host", broker.host,
                   "--mqtt-port", str(broker.port), "--device-id", "pi1"])
    assert r.returncode == 0, r.stderr[-2000:]
    got = once_each(sub.wait_for("/waste/prediction", len(WASTE), 30))
    sub.close()
    assert [p["label"] for p in got] == list(WASTE)


def _frames(video: Path, indices: list[int]) -> list:
    cap = cv2.VideoCapture(str(video))
    out, i = [], 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        if i in indices:
            out.append(image)
        i += 1
    cap.release()
    return [out[sorted(indices).index(k)] for k in indices]


def test_a_change_the_rate_ceiling_held_back_is_sent_before_the_run_ends(tmp_path: Path) -> None:
    """A folder is ten frames a second of media time; at the default two messages a second, a
    glass photo 0.1 s after a cardboard one is held back, then sent at the end of the run."""
    images = _frames(REPO / "samples" / "waste.mp4", [0, 1, 30])  # cardboard, cardboard, glass
    folder = tmp_path / "photos"
    folder.mkdir()
    for n, image in enumerate(images):
        cv2.imwrite(str(folder / f"{n:03d}.png"), image)
    r = run_agent(["--task", "waste", "--source", str(folder), "--sink", "stdout"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert _labels(r.stdout) == ["cardboard", "glass"]


def test_the_policy_runs_on_the_clock_it_is_given() -> None:
    a, b = (Prediction(label, 0.99, i, ()) for i, label in enumerate("ab"))
    policy = PublishPolicy()
    assert policy.decide(a, 100.0)
    assert not policy.decide(b, 100.1) and policy.withheld is b  # within the rate ceiling: held back
    assert not policy.decide(a, 100.2) and policy.withheld is None  # back to what the hub holds: nothing owed
    assert not policy.decide(b, 100.3) and policy.take_withheld(100.3) is b
    assert policy.take_withheld(100.4) is None
    assert policy.decide(b, 160.3)  # the heartbeat, 60 s of the caller's clock later
