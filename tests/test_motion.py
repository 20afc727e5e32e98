"""Detection only where something moved: still frames, faces entering, windows, reduced decode.

Real models, a real redis-server and real video (synthetic walks of the bundled photos, encoded
with OpenCV, and a cut of a CC BY Intel sample video).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import redis
from numpy.typing import NDArray

from facestream.config import Settings
from facestream.ingest import EncodedFrame, FramePublisher, iter_frames
from facestream.recognizer import FaceEngine, Matcher, TrackSettings
from facestream.recognizer.motion import THUMB_WIDTH, Thumbnail, judge
from facestream.recognizer.regions import detect_regions, scan_scale
from facestream.recognizer.tracks import iou
from facestream.recognizer.views import FrameView
from facestream.schemas import Event, FrameLimits, Result, jpeg_size, keys

from .helpers import FACES, drain, enrol, make_worker
from .walks import SIZE, Walker, publish_clip, record, render

FPS = 5.0
START_MS = 1_800_000_000_000
TRACKS = TrackSettings(lost_after_frames=5)
OBAMA = FACES / "test" / "obama1.jpg"
VIDEO = Path(__file__).parent / "data" / "video" / "one-by-one-cut.mp4"


def results(client: redis.Redis, group: str = "g1") -> list[Result]:
    found = [Result.from_fields(fields) for _, fields in client.xrange(keys.results(group))]
    return sorted(found, key=lambda r: r.seq)


def events(client: redis.Redis, group: str = "g1") -> list[Event]:
    return [Event.from_fields(fields) for _, fields in client.xrange(keys.events(group))]


def jpegs(frames: list[NDArray[np.uint8]]) -> list[bytes]:
    """Each frame as a JPEG that differs in bytes (no cache hit) but not to the eye: ±1 grey
    level of fixed noise per frame, as a still camera's sensor gives."""
    out = []
    for index, frame in enumerate(frames):
        noise = np.random.default_rng(index).integers(-1, 2, frame.shape)
        noisy = np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        out.append(bytes(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]))
    return out


@pytest.fixture(scope="module")
def standing(engine: FaceEngine) -> list[bytes]:
    """Obama standing still for 30 frames (a counter, a desk)."""
    return jpegs(render(engine, [Walker(OBAMA, 0, 30, (0.5, 0.5), 0.45, (90.0, 90.0))], 30))


def serve(
    client: redis.Redis,
    engine: FaceEngine,
    settings: Settings,
    frames: list[bytes],
    tracks: TrackSettings | None = TRACKS,
) -> tuple[list[Result], int]:
    """The clip through one worker: its results in order and the detector's full-frame runs."""
    client.flushall()
    enrol(engine, client, ["obama"])
    publisher = FramePublisher(client, "g1", "cam", 10_000, FrameLimits())
    for index, jpeg in enumerate(frames):
        width, height = jpeg_size(jpeg)
        publisher.publish(EncodedFrame(jpeg, width, height), START_MS + round(index * 1000 / FPS))
    before = engine.detector.runs
    drain(make_worker(client, engine, settings, tracks=tracks), client, "g1", len(frames))
    return results(client), engine.detector.runs - before


def test_still_frames_skip_detection_and_keep_their_tracks_names(
    engine: FaceEngine, client: redis.Redis, settings: Settings, standing: list[bytes]
) -> None:
    per_frame, _ = serve(client, engine, settings, standing, None)
    served, runs = serve(client, engine, settings, standing)
    assert [r.seq for r in served] == list(range(len(standing)))  # one result per frame
    # The first frame and the periodic scans (every scan_every frames) only.
    assert runs <= len(standing) // TRACKS.scan_every + 1
    assert all(len(r.faces) == 1 for r in served)
    # Every frame named right per frame is named right with its detection skipped, and the
    # skipped ones say their name came from their track.
    for alone, tracked in zip(per_frame, served, strict=True):
        if alone.faces[0].identity == "obama":
            assert tracked.faces[0].identity == "obama"
    assert any(r.faces[0].source == "track" for r in served)
    assert not any(r.cached for r in served)  # nothing detected twice, nothing cached undetected


def test_a_face_entering_an_idle_scene_is_found_on_its_first_frame(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    """Twelve frames of empty corridor, then Obama walks in: motion, not the next scan."""
    clip = jpegs(render(engine, [Walker(OBAMA, 12, 30, (0.3, 0.6), 0.45)], 30))
    per_frame, _ = serve(client, engine, settings, clip, None)
    served, runs = serve(client, engine, settings, clip)
    first = next(r.seq for r in per_frame if r.faces)
    assert next(r.seq for r in served if r.faces) == first
    assert runs < len(clip)  # the idle frames were not detected
    appeared = [e for e in events(client) if e.type == "appeared"]
    assert len(appeared) == 1


def test_window_detection_agrees_with_full_frame_detection_on_the_walks(
    engine: FaceEngine, tmp_path: Path
) -> None:
    # Two people apart (where faces overlap, a window holds part of the other face and the
    # network's answer for it can differ: the benchmark counts what that costs).
    walkers = [
        Walker(OBAMA, 0, 20, (0.1, 0.4)),
        Walker(FACES / "test" / "johnsnow_test1.jpg", 0, 20, (0.9, 0.6), 0.5),
    ]
    frames = [frame.jpeg for frame in iter_frames(_mp4(engine, walkers, tmp_path))]
    previous: list[tuple[float, float, float, float]] = []
    compared = 0
    for jpeg in frames:
        view = FrameView.reduced(jpeg, SIZE, engine.detector.input_size)
        full = engine.detector.detect(view.full())
        if previous:  # windows around where the faces were a frame ago, as tracks predict
            windows = [_grown(box) for box in previous]
            scale = scan_scale(SIZE, engine.detector.input_size)
            found = detect_regions(engine.window_detector, view, windows, scale)
            assert len(found) == len(full)
            for detection in full:
                best = max(found, key=lambda d: _iou(d.box, detection.box))
                assert _iou(best.box, detection.box) > 0.8
                assert abs(best.score - detection.score) < 0.05
                compared += 1
        previous = [d.box for d in full]
    assert compared >= 30


def test_a_small_face_in_a_large_frame_is_found_and_followed_between_its_tiled_frames(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    """At 1920×1080 a face 36–40 px high is 12–13 px in the letterbox, which misses most such
    faces: per frame it is found on the frames due for tiles (one in `tile_every`). Tracked,
    the small patch of motion where it enters and then its window are searched at the
    frame's own resolution, as the tiles would search them."""
    enters = 3  # after the first tiled frame: the empty hall is the reference
    # A far walker: a quarter of its face's width a frame (a window spans 0.6 of it each side).
    walker = Walker(OBAMA, enters, 24, (0.3, 0.38), 0.5, (36.0, 40.0))
    clip = jpegs(render(engine, [walker], 24, (1920, 1080)))
    per_frame, _ = serve(client, engine, settings, clip, None)
    tracked, runs = serve(client, engine, settings, clip)
    assert [r.seq for r in tracked] == list(range(len(clip)))  # one result per frame
    found = [bool(r.faces) for r in per_frame]
    followed = [bool(r.faces) for r in tracked]
    assert sum(found) <= len(clip) // 2  # the tiled frames and a few more
    assert followed == [False] * enters + [True] * (len(clip) - enters), followed
    # Between the tiled frames, windows and the periodic scan; no full scan for a lost face.
    tiled = len(range(0, len(clip), engine.tile_every))
    tiles = len(engine.detector.tiles_for(1080, 1920))
    assert runs <= tiled * (1 + tiles) + len(clip) // TRACKS.scan_every
    assert all(face.box[3] < 45 for r in tracked for face in r.faces)


def test_a_window_at_full_resolution_finds_a_face_too_small_for_the_scans_scale(
    engine: FaceEngine,
) -> None:
    """A 30 px face in a 1080p frame is 10 px at the letterbox's scale: a window there finds
    nothing, the same window at the frame's own resolution finds it (a tracked small face, a
    small patch of motion where someone enters)."""
    size = (1920, 1080)
    walker = Walker(OBAMA, 0, 1, (0.4, 0.4), 0.5, (30.0, 30.0))
    jpeg = jpegs(render(engine, [walker], 1, size))[0]
    view = FrameView.reduced(jpeg, size, engine.detector.input_size)
    x, y, h = walker.at(0, size) or (0.0, 0.0, 0.0)
    around = (x - 2 * h, y - 2 * h, 4 * h, 4 * h)  # a head-and-shoulders patch of motion
    scale = scan_scale(size, engine.detector.input_size)
    assert detect_regions(engine.window_detector, view, [around], scale) == []
    found = detect_regions(engine.window_detector, view, [around], scale, [True])
    assert len(found) == 1
    fx, fy, fw, fh = found[0].box
    assert abs(fx + fw / 2 - x) < h / 2 and abs(fy + fh / 2 - y) < h / 2 and fh < 45


def test_a_small_face_between_tiled_frames_is_measured_at_full_resolution(
    engine: FaceEngine,
) -> None:
    """A 42 px face in a 1080p frame is 14 px in the letterbox, whose landmarks scaled back up
    put the eyes further apart than they are: a frame not due for tiles gives the face as the
    frame's own resolution measures it (its eyes, which the quality gate's min_iod weighs)."""
    size = (1920, 1080)
    walker = Walker(OBAMA, 0, 1, (0.4, 0.4), 0.5, (42.0, 42.0))
    image = render(engine, [walker], 1, size)[0]
    view = FrameView.whole(image)

    def iod(landmarks: NDArray[np.float32] | tuple[tuple[float, float], ...]) -> float:
        marks = np.asarray(landmarks, np.float64)
        return float(np.hypot(*(marks[1] - marks[0])))

    (letterboxed,) = engine.detector.detect(image, tiled=False)
    (native,) = engine.window_detector.detect(image)  # the whole frame at its own size
    assert iod(letterboxed.landmarks) > 1.08 * iod(native.landmarks)  # what is corrected
    matcher = Matcher.from_settings([], Settings().match)
    (between,) = engine.recognise([view], matcher, tiled=[False])[0].faces
    assert abs(iod(between.landmarks) - iod(native.landmarks)) < 0.04 * iod(native.landmarks)
    assert iou(between.box, native.box) > 0.8


def test_patches_of_motion_whose_windows_overlap_are_searched_as_one_window() -> None:
    # A 640x360 frame's 80x45 thumbnail: two specks three cells apart (their grown windows
    # overlap: one window holding both), and one far off (a window of its own).
    frame_size = (640, 360)
    still = np.full((45, THUMB_WIDTH), 100, np.uint8)
    moved = still.copy()
    moved[10, 10] = moved[10, 13] = moved[30, 60] = 200
    judged = judge(Thumbnail(still, frame_size), Thumbnail(moved, frame_size), [], 12, 0.4)
    assert judged.scene == "windows"
    assert len(judged.moving) == 2
    near = min(judged.moving, key=lambda box: box[0])
    left, top, width, height = (value / 8 for value in near)  # back to thumbnail cells
    assert left <= 10 and left + width >= 14 and top <= 10 and top + height >= 11


def test_two_workers_on_one_camera_give_one_result_per_frame(
    engine: FaceEngine, client: redis.Redis, settings: Settings, standing: list[bytes]
) -> None:
    clip = standing + jpegs(render(engine, [Walker(OBAMA, 0, 20, (0.2, 0.8), 0.45)], 20))
    enrol(engine, client, ["obama"])
    publish_clip(client, "g1", "cam", clip, FPS, START_MS)
    small = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"batch_size": 3})}
    )
    workers = [make_worker(client, engine, small, f"w{i}", tracks=TRACKS) for i in range(2)]
    turn = 0
    while client.xlen(keys.results("g1")) < len(clip):
        workers[turn % 2].step()  # they alternate on the camera's frames
        turn += 1
        assert turn < 400, "the two workers stopped making progress"
    served = results(client)
    assert [r.seq for r in served] == list(range(len(clip)))
    assert len({r.frame_id for r in served}) == len(clip)
    assert all(r.faces and r.faces[0].identity == "obama" for r in served[2 : len(standing)])


def test_cache_hits_of_a_tracked_camera_keep_their_names(
    engine: FaceEngine, client: redis.Redis, settings: Settings, standing: list[bytes]
) -> None:
    enrol(engine, client, ["obama"])
    tracks = TRACKS.model_copy(update={"untracked_cameras": ["first"]})
    worker = make_worker(client, engine, settings, tracks=tracks)
    publish_clip(client, "g1", "first", standing, FPS, START_MS)  # cached whole, untracked
    drain(worker, client, "g1", len(standing))
    publish_clip(client, "g1", "again", standing, FPS, START_MS + 60_000)
    drain(worker, client, "g1", 2 * len(standing))
    again = [r for r in results(client) if r.camera == "again"]
    assert len(again) == len(standing) and all(r.cached for r in again)
    assert all(r.faces[0].identity == "obama" and r.faces[0].track for r in again[1:])


def test_an_idle_stretch_of_real_video_costs_few_detections(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    """A real room (CC BY Intel sample): where it stands still, frames are not detected, and
    every frame the per-frame path finds a face in has one."""
    clip = [frame.jpeg for frame in iter_frames(VIDEO)][:100]
    today = TRACKS.model_copy(update={"skip_still": False})
    _, alone = serve(client, engine, settings, clip, today)
    before = [e for e in events(client) if e.type == "appeared"]
    served, runs = serve(client, engine, settings, clip)
    after = [e for e in events(client) if e.type == "appeared"]
    assert [r.seq for r in served] == list(range(len(clip)))
    assert runs < alone / 2
    # Someone passes; the visit appears no later than with every frame detected, give or take
    # a frame (their face is marginal: scores near the detector's cut-off flicker).
    assert before and after
    frame_ms = 1000 / FPS
    assert after[0].ts <= before[0].ts + frame_ms
    assert all(face.identity is None for r in served for face in r.faces)  # nobody enrolled


def _mp4(engine: FaceEngine, walkers: list[Walker], folder: Path) -> Path:
    record(render(engine, walkers, 20), folder / "walk.mp4", FPS)
    return folder / "walk.mp4"


def _grown(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x, y, w, h = box
    return (x - 0.6 * w, y - 0.6 * h, 2.2 * w, 2.2 * h)


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    return iou(a, b)


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an Exif segment (APP1) saying how it is turned, as phones write it."""
    tiff = b"MM\x00*" + (8).to_bytes(4, "big") + (1).to_bytes(2, "big")
    tiff += (0x0112).to_bytes(2, "big") + (3).to_bytes(2, "big") + (1).to_bytes(4, "big")
    tiff += orientation.to_bytes(2, "big") + b"\x00\x00" + (0).to_bytes(4, "big")
    body = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


def test_a_turned_photo_with_exif_is_read_upright_on_a_tracked_camera(
    client: redis.Redis, engine: FaceEngine, settings: Settings
) -> None:
    """libjpeg-turbo ignores Exif orientation, OpenCV applies it: a tracked camera's frame
    that carries Exif is decoded as an untracked one's is, and gets the same faces."""
    photo = cv2.imread(str(OBAMA))
    turned = [cv2.rotate(frame, cv2.ROTATE_90_COUNTERCLOCKWISE) for frame in [photo] * 3]
    frames = [_with_exif_orientation(jpeg, 6) for jpeg in jpegs(turned)]
    tracked, _ = serve(client, engine, settings, frames)
    untracked, _ = serve(client, engine, settings, frames, tracks=None)
    assert [r.seq for r in tracked] == [0, 1, 2]
    assert all(r.faces and r.faces[0].identity == "obama" for r in untracked)
    for mine, theirs in zip(tracked, untracked, strict=True):
        assert [f.identity for f in mine.faces] == [f.identity for f in theirs.faces]
        for face, other in zip(mine.faces, theirs.faces, strict=True):
            assert iou(face.box, other.box) > 0.9
