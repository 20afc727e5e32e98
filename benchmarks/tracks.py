"""Per-frame recognition, today's tracks and tracks with motion skipping, on the same video.

Prints a table and writes benchmarks/results/tracks.json. Three paths per clip, in one run:
"frame" (tracks off), "tracks" (tracks on, every frame decoded in full and detected) and "new"
(tracks on with the defaults: a frame where nothing moved since the last one detected is not
decoded nor detected, and detection decodes the JPEG at reduced scale).

Synthetic clips are motion of real photos (tests/walks.py), encoded with OpenCV (mp4v) and
decoded back: "walks", six walks across a drawn corridor over 28 seconds (one person not
enrolled; people grow, cross each other, are blurred for stretches), at 10 fps and at 5 fps
(every other frame); "standing", one person swaying at a counter for a minute at 5 fps;
"cuts", the 10 fps walks cut every 40 frames between two views (the picture mirrored), at
640×360; "walks1080", the 10 fps walks scaled to 1920×1080; "small1080", the same walks drawn
at 1920×1080 with faces 42–72 px high (14–24 px in the letterbox, which misses some of them:
a crowd's faces, found by the tiled search of one frame in `models.tile_every`). Real clips:
every video in `--videos` (default tests/data/video, CC BY 4.0 Intel sample videos); nobody in
them is enrolled, so every name given there is wrong, and what counts is finding the faces the
per-frame path finds. Each clip goes through one worker (one onnxruntime thread, so frames/s
is per core) against an embedded redis-server (no AOF):

- CPU ms/f, x frame: worker CPU per frame (the process's CPU time while it served the clip;
                     the redis-server's is not counted), and the per-frame path's ÷ this one's.
- SFace/f:           faces embedded per frame (the embedder's own count).
- det/f, win/f:      full-frame detector runs per frame; window runs per frame (each a window
                     around a tracked face or a patch of motion, a fraction of a frame's cost).
- faces/f:           faces per frame in the results.
- right / wrong:     (frame, name) pairs named right / faces given a wrong name (the truth:
                     which walker's face is nearest to the detection); the stranger's faces
                     must stay unnamed.
- lost:              (frame, name) pairs named right per frame and not by this path.
- late:              per visit (a run of frames where the per-frame path names someone, or on
                     real clips finds a face), frames until this path does: the worst one.
- id p50 ms:         per track, video time from its first frame to its `identified` event
                     (p50 over the clip's tracks).
- cache hits:        worker CPU per cache hit, tracked camera ÷ untracked (one worker, and two
                     taking turns on the camera's frames): the walk cached by an untracked
                     camera, then served three times more.

Usage: python benchmarks/tracks.py [--videos DIR] [--frames N] [--clips NAME,...] [--hits-only]
                                  [--hit-repeats N] [--out FILE.json]

`--clips` measures only the clips named (e.g. `walks1080,small1080`; a real video by its file
stem), written to benchmarks/results/tracks_clips.json by default; `--hit-repeats 0` skips the
cache hits.

`--hits-only` measures the cache hits alone (no clip table): the walks, rendered and encoded as
above, cached and served again; written to benchmarks/results/tracks_hits.json by default.
Each hit setup runs `--hit-repeats` times (5), interleaved, and its median is reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import redis
from numpy.typing import NDArray

# The clip builder is shared with the tests (it reads only the repository's bundled photos).
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facestream.config import Settings, load_settings  # noqa: E402
from facestream.ingest import EncodedFrame, FramePublisher, iter_frames  # noqa: E402
from facestream.recognizer import FaceEngine, Gallery, Worker, embed_photos  # noqa: E402
from facestream.recognizer.settings import TrackSettings  # noqa: E402
from facestream.schemas import Event, FrameLimits, GalleryExport, Result, keys  # noqa: E402
from facestream.schemas.frames import jpeg_size  # noqa: E402
from facestream.server import EmbeddedRedis  # noqa: E402
from facestream.workers import freeze_start_up_heap  # noqa: E402
from tests.walks import SIZE, Walker, record, render  # noqa: E402

GROUP = "bench"
FACES = REPO / "tests" / "data" / "faces"
VIDEOS = REPO / "tests" / "data" / "video"
CUT_EVERY = 40  # frames of the "cuts" clip between two views
ENROLLED = ("obama", "biden", "kit_harington", "rose_leslie")  # not alex: the stranger
FRAMES_AT_10 = 280  # the last walk ends at 255: 2.5 s of empty corridor end its track
Walkers = tuple[tuple[Walker, str | None], ...]
WALKERS: Walkers = (
    (Walker(FACES / "test/obama1.jpg", 0, 60, blur=(25, 33)), "obama"),
    (Walker(FACES / "test/johnsnow_test1.jpg", 40, 100, (0.9, 0.1), 0.55), "kit_harington"),
    (Walker(FACES / "test/alex_lacamoire1.jpg", 90, 150, (0.1, 0.9), 0.45), None),
    (Walker(FACES / "extra/obama3.jpg", 140, 200, (0.85, 0.2), 0.4, (60.0, 120.0)), "obama"),
    (
        Walker(FACES / "test/johnsnow_test1.jpg", 185, 250, (0.1, 0.8), 0.35, blur=(200, 210)),
        "kit_harington",
    ),
    (Walker(FACES / "test/alex_lacamoire1.jpg", 200, 255, (0.9, 0.3), 0.55), None),
)


# One person standing at a counter for 60 s at 5 fps, swaying a little: a long, stable track.
STANDING = ((Walker(FACES / "extra/obama3.jpg", 0, 300, (0.45, 0.55), 0.4, (90.0, 96.0)), "obama"),)
STANDING_FRAMES = 310
# The walks drawn at 1920×1080 with faces 42–72 px high: 0.6 × their pixels at 640×360, a fifth
# of the walks scaled to 1080p.
FULL_HD = (1920, 1080)
SMALL_1080: Walkers = tuple(
    (replace(walker, face_px=(walker.face_px[0] * 0.6, walker.face_px[1] * 0.6)), name)
    for walker, name in WALKERS
)


PATHS = ("frame", "tracks", "new")
HIT_ROUNDS = 3


@dataclass(frozen=True)
class Clip:
    name: str
    walkers: Walkers | None  # None: a real video, no truth
    fps: float
    step: int  # rendered frames per played frame
    jpegs: list[bytes]
    scale: float = 1.0  # played pixels per rendered pixel
    size: tuple[int, int] = SIZE  # rendered picture
    mirrored: tuple[bool, ...] = ()  # per played frame: the view is the mirror image


def truth(clip: Clip, frame: int, box: tuple[float, float, float, float]) -> str | None:
    """The name a detection in a played frame should get (None: a stranger or no walker)."""
    assert clip.walkers is not None
    cx, cy = (box[0] + box[2] / 2) / clip.scale, (box[1] + box[3] / 2) / clip.scale
    if clip.mirrored and clip.mirrored[frame]:
        cx = clip.size[0] - cx
    best: tuple[float, str | None] | None = None
    for walker, name in clip.walkers:
        place = walker.at(frame * clip.step, clip.size)
        if place is not None:
            distance = float(np.hypot(place[0] - cx, place[1] - cy))
            if distance < place[2] and (best is None or distance < best[0]):
                best = (distance, name)
    return best[1] if best else None


def enrol(client: redis.Redis, engine: FaceEngine) -> None:
    """Enrol the bundled people of `ENROLLED` from their training photos."""
    for name in ENROLLED:
        photos = sorted((FACES / "train" / name).iterdir())
        Gallery(client).enroll(embed_photos(engine, name, photos, largest_face=True))


def path_settings(settings: Settings, path: str) -> TrackSettings | None:
    if path == "frame":
        return None
    if path == "tracks":  # today's tracks: every frame decoded in full and detected
        return settings.tracks.model_copy(update={"skip_still": False, "reduced_decode": False})
    return settings.tracks


def publish(client: redis.Redis, jpegs: list[bytes], fps: float) -> None:
    publisher = FramePublisher(client, GROUP, "cam", 100_000, FrameLimits())
    for index, jpeg in enumerate(jpegs):
        width, height = jpeg_size(jpeg)
        publisher.publish(
            EncodedFrame(jpeg, width, height), 1_800_000_000_000 + round(index * 1000 / fps)
        )


def run(
    client: redis.Redis,
    engine: FaceEngine,
    settings: Settings,
    gallery: GalleryExport,
    clip: Clip,
    path: str,
) -> dict[str, object]:
    client.flushall()
    Gallery(client).import_(gallery, engine.model_id)
    publish(client, clip.jpegs, clip.fps)
    served = worker(client, engine, settings, "bench", path_settings(settings, path))
    served.step()  # groups, gallery: not part of the measurement
    embedded, detected = engine.embedder.faces, engine.detector.runs
    windowed = engine.window_detector.runs
    wall, cpu = time.perf_counter(), time.process_time()
    while client.xlen(keys.results(GROUP)) < len(clip.jpegs):
        served.step()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    results = [Result.from_fields(f) for _, f in client.xrange(keys.results(GROUP))]
    events = [Event.from_fields(f) for _, f in client.xrange(keys.events(GROUP))]
    right: list[set[str]] = []  # per frame, the names given right
    wrong = 0
    for result in sorted(results, key=lambda r: r.seq):
        names = set()
        for face in result.faces:
            should = truth(clip, result.seq, face.box) if clip.walkers is not None else None
            if face.identity is not None and face.identity == should:
                names.add(face.identity)
            elif face.identity is not None:
                wrong += 1
        right.append(names)
    appeared = {e.track: e.first_ts or e.ts for e in events if e.type == "appeared"}
    delays = [e.ts - appeared[e.track] for e in events if e.type == "identified"]
    return {
        "frames": len(results),
        "one_per_frame": len({r.frame_id for r in results}) == len(clip.jpegs),
        "faces": [len(r.faces) for r in sorted(results, key=lambda r: r.seq)],
        "sface_faces": engine.embedder.faces - embedded,
        "detector_runs": engine.detector.runs - detected,
        "window_runs": engine.window_detector.runs - windowed,
        "right": right,
        "wrong": wrong,
        "wall_s": wall,
        "cpu_s": cpu,
        "delays_ms": delays,
        "tracks": len(appeared),
    }


def worker(
    client: redis.Redis,
    engine: FaceEngine,
    settings: Settings,
    name: str,
    tracks: TrackSettings | None,
) -> Worker:
    return Worker(
        client, engine, settings.worker, settings.match, settings.limits, name, [GROUP],
        tracks=tracks,
    )  # fmt: skip


def hits(
    client: redis.Redis,
    engine: FaceEngine,
    settings: Settings,
    gallery: GalleryExport,
    jpegs: list[bytes],
    tracks: bool,
    workers: int,
) -> float:
    """Worker CPU ms per cache hit: the clip cached by an untracked camera, then served again
    (HIT_ROUNDS times) on one camera by `workers` workers taking turns on its frames."""
    client.flushall()
    Gallery(client).import_(gallery, engine.model_id)
    untracked = settings.tracks.model_copy(update={"untracked_cameras": ["fill"]})
    filler = worker(client, engine, settings, "fill", untracked)
    publisher = FramePublisher(client, GROUP, "fill", 100_000, FrameLimits())
    for index, jpeg in enumerate(jpegs):
        publisher.publish(EncodedFrame(jpeg, *jpeg_size(jpeg)), 1_800_000_000_000 + index * 100)
    while client.xlen(keys.results(GROUP)) < len(jpegs):
        filler.step()
    serving = [
        worker(client, engine, settings, f"w{i}", untracked if tracks else None)
        for i in range(workers)
    ]
    publisher = FramePublisher(client, GROUP, "cam", 100_000, FrameLimits())
    for round_ in range(HIT_ROUNDS):  # the same walk again: a new track each round
        for index, jpeg in enumerate(jpegs):
            at = 1_800_000_100_000 + round_ * 100_000 + index * 100
            publisher.publish(EncodedFrame(jpeg, *jpeg_size(jpeg)), at)
    total = len(jpegs) * (HIT_ROUNDS + 1)
    # A full collection walked this process's start-up heap (the models, many pydantic
    # schemas), about 80 ms, 0.1 ms a hit over one of these runs: whether one fell inside a run
    # depended on what ran before it, and made the tracked ÷ untracked ratio swing by a third.
    # Frozen first, as a worker freezes its own before it serves.
    freeze_start_up_heap()
    cpu, turn = time.process_time(), 0
    while client.xlen(keys.results(GROUP)) < total:
        serving[turn % workers].step()
        turn += 1
    return (time.process_time() - cpu) * 1000 / (len(jpegs) * HIT_ROUNDS)


def lateness(base: list[bool], other: list[bool]) -> int:
    """Per run of frames where `base` holds, frames until `other` holds too: the worst."""
    worst, index = 0, 0
    while index < len(base):
        if not base[index]:
            index += 1
            continue
        end = index
        while end < len(base) and base[end]:
            end += 1
        hit = next((i for i in range(index, end) if other[i]), end)
        worst = max(worst, hit - index)
        index = end
    return worst


def faster(walkers: Walkers, factor: float) -> Walkers:
    """The same walks rendered at `factor` times the frame rate (10 fps × factor)."""
    return tuple(
        (
            replace(
                walker,
                start=round(walker.start * factor),
                end=round(walker.end * factor),
                blur=(round(walker.blur[0] * factor), round(walker.blur[1] * factor)),
            ),
            name,
        )
        for walker, name in walkers
    )


def clips(engine: FaceEngine, work: Path, videos: Path, limit: int | None) -> list[Clip]:
    frames = render(engine, [w for w, _ in WALKERS], FRAMES_AT_10)
    walkers25 = faster(WALKERS, 2.5)
    frames25 = render(engine, [w for w, _ in walkers25], round(FRAMES_AT_10 * 2.5))
    standing = render(engine, [w for w, _ in STANDING], STANDING_FRAMES)
    mirrored = tuple((i // CUT_EVERY) % 2 == 1 for i in range(len(frames)))
    cut = [
        np.asarray(cv2.flip(f, 1), np.uint8) if m else f
        for f, m in zip(frames, mirrored, strict=True)
    ]
    big = [_scaled(f, 3.0) for f in frames]
    small = render(engine, [w for w, _ in SMALL_1080], FRAMES_AT_10, FULL_HD)
    made = [
        Clip("walks", WALKERS, 10.0, 1, record(frames, work / "walk10.mp4", 10.0)),
        Clip("walks", WALKERS, 5.0, 2, record(frames[::2], work / "walk5.mp4", 5.0)),
        Clip("walks", walkers25, 25.0, 1, record(frames25, work / "walk25.mp4", 25.0)),
        Clip("standing", STANDING, 5.0, 1, record(standing, work / "stand.mp4", 5.0)),
        Clip("cuts", WALKERS, 10.0, 1, record(cut, work / "cuts.mp4", 10.0), mirrored=mirrored),
        Clip("walks1080", WALKERS, 10.0, 1, _jpegs(big), scale=3.0),
        Clip("small1080", SMALL_1080, 10.0, 1, _jpegs(small), size=FULL_HD),
    ]
    for video in sorted(p for p in videos.iterdir() if p.suffix.lower() in {".mp4", ".gif"}):
        capture = cv2.VideoCapture(str(video))
        fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
        capture.release()
        jpegs = [frame.jpeg for frame in iter_frames(video)][:limit]
        made.append(Clip(video.stem, None, fps, 1, jpegs))
    return made


def _scaled(frame: NDArray[np.uint8], factor: float) -> NDArray[np.uint8]:
    return np.asarray(cv2.resize(frame, None, fx=factor, fy=factor), np.uint8)


def _jpegs(frames: list[NDArray[np.uint8]]) -> list[bytes]:
    return [bytes(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]) for f in frames]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results/")
    parser.add_argument("--videos", type=Path, default=VIDEOS, help="folder of real videos")
    parser.add_argument("--frames", type=int, default=None, help="most frames of each video")
    parser.add_argument("--hits-only", action="store_true", help="only the cache hits")
    parser.add_argument(
        "--hit-repeats", type=int, default=5, help="interleaved runs of each hit setup (median)"
    )
    parser.add_argument("--clips", default="", help="comma-separated clip names (default: all)")
    args = parser.parse_args()
    default = "tracks_hits.json" if args.hits_only else "tracks.json"
    default = "tracks_clips.json" if args.clips and not args.hits_only else default
    args.out = args.out or REPO / "benchmarks/results" / default
    with tempfile.TemporaryDirectory(prefix="facestream-tracks-") as scratch:
        work = Path(scratch)
        server = EmbeddedRedis(work / "redis", appendonly=False)
        with server:
            settings = load_settings(redis={"url": server.url}, models={"threads": 1})
            engine = FaceEngine.from_settings(settings.models)
            client = redis.Redis.from_url(server.url)
            enrol(client, engine)
            gallery = Gallery(client).export(engine.model_id)
            rows = []
            if args.hits_only:
                frames = render(engine, [w for w, _ in WALKERS], FRAMES_AT_10)
                walk = record(frames, work / "walk10.mp4", 10.0)
            else:
                made = clips(engine, work, args.videos, args.frames)
                chosen = set(filter(None, args.clips.split(",")))
                for clip in made:
                    if chosen and clip.name not in chosen:
                        continue
                    runs = {p: run(client, engine, settings, gallery, clip, p) for p in PATHS}
                    rows.append(summarise(clip, runs))
                    print_row(rows[-1])
                walk = made[0].jpegs
            # Interleaved rounds, medians: one run of each moved by ×1.2–2.6 from run to run on
            # a shared machine (where a collection falls, the neighbours' load).
            setups = {
                "untracked": (False, 1),
                "tracked": (True, 1),
                "tracked_two_workers": (True, 2),
            }
            measured: dict[str, list[float]] = {key: [] for key in setups}
            for _ in range(max(args.hit_repeats, 0)):
                for key, (tracked, workers) in setups.items():
                    cost = hits(client, engine, settings, gallery, walk, tracked, workers)
                    measured[key].append(cost)
            hit_ms = {key: float(np.median(costs)) for key, costs in measured.items() if costs}
    report: dict[str, object] = {
        "machine": f"{platform.machine()} {platform.system()}, Python {platform.python_version()}",
        "onnxruntime_threads": 1,
        "rows": rows,
    }
    if args.hit_repeats > 0:
        ratios = {
            k: round(v / hit_ms["untracked"], 2) for k, v in hit_ms.items() if k != "untracked"
        }
        report["hit_cpu_ms"] = {k: round(v, 3) for k, v in hit_ms.items()}
        report["hit_cpu_ms_runs"] = {k: [round(v, 3) for v in runs] for k, runs in measured.items()}
        report["hit_ratio"] = ratios
        print(f"\n{'cache hits':>22} {'CPU ms/hit':>10} {'x untracked':>11}")
        for key, ms in hit_ms.items():
            print(f"{key:>22} {ms:>10.3f} {ms / hit_ms['untracked']:>11.2f}")
        print(
            f"\ncache hits, worker CPU per hit: tracked x{ratios['tracked']}, tracked with two "
            f"workers on the camera x{ratios['tracked_two_workers']} of untracked"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\nwritten to {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}"
    )


def summarise(clip: Clip, runs: dict[str, dict[str, object]]) -> dict[str, object]:
    base = runs["frame"]
    frames = float(base["frames"])  # type: ignore[arg-type]
    base_right: list[set[str]] = base["right"]  # type: ignore[assignment]
    base_faces: list[int] = base["faces"]  # type: ignore[assignment]
    row: dict[str, object] = {
        "clip": clip.name,
        "size": "x".join(map(str, jpeg_size(clip.jpegs[0]))),
        "fps": round(clip.fps, 1),
        "frames": int(frames),
    }
    for path, result in runs.items():
        right: list[set[str]] = result["right"]  # type: ignore[assignment]
        faces: list[int] = result["faces"]  # type: ignore[assignment]
        delays: list[int] = result["delays_ms"]  # type: ignore[assignment]
        if clip.walkers is not None:
            late = max(
                lateness([n in b for b in base_right], [n in r for r in right])
                for n in {n for b in base_right for n in b} or {""}
            )
        else:
            late = lateness([f > 0 for f in base_faces], [f > 0 for f in faces])
        row[path] = {
            "cpu_ms_per_frame": round(float(result["cpu_s"]) * 1000 / frames, 2),  # type: ignore[arg-type]
            "cpu_ratio": round(float(base["cpu_s"]) / float(result["cpu_s"]), 2),  # type: ignore[arg-type]
            "sface_per_frame": round(float(result["sface_faces"]) / frames, 3),  # type: ignore[arg-type]
            "detector_per_frame": round(float(result["detector_runs"]) / frames, 3),  # type: ignore[arg-type]
            "windows_per_frame": round(float(result["window_runs"]) / frames, 3),  # type: ignore[arg-type]
            "faces_per_frame": round(sum(faces) / frames, 3),
            "right": sum(len(r) for r in right),
            "wrong": result["wrong"],
            "lost": sum(len(b - r) for b, r in zip(base_right, right, strict=True)),
            "late_frames": late,
            "one_per_frame": result["one_per_frame"],
            "tracks": result["tracks"],
            "to_identified_ms_p50": float(np.percentile(delays, 50)) if delays else None,
        }
    return row


def print_row(row: dict[str, object]) -> None:
    if row is not None and not getattr(print_row, "headed", False):
        print(
            f"{'clip':>22} {'size':>9} {'path':>6} {'CPU ms/f':>8} {'x frame':>7} {'SFace/f':>7} "
            f"{'det/f':>5} {'win/f':>5} {'faces/f':>7} {'right':>5} {'wrong':>5} {'lost':>4} "
            f"{'late':>4} {'id p50 ms':>9}"
        )
        print_row.headed = True  # type: ignore[attr-defined]
    for path in PATHS:
        c: dict[str, object] = row[path]  # type: ignore[assignment]
        p50 = c["to_identified_ms_p50"]
        print(
            f"{row['clip']:>22} {row['size']:>9} {path:>6} {c['cpu_ms_per_frame']:>8} "
            f"{c['cpu_ratio']:>7} {c['sface_per_frame']:>7} {c['detector_per_frame']:>5} "
            f"{c['windows_per_frame']:>5} "
            f"{c['faces_per_frame']:>7} {c['right']:>5} {c['wrong']:>5} {c['lost']:>4} "
            f"{c['late_frames']:>4} {p50 if p50 is not None else '-':>9}"
        )


if __name__ == "__main__":
    main()
