"""Real worker processes: SIGKILL mid-batch loses nothing, SIGTERM drains; the CLI and demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from facestream.config import Settings
from facestream.demo import build_clip
from facestream.ingest import FramePublisher, iter_frames, replay
from facestream.recognizer import FaceEngine
from facestream.schemas import Result, keys
from facestream.server import EmbeddedRedis, free_port

from .helpers import FACES, drain, enrol, make_worker, wait_for

SCENES = sorted((FACES / "test").glob("*.jpg"))


def _env(model_cache: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "FACESTREAM_MODELS__CACHE_DIR": str(model_cache), **extra}


def _cli(redis_server: EmbeddedRedis, *args: str) -> list[str]:
    return [sys.executable, "-m", "facestream", "--redis-url", redis_server.url, *args]


def _start_worker(
    redis_server: EmbeddedRedis, model_cache: Path, consumer: str, *extra: str
) -> subprocess.Popen[bytes]:
    command = _cli(
        redis_server, "--log-format", "json", "worker", "--groups", "g1", "--consumer", consumer,
        *extra,
    )  # fmt: skip
    env = _env(model_cache, FACESTREAM_WORKER__BATCH_SIZE="8")
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _pending_of(client: redis.Redis, consumer: str) -> int:
    for row in client.xpending(keys.frames("g1"), keys.RECOGNIZERS)["consumers"]:
        if row["name"] == consumer.encode():
            return int(row["pending"])
    return 0


def _send_clip(client: redis.Redis, settings: Settings, tmp_path: Path) -> int:
    clip = tmp_path / "clip.avi"
    frames = build_clip(SCENES, clip, moving=10, still=0)
    publisher = FramePublisher(client, "g1", "cam", 10_000, settings.limits)
    return replay(clip, publisher, fps=None).sent or frames


def test_sigkill_mid_batch_loses_and_doubles_nothing(
    engine: FaceEngine, client: redis.Redis, settings: Settings, redis_server: EmbeddedRedis,
    model_cache: Path, tmp_path: Path,
) -> None:  # fmt: skip
    enrol(engine, client)
    victim = _start_worker(redis_server, model_cache, "victim")
    try:
        wait_for(lambda: client.exists(keys.worker_heartbeat("victim")), what="worker start")
        sent = _send_clip(client, settings, tmp_path)
        wait_for(lambda: _pending_of(client, "victim") > 0, what="a batch in flight", poll_s=0.002)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    finally:
        victim.kill()
    assert _pending_of(client, "victim") > 0, "the kill must leave a batch unacknowledged"
    assert client.xlen(keys.results("g1")) < sent

    rescuer = make_worker(client, engine, settings, consumer="rescuer")
    drain(rescuer, client, "g1", sent)
    results = [Result.from_fields(f) for _, f in client.xrange(keys.results("g1"))]
    frame_ids = [entry_id.decode() for entry_id, _ in client.xrange(keys.frames("g1"))]
    assert sorted(r.frame_id for r in results) == sorted(frame_ids)  # exactly one each
    assert client.xlen(keys.dead("g1")) == 0
    assert client.xpending(keys.frames("g1"), keys.RECOGNIZERS)["pending"] == 0


def test_sigterm_finishes_the_batch_and_exits_zero(
    engine: FaceEngine, client: redis.Redis, settings: Settings, redis_server: EmbeddedRedis,
    model_cache: Path, tmp_path: Path,
) -> None:  # fmt: skip
    enrol(engine, client, ["obama"])
    port = free_port()
    worker = _start_worker(redis_server, model_cache, "graceful", "--metrics-port", str(port))
    try:
        wait_for(lambda: client.exists(keys.worker_heartbeat("graceful")), what="worker start")
        _send_clip(client, settings, tmp_path)
        wait_for(
            lambda: _pending_of(client, "graceful") > 0, what="a batch in flight", poll_s=0.002
        )
        wait_for(lambda: client.xlen(keys.results("g1")) >= 1, what="a first result")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
            metrics = page.read().decode()
        assert 'facestream_frames_total{group="g1",outcome="recognised"}' in metrics
        assert 'facestream_stage_seconds_count{stage="detect"}' in metrics
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        worker.kill()
    assert _pending_of(client, "graceful") == 0
    assert client.xlen(keys.results("g1")) >= 1
    assert not client.exists(keys.worker_heartbeat("graceful"))


def test_cli_enrol_replay_tail(
    client: redis.Redis, redis_server: EmbeddedRedis, model_cache: Path, tmp_path: Path
) -> None:
    def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            _cli(redis_server, *args),
            env=_env(model_cache),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == expect, done.stderr
        return done

    enrolled = run("gallery", "enroll", "obama", str(FACES / "train" / "obama")).stdout
    assert "enrolled obama from 2 photo(s)" in enrolled
    assert "obama\t2 photo(s)" in run("gallery", "list").stdout
    refused = run(
        "gallery", "enroll", "pair", str(FACES / "test" / "obama_and_biden.jpg"), expect=2
    )
    assert refused.stderr.strip().endswith(
        "obama_and_biden.jpg: 3 faces found; crop it to one person or pass --largest-face"
    )
    photo = str(FACES / "test" / "obama1.jpg")
    replayed = run("replay", photo, "--group", "g1", "--camera-id", "cli", "--fps", "0")
    assert "sent 1 frames to fs:{g1}:frames" in replayed.stdout

    worker = _start_worker(redis_server, model_cache, "cli-worker")
    try:
        tail = run("results", "tail", "--group", "g1", "--json", "--count", "1", "--from-start")
        lines = tail.stdout.splitlines()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    result = Result.model_validate(json.loads(lines[0]))
    assert result.camera == "cli" and result.identities == ["obama"]
    status = run("status").stdout.splitlines()
    assert status[0].split() == [
        "group",
        "frames",
        "pending",
        "lag",
        "consumers",
        "results",
        "dead",
    ]
    row = next(line.split() for line in status if line.startswith("g1 "))
    assert row[:3] == ["g1", "1", "0"] and row[5:] == ["1", "0"]  # one frame, done, no dead
    assert "removed obama" in run("gallery", "remove", "obama").stdout
    assert "0 identities" in run("gallery", "list").stdout
    assert "no identity named 'obama'" in run("gallery", "remove", "obama", expect=2).stderr


@pytest.mark.timeout(240)
def test_demo_runs_end_to_end_and_cleans_up(model_cache: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "facestream", "demo"],
        env=_env(model_cache), capture_output=True, text=True, timeout=220,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = done.stdout.split("summary", 1)[1]
    assert "frames      80 of 80 sent" in summary
    for name in ("alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"):
        assert name in summary
    assert "cache hits  0 " not in summary
    leftover = subprocess.run(["pgrep", "-af", "facestream-demo-"], capture_output=True)
    assert leftover.stdout == b""


def test_worker_survives_a_redis_restart(
    engine: FaceEngine, settings: Settings, model_cache: Path, tmp_path: Path
) -> None:
    """Redis goes away under a running worker and comes back (AOF on): serving resumes."""
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True).start()
    client = redis.Redis.from_url(server.url)
    worker = _start_worker(server, model_cache, "survivor")
    try:
        enrol(engine, client, ["obama"])
        wait_for(lambda: client.exists(keys.worker_heartbeat("survivor")), what="worker start")
        publisher = FramePublisher(client, "g1", "cam", 1000, settings.limits)
        publisher.publish(next(iter_frames(FACES / "test" / "obama1.jpg")))
        wait_for(lambda: client.xlen(keys.results("g1")) == 1, what="first result")

        server.stop()
        time.sleep(1.0)  # a real outage: the worker's reads fail and it backs off
        assert worker.poll() is None, "the worker must not exit when Redis goes away"
        server.start()
        client = redis.Redis.from_url(server.url)
        publisher.client = client
        publisher.publish(next(iter_frames(FACES / "test" / "johnsnow_test1.jpg")))
        wait_for(lambda: client.xlen(keys.results("g1")) == 2, timeout_s=30, what="resumed")
        assert worker.poll() is None
        last = Result.from_fields(client.xrevrange(keys.results("g1"), count=1)[0][1])
        assert last.seq == 1 and last.identities == []
    finally:
        worker.kill()
        worker.wait(10)
        server.stop()


def test_replay_waits_out_a_redis_restart_and_loses_no_frame(
    settings: Settings, tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True).start()
    client = redis.Redis.from_url(server.url, socket_timeout=1)
    publisher = FramePublisher(client, "g1", "cam", 1000, settings.limits)
    finished: list[int] = []
    sender = threading.Thread(
        target=lambda: finished.append(replay(FACES / "test", publisher, fps=4).sent)
    )
    try:
        sender.start()
        wait_for(lambda: client.xlen(keys.frames("g1")) >= 1, what="the first frame")
        server.stop()
        time.sleep(1.0)  # the replay meets a dead server and backs off
        server.start()
        sender.join(60)
        assert finished == [5]
        seqs = [int(f[b"seq"]) for _, f in client.xrange(keys.frames("g1"))]
        assert seqs == [0, 1, 2, 3, 4]
    finally:
        server.stop()


def test_unreachable_redis_is_one_clear_line(model_cache: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "facestream", "--redis-url", "redis://127.0.0.1:1/0", "status"],
        env=_env(model_cache), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot reach Redis (Error 111 connecting to 127.0.0.1:1")
    assert "Traceback" not in done.stderr


@pytest.mark.timeout(120)
def test_demo_interrupted_cleans_up(model_cache: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "facestream", "demo"],
        env=_env(model_cache, PYTHONUNBUFFERED="1"),  # see each line as it is printed
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert demo.stdout is not None
    for line in demo.stdout:
        if line.startswith("starting 2 worker processes"):
            break
    demo.send_signal(signal.SIGINT)  # what Ctrl-C sends
    rest = demo.stdout.read()
    assert demo.wait(60) == 130
    assert "interrupted, cleaning up" in rest
    leftover = subprocess.run(["pgrep", "-af", "facestream-demo-"], capture_output=True)
    assert leftover.stdout == b""
