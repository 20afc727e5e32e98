"""Worker throughput vs the bare model loop and the seed's recipe, measured in one run.

Prints a table and writes benchmarks/results/throughput.json. Everything runs on this machine
against an embedded redis-server (AOF on), on the same frames, with the same threads:

- bare loop:     decode → detect → align → embed → match, no Redis at all
- worker miss:   our worker on frames it has never seen (stream read, cache GET, model, commit)
- worker hit:    the same frames again (stream read, cache GET, match, commit)
- seed miss/hit: the naive recipe (MD5 → GET image:<md5> → recognise → SET), one frame at a
                 time; it pickled its results, we store the same data as JSON (no unpickling).
- latency:       new frames published at --paced-fps while the worker serves them: capture →
                 result per stage (the throughput runs queue everything first, so their
                 latencies are queueing time).

Usage: python benchmarks/throughput.py [--frames 200] [--rounds 3] [--threads 1] [--batch N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import orjson
import redis

from facestream.config import Settings, load_settings
from facestream.demo import DEMO_DATA, fit_frame
from facestream.ingest import EncodedFrame, FramePublisher
from facestream.recognizer import FaceEngine, Gallery, Worker, decode_jpeg, embed_photos
from facestream.schemas import Result, keys
from facestream.server import EmbeddedRedis

GROUP = "bench"
RUNS = (
    "bare model loop",
    "seed recipe, all miss",
    "seed recipe, all hit",
    "worker, all miss",
    "worker, all hit",
)


def make_frames(count: int) -> list[bytes]:
    """Distinct 640×360 JPEGs: slow zooms over the bundled scenes, and empty corridor shots."""
    scenes = [cv2.imread(str(p)) for p in sorted((DEMO_DATA / "scenes").glob("*.jpg"))]
    blank = np.full((360, 640, 3), 90, np.uint8)
    frames = []
    for index in range(count):
        # Every third frame shows an empty corridor, like a real camera most of the time.
        if index % 3 == 2:
            image = blank.copy()
            cv2.putText(image, str(index), (20, 60), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255))
        else:
            scene = np.asarray(scenes[index % len(scenes)], np.uint8)
            image = fit_frame(scene, (640, 360), 1.0 + 0.002 * index)
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return frames


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def drain(worker: Worker, client: redis.Redis, expected: int) -> None:
    while client.xlen(keys.results(GROUP)) < expected:
        worker.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best kept")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=None, help="worker.batch_size")
    parser.add_argument("--paced-fps", type=float, default=20.0, help="rate of the latency run")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "throughput.json"
    )
    args = parser.parse_args()

    frames = make_frames(args.frames)
    seconds: dict[str, list[float]] = {name: [] for name in RUNS}
    with tempfile.TemporaryDirectory() as scratch, EmbeddedRedis(Path(scratch)) as server:
        worker_overrides = {"block_ms": 50} | ({"batch_size": args.batch} if args.batch else {})
        settings = load_settings(
            redis={"url": server.url}, models={"threads": args.threads}, worker=worker_overrides
        )
        client = redis.Redis.from_url(server.url)
        engine = FaceEngine.from_settings(settings.models)
        gallery = Gallery(client)
        for folder in sorted(p for p in (DEMO_DATA / "gallery").iterdir() if p.is_dir()):
            gallery.enroll(embed_photos(engine, folder.name, sorted(folder.glob("*.jpg"))))
        matcher = gallery.matcher(engine.model_id, 0.363, 0.05)
        for jpeg in frames[:10]:  # warm-up: first runs allocate
            engine.recognise([decode_jpeg(jpeg)], matcher)
        height, width = decode_jpeg(frames[0]).shape[:2]

        def bare() -> None:
            for jpeg in frames:
                engine.recognise([decode_jpeg(jpeg)], matcher)

        def seed() -> None:
            for jpeg in frames:
                key = "image:" + hashlib.md5(jpeg).hexdigest()  # the seed's recipe
                cached = client.get(key)
                if cached is not None:
                    orjson.loads(cached)
                    continue
                (recognition,) = engine.recognise([decode_jpeg(jpeg)], matcher)
                client.set(key, orjson.dumps([f.model_dump() for f in recognition.faces]))

        results: list[Result] = []
        for round_index in range(args.rounds):
            stale = [
                k for k in client.scan_iter() if not k.startswith(keys.GALLERY_KEYS[:-1].encode())
            ]
            if stale:
                client.delete(*stale)
            seconds["bare model loop"].append(timed(bare))
            seconds["seed recipe, all miss"].append(timed(seed))
            seconds["seed recipe, all hit"].append(timed(seed))
            worker = Worker(
                client, engine, settings.worker, settings.match, settings.limits, "bench", [GROUP]
            )
            worker.step()  # creates the consumer group
            publisher = FramePublisher(client, GROUP, "cam", 100_000, settings.limits)
            for jpeg in frames:
                publisher.publish(EncodedFrame(jpeg, width, height))
            seconds["worker, all miss"].append(timed(partial(drain, worker, client, len(frames))))
            for jpeg in frames:
                publisher.publish(EncodedFrame(jpeg, width, height))
            seconds["worker, all hit"].append(
                timed(partial(drain, worker, client, 2 * len(frames)))
            )
            if round_index == 0:
                results = [Result.from_fields(f) for _, f in client.xrange(keys.results(GROUP))]

        paced = paced_latency(client, engine, settings, frames, width, height, args.paced_fps)

    fps = {name: len(frames) / min(runs) for name, runs in seconds.items()}
    ratios = {
        "worker miss / bare loop": fps["worker, all miss"] / fps["bare model loop"],
        "worker miss / seed miss": fps["worker, all miss"] / fps["seed recipe, all miss"],
        "worker hit / seed hit": fps["worker, all hit"] / fps["seed recipe, all hit"],
    }
    latency = stage_percentiles(results[: len(frames)]), stage_percentiles(results[len(frames) :])
    paced_table = stage_percentiles(paced)
    faces = sum(len(r.faces) for r in results[: len(frames)]) / len(frames)

    print(
        f"\n{len(frames)} frames 640x360, {faces:.2f} faces/frame, {args.threads} thread(s), "
        f"batch {settings.worker.batch_size}, best of {args.rounds} rounds"
    )
    print(f"{'run':<26}{'frames/s':>10}{'spread':>10}")
    for name, runs in seconds.items():
        spread = max(runs) / min(runs) - 1
        print(f"{name:<26}{fps[name]:>10.1f}{spread:>9.0%}")
    print()
    for name, value in ratios.items():
        print(f"{name:<26}{value:>10.3f}")
    print(f"\ncapture→result latency at {args.paced_fps} fps (new frames), ms p50/p99:")
    for stage, value in paced_table.items():
        print(f"  {stage:<8}{value['p50']:>8.1f}{value['p99']:>8.1f}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "frames": len(frames), "threads": args.threads, "batch": settings.worker.batch_size,
        "rounds": args.rounds, "faces_per_frame": faces, "fps": fps, "seconds": seconds,
        "ratios": ratios, "paced_fps": args.paced_fps, "paced_latency_ms": paced_table,
        "queued_latency_ms": {"miss": latency[0], "hit": latency[1]},
    }  # fmt: skip
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


def paced_latency(
    client: redis.Redis,
    engine: FaceEngine,
    settings: Settings,
    frames: list[bytes],
    width: int,
    height: int,
    rate: float,
) -> list[Result]:
    """Publish new frames at `rate` from a thread while the worker serves them as they come."""
    group = "paced"
    worker = Worker(client, engine, settings.worker, settings.match, settings.limits, "p", [group])
    worker.step()
    # Different bytes than the throughput runs (flipped images), so none is a cache hit.
    flipped = [cv2.imencode(".jpg", cv2.flip(decode_jpeg(f), 1))[1].tobytes() for f in frames]
    publisher = FramePublisher(client, group, "cam", 100_000, settings.limits)

    def send() -> None:
        for jpeg in flipped:
            publisher.publish(EncodedFrame(jpeg, width, height))
            time.sleep(1 / rate)

    sender = threading.Thread(target=send)
    sender.start()
    while client.xlen(keys.results(group)) < len(frames):
        worker.step()
    sender.join()
    return [Result.from_fields(f) for _, f in client.xrange(keys.results(group))]


def stage_percentiles(results: list[Result]) -> dict[str, dict[str, float]]:
    stages = sorted({stage for r in results for stage in r.latency_ms})
    table = {}
    for stage in stages:
        values = np.array([r.latency_ms.get(stage, 0.0) for r in results])
        table[stage] = {
            "p50": float(np.percentile(values, 50)),
            "p99": float(np.percentile(values, 99)),
        }
    return table


if __name__ == "__main__":
    main()
