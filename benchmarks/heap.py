"""What a full garbage collection costs a worker, with and without its start-up heap frozen.

Prints a table and writes benchmarks/results/heap.json. One process set up as `run_worker`
sets one up (the worker modules, the models, a Worker on an embedded redis-server, the bundled
demo gallery), then:

- start-up:        CPU of a full collection (`gc.collect()`), median of --repeats, and the
                   objects the collector tracks;
- frozen:          the same after `freeze_start_up_heap()` (what `run_worker` now calls
                   before serving);
- frozen, served:  the same after serving --frames frames of the demo scenes (the heap a
                   serving worker grows is collected as before).

Usage: python benchmarks/heap.py [--frames 100] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import redis

from facestream.config import load_settings
from facestream.demo import DEMO_DATA, enrol_demo_gallery, fit_frame
from facestream.ingest import EncodedFrame, FramePublisher
from facestream.recognizer import FaceEngine, Worker
from facestream.schemas import FrameLimits, keys
from facestream.schemas.frames import jpeg_size
from facestream.server import EmbeddedRedis
from facestream.workers import freeze_start_up_heap

GROUP = "heap"


def full_collection_ms(repeats: int) -> float:
    """Median CPU ms of one full collection."""
    costs = []
    for _ in range(repeats):
        start = time.process_time()
        gc.collect()
        costs.append((time.process_time() - start) * 1000)
    return statistics.median(costs)


def demo_frames(count: int) -> list[bytes]:
    scenes = [cv2.imread(str(p)) for p in sorted((DEMO_DATA / "scenes").glob("*.jpg"))]
    frames = []
    for index in range(count):
        scene = np.asarray(scenes[index % len(scenes)], np.uint8)
        image = fit_frame(scene, (640, 360), 1.0 + 0.002 * index)
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "heap.json")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []

    def measure(stage: str) -> None:
        ms = full_collection_ms(args.repeats)
        rows.append({"stage": stage, "tracked_objects": len(gc.get_objects()), "full_gc_ms": ms})
        print(f"{stage:>16} {rows[-1]['tracked_objects']:>10} {ms:>12.2f}")

    with tempfile.TemporaryDirectory(prefix="facestream-heap-") as scratch:
        server = EmbeddedRedis(Path(scratch) / "redis", appendonly=False)
        with server:
            settings = load_settings(redis={"url": server.url}, models={"threads": 1})
            engine = FaceEngine.from_settings(settings.models)
            client = redis.Redis.from_url(server.url)
            enrol_demo_gallery(engine, client)
            worker = Worker(
                client, engine, settings.worker, settings.match, settings.limits, "heap",
                [GROUP], tracks=settings.tracks,
            )  # fmt: skip
            worker.step()  # groups and gallery read, as before a worker's first frame
            frames = demo_frames(args.frames)
            print(f"{'stage':>16} {'objects':>10} {'full GC ms':>12}")
            measure("start-up")
            frozen = freeze_start_up_heap()
            measure("frozen")
            publisher = FramePublisher(client, GROUP, "cam", 100_000, FrameLimits())
            for index, jpeg in enumerate(frames):
                at = 1_800_000_000_000 + index * 100
                publisher.publish(EncodedFrame(jpeg, *jpeg_size(jpeg)), at)
            while client.xlen(keys.results(GROUP)) < len(frames):
                worker.step()
            measure("frozen, served")
            gc.unfreeze()
    report = {
        "machine": f"{platform.machine()} {platform.system()}, Python {platform.python_version()}",
        "frames_served": args.frames,
        "frozen_objects": frozen,
        "rows": rows,
        # How much cheaper a serving worker's full collection is with its start-up frozen.
        "start_up_over_frozen_served": round(
            float(rows[0]["full_gc_ms"]) / max(float(rows[-1]["full_gc_ms"]), 1e-6), 1
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\n{frozen} objects frozen before serving; a full collection served frozen costs "
        f"1/{report['start_up_over_frozen_served']} of one at start-up; written to {args.out}"
    )


if __name__ == "__main__":
    main()
