"""Where a worker's CPU goes on a live camera: each stage's share of one frame per round.

A live camera's frames reach a worker one at a time (5 a second is one per read), so each is a
round of its own: a read, the motion screen, a decode, detection, SFace, the track state and
the commit. This plays a clip that way, publishing a frame and letting one in-process worker
(one onnxruntime thread, the four bundled people enrolled) serve it before the next, and
charges the main thread's CPU time to the stage that spent it:

- read:        XREADGROUP and parsing the delivery (Worker._read_new)
- screen:      the grey thumbnail, the camera's track state and the motion judgement
- decode:      the frame decoded for the detector
- scan:        full-frame YuNet runs (letterbox, and tiles on a large frame)
- windows:     YuNet in windows around tracks and patches of motion (also: windows per frame
               searched in windows, and their area)
- SFace:       embeddings (alignment and matching are in "rest")
- tracks:      reading the cameras' track state and applying the frame to it
- commit:      the ack-gated commit (result, cache, tracks, ack) in one round trip
- rest:        everything else in the round (batch bookkeeping, alignment, results, events)

Clips: every video in `--videos` (default tests/data/video, CC BY 4.0 Intel: people passing
one by one in a room) and, with `--frames-dir` (repeatable), folders of JPEGs in name order
(say what a camera agent published, or a 1080p camera's frames). Paths: "frame" (tracks off)
and "new" (tracks on, the defaults).

Prints a table (ms of CPU per frame, and calls per frame) and writes
benchmarks/results/worker_stages.json. Usage:
python benchmarks/worker_stages.py [--videos DIR] [--frames-dir DIR ...] [--frames N]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from tracks import GROUP, VIDEOS, enrol
from tracks import worker as worker_for

import facestream.recognizer.engine as engine_module
from facestream.config import load_settings
from facestream.ingest import EncodedFrame, FramePublisher, iter_frames
from facestream.recognizer import FaceEngine, Worker
from facestream.schemas import FrameLimits, keys
from facestream.schemas.frames import jpeg_size
from facestream.server import EmbeddedRedis

STAGES = ("read", "screen", "decode", "scan", "windows", "SFace", "tracks", "commit")


class StageClock:
    """Thread CPU time and calls charged to named stages by wrapping the callables."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.boxes = 0  # windows searched, and their area in frame pixels
        self.area = 0.0

    def wrap(self, stage: str, call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return call(*args, **kwargs)
            finally:
                self.seconds[stage] += time.thread_time() - start
                self.calls[stage] += 1

        return timed

    def clear(self) -> None:
        self.seconds.clear()
        self.calls.clear()
        self.boxes, self.area = 0, 0.0


def instrument(worker: Worker, engine: FaceEngine, clock: StageClock) -> None:
    """Wrap the worker's stages on these instances (and the engine module's window search)."""
    batches = worker.batches
    worker._read_new = clock.wrap("read", worker._read_new)  # type: ignore[method-assign]
    batches._view = clock.wrap("decode", batches._view)  # type: ignore[method-assign]
    batches.committer.commit = clock.wrap("commit", batches.committer.commit)  # type: ignore[method-assign]
    engine.detector.detect = clock.wrap("scan", engine.detector.detect)  # type: ignore[method-assign]
    engine.embedder.embed = clock.wrap("SFace", engine.embedder.embed)  # type: ignore[method-assign]
    search = clock.wrap("windows", engine_module.detect_regions)

    def counted(detector: Any, view: Any, windows: Any, *args: Any, **kwargs: Any) -> Any:
        clock.boxes += len(windows)
        clock.area += sum(w * h for _, _, w, h in windows)
        return search(detector, view, windows, *args, **kwargs)

    engine_module.detect_regions = counted  # type: ignore[assignment]
    if batches.tracking is not None:
        tracking = batches.tracking
        tracking.screen = clock.wrap("screen", tracking.screen)  # type: ignore[method-assign]
        tracking.refresh = clock.wrap("tracks", tracking.refresh)  # type: ignore[method-assign]
        tracking.apply = clock.wrap("tracks", tracking.apply)  # type: ignore[method-assign]


def play(
    client: redis.Redis, engine: FaceEngine, jpegs: list[bytes], fps: float, tracked: bool
) -> dict[str, object]:
    """One path over the clip, a frame per round; ms of CPU per frame by stage."""
    settings = load_settings(models={"threads": 1})
    client.flushall()
    enrol(client, engine)
    worker = worker_for(client, engine, settings, "stages", settings.tracks if tracked else None)
    clock = StageClock()
    search = engine_module.detect_regions
    instrument(worker, engine, clock)
    worker.step()  # groups and gallery: not part of the measurement
    publisher = FramePublisher(client, GROUP, "cam", 100_000, FrameLimits())
    clock.clear()
    embedded, total = engine.embedder.faces, 0.0
    for index, jpeg in enumerate(jpegs):
        width, height = jpeg_size(jpeg)
        publisher.publish(
            EncodedFrame(jpeg, width, height), 1_800_000_000_000 + round(index * 1000 / fps)
        )
        while client.xlen(keys.results(GROUP)) < index + 1:
            # The worker's rounds alone: publishing and polling are the camera's and this
            # benchmark's, not the worker's (they were 0.3 ms of "rest" a frame).
            started = time.thread_time()
            worker.step()
            total += time.thread_time() - started
    engine_module.detect_regions = search
    frames = len(jpegs)
    row: dict[str, object] = {stage: clock.seconds[stage] / frames * 1000 for stage in STAGES}
    row["rest"] = (total - sum(clock.seconds.values())) / frames * 1000
    row["total"] = total / frames * 1000
    row["calls_per_frame"] = {stage: clock.calls[stage] / frames for stage in STAGES}
    searched = max(clock.calls["windows"], 1)
    row["windows_per_windowed_frame"] = clock.boxes / searched
    row["window_px_per_windowed_frame"] = clock.area / searched
    row["sface_faces_per_frame"] = (engine.embedder.faces - embedded) / frames
    return row


def clips(
    videos: Path, frames_dirs: list[Path], limit: int | None
) -> dict[str, tuple[list[bytes], float]]:
    found: dict[str, tuple[list[bytes], float]] = {}
    for video in sorted(p for p in videos.iterdir() if p.suffix.lower() in {".mp4", ".gif"}):
        found[video.stem] = ([frame.jpeg for frame in iter_frames(video)][:limit], 5.0)
    for frames_dir in frames_dirs:
        jpegs = [p.read_bytes() for p in sorted(frames_dir.glob("*.jpg"))][:limit]
        found[frames_dir.name] = (jpegs, 5.0)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--videos", type=Path, default=VIDEOS)
    parser.add_argument(
        "--frames-dir", type=Path, action="append", default=[], help="a folder of JPEGs"
    )
    parser.add_argument("--frames", type=int, default=None, help="at most this many per clip")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "worker_stages.json"
    )
    args = parser.parse_args()
    report: dict[str, object] = {"machine": platform.machine(), "python": platform.python_version()}
    rows: dict[str, object] = {}
    columns = (*STAGES, "rest", "total")
    print(
        f"{'clip':>22} {'path':>6}"
        + "".join(f"{c:>9}" for c in columns)
        + "  SFace faces/f  windows/windowed frame (px)"
    )
    with (
        tempfile.TemporaryDirectory() as scratch,
        EmbeddedRedis(Path(scratch) / "redis", appendonly=False) as redis_server,
    ):
        client = redis.Redis.from_url(redis_server.url)
        for name, (jpegs, fps) in clips(args.videos, args.frames_dir, args.frames).items():
            for path in ("frame", "new"):
                # A fresh engine per path: its counters and wrapped methods are its own.
                engine = FaceEngine.from_settings(load_settings(models={"threads": 1}).models)
                row = play(client, engine, jpegs, fps, tracked=path == "new")
                rows[f"{name}/{path}"] = row
                cells = "".join(f"{float(row[c]):>9.2f}" for c in columns)  # type: ignore[arg-type]
                count, area = row["windows_per_windowed_frame"], row["window_px_per_windowed_frame"]
                faces = row["sface_faces_per_frame"]
                print(
                    f"{name:>22} {path:>6}{cells}  {faces:>13.2f}  {count:.2f} ({area:.0f})",
                    flush=True,
                )
    report["rows"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
