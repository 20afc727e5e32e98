"""`facestream bridge mqtt`: events (and results) to an MQTT broker, QoS 1, acked after PUBACK.

Topics are `<prefix>/<group>/<camera>/<event type>` (results: `.../result`) with the entry as
JSON; `<prefix>/bridge/<name>/availability` is retained `online` while connected and `offline`
after a clean stop or, as the broker's will, after the connection was lost.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from functools import partial

import paho.mqtt.client as mqtt
import redis
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from facestream.client import DeliveredEvent, DeliveredResult, EventSubscriber, ResultSubscriber
from facestream.health import Probe
from facestream.ingest.outages import Outages

from . import metrics
from .base import Pump, Sources, bridge_subscriber, dead_letter, run_pumps
from .settings import BridgeError, BridgeSettings, MqttSettings

__all__ = ["MqttPublisher", "run_mqtt_bridge", "topic_for"]

log = structlog.get_logger("bridge.mqtt")

# Characters MQTT gives a meaning in topic names; a camera or group naming one is not published.
_TOPIC_UNSAFE = frozenset("/+#\0")


def topic_for(prefix: str, group: str, camera: str, kind: str) -> str | None:
    """`prefix/group/camera/kind`, or None when a part would change the topic's levels."""
    if any(c in _TOPIC_UNSAFE for c in group + camera) or not camera:
        return None
    return f"{prefix}/{group}/{camera}/{kind}"


class MqttPublisher:
    """One MQTT connection: QoS 1 publishes confirmed by PUBACK, availability, reconnects.

    paho keeps an unconfirmed QoS 1 message and sends it again (DUP) after a reconnect, so
    `publish` only waits for the PUBACK of the message it sent, across broker restarts.
    """

    def __init__(self, settings: MqttSettings, probe: Probe, stop: threading.Event) -> None:
        self.settings = settings
        self.probe = probe
        self.stop = stop
        self.bridge = f"mqtt/{settings.name}"
        self.availability = f"{settings.topic_prefix}/bridge/{settings.name}/availability"
        # PUBACKs by message id. Ids are reused once confirmed, so an id nobody waits for must
        # not linger here: the availability messages' ids are left out.
        self._confirmed: set[int] = set()
        self._unwatched: set[int] = set()
        self._changed = threading.Condition()
        # Unique per process: two bridges with one client id would keep taking over each other.
        client_id = f"facestream-{settings.name}-{socket.gethostname()}-{os.getpid()}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.will_set(self.availability, "offline", qos=1, retain=True)
        if settings.username is not None:
            password = None
            if settings.password_file is not None:
                password = settings.password_file.read_text().rstrip("\r\n")
            self.client.username_pw_set(settings.username, password)
        if settings.tls:
            self.client.tls_set(
                ca_certs=_path(settings.tls_ca_file),
                certfile=_path(settings.tls_cert_file),
                keyfile=_path(settings.tls_key_file),
            )
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    def start(self) -> None:
        """Connect in the background; paho retries (1 s doubling to 30 s) until it is up."""
        metrics.CONNECTED.labels(self.bridge).set(0)
        self.probe.set_ready(f"connecting to the broker {self._where()}")
        self.client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_s)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> bool:
        """Send at QoS 1 and wait for the broker's PUBACK; False if stopped before it came.

        After a stop is asked for, the message in flight still gets `stop_wait_s` to be
        confirmed; one that is not is sent again by the next run (a duplicate at worst).
        """
        info = self.client.publish(topic, payload, qos=1)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            raise BridgeError("the MQTT client's outgoing queue is full")  # unbounded by default
        deadline: float | None = None
        with self._changed:
            while info.mid not in self._confirmed:
                if self.stop.is_set():
                    deadline = deadline or time.monotonic() + self.settings.stop_wait_s
                    if time.monotonic() >= deadline:
                        self._unwatched.add(info.mid)
                        return False
                self._changed.wait(0.2)
            self._confirmed.discard(info.mid)
        return True

    def close(self) -> None:
        """Say `offline` (retained) and disconnect cleanly, so the will is not sent."""
        if self.client.is_connected():
            info = self.client.publish(self.availability, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(self.settings.stop_wait_s)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not say offline", error=str(exc))
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("the broker refused the connection", broker=self._where(), reason=str(reason))
            self.probe.set_ready(f"broker {self._where()} refused: {reason}")
            return
        # Its PUBACK is read by this same thread, after this callback: no race with _on_publish.
        online = client.publish(self.availability, "online", qos=1, retain=True)
        with self._changed:
            self._unwatched.add(online.mid)
        metrics.CONNECTED.labels(self.bridge).set(1)
        self.probe.set_ready(None)
        log.info("connected to the broker", broker=self._where())

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        metrics.CONNECTED.labels(self.bridge).set(0)
        self.probe.set_ready(f"disconnected from the broker {self._where()}: {reason}")
        if not self.stop.is_set():
            log.warning("lost the broker, reconnecting", broker=self._where(), reason=str(reason))

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        _reason: ReasonCode,
        _properties: Properties,
    ) -> None:
        with self._changed:
            if mid in self._unwatched:
                self._unwatched.discard(mid)
                return
            self._confirmed.add(mid)
            self._changed.notify_all()

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"


def run_mqtt_bridge(
    sources: Sources,
    settings: BridgeSettings,
    probe: Probe,
    stop: threading.Event,
    *,
    from_start: bool = False,
) -> None:
    """Publish every event (and with `settings.mqtt.results` every result) until `stop`; one
    subscriber per source (node), all through one broker connection."""
    mqtt_settings = settings.mqtt
    publisher = MqttPublisher(mqtt_settings, probe, stop)
    prefix = mqtt_settings.topic_prefix
    outages = Outages(stop, f"{publisher.bridge} dead letters")

    def deliver_event(client: redis.Redis, event: DeliveredEvent) -> bool:
        topic = topic_for(prefix, event.group, event.camera, event.type)
        if topic is None:
            why = "camera not usable in an MQTT topic"
            dead_letter(client, event, publisher.bridge, why, 0, outages)
            return True
        if not publisher.publish(topic, event.to_json()):
            return False
        metrics.DELIVERED.labels(publisher.bridge, "event").inc()
        return True

    def deliver_result(result: DeliveredResult) -> bool:
        topic = topic_for(prefix, result.group, result.camera, "result")
        if topic is None:
            log.warning("result not published: camera not usable in a topic", entry=result.entry_id)
            return True  # results have no dead-letter stream of their own; it stays in results
        if not publisher.publish(topic, result.to_json()):
            return False
        metrics.DELIVERED.labels(publisher.bridge, "result").inc()
        return True

    pumps: list[Pump[DeliveredEvent] | Pump[DeliveredResult]] = []
    for name, (client, groups) in sources.items():
        events = bridge_subscriber(
            EventSubscriber, client, groups, "mqtt", settings, from_start, probe
        )
        pumps.append(Pump(f"events@{name}", events, partial(deliver_event, client)))
        if mqtt_settings.results:
            results = bridge_subscriber(
                ResultSubscriber, client, groups, "mqtt", settings, from_start, probe
            )
            pumps.append(Pump(f"results@{name}", results, deliver_result))
    publisher.start()
    try:
        run_pumps(pumps, stop)
    finally:
        publisher.close()
        log.info("mqtt bridge stopped", bridge=publisher.bridge)


def _path(file: os.PathLike[str] | None) -> str | None:
    return os.fspath(file) if file is not None else None
