"""The worker trusts nothing a camera writes: who sent a frame, for where, under what name.

A camera's ACL user reaches only its group's frames stream, but inside it the fields are its
own to write; and a stream name found by discovery may be anyone's. Real worker, real Redis.
"""

from __future__ import annotations

import redis
from structlog.testing import capture_logs

from facestream.config import Settings
from facestream.ingest import FramePublisher, iter_frames
from facestream.recognizer import FaceEngine, Worker
from facestream.schemas import DeadLetter, Result, keys

from .helpers import FACES, drain, enrol, make_worker

PHOTO = FACES / "test" / "obama1.jpg"


def _worker(
    client: redis.Redis, engine: FaceEngine, settings: Settings, groups: list[str]
) -> Worker:
    # As workers.py gives it Settings.cameras_by_group(): g1 has camera c1, g2 none listed.
    return make_worker(client, engine, settings, "trust", groups, cameras={"g1": frozenset({"c1"})})


def _send(
    client: redis.Redis, settings: Settings, stream: str, camera: str, claims: str | None = None
) -> str:
    """A frame of `camera` on `stream`'s group whose `group` field says `claims`."""
    publisher = FramePublisher(client, stream, camera, 100, settings.limits)
    frame = publisher.frame(next(iter_frames(PHOTO)))
    entry = {**frame.to_fields(), "group": claims or stream}
    return str(client.xadd(keys.frames(stream), entry).decode())  # type: ignore[union-attr]


def test_a_frame_is_answered_only_for_its_stream_and_a_camera_of_its_group(
    client: redis.Redis, engine: FaceEngine, settings: Settings
) -> None:
    enrol(engine, client, ["obama"])
    worker = _worker(client, engine, settings, ["g1", "g2"])
    good = _send(client, settings, "g1", "c1")
    impostor = _send(client, settings, "g1", "c2")  # a camera the config gives another group
    elsewhere = _send(client, settings, "g1", "c1", claims="g2")  # claims another place
    drain(worker, client, "g1", expected=3)

    results = [Result.from_fields(f) for _, f in client.xrange(keys.results("g1"))]
    assert [(r.frame_id, r.camera, r.identities) for r in results] == [(good, "c1", ["obama"])]
    letters = [DeadLetter.from_fields(f) for _, f in client.xrange(keys.dead("g1"))]
    dead = {letter.frame_id: letter.reason for letter in letters}
    assert dead == {
        impostor: "camera 'c2' is not a camera of group 'g1' in the config",
        elsewhere: "entry names group 'g2' but was sent to group 'g1'",
    }
    assert client.xlen(keys.results("g2")) == 0


def test_a_group_the_config_lists_no_camera_for_takes_any_camera(
    client: redis.Redis, engine: FaceEngine, settings: Settings
) -> None:
    worker = _worker(client, engine, settings, ["g2"])
    entry = _send(client, settings, "g2", "request")  # e.g. recognise_image
    drain(worker, client, "g2", expected=1)
    assert [Result.from_fields(f).frame_id for _, f in client.xrange(keys.results("g2"))] == [entry]


def test_hostile_stream_names_are_skipped_and_reported_once(
    client: redis.Redis, engine: FaceEngine, settings: Settings
) -> None:
    hostile = [b"fs:{a}b}:frames", b"fs:{\xff\xfe}:frames", b"fs:{x\ny}:frames", b"fs:{}:frames"]
    for key in hostile:
        client.xadd(key, {"v": "1"})
    _send(client, settings, "ok", "c1")
    worker = _worker(client, engine, settings, [])  # discovery
    with capture_logs() as logs:
        worker.step()
        worker._discovered = -float("inf")  # a second discovery round, at once
        worker.step()
    assert worker.groups == ["ok"]
    skipped = [e["key"] for e in logs if e["event"].startswith("stream skipped")]
    assert sorted(skipped) == sorted(repr(key) for key in hostile)  # each once, not twice
