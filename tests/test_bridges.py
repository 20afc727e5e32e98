"""The bridges as users run them: real `facestream bridge …` processes, a real mosquitto broker,
a real HTTP server, a real redis-server; kills, restarts and outages on the way."""

from __future__ import annotations

import email.utils
import getpass
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import REGISTRY

from facestream.bridges.webhook import sign
from facestream.schemas import Event, keys
from facestream.server import EmbeddedRedis, free_port

from .helpers import REPO, require_system_dependency, wait_for
from .test_client import _result
from .test_events_client import make_event, publish_events
from .test_tls import _make_pki

SECRET = b"a-webhook-secret-of-32-bytes-len"
USER, PASSWORD = "bridge", "mqtt-password-for-tests"


# -- processes ------------------------------------------------------------------------------


def bridge(
    redis_server: EmbeddedRedis, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`facestream bridge …` as its own process, logging JSON lines to a pipe."""
    env = {**os.environ, "FACESTREAM_BRIDGE__BLOCK_MS": "100", "FACESTREAM_LOG__FORMAT": "json",
           **(env or {})}  # fmt: skip
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
    restart), started and stopped for real; `secure`: TLS and a password only."""

    def __init__(self, folder: Path, secure: bool = False) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        require_system_dependency(os.access(binary, os.X_OK), "mosquitto (apt install mosquitto)")
        self.binary = binary
        self.port = free_port()
        self.config = folder / "mosquitto.conf"
        # Started as root (CI), mosquitto would switch to its own user, who cannot read our files.
        lines = [f"listener {self.port} 127.0.0.1", "persistence true", f"user {getpass.getuser()}",
                 f"persistence_location {folder}/", "log_dest stderr"]  # fmt: skip
        self.ca: Path | None = None
        self.password_file: Path | None = None
        if secure:
            pki = _make_pki(folder, "mqtt")
            cert, key = pki.issue("broker", "IP:127.0.0.1")
            self.ca, self.password_file = pki.ca, folder / "bridge.password"
            self.password_file.write_text(f"{PASSWORD}\n")
            users = folder / "users"
            subprocess.run(["mosquitto_passwd", "-c", "-b", str(users), USER, PASSWORD],
                           check=True, capture_output=True)  # fmt: skip
            lines += [f"cafile {pki.ca}", f"certfile {cert}", f"keyfile {key}",
                      "allow_anonymous false", f"password_file {users}"]  # fmt: skip
        else:
            lines.append("allow_anonymous true")
        self.config.write_text("\n".join(lines) + "\n")
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

    def bridge_args(self) -> tuple[str, ...]:
        """`facestream bridge mqtt` options that reach this broker."""
        args = ("--port", str(self.port))
        if self.ca is not None:
            args += ("--tls", "--ca-file", str(self.ca), "--username", USER,
                     "--password-file", str(self.password_file))  # fmt: skip
        return args

    def client(self, client_id: str = "", clean_session: bool | None = None) -> mqtt.Client:
        """A paho client set up for this broker (not yet connected)."""
        made = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session
        )
        if self.ca is not None:
            made.tls_set(ca_certs=str(self.ca))
            made.username_pw_set(USER, PASSWORD)
        return made

    def _listening(self) -> bool:
        assert self.process is not None and self.process.poll() is None, "mosquitto exited"
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0


def _broker(folder: Path, secure: bool) -> Iterator[Broker]:
    server = Broker(folder, secure)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Broker]:
    yield from _broker(tmp_path, secure=False)


@pytest.fixture()
def secure_broker(tmp_path: Path) -> Iterator[Broker]:
    require_system_dependency(shutil.which("openssl") is not None, "openssl")
    yield from _broker(tmp_path, secure=True)


@dataclass
class Listener:
    """A subscriber with a persistent session: what it missed while away is kept for it."""

    broker: Broker
    topic: str = "facestream/#"
    client_id: str = "test-listener"
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.client = self.broker.client(self.client_id, clean_session=False)
        self.client.on_connect = lambda c, *_: c.subscribe(self.topic, qos=1)
        self.client.on_message = self._received
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", self.broker.port)
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


def retained(broker: Broker, topic: str) -> str | None:
    """The retained message on `topic` as a new subscriber sees it, None if there is none.

    The broker sends retained messages right after the subscription; a marker this probe
    publishes to itself afterwards arrives after them, so once it is in, the answer is known.
    """
    marker = f"probe/{threading.get_ident()}/{os.getpid()}"
    got: list[mqtt.MQTTMessage] = []

    def subscribed(c: mqtt.Client, *_: object) -> None:
        c.publish(marker, b"", qos=1)

    probe = broker.client()
    probe.on_connect = lambda c, *_: c.subscribe([(topic, 1), (marker, 1)])
    probe.on_subscribe = subscribed
    probe.on_message = lambda _c, _u, message: got.append(message)
    probe.connect("127.0.0.1", broker.port)
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
    client: redis.Redis, redis_server: EmbeddedRedis, secure_broker: Broker
) -> None:
    """Over TLS, with a user and password file, to a broker that takes nothing else."""
    broker = secure_broker
    listener = Listener(broker)
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
        redis_server, "mqtt", "--group", "g1", *broker.bridge_args(), "--name", "lobby",
        "--results", "--from-start", "--metrics-port", str(metrics_port),
    )  # fmt: skip
    try:
        wait_for(lambda: len(listener.payloads()) >= 5, 60, "four events and a result")
        wait_for(lambda: client.xlen(keys.events_dead("g1")) == 1, 10, "the dead letter")
        assert retained(broker, "facestream/bridge/lobby/availability") == "online"
        assert http_get(f"http://127.0.0.1:{metrics_port}/readyz") == (200, "ready\n")
        assert http_get(f"http://127.0.0.1:{metrics_port}/healthz") == (200, "ok\n")
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
    assert retained(broker, "facestream/bridge/lobby/availability") == "offline"


def test_mqtt_bridge_killed_and_broker_restarted_loses_nothing(
    client: redis.Redis, redis_server: EmbeddedRedis, broker: Broker
) -> None:
    total, halfway = 300, 150
    listener = Listener(broker)
    paced = threading.Event()  # never set: its wait() paces the producer

    def produce() -> None:  # a steady stream, so the kill lands mid-stream
        for n in range(halfway):
            publish_events(client, make_event(n))
            paced.wait(0.01)

    def arrived() -> int:
        return len({p["track"] for p in listener.payloads()})

    def availability() -> str | None:
        return retained(broker, "facestream/bridge/chaos/availability")

    metrics_port = free_port()
    readyz = f"http://127.0.0.1:{metrics_port}/readyz"
    args = ("mqtt", "--group", "g1", *broker.bridge_args(), "--name", "chaos",
            "--metrics-port", str(metrics_port))  # fmt: skip
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
        wait_for(lambda: http_get(readyz)[0] == 503, 30, "/readyz to say the broker is gone")
        assert http_get(readyz)[1].startswith("disconnected from the broker 127.0.0.1:")
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


# -- webhook --------------------------------------------------------------------------------


def snippet() -> dict[str, Any]:
    """The receiver's checks exactly as docs/bridges.md shows them: `verify`, `Handled`."""
    text = (REPO / "docs" / "bridges.md").read_text()
    block = re.search(r"<!-- verify snippet[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert block is not None, "docs/bridges.md lost its verify snippet"
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), "docs/bridges.md", "exec"), namespace)
    return namespace


def verify_snippet() -> Callable[..., bool]:
    verify: Callable[..., bool] = snippet()["verify"]
    return verify


@dataclass
class Receiver:
    """A webhook endpoint on loopback: checks every signature, answers per track as planned."""

    plan: dict[str, list[int]]
    verify: Callable[..., bool]
    port: int = field(default_factory=free_port)
    requests: list[tuple[str, int, str, bool]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    handled: Any = field(default_factory=lambda: snippet()["Handled"]())
    duplicates: int = 0
    authorization: list[str | None] = field(default_factory=list)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                delivery = self.headers["X-Facestream-Delivery"]
                receiver.authorization.append(self.headers.get("Authorization"))
                good = receiver.verify(
                    SECRET, body, self.headers["X-Facestream-Timestamp"], delivery,
                    self.headers["X-Facestream-Signature"],
                )  # fmt: skip
                track = json.loads(body)["track"]
                planned = receiver.plan.get(track, [])
                status = planned.pop(0) if planned and good else (200 if good else 401)
                # As docs/bridges.md says: a repeat is answered 200, a failure forgotten.
                if good and not receiver.handled.first_time(delivery):
                    receiver.duplicates += 1
                elif good and status != 200:
                    receiver.handled.forget(delivery)
                receiver.requests.append(
                    (track, status, self.headers["X-Facestream-Delivery"], good)
                )
                self.send_response(status)
                if status == 429:  # in seconds, then as an HTTP date (whole seconds) ahead
                    later = email.utils.formatdate(time.time() + 3, usegmt=True)
                    self.send_header("Retry-After", "1" if planned else later)
                self.send_header("Content-Length", "8")
                self.end_headers()
                self.wfile.write(b"no thank"[:8] if status == 400 else b"answered")

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def answered(self, track: str) -> list[int]:
        return [status for t, status, _, _ in self.requests if t == track]


def test_webhook_retries_dead_letters_and_rides_out_a_down_receiver(
    client: redis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """Group g1 on the session's Redis, g2 on a node of its own: one bridge reads both."""
    node_b = EmbeddedRedis(tmp_path / "b", appendonly=False).start()
    client_b = redis.Redis.from_url(node_b.url)
    nodes = {"a": {"url": redis_server.url, "groups": ["g1"]},
             "b": {"url": node_b.url, "groups": ["g2"]}}  # fmt: skip
    verify = verify_snippet()
    receiver = Receiver({"t2": [500, 500], "t3": [429, 429], "t4": [400], "t6": [400]}, verify)
    receiver.start()
    secret = tmp_path / "webhook.secret"
    secret.write_bytes(SECRET + b"\n")
    metrics_port = free_port()
    publish_events(client, *(make_event(n) for n in (1, 2, 3, 4)))
    publish_events(client_b, make_event(6, group="g2"))
    # The URL and the receiver's token come from files, out of `ps`.
    (tmp_path / "url").write_text(f"http://127.0.0.1:{receiver.port}/hook\n")
    (tmp_path / "token").write_text("receiver-token\n")
    process = bridge(
        redis_server, "webhook", "--group", "g1,g2",
        "--secret-file", str(secret), "--name", "hooks", "--backoff", "0.05",
        "--max-attempts", "30", "--from-start", "--metrics-port", str(metrics_port),
        env={"FACESTREAM_NODES": json.dumps(nodes),
             "FACESTREAM_BRIDGE__WEBHOOK__URL_FILE": str(tmp_path / "url"),
             "FACESTREAM_BRIDGE__WEBHOOK__TOKEN_FILE": str(tmp_path / "token")},
    )  # fmt: skip

    def failed_attempts() -> float:
        _, text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        found = re.search(
            r'facestream_bridge_attempts_failed_total\{bridge="webhook/hooks"\} (\S+)', text
        )
        return float(found.group(1)) if found else 0.0

    try:
        wait_for(lambda: client.xlen(keys.events_dead("g1")) == 1, 60, "the 400 dead-lettered")
        wait_for(lambda: client_b.xlen(keys.events_dead("g2")) == 1, 60, "node b's dead letter")
        receiver.stop()  # down for a while: events wait, retried
        publish_events(client, make_event(5))
        wait_for(lambda: failed_attempts() >= 6, 60, "two failed POSTs to the downed receiver")
        status, why = http_get(f"http://127.0.0.1:{metrics_port}/readyz")
        assert (status, why.split(":")[0]) == (503, "webhook failing")
        receiver.start()
        wait_for(lambda: receiver.answered("t5") == [200], 60, "t5 once the receiver is back")
    finally:
        code, out = stop(process)
        node_b.stop()
    assert code == 0, out
    assert all(good for *_, good in receiver.requests), receiver.requests
    assert set(receiver.authorization) == {"Bearer receiver-token"}
    assert receiver.duplicates == 0  # every 200 was taken the first time
    assert receiver.answered("t1") == [200]
    assert receiver.answered("t2") == [500, 500, 200]  # retried until taken
    assert receiver.answered("t3") == [429, 429, 200]
    # Retry-After is honoured where it asks for longer than the back-off (0.05 s, 0.1 s).
    delays = [json.loads(line)["retry_in_s"] for line in out.splitlines()
              if "will retry" in line and "HTTP 429" in line]  # fmt: skip
    assert delays[0] == 1.0 and 0.1 < delays[1] <= 3.0, delays
    assert receiver.answered("t4") == [400]  # refused: not retried
    # Every attempt of one event carries the same delivery id, the receiver's key for duplicates.
    assert {d for t, _, d, _ in receiver.requests if t == "t2"} == {
        "g1/" + client.xrange(keys.events("g1"))[1][0].decode()
    }
    dead = client.xrange(keys.events_dead("g1"))
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields[b"reason"] == b"refused by the receiver, HTTP 400: no thank"
    assert (fields[b"attempts"], fields[b"bridge"]) == (b"1", b"webhook/hooks")
    assert Event.model_validate_json(fields[b"event"]) == make_event(4)
    assert client.xpending(keys.events("g1"), "bridge-webhook-hooks")["pending"] == 0
    # Node b's event went its own way: its dead letter is kept on its own node.
    assert receiver.answered("t6") == [400] and client.xlen(keys.events_dead("g2")) == 0


def test_an_event_the_bridge_cannot_pass_on_is_skipped_not_fatal(
    client: redis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """An integer over 64 bits made `bridge webhook` exit 1 on every restart (issue 18)."""
    receiver = Receiver({}, verify_snippet())
    receiver.start()
    secret = tmp_path / "webhook.secret"
    secret.write_bytes(SECRET)
    wide = {**make_event(1).to_fields(), "ts": str(2**64)}
    client.xadd(keys.events("g1"), wide)  # type: ignore[arg-type]
    publish_events(client, make_event(2))
    metrics_port = free_port()
    process = bridge(
        redis_server, "webhook", f"http://127.0.0.1:{receiver.port}/hook", "--group", "g1",
        "--secret-file", str(secret), "--name", "wide", "--from-start",
        "--metrics-port", str(metrics_port),
    )  # fmt: skip
    try:
        wait_for(lambda: receiver.answered("t2") == [200], 60, "the event after the bad one")
        _, exported = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert (
            'facestream_entries_skipped_total{reader="events subscriber bridge-webhook-wide",'
            'reason="invalid event entry"} 1.0'
        ) in exported, exported
    finally:
        code, out = stop(process)
        receiver.stop()
    assert code == 0, out
    assert receiver.answered("t1") == []
    assert client.xpending(keys.events("g1"), "bridge-webhook-wide")["pending"] == 0
    skipped = [json.loads(line) for line in out.splitlines() if "skipping invalid" in line]
    assert len(skipped) == 1 and "less than 9223372036854775808" in skipped[0]["error"], out


def test_the_documented_check_refuses_forgeries_and_replays() -> None:
    verify = verify_snippet()
    body = make_event(1).to_json()
    now, delivery = str(int(time.time())), "g1/1-0"
    assert verify(SECRET, body, now, delivery, sign(SECRET, now, delivery, body))
    signature = sign(SECRET, now, delivery, body)
    assert not verify(SECRET, body + b" ", now, delivery, signature)  # body changed
    assert not verify(SECRET, body, now, "g1/2-0", signature)  # relabelled as another delivery
    assert not verify(b"another secret..", body, now, delivery, signature)
    old = str(int(time.time()) - 3600)  # a recorded request, replayed an hour later
    assert not verify(SECRET, body, old, delivery, sign(SECRET, old, delivery, body))
    assert not verify(SECRET, body, "soon", delivery, sign(SECRET, "soon", delivery, body))
    # Replayed within the tolerance: authentic and recent, so the handled ids catch it.
    handled = snippet()["Handled"]()
    assert handled.first_time(delivery) and not handled.first_time(delivery)
    handled.forget(delivery)
    assert handled.first_time(delivery)


def test_a_bad_webhook_url_or_a_missing_secret_is_one_line_and_exit_2(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    ftp = bridge(redis_server, "webhook", "ftp://example.org/x", "--group", "g1",
                 "--secret-file", str(secret))  # fmt: skip
    unsigned = bridge(redis_server, "webhook", "http://127.0.0.1:9/x", "--group", "g1")
    nowhere = bridge(redis_server, "webhook", "--group", "g1", "--secret-file", str(secret))
    for process, message in (
        (nowhere, "error: no webhook URL: pass it, or set bridge.webhook.url_file (or "
                  "bridge.webhook.url)\n"),
        (ftp, "error: webhook URL 'ftp://example.org/x' must start with http:// or https://\n"),
        (unsigned, "error: the webhook bridge signs every request: pass --secret-file FILE "
                   "(or set bridge.webhook.secret_file)\n"),
    ):  # fmt: skip
        out, _ = process.communicate(timeout=60)
        assert (process.returncode, out) == (2, message)


def test_every_bridge_metric_is_documented() -> None:
    names = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in REGISTRY.collect()
        if family.name.startswith("facestream_bridge_")
    }
    assert len(names) == 4
    for page in ("bridges.md", "metrics.md"):
        text = (REPO / "docs" / page).read_text()
        assert sorted(n for n in names if f"`{n}`" not in text) == [], page
