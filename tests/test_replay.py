"""Replay rides out Redis: a SIGKILLed server mid-replay, and XADD replies lost on the wire."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import pytest
import redis

from facestream.config import Settings
from facestream.ingest import FramePublisher, iter_frames
from facestream.schemas import Frame, keys
from facestream.server import EmbeddedRedis

from .helpers import FACES, png_header, wait_for


def _frames_per_seq(client: redis.Redis, camera: str) -> Counter[int]:
    frames = [Frame.from_fields(f) for _, f in client.xrange(keys.frames("g1"))]
    return Counter(f.seq for f in frames if f.camera == camera)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """40 distinct small JPEGs."""
    images = tmp_path / "frames"
    images.mkdir()
    for index in range(40):
        image = np.full((120, 160, 3), index * 6, np.uint8)
        cv2.putText(image, str(index), (40, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        cv2.imwrite(str(images / f"f{index:03d}.jpg"), image)
    return images


def _slow_recognizers(url: str, stop: threading.Event) -> None:
    """Reads one frame every 50 ms as the `recognizers` group, through the outage too, so
    replay spends its time in the back-pressure check."""
    client = redis.Redis.from_url(url, socket_timeout=1)
    while not stop.wait(0.05):
        try:
            client.xreadgroup(keys.RECOGNIZERS, "slow", {keys.frames("g1"): ">"}, count=1)
        except (redis.ConnectionError, redis.TimeoutError):
            continue


def test_replay_survives_a_redis_kill_and_sends_every_frame_once(
    folder: Path, tmp_path: Path
) -> None:
    always = ("--appendfsync", "always")  # nothing acknowledged is lost to the SIGKILL
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True, extra_args=always).start()
    client = redis.Redis.from_url(server.url)
    client.xgroup_create(keys.frames("g1"), keys.RECOGNIZERS, id="0", mkstream=True)
    stop = threading.Event()
    reader = threading.Thread(target=_slow_recognizers, args=(server.url, stop), daemon=True)
    reader.start()
    command = [sys.executable, "-m", "facestream", "--redis-url", server.url, "replay",
               str(folder), "--group", "g1", "--camera-id", "rp", "--fps", "0"]  # fmt: skip
    env = {**os.environ, "FACESTREAM_INGEST__MAX_BACKLOG": "3"}
    replaying = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: client.xlen(keys.frames("g1")) >= 8, what="the first frames")
        assert server.process is not None
        server.process.kill()
        server.process.wait()
        time.sleep(3)  # the outage itself, while replay waits for room
        assert replaying.poll() is None, "replay gave up during the outage"
        server.start()
        out, err = replaying.communicate(timeout=120)
    finally:
        stop.set()
        replaying.kill()
        server.stop()
        server.start()  # read what the AOF kept
    try:
        assert replaying.returncode == 0, err.decode()
        errors = re.search(r"(\d+) Redis errors", out.decode())
        assert errors is not None and int(errors.group(1)) > 0, out.decode()
        assert _frames_per_seq(client, "rp") == dict.fromkeys(range(40), 1)
    finally:
        server.stop()
        reader.join(5)


class _Proxy:
    """A TCP relay to Redis that can lose the next XADD or its reply, then cut the line.

    A lost reply is what a server crash between executing a command and answering it looks
    like to the client; a lost request is a crash before the command arrived.
    """

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.lose: Literal["request", "reply"] | None = None
        self._cut_reply = False
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:
                return
            far = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(near, far, "request"), daemon=True).start()
            threading.Thread(target=self._pump, args=(far, near, "reply"), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, kind: str) -> None:
        while data := _recv(source):
            with self._lock:
                cut = False
                if kind == "request" and self.lose is not None and b"XADD" in data:
                    cut = self.lose == "request"
                    self._cut_reply = self.lose == "reply"  # it goes through, its reply does not
                    self.lose = None
                elif kind == "reply" and self._cut_reply:
                    self._cut_reply, cut = False, True
            if cut:
                for end in (source, sink):
                    _hang_up(end)
                return
            sink.sendall(data)

    def close(self) -> None:
        self.listener.close()


def _hang_up(sock: socket.socket) -> None:
    """Shut down first: a bare close() leaves the line open while the other pump reads it."""
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


@contextmanager
def proxy(redis_server: EmbeddedRedis) -> Iterator[_Proxy]:
    relay = _Proxy(redis_server.port)
    try:
        yield relay
    finally:
        relay.close()


@pytest.mark.parametrize("lost", ["reply", "request"])
def test_a_resend_after_a_lost_answer_never_doubles_a_frame(
    client: redis.Redis,
    redis_server: EmbeddedRedis,
    settings: Settings,
    lost: Literal["request", "reply"],
) -> None:
    photos = [next(iter_frames(p)) for p in sorted((FACES / "test").glob("*.jpg"))[:2]]
    with proxy(redis_server) as relay:
        through = redis.Redis(port=relay.port, socket_timeout=5)
        publisher = FramePublisher(through, "g1", "c1", 100, settings.limits)
        frame = publisher.frame(photos[0])
        relay.lose = lost  # the very first XADD: nothing of ours to search after
        with pytest.raises(redis.ConnectionError):
            publisher.send(frame)
        resent = publisher.send(frame)
        publisher.publish(photos[1])
    entries = client.xrange(keys.frames("g1"))
    assert [Frame.from_fields(f).seq for _, f in entries] == [0, 1]
    assert entries[0][0].decode() == resent
    assert Frame.from_fields(entries[0][1]).img == photos[0].jpeg


def test_a_new_frame_after_a_lost_reply_takes_the_next_seq(
    client: redis.Redis, redis_server: EmbeddedRedis, settings: Settings
) -> None:
    """A live camera drops the frame in doubt and sends a newer one: no seq is used twice."""
    photos = [next(iter_frames(p)) for p in sorted((FACES / "test").glob("*.jpg"))[:3]]
    with proxy(redis_server) as relay:
        publisher = FramePublisher(
            redis.Redis(port=relay.port, socket_timeout=5), "g1", "c1", 100, settings.limits
        )
        publisher.publish(photos[0])
        relay.lose = "reply"
        with pytest.raises(redis.ConnectionError):
            publisher.publish(photos[1])
        publisher.publish(photos[2])
    frames = [Frame.from_fields(f) for _, f in client.xrange(keys.frames("g1"))]
    assert [(f.seq, f.img) for f in frames] == [(i, photo.jpeg) for i, photo in enumerate(photos)]


def test_a_folder_of_photos_over_the_pixel_limit_is_scaled_and_goes_on(
    redis_server: EmbeddedRedis, client: redis.Redis, tmp_path: Path
) -> None:
    """As camera agents do: a photo over limits.max_pixels is scaled to fit (decoded reduced
    where it is a JPEG), one far over it or unreadable is skipped with a line, and the replay
    goes on to the next."""
    photos = tmp_path / "photos"
    photos.mkdir()
    face = cv2.imread(str(FACES / "test" / "obama1.jpg"))
    cv2.imwrite(str(photos / "a_phone.jpg"), cv2.resize(face, (4000, 3000)))  # 12 MP
    cv2.imwrite(str(photos / "b_scan.png"), cv2.resize(face, (1500, 1000)))  # 1.5 MP
    (photos / "c_bomb.png").write_bytes(png_header(20000, 20000))
    cv2.imwrite(str(photos / "d_small.jpg"), cv2.resize(face, (400, 300)))
    done = subprocess.run(
        [sys.executable, "-m", "facestream", "replay", str(photos), "--camera-id", "c",
         "--group", "g1", "--redis-url", redis_server.url, "--fps", "0"],
        env={**os.environ, "FACESTREAM_LIMITS__MAX_PIXELS": str(1000 * 1000)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "skipping image far over limits.max_pixels" in done.stdout + done.stderr
    assert "c_bomb.png" in done.stdout + done.stderr
    frames = [Frame.from_fields(f) for _, f in client.xrange(keys.frames("g1"))]
    assert [(f.w, f.h) for f in frames] == [(1154, 865), (1224, 816), (400, 300)]
    assert all(f.w * f.h <= 1000 * 1000 for f in frames)
    for frame in frames:  # each is a JPEG of the size it declares
        decoded = cv2.imdecode(np.frombuffer(frame.img, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape[:2] == (frame.h, frame.w)
