"""Gallery: refusals, model tagging, a running worker picking up a new enrolment, negatives."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from facestream.config import Settings
from facestream.ingest import FramePublisher, iter_frames
from facestream.recognizer import (
    FaceEngine,
    Gallery,
    TrackSettings,
    VisitorBook,
    VisitorSettings,
    Worker,
    embed_photos,
)
from facestream.schemas import Event, GalleryError, GalleryExport, Identity, Result, keys
from facestream.server import EmbeddedRedis

from .helpers import FACES, drain, enrol, make_worker
from .walks import Walker, publish_clip, record, render


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
    # Refused per identity (issue 18): the worker skips it and keeps the rest of the gallery.
    Gallery(client).enroll(
        Identity(name="x", model="other@1", embeddings=[[0.0] * 128], enrolled_at=0)
    )
    enrol(engine, client, ["obama"])
    contents = Gallery(client).contents(engine.model_id)
    assert contents.unusable == {
        "x": f"model: enrolled with other@1, this installation runs {engine.model_id}"
    }
    assert Gallery(client).matcher(engine.model_id, 0.363, 0.05).names == ["obama"]


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
    while worker.matcher.version != version and time.monotonic() < deadline:
        worker.step()
    assert worker.matcher.version == version
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


def test_a_rejected_look_alike_is_never_given_the_name(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    # With only Obama enrolled and no threshold, everyone looks like him: Biden included.
    enrol(engine, client, ["obama"])
    loose = settings.model_copy(  # no floor and no FPIR-derived threshold above it
        update={"match": settings.match.model_copy(update={"threshold": 0.0, "target_fpir": None})}
    )
    publisher = FramePublisher(client, "g1", "c", 1000, settings.limits)
    photos = ("test/obama_and_biden.jpg", "test/obama1.jpg")
    for photo in photos:
        publisher.publish(next(iter_frames(FACES / photo)))
    worker = make_worker(client, engine, loose)
    drain(worker, client, "g1", 2)
    before = [Result.from_fields(f) for _, f in client.xrange(keys.results("g1"))]
    assert before[0].identities == ["obama", "obama", "obama"]  # the look-alikes

    biden = embed_photos(engine, "obama", sorted((FACES / "train" / "biden").iterdir()))
    version = Gallery(client).reject("obama", biden)
    assert version == 2
    for photo in photos:  # other photos of Biden than the negatives
        publisher.publish(next(iter_frames(FACES / photo)))
    drain(worker, client, "g1", 4)
    after = [Result.from_fields(f) for _, f in client.xrange(keys.results("g1"))][2:]
    named = {face.box: face.identity for face in after[0].faces}
    obama_box = max(named, key=lambda box: box[2] * box[3])  # the closest face is Obama's
    assert named.pop(obama_box) == "obama" and after[1].identities == ["obama"]
    biden_box = min(named, key=lambda box: abs(box[0] - obama_box[0]))
    assert named[biden_box] is None, "Biden, close to a negative of obama, is not obama"

    # Export and import keep the negatives; erase removes them with the identity.
    export = Gallery(client).export(engine.model_id)
    client.flushall()
    Gallery(client).import_(
        GalleryExport.model_validate_json(export.model_dump_json()), engine.model_id
    )
    (obama,) = Gallery(client).identities()[1]
    assert len(obama.negatives) == 2 and obama.negative_photos == ["biden.jpg", "biden2.jpg"]
    with pytest.raises(GalleryError, match=r"^no identity named 'biden' in the gallery$"):
        Gallery(client).reject("biden", biden)


def test_reject_from_the_command_line(
    redis_server: EmbeddedRedis, client: redis.Redis, engine: FaceEngine, model_cache: Path
) -> None:
    enrol(engine, client, ["obama"])
    done = subprocess.run(
        [sys.executable, "-m", "facestream", "gallery", "reject", "obama",
         str(FACES / "train" / "biden"), "--redis-url", redis_server.url],
        env={**os.environ, "FACESTREAM_MODELS__CACHE_DIR": str(model_cache)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "obama: 2 negative example(s) stored; gallery version 2\n"
    (obama,) = Gallery(client).identities()[1]
    assert obama.negative_photos == ["biden.jpg", "biden2.jpg"]


def test_erasing_an_identity_purges_its_snapshots(
    engine: FaceEngine, client: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    enrol(engine, client, ["obama", "kit_harington"])
    for camera, photo in (("c1", "obama1.jpg"), ("c2", "johnsnow_test1.jpg")):
        frames = render(engine, [Walker(FACES / "test" / photo, 0, 6)], 6)
        publish_clip(client, "g1", camera, record(frames, tmp_path / f"{camera}.mp4", 5), 5, 0)
    drain(make_worker(client, engine, settings, tracks=TrackSettings()), client, "g1", 12)
    snapshots = {
        event.identity: event.snapshot
        for _, fields in client.xrange(keys.events("g1"))
        if (event := Event.from_fields(fields)).type == "identified"
    }
    assert set(snapshots) == {"obama", "kit_harington"}
    assert all(key is not None and client.exists(key) for key in snapshots.values())

    Gallery(client).erase("obama", settings.match.threshold)
    assert not client.exists(snapshots["obama"])  # type: ignore[arg-type]
    assert client.exists(snapshots["kit_harington"])  # type: ignore[arg-type]
