"""A frame that kills its worker every time (the kernel's OOM killer, a memory cgroup) is
dead-lettered after its solo attempts, and every frame of its batch gets its result."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from facestream.recognizer import FaceEngine
from facestream.schemas import DeadLetter, Frame, Result, keys
from facestream.server import EmbeddedRedis

from .cgroups import memory_cage
from .helpers import FACES, enrol, require_system_dependency, wait_for

PHOTOS = sorted((FACES / "test").glob("*.jpg"))
MAX_DELIVERIES = 3
SIDE = 8192  # the poison frame's; limits.max_pixels is raised to let it in
# Room above what the worker holds once it has served ordinary frames: such a frame (1480x832)
# needs ~4 MB to decode, the poison frame ~400 MB (8192x8192: 200 MB of pixels and as much of
# progressive-JPEG coefficients), so only it meets the limit.
_ROOM = 64 * 2**20


def _poison() -> tuple[bytes, int, int]:
    """A valid progressive JPEG within the limits that compresses to a few MB and costs
    ~400 MB to decode."""
    half = (np.arange(SIDE) * 127 // (SIDE - 1)).astype(np.uint8)
    across = np.add.outer(half, half)  # a smooth ramp: few bytes once encoded
    image = np.dstack([across, 254 - across, np.broadcast_to(half * 2, (SIDE, SIDE))])
    params = [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    ok, encoded = cv2.imencode(".jpg", image, params)
    assert ok
    return encoded.tobytes(), SIDE, SIDE


def _frame(data: bytes, w: int, h: int, seq: int) -> dict[str, bytes | str | int]:
    return Frame(camera="cam", group="g1", seq=seq, ts=1, w=w, h=h, img=data).to_fields()


def _photo(path: Path, quality: int) -> tuple[bytes, int, int]:
    image = cv2.imread(str(path))
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return encoded.tobytes(), image.shape[1], image.shape[0]


def _done(client: redis.Redis) -> int:
    return int(client.xlen(keys.results("g1")) + client.xlen(keys.dead("g1")))


@pytest.mark.timeout(420)
def test_a_frame_that_kills_its_worker_is_dead_lettered_and_its_batch_mates_answered(
    engine: FaceEngine, client: redis.Redis, redis_server: EmbeddedRedis, model_cache: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    enrol(engine, client)
    env = {
        **os.environ,
        "FACESTREAM_MODELS__CACHE_DIR": str(model_cache),
        "FACESTREAM_WORKER__BATCH_SIZE": "8",
        "FACESTREAM_WORKER__CLAIM_IDLE_MS": "500",
        "FACESTREAM_WORKER__MAX_DELIVERIES": str(MAX_DELIVERIES),
        "FACESTREAM_LIMITS__MAX_PIXELS": str(SIDE * SIDE),
    }
    command = [
        sys.executable, "-m", "facestream", "--redis-url", redis_server.url, "--log-format",
        "json", "worker", "--groups", "g1", "--consumer", "caged",
    ]  # fmt: skip
    log = tmp_path / "worker.log"
    with memory_cage(f"facestream-{os.getpid()}-{tmp_path.name}") as cage:
        require_system_dependency(cage is not None, "a memory cgroup this test may create")
        assert cage is not None
        # Calibrate: what the worker holds once it has started and served ordinary frames.
        worker = cage.start(command, env, log)
        warm = [_photo(path, 80) for path in PHOTOS]
        for seq, (data, w, h) in enumerate(warm):
            client.xadd(keys.frames("g1"), _frame(data, w, h, seq))  # type: ignore[arg-type]
        wait_for(lambda: _done(client) == len(warm), 120, "the calibration frames")
        held = cage.working_set()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
        cage.limit(held + _ROOM)

        # One batch: the poison frame among ordinary ones (new bytes: no cache hits).
        batch = [_photo(path, 92) for path in PHOTOS]
        batch.insert(2, _poison())
        pipe = client.pipeline(transaction=True)
        for seq, (data, w, h) in enumerate(batch, start=len(warm)):
            pipe.xadd(keys.frames("g1"), _frame(data, w, h, seq))  # type: ignore[arg-type]
        ids = [entry_id.decode() for entry_id in pipe.execute()]
        poison_id = ids[2]
        deaths: list[int] = []

        def finished() -> bool:
            nonlocal worker
            if worker.poll() is not None:
                deaths.append(worker.returncode)
                worker = cage.start(command, env, log)
            return _done(client) == len(warm) + len(batch)

        worker = cage.start(command, env, log)
        try:
            wait_for(finished, 360, "every frame of the batch to get its outcome", poll_s=0.05)
        finally:
            worker.kill()
            worker.wait()
        ooms = cage.ooms()

    # Killed once in the batch, then once in each solo attempt: the kernel's SIGKILL each time.
    assert deaths == [-signal.SIGKILL] * (1 + MAX_DELIVERIES), log.read_text()[-3000:]
    assert ooms in (-1, 1 + MAX_DELIVERIES)
    (letter,) = [DeadLetter.from_fields(f) for _, f in client.xrange(keys.dead("g1"))]
    assert letter.frame_id == poison_id
    assert f"died without a result {MAX_DELIVERIES}x (max_deliveries=3)" in letter.reason
    results = [Result.from_fields(f) for _, f in client.xrange(keys.results("g1"))]
    answered = sorted(r.frame_id for r in results if r.frame_id in ids)
    assert answered == sorted(i for i in ids if i != poison_id)
    assert len(results) == len(warm) + len(batch) - 1  # each exactly once
    assert not client.exists(keys.solo("g1"))
    assert client.xpending(keys.frames("g1"), keys.RECOGNIZERS)["pending"] == 0
