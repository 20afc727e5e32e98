"""Every long-running role started while Redis is not up yet waits for it (issue 18, item 7):
it says "redis unavailable" at warning level, backed off, no traceback; it does its work once
Redis comes; SIGTERM during the wait exits 0. One-shot commands still fail fast, exit 3."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import redis

from facestream.schemas import keys
from facestream.server import EmbeddedRedis, free_port

from .helpers import FACES, http_status, wait_for
from .test_events_client import make_event, publish_events
from .test_redis_faults import _Lines

PHOTOS = sorted((FACES / "test").glob("*.jpg"))[:4]
TOKEN = "a-token-for-the-start-outage-test"


def _role(redis_url: str, *args: str) -> tuple[subprocess.Popen[str], _Lines]:
    env = {**os.environ, "FACESTREAM_LOG__FORMAT": "json", "FACESTREAM_BRIDGE__BLOCK_MS": "100",
           "FACESTREAM_WEB__TOKEN": TOKEN}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "facestream", "--redis-url", redis_url, *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    return process, _Lines(process.stdout)


def _readyz(port: int) -> int:
    return http_status(f"http://127.0.0.1:{port}/readyz")


class _Receiver:
    """A webhook endpoint on loopback that keeps every body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bodies.append(
                    json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _clip(path: Path) -> Path:
    """A short MJPEG file a file camera plays in real time."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (320, 240))
    for _ in range(20):
        for photo in PHOTOS:
            writer.write(cv2.resize(cv2.imread(str(photo)), (320, 240)))
    writer.release()
    return path


def test_long_running_roles_wait_for_a_redis_that_is_not_up_yet(tmp_path: Path) -> None:
    data = tmp_path / "redis"
    data.mkdir()
    server = EmbeddedRedis(data, port=free_port())
    # An event already kept (the AOF holds it) for the tail and the bridge to pass on.
    with server:
        client = redis.Redis.from_url(server.url)
        publish_events(client, make_event(1, group="g1"))
        client.close()
    frames = tmp_path / "photos"
    frames.mkdir()
    for photo in PHOTOS:
        shutil.copy(photo, frames / photo.name)
    secret = tmp_path / "webhook.secret"
    secret.write_bytes(b"a-webhook-secret-of-32-bytes-len")
    receiver = _Receiver()
    web_port = free_port()
    url = server.url
    roles = {
        "replay": _role(url, "replay", str(frames), "--group", "g1", "--camera-id", "r1",
                        "--fps", "0"),
        "camera": _role(url, "camera", "--source", str(_clip(tmp_path / "clip.avi")),
                        "--camera-id", "c1", "--group", "g2", "--fps", "5"),
        "events tail": _role(url, "events", "tail", "--group", "g1", "--from-start",
                             "--count", "1", "--json"),
        "results tail": _role(url, "results", "tail", "--group", "g1"),
        "bridge": _role(url, "bridge", "webhook", receiver.url, "--group", "g1",
                        "--secret-file", str(secret), "--from-start"),
        "web": _role(url, "web", "--port", str(web_port)),
    }  # fmt: skip
    try:
        for name, (_, log) in roles.items():
            wait_for(lambda log=log: log.has("redis unavailable"), 120, f"{name} to wait")
        wait_for(lambda: _readyz(web_port) == 503, 30, "the page to say it is not ready")
        # SIGTERM while waiting: a clean stop.
        waiting, waiting_log = roles.pop("results tail")
        waiting.send_signal(signal.SIGTERM)
        assert waiting.wait(30) == 0, waiting_log.text()
        # A one-shot command does not wait: one line, exit 3.
        done = subprocess.run(
            [sys.executable, "-m", "facestream", "--redis-url", url, "status"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 3 and done.stderr.startswith("error: cannot reach Redis")
        for name, (process, log) in roles.items():
            assert process.poll() is None, f"{name} exited: {log.text()}"
        server.start()
        client = redis.Redis.from_url(server.url)
        wait_for(lambda: client.xlen(keys.frames("g2")) >= 3, 60, "the camera's frames")
        wait_for(lambda: receiver.bodies, 60, "the webhook delivery")
        wait_for(lambda: _readyz(web_port) == 200, 60, "the page to be ready")
        replay, replay_log = roles["replay"]
        assert replay.wait(60) == 0, replay_log.text()
        assert client.xlen(keys.frames("g1")) == len(PHOTOS)
        tail, tail_log = roles["events tail"]
        assert tail.wait(60) == 0, tail_log.text()
        assert '"track":"t1"' in tail_log.text().replace(" ", "")
        assert [body["track"] for body in receiver.bodies] == ["t1"]
        client.close()
    finally:
        for process, _ in roles.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {name: process.wait(30) for name, (process, _) in roles.items()}
        receiver.close()
        server.stop()
    assert codes == dict.fromkeys(roles, 0)
    for name, (_, log) in [*roles.items(), ("results tail", (waiting, waiting_log))]:
        text = log.text()
        assert "Traceback" not in text, f"{name}: {text}"
        said = [r for r in log.records() if r.get("event") == "redis unavailable"]
        assert said and all(r["level"] == "warning" for r in said), name
        assert not [r for r in log.records() if r.get("level") in ("error", "critical")], name
    for name in ("replay", "camera", "bridge"):
        records = roles[name][1].records()
        said = [r for r in records if r.get("event") == "redis unavailable"]
        (back,) = [r for r in records if r.get("event") == "redis available again"]
        assert len(said) < back["attempts"], name  # backed off: not one line per retry
