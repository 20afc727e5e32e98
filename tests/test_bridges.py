"""The bridges as users run them: real `facestream bridge …` processes, a real mosquitto broker,
a real HTTP server, a real redis-server; kills, restarts and outages on the way."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion

from facestream.schemas import Event, keys
from facestream.server import EmbeddedRedis, free_port

from .helpers import require_system_dependency, wait_for
from .test_client import _result
from .test_events_client import make_event, publish_events

SECRET = b"a-webhook-secret-of-32-bytes-len"


# -- processes ------------------------------------------------------------------------------


def bridge(redis_server: EmbeddedRedis, *args: str) -> subprocess.Popen[str]:
    """`facestream bridge …` as its own process, logging JSON lines to a pipe."""
    env = {**os.environ, "FACESTREAM_BRIDGE__BLOCK_MS": "100", "FACESTREAM_LOG__FORMAT": "json"}
    return subprocess.Popen(
        [sys.executable, "-m", "facestream", "bridge", *args, "--redis-url", redis_server.url],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def stop(process: subprocess.Popen[str], how: int = signal.SIGTERM) -> tuple[int, str]:
    """Send `how`, wait; its exit code and output."""
    if process.poll() is None:
        process.send_signal(how)
    out, _ = process.communicate(timeout=30)
    return process.returncode, out


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


# -- a real mosquitto -----------------------------------------------------------------------


class Broker:
    """mosquitto on a loopback port, persistent (its sessions and retained messages survive a
    restart), started and stopped for real."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        require_system_dependency(os.access(binary, os.X_OK), "mosquitto (apt install mosquitto)")
        self.binary = binary
        self.port = free_port()
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\nlog_dest stderr\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self._listening, 10, "mosquitto to listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # a clean stop writes its persistence file
            self.process.wait(10)

    def _listening(self) -> bool:
        import socket

        assert self.process is not None and self.process.poll() is None, "mosquitto exited"
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Broker]:
    server = Broker(tmp_path)
    server.start()
    yield server
    server.stop()


@dataclass
class Listener:
    """A subscriber with a persistent session: what it missed while away is kept for it."""

    port: int
    topic: str = "facestream/#"
    client_id: str = "test-listener"
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False
        )
        self.client.on_connect = lambda c, *_: c.subscribe(self.topic, qos=1)
        self.client.on_message = self._received
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()

    def _received(self, _client: mqtt.Client, _userdata: object, message: Any) -> None:
        with self.lock:
            self.messages.append(message)

    def payloads(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                json.loads(m.payload)
                for m in self.messages
                if "/bridge/" not in m.topic and (kind is None or m.topic.endswith("/" + kind))
            ]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def retained(port: int, topic: str) -> str | None:
    """The retained message on `topic` as a new subscriber sees it, None if there is none.

    The broker sends retained messages right after the subscription; a marker this probe
    publishes to itself afterwards arrives after them, so once it is in, the answer is known.
    """
    marker = f"probe/{threading.get_ident()}/{os.getpid()}"
    got: list[mqtt.MQTTMessage] = []

    def subscribed(c: mqtt.Client, *_: object) -> None:
        c.publish(marker, b"", qos=1)

    probe = mqtt.Client(CallbackAPIVersion.VERSION2)
    probe.on_connect = lambda c, *_: c.subscribe([(topic, 1), (marker, 1)])
    probe.on_subscribe = subscribed
    probe.on_message = lambda _c, _u, message: got.append(message)
    probe.connect("127.0.0.1", port)
    probe.loop_start()
    try:
        wait_for(lambda: any(m.topic == marker for m in got), 10, "the probe's marker")
    finally:
        probe.loop_stop()
        probe.disconnect()
    kept = [m for m in got if m.topic == topic and m.retain]
    return kept[0].payload.decode() if kept else None


def _order(payload: dict[str, Any]) -> tuple[str, str]:
    return payload["track"], payload["type"]


# -- MQTT -----------------------------------------------------------------------------------


def test_mqtt_events_and_results_arrive_once_on_their_topics(
    client: redis.Redis, redis_server: EmbeddedRedis, broker: Broker
) -> None:
    listener = Listener(broker.port)
    metrics_port = free_port()
    events = [
        make_event(1),
        make_event(1, "identified", identity="obama"),
        make_event(1, "left", identity="obama", snapshot=keys.snapshot("g1", "t1")),
        make_event(2, camera="c2"),
        make_event(3, camera="c/3"),  # a camera that would add a topic level: dead-lettered
    ]
    publish_events(client, *events)
    client.xadd(keys.results("g1"), _result(7).to_fields())  # type: ignore[arg-type]
    process = bridge(
        redis_server, "mqtt", "--group", "g1", "--port", str(broker.port), "--name", "lobby",
        "--results", "--from-start", "--metrics-port", str(metrics_port),
    )  # fmt: skip
    try:
        wait_for(lambda: len(listener.payloads()) >= 5, 60, "four events and a result")
        wait_for(lambda: client.xlen(keys.events_dead("g1")) == 1, 10, "the dead letter")
        assert retained(broker.port, "facestream/bridge/lobby/availability") == "online"
        assert http_get(f"http://127.0.0.1:{metrics_port}/readyz") == (200, "ready\n")
        status, text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200
        assert 'facestream_bridge_delivered_total{bridge="mqtt/lobby",kind="event"} 4.0' in text
        assert 'facestream_bridge_dead_letters_total{bridge="mqtt/lobby"} 1.0' in text
    finally:
        code, out = stop(process)
        listener.close()
    assert code == 0, out
    topics = Counter((m.topic, m.qos) for m in listener.messages if "/bridge/" not in m.topic)
    assert topics == {
        ("facestream/g1/c1/appeared", 1): 1,
        ("facestream/g1/c1/identified", 1): 1,
        ("facestream/g1/c1/left", 1): 1,
        ("facestream/g1/c2/appeared", 1): 1,
        ("facestream/g1/c1/result", 1): 1,
    }
    # Each payload is the event as on the stream, nothing added, nothing lost.
    payloads = [p for p in listener.payloads() if "type" in p]
    assert sorted(payloads, key=_order) == sorted(
        (json.loads(e.to_json()) for e in events[:4]), key=_order
    )
    assert Event.model_validate(next(iter(listener.payloads("left")))) == events[2]
    assert listener.payloads("result")[0]["frame_id"] == "7-0"
    dead = client.xrange(keys.events_dead("g1"))[0][1]
    assert dead[b"reason"] == b"camera not usable in an MQTT topic"
    assert json.loads(dead[b"event"])["camera"] == "c/3"
    assert client.xpending(keys.events("g1"), "bridge-mqtt-lobby")["pending"] == 0
    assert retained(broker.port, "facestream/bridge/lobby/availability") == "offline"


def test_mqtt_bridge_killed_and_broker_restarted_loses_nothing(
    client: redis.Redis, redis_server: EmbeddedRedis, broker: Broker
) -> None:
    total, halfway = 300, 150
    listener = Listener(broker.port)
    paced = threading.Event()  # never set: its wait() paces the producer

    def produce() -> None:  # a steady stream, so the kill lands mid-stream
        for n in range(halfway):
            publish_events(client, make_event(n))
            paced.wait(0.01)

    def arrived() -> int:
        return len({p["track"] for p in listener.payloads()})

    def availability() -> str | None:
        return retained(broker.port, "facestream/bridge/chaos/availability")

    args = ("mqtt", "--group", "g1", "--port", str(broker.port), "--name", "chaos")
    processes = [bridge(redis_server, *args)]
    producer = threading.Thread(target=produce)
    try:
        wait_for(lambda: availability() == "online", 60, "the bridge to connect")
        producer.start()
        wait_for(lambda: arrived() >= 40, 60, "events before the kill")
        code, _ = stop(processes[0], signal.SIGKILL)
        killed_at = arrived()
        assert code == -signal.SIGKILL
        # The broker sends the will: the bridge went without saying goodbye.
        wait_for(lambda: availability() == "offline", 30, "the will's offline")
        processes.append(bridge(redis_server, *args))
        producer.join(60)
        wait_for(lambda: arrived() == halfway, 60, "every event from before the restart")
        broker.stop()
        publish_events(client, *(make_event(n) for n in range(halfway, total)))
        wait_for(lambda: client.xpending(keys.events("g1"), "bridge-mqtt-chaos")["pending"],
                 30, "the bridge to take an event while the broker is down")  # fmt: skip
        broker.start()
        wait_for(lambda: arrived() == total, 60, "every event after the broker restart")
        assert availability() == "online"
    finally:
        if producer.ident is not None:
            producer.join(60)
        code, out = stop(processes[-1])
        listener.close()
    assert code == 0, out
    tracks = Counter(p["track"] for p in listener.payloads())
    assert set(tracks) == {f"t{n}" for n in range(total)}  # nothing lost
    duplicates = sum(tracks.values()) - total
    print(f"\nmqtt bridge chaos: {total} events, {duplicates} duplicate(s) at QoS 1, "
          f"SIGKILL after {killed_at} had arrived")  # fmt: skip
    assert client.xpending(keys.events("g1"), "bridge-mqtt-chaos")["pending"] == 0
    assert client.xlen(keys.events_dead("g1")) == 0
