"""edge-agent: on-device image and audio classification for Raspberry Pi and Coral, over MQTT."""

__version__ = "0.1.0"
