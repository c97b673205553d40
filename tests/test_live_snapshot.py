"""The frame behind each label change, in Home Assistant: a retained JPEG on
``{prefix}/{device}/{task}/snapshot`` and an MQTT ``image`` entity in discovery, checked against
Home Assistant's own schema (its ``image.mqtt`` platform, from the HA venv of tools/install_ha.sh)."""

from __future__ import annotations

import json
import subprocess
import time

import cv2
import numpy as np
import pytest

from tests import ha_schema
from tests.ha_helpers import ha_installed, ha_required, hass_binary
from tests.helpers import Broker, Subscriber, once_each, run_agent
from tests.live_helpers import WASTE_VIDEO

DEVICE = "snap1"
SNAPSHOT = f"edge-agent/{DEVICE}/waste/snapshot"
IMAGE_CONFIG = f"homeassistant/image/{DEVICE}/waste_snapshot/config"
MAX_SNAPSHOT_BYTES = 60_000  # "a few tens of KB"


def _run(broker: Broker, *extra: str) -> Subscriber:
    sub = Subscriber(broker, "#")
    result = run_agent(["--task", "waste", "--source", str(WASTE_VIDEO), "--realtime", "--threads", "1",
                        "--device-id", DEVICE, "--mqtt-host", broker.host, "--mqtt-port", str(broker.port),
                        *extra], timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    time.sleep(0.5)
    return sub


def test_each_label_change_sends_a_small_retained_jpeg(broker: Broker) -> None:
    sub = _run(broker)
    try:
        labels = [p["label"] for p in once_each(sub.payloads("waste/prediction"))]
        changes = sum(1 for i, label in enumerate(labels) if i == 0 or label != labels[i - 1])
        snaps = [s for s in sub.raw(SNAPSHOT) if s]
        # one per published label change; those before the broker connection are not queued: the
        # newest of them is sent at connect (a label lasts 2 s here: on a loaded machine the
        # connection may take that long)
        assert changes - 2 <= len(snaps) <= changes and changes >= 4 and len(snaps) >= 2, (labels, len(snaps))
        for jpg in snaps:
            assert len(jpg) < MAX_SNAPSHOT_BYTES
            image = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None and image.shape[1] == 320
        config = json.loads(sub.raw(IMAGE_CONFIG)[-1])
        assert config["image_topic"] == SNAPSHOT and config["content_type"] == "image/jpeg"
        assert ha_schema.check("image", config) == []
    finally:
        sub.close()
    later = Subscriber(broker, SNAPSHOT)  # retained: a dashboard opened later sees the last one
    try:
        deadline = time.monotonic() + 10
        while not later.raw(SNAPSHOT) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert later.raw(SNAPSHOT) == [snaps[-1]]
    finally:
        later.close()


def test_no_snapshot_sends_none_and_clears_the_entity(broker: Broker) -> None:
    sub = _run(broker, "--no-snapshot", "--max-frames", "40")
    try:
        assert not [s for s in sub.raw(SNAPSHOT) if s]
        assert sub.raw(IMAGE_CONFIG) and all(p == b"" for p in sub.raw(IMAGE_CONFIG))
        assert sub.raw(SNAPSHOT) == [b""]  # a picture left from an earlier run is removed
    finally:
        sub.close()


@pytest.mark.homeassistant
def test_home_assistant_accepts_the_image_entity(broker: Broker) -> None:
    """The discovery payload through Home Assistant's own ``image.mqtt`` schema (extra keys are errors)."""
    if not ha_installed():
        if ha_required():
            pytest.fail("Home Assistant is not installed: run bash tools/install_ha.sh")
        pytest.skip("Home Assistant is not installed (bash tools/install_ha.sh)")
    sub = _run(broker, "--max-frames", "20")
    try:
        payload = sub.raw(IMAGE_CONFIG)[-1]
    finally:
        sub.close()
    check = ("import json, sys\nimport homeassistant.bootstrap  # noqa: the mqtt package imports in this order\n"
             "from homeassistant.components.mqtt.image import PLATFORM_SCHEMA_MODERN\n"
             "out = PLATFORM_SCHEMA_MODERN(json.load(sys.stdin))\nprint(out['image_topic'], out['content_type'])\n")
    python = hass_binary().parent / "python"
    result = subprocess.run([str(python), "-c", check], input=payload.decode(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [SNAPSHOT, "image/jpeg"]
    bad = json.loads(payload) | {"image_topc": "x"}  # the check itself rejects a typo
    result = subprocess.run([str(python), "-c", check], input=json.dumps(bad), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0 and "image_topc" in result.stderr
