"""Camera agent capacity: how many cameras one process sustains, CPU per camera, XADD rates.

Every camera reads the same MJPEG clip as a file source, which plays in real time, so each
behaves like a live camera: demux every frame it delivers and XADD `fps` of them a second,
the clip's own JPEGs as they are (they fit the limits; benchmarks/agent_cost.py measures the
H.264 and re-encoding paths against a real RTSP server). Sources run faster than we sample,
as real cameras do. A camera count is sustained when >= 95%
of the frames that should be published were. Also measures XADD of ~100 KB frames and 1080p
encode + XADD. Prints a table and writes benchmarks/results/cameras.json.

Usage: python benchmarks/cameras.py [--seconds 8] [--max-cameras 64]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import redis

from facestream.demo import DEMO_DATA, fit_frame
from facestream.ingest import CameraSettings, EncodedFrame, FramePublisher, encode_jpeg, run_cameras
from facestream.schemas import FrameLimits, keys
from facestream.server import EmbeddedRedis

# (name, frame size, frames each file camera delivers per second, frames published per second)
SWEEPS = (
    ("720p at 5 fps", (1280, 720), 10, 5.0),
    # The design's ingest target is 10 cameras of 1080p at 10 fps. Conservative here: each
    # camera delivers 20 fps, so the agent decodes twice what a 10 fps camera would send.
    ("1080p at 10 fps", (1920, 1080), 20, 10.0),
)


def make_clip(path: Path, size: tuple[int, int], source_fps: int, seconds: int = 10) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), source_fps, size)
    scenes = sorted((DEMO_DATA / "scenes").glob("*.jpg"))
    images = [np.asarray(cv2.imread(str(p)), np.uint8) for p in scenes]
    for index in range(seconds * source_fps):
        writer.write(fit_frame(images[index % len(images)], size, 1 + 0.01 * index))
    writer.release()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sweep_point(
    client: redis.Redis, clip: Path, count: int, fps: float, seconds: float
) -> dict[str, float]:
    client.flushall()
    cameras = [
        CameraSettings(id=f"cam{i}", group="bench", source=str(clip), fps=fps) for i in range(count)
    ]
    stop = threading.Event()
    runner = threading.Thread(
        target=run_cameras, args=(cameras, lambda _group: client, FrameLimits(), 100_000, stop)
    )
    runner.start()
    time.sleep(1.0)  # let every camera open and settle
    first, cpu0, start = client.xlen(keys.frames("bench")), cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    published = client.xlen(keys.frames("bench")) - first
    elapsed, cpu = time.monotonic() - start, cpu_seconds() - cpu0
    stop.set()
    runner.join(15)
    return {
        "cameras": count,
        "published_fps": published / elapsed,
        "expected_fps": count * fps,
        "delivered": published / (count * fps * elapsed),
        "cpu_per_camera": cpu / elapsed / count,
    }


def xadd_rate(client: redis.Redis, frame: EncodedFrame, seconds: float = 3.0) -> float:
    client.flushall()
    publisher = FramePublisher(client, "bench", "x", 1000, FrameLimits())
    sent, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        publisher.publish(frame)
        sent += 1
    return sent / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--max-cameras", type=int, default=64)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "cameras.json"
    )
    args = parser.parse_args()

    sweeps: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as scratch, EmbeddedRedis(Path(scratch) / "redis") as server:
        client = redis.Redis.from_url(server.url)
        for name, size, source_fps, fps in SWEEPS:
            clip = Path(scratch) / f"{size[1]}p.avi"
            make_clip(clip, size, source_fps)
            rows = []
            count = 1
            while count <= args.max_cameras:
                row = sweep_point(client, clip, count, fps, args.seconds)
                rows.append(row)
                print(
                    f"{name}: {count:>3} cameras: {row['published_fps']:7.1f} of "
                    f"{row['expected_fps']:g} fps ({row['delivered']:.0%}), "
                    f"{row['cpu_per_camera']:.3f} CPU s/s per camera"
                )
                if row["delivered"] < 0.95:
                    break
                count *= 2
            sustained = max((r["cameras"] for r in rows if r["delivered"] >= 0.95), default=0)
            sweeps[name] = {"rows": rows, "sustained_cameras": sustained}

        noise = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
        jpeg, width, height = encode_jpeg(noise, 95)
        small = EncodedFrame(jpeg, width, height)
        rate_small = xadd_rate(client, small)
        scene = sorted((DEMO_DATA / "scenes").glob("*.jpg"))[0]
        full_hd = fit_frame(np.asarray(cv2.imread(str(scene)), np.uint8), (1920, 1080), 1.0)
        start, encoded = time.monotonic(), 0
        while time.monotonic() - start < 3:
            jpeg_hd, width, height = encode_jpeg(full_hd, 85)
            encoded += 1
        encode_hd = encoded / (time.monotonic() - start)
        rate_hd = xadd_rate(client, EncodedFrame(jpeg_hd, width, height))

    print(f"\none agent process, {os.cpu_count()} CPUs, sustained (>= 95% of frames published):")
    for name, sweep in sweeps.items():
        print(f"  {name}: {sweep['sustained_cameras']} cameras")
    kilobytes = len(small.jpeg) / 1000
    megabytes = rate_small * kilobytes / 1e3
    print(f"XADD of {kilobytes:.0f} KB frames: {rate_small:,.0f}/s ({megabytes:,.0f} MB/s)")
    hd_kb = len(jpeg_hd) / 1000
    print(f"1080p ({hd_kb:.0f} KB): JPEG encode {encode_hd:.0f}/s, XADD {rate_hd:,.0f}/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "cpus": os.cpu_count(), "sweeps": sweeps, "xadd_frame_bytes": len(small.jpeg),
        "xadd_per_s": rate_small, "encode_1080p_per_s": encode_hd, "xadd_1080p_per_s": rate_hd,
    }  # fmt: skip
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
