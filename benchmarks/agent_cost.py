"""What one camera costs its agent, stage by stage, against a real RTSP server on loopback.

A real clip (tests/data/video, CC BY 4.0 Intel: people passing one by one in a room) is
played forward and back, scaled to 1920x1080 and 640x360 and encoded as a camera would
(H.264 by openh264 at 4 Mbit/s and 512 kbit/s, a key frame every 2 s; MJPEG as JPEGs at
quality 90), and served by GStreamer's RTSP server (tests/servers/rtsp_server.py) at
`--source-fps`, every frame a real one (at 20 fps the clip plays at twice its 10 fps: more
motion per frame than a real 20 fps camera, so decoding costs no less than it would).

1. Stages: one capture per stream, every frame grabbed, the one in `source fps / 5` retrieved,
   encoded and XADDed, each step timed by its own thread CPU time (decoder threads: 1, so
   FFmpeg decodes in the calling thread); demux alone from FFmpeg's raw packets.
2. Agents: `run_cameras` with one camera on each path, CPU of this process per second of
   stream (RTSP and Redis servers run in their own processes), 5 frames/s published.

Prints two tables and writes benchmarks/results/agent_cost.json. Needs, besides the camera
tests' GStreamer packages (scripts/install-system-deps.sh), gstreamer1.0-plugins-bad for
openh264enc; takes about 4 minutes.
Usage: python benchmarks/agent_cost.py [--seconds 8] [--source-fps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import redis

from facestream.ingest import CameraSettings, EncodedFrame, FramePublisher, encode_jpeg, run_cameras
from facestream.schemas import FrameLimits, keys
from facestream.server import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "tests" / "data" / "video" / "one-by-one-cut.mp4"
SERVERS = ROOT / "tests" / "servers"
PUBLISHED_FPS = 5.0
# (name, size, file, encoder bit rate): the streams a camera offers.
STREAMS = (
    ("H.264 1920x1080", (1920, 1080), "main.mp4", 4_000_000),
    ("H.264 640x360", (640, 360), "sub.mp4", 512_000),
    ("MJPEG 1920x1080", (1920, 1080), "main.avi", 0),
)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_streams(folder: Path, source_fps: int, seconds: float) -> dict[str, Path]:
    """The clip, forward then back until it lasts `seconds`, as each stream's file."""
    capture = cv2.VideoCapture(str(CLIP))
    frames: list[np.ndarray] = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    capture.release()
    loop = frames + frames[::-1]
    count = int(seconds * source_fps)
    clips = {}
    for name, size, file, bitrate in STREAMS:
        jpegs = folder / f"{size[1]}p"
        if not jpegs.is_dir():
            jpegs.mkdir()
            for index in range(count):
                image = cv2.resize(loop[index % len(loop)], size, interpolation=cv2.INTER_CUBIC)
                cv2.imwrite(str(jpegs / f"f{index:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out = folder / file
        command = ["/usr/bin/python3", str(SERVERS / "encode_clip.py"), "--frames", str(jpegs),
                   "--out", str(out), "--fps", str(source_fps)]  # fmt: skip
        command += ["--gop", str(2 * source_fps)]
        if bitrate:
            command += ["--bitrate", str(bitrate)]
        subprocess.run(command, check=True, capture_output=True)
        clips[name] = out
    return clips


class Server:
    """One RTSP server process for one clip; each client gets the clip from its start."""

    def __init__(self, clip: Path) -> None:
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        command = ["/usr/bin/python3", str(SERVERS / "rtsp_server.py"), "--port", str(self.port),
                   "--clip", str(clip)]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


def _timed(clock: dict[str, float], stage: str, step: Callable[[], object]) -> object:
    start = time.thread_time()
    result = step()
    clock[stage] = clock.get(stage, 0.0) + time.thread_time() - start
    return result


def stages(url: str, client: redis.Redis, seconds: float, source_fps: int) -> dict[str, float]:
    """ms of CPU per frame of each stage (demux, decode, convert, encode, xadd)."""
    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp"
    params = [cv2.CAP_PROP_N_THREADS, 1]
    raw = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    raw.set(cv2.CAP_PROP_FORMAT, -1)  # packets as they come: what demuxing alone costs
    clock: dict[str, float] = {}
    grabbed = 0
    deadline = time.monotonic() + seconds / 2
    while time.monotonic() < deadline and _timed(clock, "demux", raw.grab):
        grabbed += 1
    raw.release()
    per_frame = {"demux": clock.pop("demux") / max(grabbed, 1) * 1000}

    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    publisher = FramePublisher(client, "bench", "stages", 1000, FrameLimits())
    every = max(1, round(source_fps / PUBLISHED_FPS))
    grabbed = published = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and _timed(clock, "grab", capture.grab):
        grabbed += 1
        if grabbed % every:
            continue
        image = np.asarray(_timed(clock, "convert", lambda: capture.retrieve()[1]), np.uint8)
        encoded = _timed(clock, "encode", lambda i=image: EncodedFrame(*encode_jpeg(i, 85)))
        _timed(clock, "xadd", lambda e=encoded: publisher.publish(e))  # type: ignore[arg-type]
        published += 1
    capture.release()
    per_frame["decode"] = max(0.0, clock["grab"] / grabbed * 1000 - per_frame["demux"])
    for stage in ("convert", "encode", "xadd"):
        per_frame[stage] = clock[stage] / max(published, 1) * 1000
    if published:  # the cost of scaling a frame to 640 wide (max_side), for the table
        start = time.thread_time()
        for _ in range(20):
            cv2.resize(image, (640, 360), interpolation=cv2.INTER_AREA)
        per_frame["resize to 640x360"] = (time.thread_time() - start) / 20 * 1000
    return per_frame


def agent_core(
    client: redis.Redis, camera: CameraSettings, seconds: float, limits: FrameLimits
) -> dict[str, float]:
    """Fraction of a core this process spent on one camera agent, and its published fps."""
    client.flushall()
    stop = threading.Event()
    runner = threading.Thread(
        target=run_cameras, args=([camera], lambda _group: client, limits, 10_000, stop)
    )
    runner.start()
    deadline = time.monotonic() + 20
    while client.xlen(keys.frames("bench")) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)  # opening: FFmpeg probes the stream for a second or two
    time.sleep(1.0)  # then steady streaming only
    first, cpu0, start = client.xlen(keys.frames("bench")), cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    published = client.xlen(keys.frames("bench")) - first
    elapsed, cpu = time.monotonic() - start, cpu_seconds() - cpu0
    stop.set()
    runner.join(15)
    sizes = {(f[b"w"], f[b"h"]) for _, f in client.xrange(keys.frames("bench"), count=20)}
    return {
        "core": cpu / elapsed,
        "published_fps": published / elapsed,
        "size": "x".join(v.decode() for v in sorted(sizes)[0]) if sizes else "-",
    }


def encoders() -> dict[str, float]:
    """ms per 1080p encode at quality 85: OpenCV's libjpeg-turbo, and simplejpeg if present."""
    frame = cv2.resize(cv2.VideoCapture(str(CLIP)).read()[1], (1920, 1080))
    options = [cv2.IMWRITE_JPEG_QUALITY, 85]
    runs: dict[str, Callable[[], object]] = {
        "cv2.imencode": lambda: cv2.imencode(".jpg", frame, options)
    }
    try:
        import simplejpeg  # type: ignore[import-not-found]  # optional: not a dependency
    except ImportError:
        pass
    else:
        for sub in ("444", "420"):
            runs[f"simplejpeg {sub}"] = lambda s=sub: simplejpeg.encode_jpeg(
                frame, 85, colorspace="BGR", colorsubsampling=s
            )
    times = {}
    for name, run in runs.items():
        run()
        start = time.thread_time()
        for _ in range(30):
            run()
        times[name] = (time.thread_time() - start) / 30 * 1000
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--source-fps", type=int, default=20)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "agent_cost.json"
    )
    args = parser.parse_args()
    fps = args.source_fps
    report: dict[str, object] = {"cpus": os.cpu_count(), "source_fps": fps,
                                 "published_fps": PUBLISHED_FPS}  # fmt: skip
    with (
        tempfile.TemporaryDirectory() as scratch,
        EmbeddedRedis(Path(scratch) / "redis") as redis_server,
    ):
        client = redis.Redis.from_url(redis_server.url)
        clips = make_streams(Path(scratch), fps, 2 * args.seconds + 6)
        servers = {name: Server(clip) for name, clip in clips.items()}
        try:
            stage_rows = {
                name: stages(s.url, client, args.seconds, fps) for name, s in servers.items()
            }
            main_url, sub_url = servers["H.264 1920x1080"].url, servers["H.264 640x360"].url
            mjpeg_url = servers["MJPEG 1920x1080"].url
            limits = FrameLimits()

            def camera(url: str, **options: object) -> CameraSettings:
                return CameraSettings.model_validate({"id": "c", "group": "bench", "source": url,
                                                      "fps": PUBLISHED_FPS, **options})  # fmt: skip

            paths = {
                "H.264 1080p main, 1 decoder thread": camera(main_url),
                "H.264 1080p main, a thread per core": camera(main_url, decode_threads=0),
                "H.264 1080p main, max_side 640": camera(main_url, max_side=640),
                "H.264 substream 640x360": camera(main_url, substream=sub_url),
                "MJPEG 1080p, passed through": camera(mjpeg_url),
                "MJPEG 1080p, max_side 1280 (re-encoded)": camera(mjpeg_url, max_side=1280),
            }
            agent_rows = {
                name: agent_core(client, cam, args.seconds, limits) for name, cam in paths.items()
            }
        finally:
            for server in servers.values():
                server.stop()
    report["stages_ms_per_frame"] = stage_rows
    report["agents"] = agent_rows
    report["encode_1080p_ms"] = encoders()

    print(f"\nstages, ms of CPU per frame ({fps} fps served, {PUBLISHED_FPS:g} published):")
    columns = ("demux", "decode", "convert", "resize to 640x360", "encode", "xadd")
    print(f"  {'stream':<18}" + "".join(f"{c:>19}" for c in columns) + f"{'core at 5 fps':>15}")
    for name, row in stage_rows.items():
        core = (fps * (row["demux"] + row["decode"]) + PUBLISHED_FPS *
                (row["convert"] + row["encode"] + row["xadd"])) / 1000  # fmt: skip
        row["core_at_published_fps"] = core
        print(
            f"  {name:<18}" + "".join(f"{row.get(c, 0):>19.2f}" for c in columns) + f"{core:>15.3f}"
        )
    print(f"\none camera agent, {PUBLISHED_FPS:g} frames/s published, {fps} fps served:")
    for name, row in agent_rows.items():
        print(f"  {name:<42} {row['core']:.3f} core  {row['published_fps']:.1f} fps  {row['size']}")
    print(
        "1080p JPEG encode, ms:",
        ", ".join(f"{k} {v:.2f}" for k, v in report["encode_1080p_ms"].items()),
    )  # type: ignore[union-attr]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
