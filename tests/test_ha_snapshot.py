"""The snapshot in a real Home Assistant (2024.1.6, tools/install_ha.sh): the agent's ``image``
entity is created by HA's MQTT discovery and its picture updated by the retained JPEG. Marker
``homeassistant``; one HA start for this module (the label entities have tests/test_home_assistant.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ha_helpers import HomeAssistant, ha_installed, ha_required, wait_until
from tests.helpers import Broker, Subscriber, run_agent
from tests.live_helpers import WASTE_VIDEO

pytestmark = pytest.mark.homeassistant
DEVICE = "hasnap"


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HomeAssistant]:
    if not ha_installed():
        reason = "Home Assistant is not installed: run bash tools/install_ha.sh"
        if ha_required():
            pytest.fail(reason)
        pytest.skip(reason)
    broker = Broker(tmp_path_factory.mktemp("ha-snap-broker")).start()
    birth = Subscriber(broker, "homeassistant/status")
    home = HomeAssistant(tmp_path_factory.mktemp("ha-snap-config"), broker)
    try:
        home.start(lambda: "online" in birth.texts("homeassistant/status"))
        yield home
    finally:
        birth.close()
        home.stop()
        broker.stop()


def test_home_assistant_shows_the_frame_behind_the_label_change(ha: HomeAssistant, tmp_path: Path) -> None:
    result = run_agent(["--task", "waste", "--source", str(WASTE_VIDEO), "--realtime", "--max-frames", "60",
                        "--threads", "1", "--device-id", DEVICE, "--mqtt-host", ha.broker.host, "--mqtt-port",
                        str(ha.broker.port)], timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    uid = f"edge_agent_{DEVICE}_waste_snapshot"
    entry = ha.entities({uid})[uid]
    assert entry["entity_id"].startswith("image.") and entry["platform"] == "mqtt"
    assert entry["original_name"] == "Waste snapshot"
    # an MQTT image's state is the time its last picture arrived: a timestamp once one came
    # (each label change: 60 frames of the sample at 10 fps hold three or four)
    updates = wait_until(lambda: [r for r in ha.rows(entry["entity_id"]) if r.state not in ("unknown", "unavailable")]
                         or None, 60, f"{entry['entity_id']} updated by a snapshot")
    assert all(r.state[:4].isdigit() and "T" in r.state for r in updates), updates
    assert len({r.state for r in updates}) >= 2, "a new picture at a later label change"
    complaints = [line for line in ha.log_tail(50000).splitlines()
                  if "mqtt" in line.lower() and any(w in line for w in ("ERROR", "Invalid", "invalid"))]
    assert not complaints, complaints
