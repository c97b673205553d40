"""Home Assistant's documented MQTT discovery schema for the entities we announce, written down
from the integration pages (sensor.mqtt, binary_sensor.mqtt, event.mqtt, and the shared device,
origin and availability blocks), so discovery payloads are checked field by field."""

from __future__ import annotations

from typing import Any

STR, INT, BOOL, LIST, MAP = str, int, bool, list, dict

AVAILABILITY_ITEM = {"topic": STR, "payload_available": STR, "payload_not_available": STR, "value_template": STR}
DEVICE = {"configuration_url": STR, "connections": LIST, "hw_version": STR, "identifiers": (LIST, STR),
          "manufacturer": STR, "model": STR, "model_id": STR, "name": STR, "serial_number": STR,
          "suggested_area": STR, "sw_version": STR, "via_device": STR}
ORIGIN = {"name": STR, "sw_version": STR, "support_url": STR}

COMMON = {
    "availability": LIST, "availability_mode": STR, "availability_template": STR, "availability_topic": STR,
    "payload_available": STR, "payload_not_available": STR, "device": MAP, "origin": MAP,
    "enabled_by_default": BOOL, "encoding": STR, "entity_category": STR, "entity_picture": STR, "icon": STR,
    "json_attributes_template": STR, "json_attributes_topic": STR, "name": (STR, type(None)), "object_id": STR,
    "default_entity_id": STR, "platform": STR, "qos": INT, "unique_id": STR, "value_template": STR,
}
COMPONENTS: dict[str, dict[str, Any]] = {
    "sensor": {
        "required": {"state_topic"},
        "fields": {**COMMON, "state_topic": STR, "device_class": STR, "expire_after": INT, "force_update": BOOL,
                   "last_reset_value_template": STR, "options": LIST, "state_class": STR,
                   "suggested_display_precision": INT, "unit_of_measurement": STR},
    },
    "binary_sensor": {
        "required": {"state_topic"},
        "fields": {**COMMON, "state_topic": STR, "device_class": STR, "expire_after": INT, "force_update": BOOL,
                   "off_delay": INT, "payload_off": STR, "payload_on": STR},
        "device_classes": {"problem", "motion", "occupancy", "safety", "running", "presence", "sound"},
    },
    "image": {  # image.mqtt (HA 2023.7+): exactly one of image_topic and url_topic
        "required": set(),
        "fields": {**COMMON, "image_topic": STR, "url_topic": STR, "content_type": STR, "image_encoding": STR,
                   "url_template": STR},
    },
    "event": {
        "required": {"state_topic", "event_types"},
        "fields": {**COMMON, "state_topic": STR, "event_types": LIST, "device_class": STR},
        "device_classes": {"button", "doorbell", "motion"},
    },
}


def check(component: str, payload: dict[str, Any]) -> list[str]:
    """Every problem with a discovery payload, as readable strings (empty: valid)."""
    schema = COMPONENTS[component]
    problems = [f"missing required '{k}'" for k in sorted(schema["required"] - set(payload))]
    for key, value in payload.items():
        kind = schema["fields"].get(key)
        if kind is None:
            problems.append(f"unknown field '{key}'")
        elif not isinstance(value, kind) or (kind is INT and isinstance(value, bool)):
            problems.append(f"'{key}' has type {type(value).__name__}")
    if "device_class" in payload and "device_classes" in schema and payload["device_class"] not in \
            schema["device_classes"]:
        problems.append(f"device_class '{payload['device_class']}' not allowed")
    for item in payload.get("availability", []):
        problems += [f"availability.{k} unknown" for k in item if k not in AVAILABILITY_ITEM]
        if "topic" not in item:
            problems.append("availability item without topic")
    device = payload.get("device", {})
    problems += [f"device.{k} unknown" for k in device if k not in DEVICE]
    if device and not (device.get("identifiers") or device.get("connections")):
        problems.append("device needs identifiers or connections")
    origin = payload.get("origin", {})
    problems += [f"origin.{k} unknown" for k in origin if k not in ORIGIN]
    if origin and "name" not in origin:
        problems.append("origin needs a name")
    if component == "image" and ("image_topic" in payload) == ("url_topic" in payload):
        problems.append("image needs exactly one of image_topic and url_topic")
    if component == "event" and not all(isinstance(t, str) for t in payload.get("event_types", [])):
        problems.append("event_types must be strings")
    return problems
