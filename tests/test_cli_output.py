"""What the CLI prints: crowds, times of day, reports without Python dicts, quiet reconnects."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from facestream.client import describe_event, describe_result
from facestream.schemas import CameraHealth, Event, Face, Result, keys
from facestream.server import EmbeddedRedis

from .helpers import FACES, REPO, wait_for


def facestream(*args: str, model_cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"FACESTREAM_MODELS__CACHE_DIR": str(model_cache)} if model_cache else {}
    return subprocess.run(
        [sys.executable, "-m", "facestream", *args],
        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def face(identity: str | None, similarity: float | None = None) -> Face:
    points = ((1.0, 1.0),) * 5
    return Face(box=(0, 0, 10, 10), landmarks=points, score=0.9, identity=identity,
                similarity=similarity)  # fmt: skip


def test_a_crowd_is_counted_not_listed() -> None:
    crowd = [face("obama", 0.81), *(face(None) for _ in range(7))]
    result = Result(frame_id="1-0", camera="c1", group="g", seq=3, ts=1, hash="0" * 32,
                    cached=False, faces=crowd, model="m")  # fmt: skip
    line = describe_result(result)
    assert "obama (0.81), 7 unknown " in line
    assert "unknown, unknown" not in line
    alone = result.model_copy(update={"faces": [face(None)]})
    assert re.search(r"#3 +unknown +model", describe_result(alone))


def test_events_tail_shows_the_time_of_day(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    at = int(time.mktime((2026, 12, 1, 21, 40, 5, 0, 0, -1)) * 1000)  # local time
    event = Event(type="appeared", group="hall", camera="c1", track="t1", ts=at, frame_id="1-0")
    client.xadd(keys.events("hall"), event.to_fields())  # type: ignore[arg-type]
    client.close()
    done = facestream("events", "tail", "--group", "hall", "--from-start", "--count", "1",
                      "--redis-url", redis_server.url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("21:40:05 ")
    assert done.stdout == describe_event(event) + "\n"


def test_eval_prints_a_report_not_python_dicts(model_cache: Path) -> None:
    done = facestream("eval", str(FACES), model_cache=model_cache)
    assert done.returncode == 0, done.stderr
    assert "{" not in done.stdout and "'" not in done.stdout
    assert re.search(
        r"^genuine   similarity: 10 scores, min 0\.\d{3}, median 0\.\d{3}, max 0\.\d{3}$",
        done.stdout,
        re.M,
    ), done.stdout


def test_enrolling_a_photo_another_name_has_warns(
    redis_server: EmbeddedRedis, model_cache: Path
) -> None:
    redis.Redis.from_url(redis_server.url).flushall()
    url = ("--redis-url", redis_server.url)
    photo = str(FACES / "train" / "obama")
    first = facestream("gallery", "enroll", "obama", photo, *url, model_cache=model_cache)
    assert first.returncode == 0 and "warning" not in first.stderr, first.stderr
    # Another photo of the same man under another name: alike, but not the same picture.
    other = str(FACES / "test" / "obama1.jpg")
    done = facestream("gallery", "enroll", "barack", other, *url, model_cache=model_cache)
    assert done.returncode == 0 and "warning" not in done.stderr, done.stderr
    again = facestream("gallery", "enroll", "president", photo, *url, model_cache=model_cache)
    assert again.returncode == 0, again.stderr
    warnings = [line for line in again.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2  # both photos of the folder
    assert re.match(
        r"warning: \S+\.jpg shows a face already enrolled as obama \(similarity 1\.000\): the "
        r"same photo under two names makes both ambiguous$",
        warnings[0],
    )
    assert again.stdout.startswith("enrolled president from 2 photo(s)")  # a warning, not a refusal


def test_a_worker_with_an_empty_gallery_warns(
    redis_server: EmbeddedRedis, model_cache: Path
) -> None:
    redis.Redis.from_url(redis_server.url).flushall()
    worker = subprocess.Popen(
        [sys.executable, "-m", "facestream", "worker", "--groups", "hall", "--consumer", "lonely",
         "--log-format", "json", "--redis-url", redis_server.url],
        env={**os.environ, "FACESTREAM_MODELS__CACHE_DIR": str(model_cache)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert worker.stdout is not None
    try:
        for line in worker.stdout:
            if "gallery is empty" in line:
                break
        else:
            pytest.fail("the worker exited without warning about the empty gallery")
        assert '"level": "warning"' in line or '"level":"warning"' in line, line
        assert "facestream gallery enroll NAME PHOTOS" in line
    finally:
        worker.kill()  # what is tested is the warning; graceful stops are test_processes.py's
        worker.wait(60)


def test_replay_loop_says_each_pass(redis_server: EmbeddedRedis) -> None:
    redis.Redis.from_url(redis_server.url).flushall()
    replay = subprocess.Popen(
        [sys.executable, "-m", "facestream", "replay", str(FACES / "test"), "--group", "hall",
         "--camera-id", "c1", "--fps", "0", "--loop", "--redis-url", redis_server.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert replay.stderr is not None
    lines = []
    try:
        for line in replay.stderr:
            lines.append(line)
            if line.startswith("pass 2 done"):
                break
    finally:
        replay.send_signal(signal.SIGINT)
        replay.wait(30)
    passes = [line for line in lines if line.startswith("pass ")]
    assert passes == ["pass 1 done: 5 frames sent in all\n", "pass 2 done: 10 frames sent in all\n"]


def test_reconnecting_camera_logs_no_opencv_warnings(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    camera = subprocess.Popen(
        [sys.executable, "-m", "facestream", "camera", "--source", "rtsp://127.0.0.1:1/live",
         "--camera-id", "gone", "--group", "hall", "--redis-url", redis_server.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        def reconnected_twice() -> bool:
            raw = client.get(keys.camera_health("gone"))
            return raw is not None and CameraHealth.model_validate_json(raw).reconnects >= 2

        wait_for(reconnected_twice, timeout_s=90, what="two reconnects", poll_s=0.2)
    finally:
        camera.send_signal(signal.SIGTERM)
        _, stderr = camera.communicate(timeout=60)
        client.close()
    assert "Connection refused" in stderr  # our own line says what went wrong
    assert "[ WARN" not in stderr and "VIDEOIO" not in stderr, stderr
