"""Bridges from `fs:{G}:events` to other systems: MQTT (`mqtt`) and signed webhooks (`webhook`).

Only the config section is imported here, so `facestream.config` can compose `BridgeSettings`
without importing the bridges (which need the client, paho-mqtt and httpx).
"""

from .settings import BridgeError, BridgeSettings, MqttSettings, WebhookSettings

__all__ = ["BridgeError", "BridgeSettings", "MqttSettings", "WebhookSettings"]
