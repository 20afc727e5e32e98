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
from typing import Any

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
    assert done.returncode == 3  # the CLI's code for "unreachable"
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


# -- supervisor and Redis errors --------------------------------------------------------------


def _spawn(
    redis_server: EmbeddedRedis, model_cache: Path, log: Path, *args: str, **env: str
) -> subprocess.Popen[bytes]:
    """`facestream worker ARGS` with its (JSON) log in `log`."""
    command = _cli(redis_server, "--log-format", "json", "worker", *args)
    with log.open("ab") as sink:
        return subprocess.Popen(
            command, env=_env(model_cache, **env), stdout=sink, stderr=subprocess.STDOUT
        )


def _heartbeat(client: redis.Redis, consumer: str) -> dict[str, Any]:
    raw = client.get(keys.worker_heartbeat(consumer))
    return json.loads(raw) if raw else {}  # type: ignore[arg-type]


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
        return str(page.read().decode())


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(60)
    finally:
        process.kill()


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


@pytest.mark.timeout(240)
def test_concurrency_2_sigterm_stops_every_process_with_exit_0(
    engine: FaceEngine, client: redis.Redis, settings: Settings, redis_server: EmbeddedRedis,
    model_cache: Path, tmp_path: Path,
) -> None:  # fmt: skip
    enrol(engine, client, ["obama"])
    parent = _spawn(
        redis_server, model_cache, tmp_path / "log", "--groups", "g1", "--concurrency", "2",
        "--consumer", "pair", FACESTREAM_WORKER__BATCH_SIZE="4",
    )  # fmt: skip
    try:
        for name in ("pair-0", "pair-1"):
            wait_for(lambda n=name: _heartbeat(client, n), what=f"{name} started")  # type: ignore[misc]
        pids = [_heartbeat(client, name)["pid"] for name in ("pair-0", "pair-1")]
        _send_clip(client, settings, tmp_path)
        wait_for(lambda: client.xlen(keys.results("g1")) >= 1, what="a first result")
    finally:
        code = _stop(parent)
    assert code == 0, (tmp_path / "log").read_text()[-3000:]
    for pid in pids:
        wait_for(lambda p=pid: _gone(p), timeout_s=10, what=f"child {pid} gone")  # type: ignore[misc]
    assert '"exit_codes": [0, 0]' in (tmp_path / "log").read_text()
    assert client.xpending(keys.frames("g1"), keys.RECOGNIZERS)["pending"] == 0


@pytest.mark.timeout(120)
def test_sigterm_while_the_workers_start_exits_0(
    redis_server: EmbeddedRedis, model_cache: Path, tmp_path: Path
) -> None:
    """A stop asked for while the children are still starting (before their handlers are set,
    the signal kills them) is a clean stop: exit 0, not the 1 of a crash."""
    log = tmp_path / "log"
    parent = _spawn(redis_server, model_cache, log, "--groups", "g1", "--concurrency", "2")
    try:
        wait_for(lambda: "workers started" in log.read_text(), what="children spawned")
    finally:
        code = _stop(parent)
    assert code == 0, log.read_text()[-3000:]
    assert "worker process died" not in log.read_text()


@pytest.mark.timeout(300)
def test_a_killed_worker_process_is_restarted_and_the_work_finished(
    engine: FaceEngine, client: redis.Redis, settings: Settings, redis_server: EmbeddedRedis,
    model_cache: Path, tmp_path: Path,
) -> None:  # fmt: skip
    enrol(engine, client)
    port = free_port()
    parent = _spawn(
        redis_server, model_cache, tmp_path / "log", "--groups", "g1", "--concurrency", "2",
        "--consumer", "sup", "--metrics-port", str(port),
        FACESTREAM_WORKER__BATCH_SIZE="4", FACESTREAM_WORKER__CLAIM_IDLE_MS="1000",
    )  # fmt: skip
    try:
        for name in ("sup-0", "sup-1"):
            wait_for(lambda n=name: _heartbeat(client, n), what=f"{name} started")  # type: ignore[misc]
        victim = _heartbeat(client, "sup-0")["pid"]
        sent = _send_clip(client, settings, tmp_path)
        wait_for(lambda: _pending_of(client, "sup-0") > 0, what="a batch in flight", poll_s=0.002)
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: _heartbeat(client, "sup-0").get("pid") not in (None, victim),
            timeout_s=120,
            what="sup-0 restarted",
        )
        assert "facestream_worker_restarts 1.0" in _metrics(port)
        wait_for(lambda: client.xlen(keys.results("g1")) >= sent, timeout_s=120, what="all done")
    finally:
        code = _stop(parent)
    log = (tmp_path / "log").read_text()
    assert code == 0, log[-3000:]
    assert "worker process died; restarting" in log and '"exit_code": -9' in log
    results = [Result.from_fields(f) for _, f in client.xrange(keys.results("g1"))]
    frame_ids = [entry_id.decode() for entry_id, _ in client.xrange(keys.frames("g1"))]
    assert sorted(r.frame_id for r in results) == sorted(frame_ids)  # exactly one each
    assert client.xlen(keys.dead("g1")) == 0


@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_a_refused_password_is_one_line_and_exit_4(
    redis_server: EmbeddedRedis, model_cache: Path, concurrency: str
) -> None:
    url = redis_server.url.replace("redis://", "redis://nobody:wrong-password@")
    done = subprocess.run(
        [sys.executable, "-m", "facestream", "--redis-url", url, "worker", "--groups", "g1",
         "--concurrency", concurrency],
        env=_env(model_cache), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 4, done.stderr[-2000:]
    assert "error: authentication failed" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_wrongtype_group_is_quarantined_while_the_others_are_served(
    engine: FaceEngine, client: redis.Redis, settings: Settings, redis_server: EmbeddedRedis,
    model_cache: Path, tmp_path: Path,
) -> None:  # fmt: skip
    enrol(engine, client, ["obama"])
    port = free_port()
    worker = _spawn(
        redis_server, model_cache, tmp_path / "log", "--groups", "g1,g2", "--consumer", "q",
        "--metrics-port", str(port),
    )  # fmt: skip
    photo = next(iter_frames(FACES / "test" / "obama1.jpg"))
    try:
        wait_for(lambda: _heartbeat(client, "q"), what="worker start")
        client.set(keys.frames("g2"), "somebody's string")
        publisher = FramePublisher(client, "g1", "cam", 1000, settings.limits)
        for count in (1, 2):
            publisher.publish(photo)
            wait_for(lambda c=count: client.xlen(keys.results("g1")) == c, what="g1 served")  # type: ignore[misc]
        wait_for(lambda: "g2" in _heartbeat(client, "q").get("quarantined", {}), what="quarantine")
        assert _heartbeat(client, "q")["quarantined"]["g2"].startswith("ResponseError: WRONGTYPE")
        assert 'facestream_group_quarantined{group="g2"} 1.0' in _metrics(port)
        assert worker.poll() is None

        client.delete(keys.frames("g2"))  # put right: probed again and served
        FramePublisher(client, "g2", "cam", 1000, settings.limits).publish(photo)
        wait_for(lambda: client.xlen(keys.results("g2")) == 1, timeout_s=30, what="g2 served")
        wait_for(lambda: not _heartbeat(client, "q").get("quarantined"), what="quarantine lifted")
    finally:
        assert _stop(worker) == 0
    log = (tmp_path / "log").read_text()
    assert log.count("group quarantined") == 1  # logged once, not on every read


def test_out_of_memory_does_not_kill_the_worker(
    engine: FaceEngine, client: redis.Redis, settings: Settings, redis_server: EmbeddedRedis,
    model_cache: Path, tmp_path: Path,
) -> None:  # fmt: skip
    enrol(engine, client, ["obama"])
    port = free_port()
    worker = _spawn(
        redis_server, model_cache, tmp_path / "log", "--groups", "g1", "--consumer", "oom",
        "--metrics-port", str(port),
    )  # fmt: skip
    publisher = FramePublisher(client, "g1", "cam", 1000, settings.limits)
    try:
        wait_for(lambda: _heartbeat(client, "oom"), what="worker start")
        publisher.publish(next(iter_frames(FACES / "test" / "obama1.jpg")))
        wait_for(lambda: client.xlen(keys.results("g1")) == 1, what="first result")
        client.config_set("maxmemory", "1")  # every write that may grow memory is refused
        try:
            wait_for(
                lambda: 'facestream_redis_errors_total{kind="OutOfMemoryError"}' in _metrics(port),
                timeout_s=30,
                what="the worker meeting OOM",
            )
            assert worker.poll() is None
        finally:
            client.config_set("maxmemory", "0")
        publisher.publish(next(iter_frames(FACES / "test" / "johnsnow_test1.jpg")))
        wait_for(lambda: client.xlen(keys.results("g1")) == 2, timeout_s=30, what="carried on")
    finally:
        assert _stop(worker) == 0
