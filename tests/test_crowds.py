"""Crowds: a large frame's small faces are found by the tiled search, each once; max_faces
keeps the best views and counts the rest; no stranger in a crowd is named."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import redis
from pydantic import ValidationError

from facestream.config import Settings
from facestream.ingest import EncodedFrame, FramePublisher
from facestream.recognizer import FaceEngine, Matcher, embed_photos
from facestream.recognizer.quality import gate, rank
from facestream.schemas import Face, GalleryError, Result, keys

from .crowds import Crowd, Head, count, crowd, heads, mosaic, read_image
from .helpers import drain, make_worker
from .strangers import CLIPS, people, stranger_identities


@pytest.fixture(scope="module")
def cut(engine: FaceEngine) -> list[Head]:
    return heads(engine)


@pytest.fixture(scope="module")
def seams(engine: FaceEngine) -> tuple[list[int], list[int]]:
    """Where the tiles of a 1920×1080 frame have inner edges (x lines, y lines)."""
    tiles = engine.detector.tiles_for(1080, 1920)
    xs = sorted({e for x, _, w, _ in tiles for e in (x, x + w)} - {0, 1920})
    ys = sorted({e for _, y, _, h in tiles for e in (y, y + h)} - {0, 1080})
    return xs, ys


@pytest.fixture(scope="module")
def scene(cut: list[Head], seams: tuple[list[int], list[int]]) -> Crowd:
    """60 real faces 24–48 px high on a 1920×1080 canvas, as a 1080p camera sees a crowd;
    a face in a cell that a tile's inner edge crosses is centred on that edge."""
    return crowd(cut, seams=seams)


def test_tiling_finds_the_small_faces_the_letterbox_misses_each_once(
    engine: FaceEngine, scene: Crowd
) -> None:
    letterboxed = engine.detector.detect(scene.image, tiled=False)
    tiled = engine.detector.detect(scene.image)
    found, twice, false = count(letterboxed, scene.faces)
    assert found <= 0.6 * len(scene.faces)  # at 640 a 30-px face is 10 px: missed
    found, twice, false = count(tiled, scene.faces)
    assert found >= 0.9 * len(scene.faces) and twice == 0 and false == 0
    # Faces that a tile's inner edge cuts are found too (whole, in the neighbouring tile).
    height, width = scene.image.shape[:2]
    tiles = engine.detector.tiles_for(height, width)
    cut = [f for f in scene.faces if any(_cut(f, tile, width, height) for tile in tiles)]
    assert len(cut) >= 15
    assert count(tiled, cut)[0] >= 0.9 * len(cut)


def test_large_faces_cut_by_a_tile_edge_give_no_partial_detections(
    engine: FaceEngine, cut: list[Head], seams: tuple[list[int], list[int]]
) -> None:
    """Faces 80–160 px high on the seams: a tile sees only part of each (without the edge rule
    three such parts were false detections); the letterbox or the neighbouring tile finds each
    whole, once."""
    large = crowd(cut, count=10, face_px=(80.0, 160.0), seams=seams)
    assert count(engine.detector.detect(large.image), large.faces) == (10, 0, 0)


def test_only_large_frames_asked_for_it_are_tiled(engine: FaceEngine, scene: Crowd) -> None:
    detector = engine.detector
    small = scene.resized(640).image
    for image, tiled, runs in (
        (small, True, 1),  # a frame about the detector's size: never tiled
        (scene.image, False, 1),  # a caller that asks for no tiles (a crop around a track)
        (scene.image, True, 1 + len(detector.tiles_for(1080, 1920))),
    ):
        before = detector.runs
        detector.detect(image, tiled=tiled)
        assert detector.runs - before == runs
    assert len(detector.tiles_for(1080, 1920)) > 1 and not detector.tiles_for(360, 640)
    # A video camera's frame gets the tiled search one in `tile_every`; a photo always.
    every = Settings().models.tile_every
    assert [engine.scans(seq, video=True) for seq in range(every + 1)] == (
        [True] + [False] * (every - 1) + [True]
    )
    assert engine.scans(3, video=False)


def test_a_worker_tiles_photos_and_one_video_frame_in_tile_every(
    engine: FaceEngine, client: redis.Redis, settings: Settings, scene: Crowd
) -> None:
    """Through a worker: a video camera's large frames are tiled when `seq` is a multiple of
    `models.tile_every`, a photo camera's always; the result counts the faces."""
    worker = make_worker(client, engine, settings)
    tiled_runs = 1 + len(engine.detector.tiles_for(1080, 1920))
    cases = (("corridor", 0, tiled_runs), ("corridor", 1, 1), ("request", 1, tiled_runs))
    for index, (camera, seq, runs) in enumerate(cases):
        image = np.ascontiguousarray(scene.image[:, ::-1]) if index % 2 else scene.image
        jpeg = cv2.imencode(".jpg", np.roll(image, index, axis=0))[1].tobytes()  # no cache hit
        publisher = FramePublisher(client, "g1", camera, 1000, settings.limits, first_seq=seq)
        before = engine.detector.runs
        publisher.publish(EncodedFrame(jpeg, 1920, 1080))
        drain(worker, client, "g1", index + 1)
        assert engine.detector.runs - before == runs, (camera, seq)
    results = [Result.from_fields(f) for _, f in client.xrange(keys.results("g1"))]
    found = [len(r.faces) + r.faces_dropped for r in results]
    assert found[1] < found[0] and found[2] >= found[0]


def test_enrolment_photos_are_not_tiled(engine: FaceEngine, scene: Crowd, tmp_path: Path) -> None:
    photo = tmp_path / "crowd.jpg"
    cv2.imwrite(str(photo), scene.image)
    letterboxed = len(engine.detector.detect(read_image(photo), tiled=False))
    assert len(engine.detector.detect(read_image(photo))) > letterboxed
    with pytest.raises(GalleryError, match=rf"^{photo}: {letterboxed} faces found; crop it"):
        embed_photos(engine, "crowd", [photo])


def test_max_faces_keeps_the_best_views_and_counts_the_rest(
    engine: FaceEngine, settings: Settings, cut: list[Head]
) -> None:
    image = crowd(cut, count=50, face_px=(20.0, 60.0), seed=1).image
    matcher = Matcher.from_settings([], settings.match)
    (everything,) = engine.recognise([image], matcher)
    passing = [f for f in everything.faces if _passes(f, settings)]
    limit = len(passing) - 2
    assert len(passing) >= 10 and len(everything.faces) - len(passing) >= 10
    (kept,) = engine.recognise([image], matcher, max_faces=limit)
    assert kept.dropped == len(everything.faces) - limit and len(kept.faces) == limit
    # Faces the gate refuses are the first to go: every kept face passes it.
    assert all(_passes(f, settings) for f in kept.faces)
    ranks = {
        f.box: rank(np.array(f.landmarks, np.float32), f.score, settings.match.quality)
        for f in everything.faces
    }
    left_out = [f for f in everything.faces if f.box not in {k.box for k in kept.faces}]
    assert min(ranks[f.box] for f in kept.faces) >= max(ranks[f.box] for f in left_out)


def test_a_turned_face_ranks_below_a_smaller_frontal_one(settings: Settings) -> None:
    quality = settings.match.quality
    frontal = np.array([[100, 100], [118, 100], [109, 110], [102, 120], [116, 120]], np.float32)
    turned = np.array([[100, 100], [140, 100], [152, 120], [104, 140], [136, 140]], np.float32)
    assert rank(turned, 0.95, quality) < rank(frontal, 0.9, quality)
    assert rank(turned, 0.95, quality)[0] is False and rank(frontal, 0.9, quality)[0] is True


def test_no_stranger_in_a_crowd_is_named_with_strangers_enrolled(
    engine: FaceEngine, settings: Settings
) -> None:
    gained = 0
    known, strangers = people(engine), stranger_identities(engine, settings)
    for clip in CLIPS:
        image = mosaic([read_image(p) for p in sorted(clip.glob("*.jpg"))])
        others = [i for i in strangers if not i.name.startswith(clip.name[:20])]
        gallery = known + others
        assert len(gallery) > 15
        (seen,) = engine.recognise([image], Matcher.from_settings(gallery, settings.match))
        assert [f.identity for f in seen.faces] == [None] * len(seen.faces), clip.name
        gained += len(seen.faces) - len(engine.detector.detect(image, tiled=False))
    assert gained >= 30  # the tiled search found faces the letterbox did not


def test_tiles_that_would_not_advance_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"models\.tile_overlap must be under half of"):
        Settings(models={"tile_overlap": 320})
    assert Settings(models={"detect_size": 256}).models.tile_overlap_px == 77


def _passes(face: Face, settings: Settings) -> bool:
    return face.quality is not None and gate(face.quality, settings.match.quality) is None


def _cut(face: tuple[float, ...], tile: tuple[int, int, int, int], width: int, height: int) -> bool:
    """Whether an inner edge of the tile crosses the face."""
    x, y, w, h = face
    left, top, side_w, side_h = tile
    across_x = [e for e in (left, left + side_w) if 0 < e < width and x < e < x + w]
    across_y = [e for e in (top, top + side_h) if 0 < e < height and y < e < y + h]
    inside_x = x + w > left and x < left + side_w
    inside_y = y + h > top and y < top + side_h
    return bool((across_x and inside_y) or (across_y and inside_x))
