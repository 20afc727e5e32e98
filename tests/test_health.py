"""/healthz, /readyz and /metrics of long-running processes, asked over real HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from facestream.health import Probe, serve_health
from facestream.server import EmbeddedRedis, free_port

from .helpers import wait_for


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()
    except OSError:  # not listening yet
        return 0, ""


def test_a_silent_main_loop_is_not_alive() -> None:
    probe = Probe(stale_after_s=0.2)
    port = free_port()
    server = serve_health(port, "127.0.0.1", probe)
    try:
        base = f"http://127.0.0.1:{port}"
        assert get(f"{base}/readyz") == (503, "starting\n")
        probe.set_ready(None)
        assert get(f"{base}/readyz") == (200, "ready\n")
        assert get(f"{base}/healthz") == (200, "ok\n")
        # Nothing beats any more: alive, then not, without anyone touching the probe.
        wait_for(lambda: get(f"{base}/healthz")[0] == 503, timeout_s=10, what="staleness")
        assert get(f"{base}/healthz")[1].startswith("main loop silent for")
        assert get(f"{base}/readyz")[0] == 503
        assert get(f"{base}/nowhere")[0] == 404
    finally:
        server.shutdown()


def test_camera_agent_health_endpoints(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for index in range(20):
        writer.write(np.full((240, 320, 3), index * 10, np.uint8))
    writer.release()
    config = tmp_path / "cameras.yaml"
    config.write_text(
        "cameras:\n"
        f"  - {{id: good, group: g1, source: {clip}, kind: file, fps: 5}}\n"
        "  - {id: gone, group: g1, source: 'rtsp://127.0.0.1:1/none', open_timeout_s: 1}\n"
    )
    port = free_port()
    agent = subprocess.Popen(
        [sys.executable, "-m", "facestream", "camera", "--config", str(config),
         "--metrics-port", str(port), "--redis-url", redis_server.url],
        env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{base}/healthz") == (200, "ok\n"), timeout_s=60, what="alive")
        published = re.compile(r'^facestream_camera_frames_out_total\{camera="good"\} [1-9]', re.M)
        wait_for(
            lambda: published.search(get(f"{base}/metrics")[1]) is not None,
            timeout_s=60,
            what="frames of the good camera published",
        )

        def only_the_dead_camera_named() -> bool:
            status, why = get(f"{base}/readyz")
            return status == 503 and why.startswith("not streaming: gone ") and "good" not in why

        wait_for(only_the_dead_camera_named, timeout_s=30, what="readiness to name the dead camera")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
    finally:
        agent.kill()
        agent.wait()


def test_worker_readiness_follows_redis(tmp_path: Path, model_cache: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "facestream", "worker", "--groups", "g1",
         "--metrics-port", str(port), "--redis-url", server.url],
        env={**os.environ, "FACESTREAM_MODELS__CACHE_DIR": str(model_cache),
             "FACESTREAM_WORKER__BLOCK_MS": "100"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    readyz = f"http://127.0.0.1:{port}/readyz"
    try:
        wait_for(lambda: get(readyz) == (200, "ready\n"), timeout_s=90, what="the worker ready")
        server.stop()
        wait_for(
            lambda: get(readyz)[1].startswith("redis unavailable: "),
            timeout_s=60,
            what="readiness to report the outage",
        )
        assert get(readyz)[0] == 503
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")  # alive, riding it out
        server.start()
        wait_for(lambda: get(readyz) == (200, "ready\n"), timeout_s=60, what="ready again")
        assert "facestream_redis_errors_total" in get(f"http://127.0.0.1:{port}/metrics")[1]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        worker.kill()
        worker.wait()
        server.stop()
