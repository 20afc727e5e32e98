"""Gallery: refusals, model tagging, and a running worker picking up a new enrolment."""

from __future__ import annotations

import time

import pytest
import redis

from facestream.config import Settings
from facestream.ingest import FramePublisher, iter_frames
from facestream.recognizer import (
    FaceEngine,
    Gallery,
    VisitorBook,
    VisitorSettings,
    Worker,
    embed_photos,
)
from facestream.schemas import GalleryError, GalleryExport, Identity, Result, keys

from .helpers import FACES, drain, enrol, make_worker


def test_photo_without_a_face_is_refused(engine: FaceEngine, tmp_path) -> None:
    import cv2
    import numpy as np

    blank = tmp_path / "wall.jpg"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(GalleryError, match=r"wall\.jpg: no face found"):
        embed_photos(engine, "nobody", [blank])


def test_group_photo_needs_largest_face(engine: FaceEngine) -> None:
    photo = FACES / "test" / "obama_and_biden.jpg"
    with pytest.raises(GalleryError, match=r"obama_and_biden\.jpg: 3 faces found"):
        embed_photos(engine, "obama", [photo])
    identity = embed_photos(engine, "obama", [photo], largest_face=True)
    assert len(identity.embeddings) == 1 and identity.model == engine.model_id


def test_gallery_of_another_model_is_refused(engine: FaceEngine, client: redis.Redis) -> None:
    Gallery(client).enroll(
        Identity(name="x", model="other@1", embeddings=[[0.0] * 128], enrolled_at=0)
    )
    with pytest.raises(GalleryError, match=r"enrolled with model other@1, this worker runs"):
        Gallery(client).matcher(engine.model_id, 0.363, 0.05)


def test_running_worker_recognises_a_newly_enrolled_person(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    enrol(engine, client, ["obama"])
    worker = make_worker(client, engine, settings)
    publisher = FramePublisher(client, "g1", "c", 1000, settings.limits)
    alex = next(iter_frames(FACES / "test" / "alex_lacamoire1.jpg"))
    publisher.publish(alex)
    drain(worker, client, "g1", 1)
    enrol(engine, client, ["alex_lacamoire"])
    version = Gallery(client).version()
    deadline = time.monotonic() + 5  # the worker polls every gallery_poll_s (0.1 s here)
    while worker.engine.matcher.version != version and time.monotonic() < deadline:
        worker.step()
    assert worker.engine.matcher.version == version
    publisher.publish(alex)  # same bytes: a cache hit, matched against the new gallery
    drain(worker, client, "g1", 2)
    first, second = (Result.from_fields(f) for _, f in client.xrange(keys.results("g1")))
    assert first.identities == [] and not first.cached
    assert second.identities == ["alex_lacamoire"] and second.cached


def test_export_import_round_trip(engine: FaceEngine, client: redis.Redis) -> None:
    enrol(engine, client, ["obama", "biden"])
    export = Gallery(client).export(engine.model_id)
    client.flushall()
    version = Gallery(client).import_(
        GalleryExport.model_validate_json(export.model_dump_json()), engine.model_id
    )
    assert version == 1
    _, identities = Gallery(client).identities()
    assert [i.name for i in identities] == ["biden", "obama"]
    assert identities == sorted(export.identities, key=lambda i: i.name)
    with pytest.raises(GalleryError, match=r"^the export was made with model other, this"):
        Gallery(client).import_(export.model_copy(update={"model": "other"}), engine.model_id)


def test_erase_purges_cached_faces_of_that_person_only(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    enrol(engine, client, ["obama", "alex_lacamoire"])
    worker = make_worker(client, engine, settings)
    publisher = FramePublisher(client, "g1", "c", 1000, settings.limits)
    for photo in ("obama1.jpg", "alex_lacamoire1.jpg", "kit_with_rose.jpg"):
        publisher.publish(next(iter_frames(FACES / "test" / photo)))
    drain(worker, client, "g1", 3)
    assert len(list(client.scan_iter(match="fs:{g1}:cache:*"))) == 3
    assert Gallery(client).erase("alex_lacamoire", settings.match.threshold) == 1
    _, identities = Gallery(client).identities()
    assert [i.name for i in identities] == ["obama"]
    left = [Result.from_fields(f) for _, f in client.xrange(keys.results("g1"))]
    kept = {key.decode().rsplit(":", 1)[1] for key in client.scan_iter(match="fs:{g1}:cache:*")}
    assert kept == {left[0].hash, left[2].hash}  # obama's and kit/rose's stay
    with pytest.raises(GalleryError, match=r"^no identity named 'alex_lacamoire'"):
        Gallery(client).erase("alex_lacamoire", settings.match.threshold)


def test_unknown_visitors_get_stable_pseudonymous_ids(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    enrol(engine, client, ["biden"])
    visitors = VisitorBook(client, VisitorSettings(enabled=True))
    worker = Worker(
        client, engine, settings.worker, settings.match, settings.limits, "w", ["g1"], visitors
    )
    publisher = FramePublisher(client, "g1", "c", 1000, settings.limits)
    for photo in ("test/obama1.jpg", "extra/obama3.jpg", "test/alex_lacamoire1.jpg"):
        publisher.publish(next(iter_frames(FACES / photo)))
    drain(worker, client, "g1", 3)
    obama1, obama3, alex = (Result.from_fields(f) for _, f in client.xrange(keys.results("g1")))
    (first,), (again,), (other,) = ([f.visitor for f in r.faces] for r in (obama1, obama3, alex))
    assert first is not None and first.startswith("v-")
    assert again == first  # the same unknown person, another photo
    assert other is not None and other != first
    assert client.zcard(keys.VISITOR_SEEN) == 2
    assert visitors.purge() == 2
    assert not client.exists(keys.VISITOR_EMBEDDINGS)
