"""The backend's client: filters, a subscriber that resumes, and the one-photo request."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis
from structlog.testing import capture_logs

from facestream.client import (
    DeliveredResult,
    RecognitionTimeout,
    ResultFilter,
    ResultSubscriber,
    recognise_image,
)
from facestream.config import Settings
from facestream.recognizer import FaceEngine
from facestream.schemas import Face, Result, keys
from facestream.server import EmbeddedRedis

from .helpers import FACES, enrol, make_worker, wait_for


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


def _publish(client: redis.Redis, *seqs: int) -> None:
    for seq in seqs:
        client.xadd(keys.results("g1"), _result(seq).to_fields())  # type: ignore[arg-type]


def _take(subscriber: ResultSubscriber, count: int, timeout_s: float = 30) -> list[DeliveredResult]:
    """The next `count` results (all acknowledged); fewer if they do not come in `timeout_s`."""
    stop = threading.Event()
    timer = threading.Timer(timeout_s, stop.set)
    timer.start()
    taken: list[DeliveredResult] = []
    try:
        for result in subscriber.listen(stop):
            taken.append(result)
            if len(taken) == count:
                stop.set()  # the subscriber acknowledges this one, then returns
    finally:
        timer.cancel()
    return taken


def _seqs(results: list[DeliveredResult]) -> list[tuple[int, bool]]:
    return [(r.seq, r.redelivered) for r in results]


def test_subscriber_resumes_where_it_stopped(client: redis.Redis) -> None:
    _publish(client, 0, 1, 2)
    first = ResultSubscriber(client, ["g1"], consumer_group="mall", block_ms=50, start="oldest")
    seen = []
    for result in first:
        seen.append(result.seq)
        if len(seen) == 2:
            break  # the second was handed out but not acknowledged: the loop body did not finish
    again = ResultSubscriber(client, ["g1"], consumer_group="mall", block_ms=50)
    _publish(client, 3)
    assert seen == [0, 1]
    # The first read fetched all three, so 2 counts as handed out before too.
    assert _seqs(_take(again, 3)) == [(1, True), (2, True), (3, False)]


def test_a_new_subscriber_starts_at_new_results_unless_told_the_oldest(
    client: redis.Redis,
) -> None:
    _publish(client, 0, 1)
    new = ResultSubscriber(client, ["g1"], consumer_group="new", block_ms=50)
    oldest = ResultSubscriber(client, ["g1"], consumer_group="old", block_ms=50, start="oldest")
    _publish(client, 2)
    assert _seqs(_take(new, 1)) == [(2, False)]
    assert _seqs(_take(oldest, 3)) == [(0, False), (1, False), (2, False)]


def test_results_of_a_consumer_that_died_are_claimed_and_marked(client: redis.Redis) -> None:
    dead = ResultSubscriber(client, ["g1"], consumer_group="mall", consumer="dead", block_ms=50)
    _publish(client, 0, 1, 2)
    assert _seqs(_take(dead, 1)) == [(0, False)]  # 1 and 2 fetched, pending: it never comes back
    heir = ResultSubscriber(
        client, ["g1"], consumer_group="mall", consumer="heir", block_ms=50, claim_idle_ms=300
    )
    _publish(client, 3)
    assert sorted(_seqs(_take(heir, 3))) == [(1, True), (2, True), (3, False)]
    assert heir.stats.claimed == 2 and heir.stats.redelivered == 2
    assert client.xpending(keys.results("g1"), "mall")["pending"] == 0


def test_a_group_lost_with_a_redis_restart_is_created_again(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()  # a restart forgets all
    client = redis.Redis.from_url(server.url)
    subscriber = ResultSubscriber(client, ["g1"], consumer_group="mall", block_ms=50)
    seen: list[int] = []
    stop = threading.Event()

    def listen() -> None:
        seen.extend(result.seq for result in subscriber.listen(stop))

    listening = threading.Thread(target=listen, daemon=True)
    listening.start()
    try:
        _publish(client, 0)
        wait_for(lambda: seen == [0], what="the first result")
        server.stop()  # while the subscriber waits in XREADGROUP
        server.start()
        _publish(client, 1)
        wait_for(lambda: seen == [0, 1], what="a result after the restart")
        client.flushall()
        _publish(client, 2)
        wait_for(lambda: seen == [0, 1, 2], what="a result after the flush")
    finally:
        stop.set()
        listening.join(10)
        server.stop()
    assert not listening.is_alive()
    assert subscriber.stats.regrouped == 2


def test_results_trimmed_before_delivery_are_counted_and_logged(
    client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    major = int(str(client.info("server")["redis_version"]).split(".")[0])
    if major < 7:
        pytest.skip("Redis 6 does not report a consumer group's lag")
    subscriber = ResultSubscriber(client, ["g1"], consumer_group="mall", block_ms=50)
    _publish(client, 0)
    assert _seqs(_take(subscriber, 1)) == [(0, False)]  # Redis counts reads from the first on
    _publish(client, 1, 2, 3, 4, 5)
    client.xtrim(keys.results("g1"), maxlen=2, approximate=False)  # 1, 2, 3 go unread
    with capture_logs() as logs:
        assert _seqs(_take(subscriber, 2)) == [(4, False), (5, False)]
    assert subscriber.stats.gaps == 3
    gaps = [e for e in logs if e["event"] == "results were trimmed before delivery"]
    assert [(e["missing"], e["log_level"]) for e in gaps] == [(3, "warning")]


def test_pending_results_trimmed_before_acknowledgement_are_counted(client: redis.Redis) -> None:
    first = ResultSubscriber(client, ["g1"], consumer_group="mall", block_ms=50)
    _publish(client, 0, 1, 2)
    assert _seqs(_take(first, 1)) == [(0, False)]  # 1 and 2 were fetched too, not yet handed
    client.xtrim(keys.results("g1"), maxlen=1, approximate=False)  # 1 goes, still pending
    again = ResultSubscriber(client, ["g1"], consumer_group="mall", block_ms=50)
    with capture_logs() as logs:
        assert _seqs(_take(again, 1)) == [(2, True)]
    assert again.stats.gaps == 1
    # XAUTOCLAIM names it at once on Redis 7; reading it back finds it empty on Redis 6.
    assert sum(e["missing"] for e in logs if "trimmed unread" in e["event"]) == 1


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
