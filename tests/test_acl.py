"""compose/users.acl: each role's user can do its whole job, and is refused the rest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import NoPermissionError

from facestream.client import ResultSubscriber
from facestream.config import Settings
from facestream.ingest import FramePublisher, iter_frames
from facestream.recognizer import FaceEngine, Gallery, Worker
from facestream.schemas import keys
from facestream.server import EmbeddedRedis

from .helpers import FACES, REPO, enrol, wait_for


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    acl = ("--aclfile", str(REPO / "compose" / "users.acl"))
    with EmbeddedRedis(tmp_path_factory.mktemp("acl"), appendonly=False, extra_args=acl) as server:
        yield server


def _as(server: EmbeddedRedis, role: str) -> redis.Redis:
    return redis.Redis(port=server.port, username=role, password=f"change-me-{role}")


def test_default_user_is_off(secured: EmbeddedRedis) -> None:
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=secured.port).ping()


def test_every_role_does_its_job_and_no_more(
    secured: EmbeddedRedis, engine: FaceEngine, settings: Settings
) -> None:
    admin, camera, worker, backend = (
        _as(secured, role) for role in ("admin", "camera", "worker", "backend")
    )
    enrol(engine, admin, ["obama"])  # admin: the gallery

    FramePublisher(camera, "g1", "c", 100, settings.limits).publish(
        next(iter_frames(FACES / "test" / "obama1.jpg"))
    )
    subscriber = ResultSubscriber(backend, ["g1"], consumer_group="mall", block_ms=100)

    serving = Worker(worker, engine, settings.worker, settings.match, settings.limits, "w", ["g1"])
    wait_for(
        lambda: serving.step() is not None and admin.xlen(keys.results("g1")) == 1,
        what="the result, made with the worker's rights only",
    )
    result = next(iter(subscriber))
    assert result.identities == ["obama"]
    assert admin.xlen(keys.dead("g1")) == 0

    refused = [
        lambda: camera.xrange(keys.results("g1")),  # cameras only write frames
        lambda: camera.hgetall(keys.GALLERY_IDENTITIES),
        lambda: backend.hgetall(keys.GALLERY_IDENTITIES),  # the backend sees results only
        lambda: backend.get(keys.cache("g1", result.hash)),
        lambda: worker.hset(keys.GALLERY_IDENTITIES, "mallory", "{}"),  # workers read the gallery
        lambda: worker.config_get("*"),
        lambda: admin.flushall(),
        lambda: camera.flushall(),
    ]
    for attempt in refused:
        with pytest.raises(NoPermissionError):
            attempt()
    assert Gallery(admin).version() == 1
