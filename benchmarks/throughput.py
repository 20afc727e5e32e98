"""Worker throughput vs the bare model loop and the seed's recipe, measured in one run.

Prints a table and writes benchmarks/results/throughput.json. Everything runs on this machine
against an embedded redis-server (AOF on), on the same frames, with the same threads:

- bare loop:     decode → detect → align → embed → match, no Redis at all
- worker miss:   our worker on frames it has never seen (stream read, cache GET, model, commit)
- worker hit:    the same frames again (stream read, cache GET, match, commit)
- seed miss/hit: the naive recipe (MD5 → GET image:<md5> → recognise → SET), one frame at a
                 time; it pickled its results, we store the same data as JSON (no unpickling).

Usage: python benchmarks/throughput.py [--frames 200] [--threads 1] [--batch 8]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import orjson
import redis
from facestream.ingest import EncodedFrame, FramePublisher
from facestream.recognizer import FaceEngine, Gallery, Worker, decode_jpeg, embed_photos
from facestream.schemas import Result, keys

from facestream.config import load_settings
from facestream.demo import DEMO_DATA, _fit
from facestream.server import EmbeddedRedis

GROUP = "bench"


def make_frames(count: int) -> list[bytes]:
    """Distinct 640×360 JPEGs (slow zooms over the bundled scenes), ~0.7 faces per frame."""
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
            image = _fit(scene, (640, 360), 1.0 + 0.002 * index)
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return frames


def timed(label: str, count: int, run: object) -> dict[str, float]:
    start = time.perf_counter()
    run()  # type: ignore[operator]
    seconds = time.perf_counter() - start
    return {"name": label, "frames": count, "seconds": seconds, "fps": count / seconds}


def drain(worker: Worker, client: redis.Redis, expected: int) -> None:
    while client.xlen(keys.results(GROUP)) < expected:
        worker.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "throughput.json"
    )
    args = parser.parse_args()

    frames = make_frames(args.frames)
    with tempfile.TemporaryDirectory() as scratch, EmbeddedRedis(Path(scratch)) as server:
        settings = load_settings(
            redis={"url": server.url},
            models={"threads": args.threads},
            worker={"batch_size": args.batch, "block_ms": 50},
        )
        client = redis.Redis.from_url(server.url)
        engine = FaceEngine.from_settings(settings.models, settings.match)
        gallery = Gallery(client)
        for folder in sorted(p for p in (DEMO_DATA / "gallery").iterdir() if p.is_dir()):
            gallery.enroll(embed_photos(engine, folder.name, sorted(folder.glob("*.jpg"))))
        engine.matcher = gallery.matcher(engine.model_id, 0.363, 0.05)
        for jpeg in frames[:10]:  # warm-up: first runs allocate
            engine.recognise([decode_jpeg(jpeg)])

        rows = [
            timed(
                "bare model loop",
                len(frames),
                lambda: [engine.recognise([decode_jpeg(f)]) for f in frames],
            )
        ]

        def seed(store: bool) -> None:
            for jpeg in frames:
                key = "image:" + hashlib.md5(jpeg).hexdigest()
                cached = client.get(key)
                if cached is not None:
                    orjson.loads(cached)
                    continue
                (recognition,) = engine.recognise([decode_jpeg(jpeg)])
                if store:
                    client.set(key, orjson.dumps([f.model_dump() for f in recognition.faces]))

        rows.append(timed("seed recipe, all miss", len(frames), lambda: seed(True)))
        rows.append(timed("seed recipe, all hit", len(frames), lambda: seed(False)))

        worker = Worker(
            client, engine, settings.worker, settings.match, settings.limits, "bench", [GROUP]
        )
        worker.step()
        publisher = FramePublisher(client, GROUP, "cam", 100_000, settings.limits)
        image = cv2.imdecode(np.frombuffer(frames[0], np.uint8), cv2.IMREAD_COLOR)
        size = (image.shape[1], image.shape[0])
        for jpeg in frames:
            publisher.publish(EncodedFrame(jpeg, *size, "bench"))
        rows.append(
            timed("worker, all miss", len(frames), lambda: drain(worker, client, len(frames)))
        )
        for jpeg in frames:
            publisher.publish(EncodedFrame(jpeg, *size, "bench"))
        rows.append(
            timed("worker, all hit", len(frames), lambda: drain(worker, client, 2 * len(frames)))
        )
        results = [Result.from_fields(f) for _, f in client.xrange(keys.results(GROUP))]

    fps = {row["name"]: row["fps"] for row in rows}
    ratios = {
        "worker miss / bare loop": fps["worker, all miss"] / fps["bare model loop"],
        "worker miss / seed miss": fps["worker, all miss"] / fps["seed recipe, all miss"],
        "worker hit / seed hit": fps["worker, all hit"] / fps["seed recipe, all hit"],
    }
    latency = stage_percentiles(results[: len(frames)]), stage_percentiles(results[len(frames) :])
    faces = sum(len(r.faces) for r in results[: len(frames)]) / len(frames)

    print(
        f"\n{len(frames)} frames 640x360, {faces:.2f} faces/frame, {args.threads} thread(s), batch {args.batch}"
    )
    print(f"{'run':<26}{'frames/s':>10}")
    for row in rows:
        print(f"{row['name']:<26}{row['fps']:>10.1f}")
    print()
    for name, value in ratios.items():
        print(f"{name:<26}{value:>10.3f}")
    for label, table in zip(("miss", "hit"), latency, strict=True):
        print(
            f"\nper-stage ms ({label}) "
            + "  ".join(f"{s} p50 {v['p50']:.1f}/p99 {v['p99']:.1f}" for s, v in table.items())
        )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": {"cpu_count": __import__("os").cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "frames": len(frames), "threads": args.threads, "batch": args.batch, "faces_per_frame": faces,
        "runs": rows, "ratios": ratios, "latency_ms": {"miss": latency[0], "hit": latency[1]},
    }  # fmt: skip
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


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
