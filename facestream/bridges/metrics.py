"""Prometheus metrics of the bridges (`facestream bridge mqtt|webhook`, on --metrics-port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["ATTEMPTS_FAILED", "CONNECTED", "DEAD_LETTERS", "DELIVERED"]

DELIVERED = Counter(
    "facestream_bridge_delivered",
    "Entries the other side confirmed (MQTT PUBACK, webhook 2xx), then acknowledged",
    ["bridge", "kind"],
)
ATTEMPTS_FAILED = Counter(
    "facestream_bridge_attempts_failed",
    "Deliveries that failed and will be tried again (connection error, HTTP 5xx, 429, 408)",
    ["bridge"],
)
DEAD_LETTERS = Counter(
    "facestream_bridge_dead_letters",
    "Events written to fs:{G}:events:dead (refused by the receiver or out of attempts)",
    ["bridge"],
)
CONNECTED = Gauge(
    "facestream_bridge_connected",
    "1 while the bridge can deliver (MQTT: connected to the broker; webhook: last POST answered)",
    ["bridge"],
)
