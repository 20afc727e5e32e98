"""Tracks against frame-by-frame recognition on the same video, measured in one run.

Prints a table and writes benchmarks/results/tracks.json. The clips are synthetic motion of
real photos (tests/walks.py), encoded with OpenCV (mp4v) and decoded back: "walks", six walks
across a drawn corridor over 28 seconds (one person not enrolled; people grow, cross each other,
are blurred for stretches), rendered at 10 fps and also played at 5 fps (every other frame);
"standing", one person swaying at a counter for a minute at 5 fps. Each clip goes through one
worker (one onnxruntime thread, so frames/s is per core) with tracks off and with tracks on,
against an embedded redis-server (no AOF):

- SFace faces/frame: faces embedded per frame (the embedder's own count).
- named / wrong:     faces given the right name / a wrong one (the truth: which walker's face
                     is nearest to the detection); the stranger's faces must stay unnamed.
- kept:              of the faces named right without tracks, the share still named with them.
- frames/s:          frames served per second of wall time (moves with other load).
- frames/CPU-s:      frames per CPU second of the worker process: throughput per core (the
                     redis-server's own CPU is not counted; its work per frame barely changes).
- to identified:     per track, video time from its first frame to its `identified` event
                     (p50/p95 over the clip's tracks).

Usage: python benchmarks/tracks.py [--out benchmarks/results/tracks.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis

# The clip builder is shared with the tests (it reads only the repository's bundled photos).
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facestream.config import Settings, load_settings  # noqa: E402
from facestream.recognizer import FaceEngine, Gallery, Worker, embed_photos  # noqa: E402
from facestream.schemas import Event, GalleryExport, Result, keys  # noqa: E402
from facestream.server import EmbeddedRedis  # noqa: E402
from tests.walks import Walker, publish_clip, record, render  # noqa: E402

GROUP = "bench"
FACES = REPO / "tests" / "data" / "faces"
ENROLLED = ("obama", "biden", "kit_harington", "rose_leslie")  # not alex: the stranger
FRAMES_AT_10 = 280  # the last walk ends at 255: 2.5 s of empty corridor end its track
WALKERS = (
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


@dataclass(frozen=True)
class Clip:
    name: str
    walkers: tuple[tuple[Walker, str | None], ...]
    fps: float
    step: int  # rendered frames per played frame
    jpegs: list[bytes]


def truth(
    clip: Clip, frame: int, box: tuple[float, float, float, float]
) -> tuple[bool, str | None]:
    """(whose face it is known, the name it should get) for a detection in a played frame."""
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    best: tuple[float, str | None] | None = None
    for walker, name in clip.walkers:
        place = walker.at(frame * clip.step)
        if place is not None:
            distance = float(np.hypot(place[0] - cx, place[1] - cy))
            if distance < place[2] and (best is None or distance < best[0]):
                best = (distance, name)
    return (best is not None, best[1] if best else None)


def run(
    client: redis.Redis,
    engine: FaceEngine,
    settings: Settings,
    gallery: GalleryExport,
    clip: Clip,
    tracks: bool,
) -> dict[str, object]:
    client.flushall()
    Gallery(client).import_(gallery, engine.model_id)
    jpegs = clip.jpegs
    publish_clip(client, GROUP, "cam", jpegs, clip.fps, 1_800_000_000_000)
    worker = Worker(
        client, engine, settings.worker, settings.match, settings.limits, "bench", [GROUP],
        tracks=settings.tracks if tracks else None,
    )  # fmt: skip
    worker.step()  # groups, gallery: not part of the measurement
    embedded, wall, cpu = engine.embedder.faces, time.perf_counter(), time.process_time()
    while client.xlen(keys.results(GROUP)) < len(jpegs):
        worker.step()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    embedded = engine.embedder.faces - embedded
    results = [Result.from_fields(f) for _, f in client.xrange(keys.results(GROUP))]
    events = [Event.from_fields(f) for _, f in client.xrange(keys.events(GROUP))]
    verdicts = []  # per face: (right name given, wrong name given)
    for result in results:
        for face in result.faces:
            known, name = truth(clip, result.seq, face.box)
            right = known and name is not None and face.identity == name
            wrong = face.identity is not None and (not known or face.identity != name)
            verdicts.append((right, wrong))
    appeared = {e.track: e.first_ts or e.ts for e in events if e.type == "appeared"}
    delays = [e.ts - appeared[e.track] for e in events if e.type == "identified"]
    return {
        "frames": len(results),
        "faces": len(verdicts),
        "sface_faces": embedded,
        "named": sum(r for r, _ in verdicts),
        "wrong": sum(w for _, w in verdicts),
        "verdicts": verdicts,
        "wall_s": wall,
        "cpu_s": cpu,
        "delays_ms": delays,
        "tracks": len(appeared),
        "visits": [
            {"identity": e.identity, "frames": e.frames, "dwell_ms": e.dwell_ms}
            for e in events
            if e.type == "left"
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/tracks.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="facestream-tracks-") as scratch:
        work = Path(scratch)
        server = EmbeddedRedis(work / "redis", appendonly=False)
        with server:
            settings = load_settings(redis={"url": server.url}, models={"threads": 1})
            engine = FaceEngine.from_settings(settings.models)
            client = redis.Redis.from_url(server.url)
            for name in ENROLLED:
                photos = sorted((FACES / "train" / name).iterdir())
                Gallery(client).enroll(embed_photos(engine, name, photos, largest_face=True))
            gallery = Gallery(client).export(engine.model_id)
            frames = render(engine, [w for w, _ in WALKERS], FRAMES_AT_10)
            standing = render(engine, [w for w, _ in STANDING], STANDING_FRAMES)
            clips = [
                Clip("walks", WALKERS, 10.0, 1, record(frames, work / "walk10.mp4", 10.0)),
                Clip("walks", WALKERS, 5.0, 2, record(frames[::2], work / "walk5.mp4", 5.0)),
                Clip("standing", STANDING, 5.0, 1, record(standing, work / "stand.mp4", 5.0)),
            ]
            rows = []
            for clip in clips:
                off = run(client, engine, settings, gallery, clip, tracks=False)
                on = run(client, engine, settings, gallery, clip, tracks=True)
                rows.append(summarise(clip, off, on))
    report = {
        "machine": f"{platform.machine()} {platform.system()}, Python {platform.python_version()}",
        "clips": {
            "walks": f"{FRAMES_AT_10} frames at 10 fps (28 s), {len(WALKERS)} walks, mp4v; "
            "played at 10 fps and at 5 fps (every other frame)",
            "standing": f"{STANDING_FRAMES} frames at 5 fps (62 s), one person standing, mp4v",
        },
        "onnxruntime_threads": 1,
        "rows": rows,
    }
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\nwritten to {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}"
    )


def summarise(clip: Clip, off: dict[str, object], on: dict[str, object]) -> dict[str, object]:
    def per_frame(run: dict[str, object], key: str) -> float:
        return float(run[key]) / float(run["frames"])  # type: ignore[arg-type]

    verdicts_off: list[tuple[bool, bool]] = off["verdicts"]  # type: ignore[assignment]
    verdicts_on: list[tuple[bool, bool]] = on["verdicts"]  # type: ignore[assignment]
    named_off = [i for i, (right, _) in enumerate(verdicts_off) if right]
    kept = sum(verdicts_on[i][0] for i in named_off) / max(len(named_off), 1)
    delays: list[int] = on["delays_ms"]  # type: ignore[assignment]
    row: dict[str, object] = {
        "clip": clip.name,
        "fps": clip.fps,
        "frames": off["frames"],
        "faces": off["faces"],
    }
    for label, run in (("off", off), ("on", on)):
        row[label] = {
            "sface_faces_per_frame": round(per_frame(run, "sface_faces"), 3),
            "named": run["named"],
            "wrong": run["wrong"],
            "frames_per_s": round(float(run["frames"]) / float(run["wall_s"]), 1),  # type: ignore[arg-type]
            "frames_per_cpu_s": round(1 / per_frame(run, "cpu_s"), 1),
        }
    row["sface_reduction"] = round(
        per_frame(off, "sface_faces") / max(per_frame(on, "sface_faces"), 1e-9), 1
    )
    # Per core: CPU seconds of the worker process, which other load on the machine barely moves.
    row["throughput_ratio"] = round(float(off["cpu_s"]) / float(on["cpu_s"]), 2)  # type: ignore[arg-type]
    row["kept"] = round(kept, 3)
    row["tracks"] = on["tracks"]
    row["visits"] = on["visits"]
    row["to_identified_ms"] = {
        "p50": float(np.percentile(delays, 50)) if delays else None,
        "p95": float(np.percentile(delays, 95)) if delays else None,
        "identified_tracks": len(delays),
    }
    return row


def print_table(rows: list[dict[str, object]]) -> None:
    header = (
        f"{'clip':>8} {'fps':>4} {'tracks':>6} {'SFace/frame':>11} {'named':>6} {'wrong':>5} "
        f"{'frames/s':>8} {'frames/CPU-s':>12}"
    )
    print(header)
    for row in rows:
        for label in ("off", "on"):
            cells: dict[str, float] = row[label]  # type: ignore[assignment]
            print(
                f"{row['clip']:>8} {row['fps']:>4.0f} {label:>6} "
                f"{cells['sface_faces_per_frame']:>11.3f} {cells['named']:>6} {cells['wrong']:>5} "
                f"{cells['frames_per_s']:>8.1f} {cells['frames_per_cpu_s']:>12.1f}"
            )
        delay: dict[str, float | None] = row["to_identified_ms"]  # type: ignore[assignment]
        print(
            f"{'':>14}SFace calls {row['sface_reduction']}x fewer, frames per CPU second x"
            f"{row['throughput_ratio']}, kept {row['kept']:.1%} of the names, "
            f"{row['tracks']} tracks, first frame to identified p50 {delay['p50']} ms, "
            f"p95 {delay['p95']} ms ({delay['identified_tracks']} identified)"
        )


if __name__ == "__main__":
    main()
