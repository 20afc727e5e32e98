"""Face tracks on real video (synthetic walks of the bundled photos, encoded with OpenCV)."""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import redis

from facestream.config import Settings
from facestream.recognizer import FaceEngine, TrackSettings
from facestream.recognizer.tracks import CameraTracks, Track, parse_tracks, plan_embeddings
from facestream.schemas import Event, Result, keys

from .helpers import FACES, drain, enrol, make_worker
from .walks import Walker, publish_clip, record, render

FPS = 5.0
START_MS = 1_800_000_000_000
# A track ends after 5 frames of its camera without it (1 s at 5 fps), so short clips end them.
TRACKS = TrackSettings(lost_after_frames=5)
OBAMA = FACES / "test" / "obama1.jpg"
KIT = FACES / "test" / "johnsnow_test1.jpg"
ALEX = FACES / "test" / "alex_lacamoire1.jpg"


def clip(engine: FaceEngine, folder: Path, walkers: list[Walker], frames: int) -> list[bytes]:
    return record(render(engine, walkers, frames), folder / "clip.mp4", FPS)


@pytest.fixture(scope="module")
def walk(engine: FaceEngine, tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Obama crosses the picture in 28 frames, growing, blurred for five; then 8 empty frames."""
    walker = Walker(OBAMA, start=2, end=30, blur=(12, 17))
    return clip(engine, tmp_path_factory.mktemp("walk"), [walker], 38)


def results(client: redis.Redis, group: str = "g1") -> list[Result]:
    return [Result.from_fields(fields) for _, fields in client.xrange(keys.results(group))]


def events(client: redis.Redis, group: str = "g1") -> list[Event]:
    return [Event.from_fields(fields) for _, fields in client.xrange(keys.events(group))]


def test_a_known_person_past_two_cameras_is_one_visit_each_and_seen_once(
    engine: FaceEngine, client: redis.Redis, settings: Settings, walk: list[bytes]
) -> None:
    enrol(engine, client)
    # Two cameras in two groups: `seen` is site-wide, across groups.
    publish_clip(client, "g1", "east", walk, FPS, START_MS)
    publish_clip(client, "g2", "west", walk, FPS, START_MS + 20_000)
    worker = make_worker(client, engine, settings, groups=("g1", "g2"), tracks=TRACKS)
    embedded_before = engine.embedder.faces
    drain(worker, client, "g1", len(walk))
    drain(worker, client, "g2", len(walk))
    embedded = engine.embedder.faces - embedded_before

    seen = []
    for group in ("g1", "g2"):
        shown = [r for r in results(client, group) if r.faces]
        faces = [face for r in shown for face in r.faces]
        assert len({face.track for face in faces}) == 1, "one track per camera"
        assert {face.identity for face in faces} <= {"obama", None}
        assert sum(face.identity == "obama" for face in faces) >= 0.9 * len(faces)
        kinds = Counter(event.type for event in events(client, group))
        assert kinds["appeared"] == kinds["identified"] == kinds["left"] == 1
        (left,) = (e for e in events(client, group) if e.type == "left")
        assert left.identity == "obama" and left.frames == len(shown)
        assert left.first_ts == shown[0].ts and left.last_ts == shown[-1].ts
        assert left.dwell_ms == shown[-1].ts - shown[0].ts
        assert left.best_similarity is not None and left.best_similarity > 0.6
        assert left.snapshot == keys.snapshot(group, left.track)
        snapshot = client.get(left.snapshot)
        assert snapshot is not None and snapshot.startswith(b"\xff\xd8")  # a JPEG
        assert 0 < client.ttl(left.snapshot) <= TRACKS.snapshot_ttl_s
        seen += [e for e in events(client, group) if e.type == "seen"]
    assert [(e.identity, e.camera) for e in seen] == [("obama", "east")]
    assert client.ttl(keys.seen("obama")) > 0
    # Settled tracks are embedded on a back-off schedule, not on every frame.
    face_count = sum(len(r.faces) for g in ("g1", "g2") for r in results(client, g))
    assert embedded * 3 <= face_count


def test_a_stranger_is_never_named(
    engine: FaceEngine,
    client: redis.Redis,
    settings: Settings,
    tmp_path: Path,
) -> None:
    enrol(engine, client, ["obama", "biden", "kit_harington", "rose_leslie"])  # no alex
    frames = clip(engine, tmp_path, [Walker(ALEX, start=0, end=24, x=(0.9, 0.2))], 30)
    publish_clip(client, "g1", "door", frames, FPS, START_MS)
    drain(make_worker(client, engine, settings, tracks=TRACKS), client, "g1", len(frames))

    faces = [face for r in results(client) for face in r.faces]
    assert len(faces) >= 20 and len({face.track for face in faces}) == 1
    assert all(face.identity is None for face in faces)
    assert [e.type for e in events(client)] == ["appeared", "left"]
    assert not client.exists(keys.seen("alex_lacamoire"))


def test_faces_the_gate_refuses_are_not_embedded_on_a_tracked_camera_and_keep_their_track(
    engine: FaceEngine, client: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    """Obama passes far from the camera, his face too small to name all the way: a tracked
    camera spares SFace those faces (they could neither be named nor vote, so before they were
    embedded on every frame) and still tracks and counts the visit; a camera without tracks
    embeds them and reports their similarity, as before."""
    enrol(engine, client)
    walker = Walker(OBAMA, start=0, end=24, x=(0.2, 0.7), face_px=(34.0, 28.0))
    frames = clip(engine, tmp_path, [walker], 30)
    publish_clip(client, "g1", "far", frames, FPS, START_MS)
    publish_clip(client, "g2", "far", frames, FPS, START_MS)
    before = engine.embedder.faces
    drain(make_worker(client, engine, settings, tracks=TRACKS), client, "g1", len(frames))
    tracked_embeddings = engine.embedder.faces - before
    drain(make_worker(client, engine, settings, groups=("g2",)), client, "g2", len(frames))

    tracked = [r for r in results(client, "g1") if r.faces]
    faces = [face for r in tracked for face in r.faces]
    assert len(faces) >= 20 and len({face.track for face in faces}) == 1
    assert {face.unnamed_reason for face in faces} == {"too_small"}
    assert all(face.identity is None and face.quality is None for face in faces)
    assert tracked_embeddings == 0
    assert [e.type for e in events(client, "g1")] == ["appeared", "left"]
    for result in tracked:  # its faces have no embedding: such an image is not cached
        assert not client.exists(keys.cache("g1", result.hash))

    untracked = [face for r in results(client, "g2") for face in r.faces]
    assert len(untracked) >= 20
    assert {face.unnamed_reason for face in untracked} == {"too_small"}
    assert all(f.similarity is not None and f.quality is not None for f in untracked)
    assert all(client.exists(keys.cache("g2", r.hash)) for r in results(client, "g2"))


def test_two_people_crossing_keep_their_own_tracks_and_names(
    engine: FaceEngine, client: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    enrol(engine, client)
    walkers = [
        Walker(OBAMA, start=0, end=30, x=(0.15, 0.85), y=0.35),
        Walker(KIT, start=0, end=30, x=(0.85, 0.15), y=0.5, face_px=(90.0, 70.0)),
    ]
    frames = clip(engine, tmp_path, walkers, 38)
    publish_clip(client, "g1", "hall", frames, FPS, START_MS)
    drain(make_worker(client, engine, settings, tracks=TRACKS), client, "g1", len(frames))

    names: dict[str | None, set[str | None]] = {}
    sides: dict[str | None, list[float]] = {}
    for result in results(client):
        for face in result.faces:
            names.setdefault(face.track, set()).add(face.identity)
            sides.setdefault(face.track, []).append(face.box[0])
    assert len(names) == 2
    by_name = {next(n for n in found if n is not None): track for track, found in names.items()}
    assert set(by_name) == {"obama", "kit_harington"}
    for track, found in names.items():
        assert len(found - {None}) == 1, f"track {track} changed identity: {found}"
    # Obama walks left to right, Kit right to left: each track follows its own person.
    obama, kit = sides[by_name["obama"]], sides[by_name["kit_harington"]]
    assert obama[-1] > obama[0] and kit[-1] < kit[0]
    left = [e for e in events(client) if e.type == "left"]
    assert sorted(e.identity or "" for e in left) == ["kit_harington", "obama"]


def test_two_workers_serving_one_camera_keep_one_track(
    engine: FaceEngine, client: redis.Redis, settings: Settings, walk: list[bytes]
) -> None:
    enrol(engine, client, ["obama"])
    publish_clip(client, "g1", "east", walk, FPS, START_MS)
    small = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"batch_size": 3})}
    )
    workers = [
        make_worker(client, engine, small, consumer=f"w{i}", tracks=TRACKS) for i in range(2)
    ]
    turn = 0
    while client.xlen(keys.results("g1")) < len(walk):
        workers[turn % 2].step()  # each reads the next few frames: they alternate
        turn += 1
        assert turn < 200, "the two workers stopped making progress"

    # Each worker's view of the camera went stale whenever the other served it; each checks the
    # camera's token before its commits and reads the tracks again, so no commit is refused
    # and re-applied (that cascade made tracked cache hits cost 4x untracked ones).
    assert sum(worker.stats.retracked for worker in workers) == 0
    shown = [r for r in results(client) if r.faces]
    assert len({face.track for r in shown for face in r.faces}) == 1
    assert sorted(r.seq for r in results(client)) == list(range(len(walk)))
    kinds = Counter(event.type for event in events(client))
    assert kinds == {"appeared": 1, "identified": 1, "seen": 1, "left": 1}
    (left,) = (e for e in events(client) if e.type == "left")
    assert left.frames == len(shown)


def test_a_visit_served_from_the_cache_keeps_a_snapshot(
    engine: FaceEngine, client: redis.Redis, settings: Settings, walk: list[bytes]
) -> None:
    """The same frames again on another camera are cache hits; that visit still gets its crop."""
    enrol(engine, client, ["obama"])
    # The first camera is untracked, so every frame is embedded and cached whole.
    tracks = TRACKS.model_copy(update={"untracked_cameras": ["first"]})
    worker = make_worker(client, engine, settings, tracks=tracks)
    publish_clip(client, "g1", "first", walk, FPS, START_MS)
    drain(worker, client, "g1", len(walk))
    publish_clip(client, "g1", "again", walk, FPS, START_MS + 60_000)
    drain(worker, client, "g1", 2 * len(walk))

    again = [r for r in results(client) if r.camera == "again"]
    assert again and all(r.cached for r in again)  # served from the cache, every frame
    (left,) = (e for e in events(client) if e.type == "left" and e.camera == "again")
    assert left.identity == "obama"
    assert left.snapshot == keys.snapshot("g1", left.track)
    snapshot = client.get(left.snapshot)
    assert snapshot is not None and snapshot.startswith(b"\xff\xd8")  # a JPEG


def test_a_faster_camera_checks_a_settled_name_as_often_a_second(
    engine: FaceEngine, client: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    """Obama for three seconds at 10 and at 25 fps, every frame detected (each a new image,
    not a cache hit): a back-off step is frame time as well as a frame, so 25 fps costs no
    more embeddings than 10 fps (with steps of one frame it cost 5 against 4; now 4), and
    every frame after the first two is named."""
    detected = TRACKS.model_copy(update={"skip_still": False})
    enrol(engine, client, ["obama"])
    embedded = {}
    for fps in (10.0, 25.0):
        client.delete(keys.results("g1"))
        frames = round(3 * fps)
        standing = Walker(OBAMA, 0, frames, (0.45, 0.55), 0.45, (90.0, 90.0))  # a slow sway
        jpegs = record(render(engine, [standing], frames), tmp_path / f"{fps}.mp4", fps)
        camera = f"cam{int(fps)}"
        publish_clip(client, "g1", camera, jpegs, fps, START_MS)
        before = engine.embedder.faces
        drain(make_worker(client, engine, settings, tracks=detected), client, "g1", frames)
        embedded[fps] = engine.embedder.faces - before
        served = sorted(results(client), key=lambda r: r.seq)
        assert [r.seq for r in served] == list(range(frames))
        assert all(r.faces and r.faces[0].identity == "obama" for r in served[2:])
    assert 0 < embedded[25.0] <= embedded[10.0], embedded


def test_a_stored_track_state_reads_back_as_it_was_written() -> None:
    """The state JSON is what the pydantic models of earlier workers wrote, field for field,
    plus `embed_ts` (a state written before it reads as 0: the back-off counts frames alone
    until the next embedding), and an unreadable one starts afresh."""
    vector = np.linspace(-1.0, 1.0, 128, dtype="<f4")
    encoded = base64.b64encode(vector.tobytes()).decode()
    written = (
        '{"tracks":[{"id":"t0123456789abcdef","box":[36.5,106.9,54.1,73.1],'
        f'"velocity":[1.5,-0.25],"embedding":"{encoded}","first_ts":1800000100000,'
        '"last_ts":1800000100400,"frames":5,"misses":1,"votes":{"obama":{"count":2,'
        '"best":0.8661},"":{"count":1,"best":null}},"settled":true,"identity":"obama",'
        '"similarity":0.8661,"gap":4,"since_embed":2,"embed_ts":1800000100320,"embed_area":3954.71,"quality":12.5,'
        '"snapshot":"fs:{g1}:snapshot:t0123456789abcdef","announced":true,'
        '"landmarks":[[57.2,136.9],[79.3,136.0],[73.0,151.0],[61.2,160.3],[80.4,161.2]],'
        '"score":0.9328},{"id":"t1","box":[1.0,2.0,3.0,4.0],"velocity":[0.0,0.0],'
        '"embedding":"","first_ts":1,"last_ts":1,"frames":1,"misses":0,"votes":{},'
        '"settled":false,"identity":null,"similarity":null,"gap":1,"since_embed":0,'
        '"embed_ts":0,"embed_area":0.0,"quality":0.0,"snapshot":null,"announced":false,"landmarks":[],'
        '"score":0.0}],"reference":"abc","since_scan":3}'
    ).encode()
    state = parse_tracks(written)
    first, second = state.tracks
    assert first.embedding is not None and np.array_equal(first.embedding, vector)
    assert first.votes["obama"].count == 2 and second.embedding is None
    assert state.dumps() == written
    older = parse_tracks(written.replace(b'"embed_ts":1800000100320,', b""))
    assert older.tracks[0].embed_ts == 0 and older.tracks[0].gap == 4
    broken = written.replace(encoded.encode(), b"not base64!")
    assert parse_tracks(broken).tracks == []
    other_model = written.replace(encoded.encode(), base64.b64encode(vector[:64].tobytes()))
    assert parse_tracks(other_model).tracks == []  # another model's embedding: afresh
    assert parse_tracks(written.replace(b'"frames":5,', b'"frames":5,"extra":1,')).tracks == []
    assert parse_tracks(written.replace(b"[1.0,2.0,3.0,4.0]", b"[1.0,2.0,3.0]")).tracks == []


def test_the_back_off_counts_frames_and_frame_time() -> None:
    """A step is a frame and `reembed_step_ms` less half a step; a gap of 1, a clock that
    stepped back or no time known leave the frames alone to decide."""
    settings = TrackSettings()  # reembed_step_ms 100
    box = (10.0, 10.0, 50.0, 60.0)
    unit = np.ones(128, dtype="<f4") / np.sqrt(128.0)

    def embeds(ts: int, gap: int = 2, since: int = 1, embed_ts: int = 1000) -> bool:
        track = Track(
            id="t", box=box, first_ts=0, last_ts=1000, settled=True, identity="obama",
            embedding=unit, gap=gap, since_embed=since, embed_ts=embed_ts, embed_area=3000.0,
        )  # fmt: skip
        (need,) = plan_embeddings(CameraTracks(tracks=[track]), [box], settings, ts)
        return need != "spare"

    assert not embeds(1080)  # 25 fps, two frames on: 80 ms of a 150 ms gap
    assert embeds(1160)
    assert embeds(1196)  # 10 fps with jitter: two frames 196 ms apart are two steps
    assert not embeds(1400, since=0)  # one frame on: the frames are not there yet
    assert embeds(1010, gap=1, since=0)  # an embedding disagreed: the next frame
    assert embeds(900)  # the clock stepped back: frames decide
    assert embeds(0) and embeds(1080, embed_ts=0)  # no time known: frames decide


def test_a_flicker_beside_a_settled_track_does_not_make_its_face_contested() -> None:
    """A detection seen once and then missed (no visit) lingers for `lost_after_frames`; it
    must not make the settled track's face look claimed by two tracks, embedded every frame.
    A track that made a visit and is missing (someone occluded) still does."""
    settings = TrackSettings()
    box = (100.0, 100.0, 50.0, 60.0)
    unit = np.ones(128, dtype="<f4") / np.sqrt(128.0)
    settled = Track(
        id="named", box=box, first_ts=0, last_ts=1000, frames=30, settled=True, identity="obama",
        embedding=unit, gap=8, since_embed=1, embed_ts=900, embed_area=3000.0, announced=True,
    )  # fmt: skip
    beside = (110.0, 115.0, 45.0, 50.0)  # overlapping the face: IoU about 0.5

    def other(frames: int, announced: bool) -> Track:
        return Track(
            id="other", box=beside, first_ts=0, last_ts=900, frames=frames, misses=2,
            announced=announced,
        )  # fmt: skip

    flicker = CameraTracks(tracks=[settled, other(1, False)])
    occluded = CameraTracks(tracks=[settled, other(20, True)])
    assert plan_embeddings(flicker, [box], settings, 1000) == ["spare"]
    assert plan_embeddings(occluded, [box], settings, 1000) == ["link"]  # two tracks overlap


def test_a_face_only_its_embedding_can_link_is_embedded_however_poor_its_view() -> None:
    """A face the gate refuses is not embedded when its track follows it by overlap alone.
    One found away from every track, while a track it may belong to holds an embedding
    (someone lost for a few frames, found again elsewhere: relinked by similarity), or one
    two tracks overlap, needs its embedding to join the right track."""
    settings = TrackSettings()
    unit = np.ones(128, dtype="<f4") / np.sqrt(128.0)
    here, there = (100.0, 100.0, 50.0, 60.0), (400.0, 120.0, 50.0, 60.0)

    def track(name: str, box: tuple[float, float, float, float], embedding: bool) -> Track:
        return Track(
            id=name, box=box, first_ts=0, last_ts=900, misses=3,
            embedding=unit if embedding else None,
        )  # fmt: skip

    lost = CameraTracks(tracks=[track("lost", here, embedding=True)])
    assert plan_embeddings(lost, [here], settings) == ["embed"]  # found where it was heading
    assert plan_embeddings(lost, [there], settings) == ["link"]  # only similarity relinks it
    never_embedded = CameraTracks(tracks=[track("small", here, embedding=False)])
    assert plan_embeddings(never_embedded, [there], settings) == ["embed"]  # a new track
    assert plan_embeddings(CameraTracks(), [here], settings) == ["embed"]
    beside = (110.0, 115.0, 45.0, 50.0)  # overlapping `here`: IoU about 0.5
    two = CameraTracks(tracks=[track("a", here, True), track("b", beside, True)])
    assert plan_embeddings(two, [here], settings) == ["link"]
    crowded = CameraTracks(tracks=[track("a", here, True)])
    assert plan_embeddings(crowded, [here, beside], settings) == ["link", "link"]
