"""One paho client set-up for everything that talks to the broker: the publisher, the sensor
source that subscribes to MQTT topics, and doctor's broker check. Protocol, credentials and TLS
are set here only, so the three cannot drift apart (doctor once set ``tls_insecure`` on its own)."""

from __future__ import annotations

import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .config import MqttConfig


def make_client(cfg: MqttConfig, client_id: str, **options: Any) -> mqtt.Client:
    """A paho 2 client (callback API v2) for ``cfg``: MQTT 3.1.1 or 5, user and password when a
    user is set, TLS verifying the broker when ``tls``, a CA or a client certificate is given."""
    protocol = mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **options)
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.password)
    if cfg.tls or cfg.ca or cfg.cert:
        client.tls_set(ca_certs=cfg.ca, certfile=cfg.cert, keyfile=cfg.key, cert_reqs=ssl.CERT_REQUIRED)
        if cfg.tls_insecure:
            client.tls_insecure_set(True)
    return client
