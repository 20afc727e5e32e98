"""Overload: cameras offering 10× what the worker can do, for a minute: bounded, drops counted."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from facestream.config import Settings
from facestream.ingest import CameraAgent, CameraSettings
from facestream.ingest.metrics import camera_counter
from facestream.schemas import keys
from facestream.server import EmbeddedRedis

from .helpers import FACES, wait_for

CAMERAS = 6
FPS = 60  # the most a camera may be asked for
# The worker detects on a 2048 letterbox (10× the default work) so that, however idle the
# machine, it takes under a tenth of the 6 × 60 frames/s offered.
DETECT_SIZE = 2048
FRAMES_MAXLEN = 300
MAX_BACKLOG = 15  # per camera: 6 × 15 unread at most, under FRAMES_MAXLEN; drains in seconds
LOAD_S = 60.0


def _clip(path: Path) -> Path:
    """A 2-s, 60-fps 640×360 MJPEG clip: four photos a frame (many faces), every frame different."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (640, 360))
    photos = [
        cv2.resize(cv2.imread(str(p)), (300, 170)) for p in sorted((FACES / "test").glob("*.jpg"))
    ]
    for index in range(2 * FPS):
        canvas = np.zeros((360, 640, 3), np.uint8)
        shift = index % 20  # the faces move: no two frames share their bytes
        for tile in range(4):
            top, left = 10 + 180 * (tile // 2), shift + 320 * (tile % 2)
            canvas[top : top + 170, left : left + 300] = photos[(index // 20 + tile) % len(photos)]
        writer.write(canvas)
    writer.release()
    return path


@pytest.mark.timeout(300)
def test_cameras_at_ten_times_worker_speed_stay_bounded_and_count_every_drop(
    redis_server: EmbeddedRedis, client: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    clip = _clip(tmp_path / "clip.avi")
    env = {
        **os.environ,
        "FACESTREAM_MODELS__CACHE_DIR": str(settings.models.cache_dir),
        "FACESTREAM_WORKER__CACHE_TTL_S": "10",  # the cache must not grow for the whole minute
        "FACESTREAM_MODELS__DETECT_SIZE": str(DETECT_SIZE),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "facestream", "worker", "--groups", "g1",
         "--redis-url", redis_server.url],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    baseline = int(client.info("memory")["used_memory"])
    stop = threading.Event()
    agents = [
        CameraAgent(
            CameraSettings(
                id=f"cam{n}",
                group="g1",
                source=str(clip),
                kind="file",
                fps=FPS,
                max_backlog=MAX_BACKLOG,
            ),
            client,
            settings.limits,
            FRAMES_MAXLEN,
            stop,
        )
        for n in range(CAMERAS)
    ]
    peak_length = peak_memory = 0
    try:
        for agent in agents:
            agent.start()
        deadline = time.monotonic() + LOAD_S
        while time.monotonic() < deadline:
            assert worker.poll() is None, "the worker died under load"
            peak_length = max(peak_length, int(client.xlen(keys.frames("g1"))))
            peak_memory = max(peak_memory, int(client.info("memory")["used_memory"]))
            time.sleep(0.5)
    finally:
        stop.set()
        for agent in agents:
            agent.join(timeout_s=5)
    sent = sum(agent.health.frames_out for agent in agents)
    try:
        # Every frame published is answered: none was trimmed before a worker read it.
        wait_for(lambda: client.xlen(keys.results("g1")) >= sent, timeout_s=120, what="the backlog")
    finally:
        worker.terminate()
        assert worker.wait(30) == 0
    answered = Counter(
        fields[b"camera"].decode() for _, fields in client.xrange(keys.results("g1"))
    )
    offered = sum(agent.health.frames_in for agent in agents)
    print(
        f"offered {offered} frames, sent {sent} (the workers' pace), answered "
        f"{sum(answered.values())}, dropped {sum(a.health.dropped for a in agents)}; peak "
        f"stream length {peak_length}, peak memory +{(peak_memory - baseline) >> 20} MiB"
    )
    for agent in agents:
        health, camera = agent.health, agent.camera.id
        # Each frame read was sent or dropped, bar the newest one left waiting at the stop.
        assert health.frames_in - health.frames_out - health.dropped in (0, 1), health
        assert answered[camera] == health.frames_out, camera
        assert camera_counter("shed", camera)._value.get() > 0, f"{camera} was never behind"
        assert camera_counter("restarts", camera)._value.get() == 0
    assert client.xlen(keys.dead("g1")) == 0
    assert offered >= 10 * sent  # the overload was real: cameras offered 10× what was taken
    assert peak_length <= FRAMES_MAXLEN + 100  # MAXLEN ~ trims whole nodes of 100 entries
    # Frames at their cap, a minute of results, 10 s of cache: tens of MiB, not the gigabytes
    # an unbounded stream of 360 frames/s would take.
    assert peak_memory - baseline < 64 << 20
