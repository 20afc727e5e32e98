"""The backend's client: filters, a subscriber that resumes, and the one-photo request."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import redis

from facestream.client import (
    RecognitionTimeout,
    ResultFilter,
    ResultSubscriber,
    recognise_image,
)
from facestream.config import Settings
from facestream.recognizer import FaceEngine
from facestream.schemas import Face, Result, keys

from .helpers import FACES, enrol, make_worker


def _result(
    seq: int, camera: str = "c1", identity: str | None = "obama", sim: float = 0.8
) -> Result:
    face = Face(
        box=(0, 0, 10, 10),
        landmarks=((1, 1), (2, 2), (3, 3), (4, 4), (5, 5)),
        score=0.9,
        identity=identity,
        similarity=sim,
    )
    return Result(
        frame_id=f"{seq}-0", camera=camera, group="g1", seq=seq, ts=0, hash="h",
        cached=False, faces=[face], model="m",
    )  # fmt: skip


def test_result_filter() -> None:
    wanted = ResultFilter(
        identities=frozenset({"obama"}), cameras=frozenset({"c1"}), min_similarity=0.5
    )
    assert wanted(_result(1))
    assert not wanted(_result(1, camera="c2"))
    assert not wanted(_result(1, identity="biden"))
    assert not wanted(_result(1, sim=0.4))
    assert not wanted(_result(1, identity=None))
    assert ResultFilter()(_result(1, identity=None))


def test_subscriber_resumes_where_it_stopped(client: redis.Redis) -> None:
    for seq in range(3):
        client.xadd(keys.results("g1"), _result(seq).to_fields())  # type: ignore[arg-type]
    first = ResultSubscriber(client, ["g1"], consumer_group="mall", block_ms=50)
    seen = []
    for result in first:
        seen.append(result.seq)
        if len(seen) == 2:
            break  # the second was handed out but not acknowledged: the loop body did not finish
    again = ResultSubscriber(client, ["g1"], consumer_group="mall", block_ms=50)
    stop = threading.Event()
    resumed: Iterator[Result] = again.listen(stop)
    assert [next(resumed).seq, next(resumed).seq] == [1, 2]
    stop.set()
    assert seen == [0, 1]


def test_recognise_image_answers_then_serves_from_cache(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    enrol(engine, client, ["obama"])
    worker = make_worker(client, engine, settings)
    worker.step()  # the consumer group exists before the request arrives
    stop = threading.Event()
    serving = threading.Thread(target=worker.run, args=(stop,))
    serving.start()
    try:
        photo = (FACES / "test" / "obama1.jpg").read_bytes()
        first = recognise_image(client, "g1", photo, timeout_s=30)
        second = recognise_image(client, "g1", photo, timeout_s=30)
    finally:
        stop.set()
        serving.join(10)
    assert first.identities == ["obama"] and not first.cached
    assert second.identities == ["obama"] and second.cached
    assert second.hash == first.hash


def test_recognise_image_times_out_without_workers(client: redis.Redis) -> None:
    photo = (FACES / "test" / "obama1.jpg").read_bytes()
    with pytest.raises(RecognitionTimeout, match=r"within 0.3s: is a worker serving this group\?$"):
        recognise_image(client, "nobody", photo, timeout_s=0.3)


def test_eval_command_reports_the_operating_point(model_cache) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "facestream", "eval", str(FACES), "--json"],
        env={**__import__("os").environ, "FACESTREAM_MODELS__CACHE_DIR": str(model_cache)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["top1_accuracy"] == 1.0 and report["false_accepts"] == 0
    low, high = report["separating_range"]
    assert low < report["threshold"] < high
    assert report["genuine"]["count"] == 10
