"""What one live camera costs end to end: its agent and its worker, each in its own process.

The room clip of `benchmarks/agent_cost.py` (tests/data/video, CC BY 4.0 Intel: people passing
one by one), encoded as a camera's streams and served by GStreamer's RTSP server on loopback,
is read by `facestream camera` (5 frames/s published) and recognised by `facestream worker`
(one process, one onnxruntime thread, the four bundled people enrolled; nobody in the clip is
one of them) against an embedded redis-server. Both are the real commands, started as a site
would start them; the CPU of each process (its user + system time, from /proc) is read over
the same stretch of steady streaming, after the worker has served its first results. The
RTSP and Redis servers and this driver are not counted.

Rows: the camera's H.264 640×360 substream, its H.264 1920×1080 main stream and its MJPEG
1920×1080 stream (passed through), each with tracks on (the defaults) and off.

Prints a table and writes benchmarks/results/camera_cost.json. Needs what agent_cost.py
needs (GStreamer's RTSP server and openh264enc) and Linux (/proc); takes about 2.5 minutes.
Usage: python benchmarks/camera_cost.py [--seconds 12] [--source-fps 10]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import redis
from agent_cost import CLIP, PUBLISHED_FPS, Server, make_streams
from tracks import GROUP, enrol

from facestream.config import load_settings
from facestream.recognizer import FaceEngine, Gallery
from facestream.schemas import GalleryExport, keys
from facestream.server import EmbeddedRedis, free_port

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start(role: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "facestream", *role],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("worker not ready in time")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def camera(
    client: redis.Redis,
    url: str,
    gallery: GalleryExport,
    model_id: str,
    source: list[str],
    tracks: bool,
    seconds: float,
) -> dict[str, float]:
    """Cores of the agent and of the worker for one camera, over `seconds` of steady streaming."""
    client.flushall()
    Gallery(client).import_(gallery, model_id)
    env = {**os.environ, "FACESTREAM_REDIS__URL": url,
           "FACESTREAM_TRACKS__ENABLED": "true" if tracks else "false",
           "FACESTREAM_MODELS__THREADS": "1", "FACESTREAM_LOG__FORMAT": "json"}  # fmt: skip
    port = free_port()
    worker = start(["worker", "--groups", GROUP, "--metrics-port", str(port)], env)
    agent = None
    try:
        wait_ready(port, worker)
        agent = start(["camera", *source, "--camera-id", "c", "--group", GROUP,
                       "--fps", str(PUBLISHED_FPS)], env)  # fmt: skip
        deadline = time.monotonic() + 30
        while client.xlen(keys.results(GROUP)) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)  # FFmpeg probes the stream; the worker's first frames warm it up
        time.sleep(1.0)
        results0, frames0 = client.xlen(keys.results(GROUP)), client.xlen(keys.frames(GROUP))
        agent0, worker0, start_s = cpu_seconds(agent.pid), cpu_seconds(worker.pid), time.monotonic()
        time.sleep(seconds)
        agent_s, worker_s = cpu_seconds(agent.pid) - agent0, cpu_seconds(worker.pid) - worker0
        elapsed = time.monotonic() - start_s
        results = client.xlen(keys.results(GROUP)) - results0
        published = client.xlen(keys.frames(GROUP)) - frames0
    finally:
        if agent is not None:
            stop(agent)
        stop(worker)
    return {
        "agent_core": agent_s / elapsed,
        "worker_core": worker_s / elapsed,
        "camera_core": (agent_s + worker_s) / elapsed,
        "published_fps": published / elapsed,
        "results_per_s": results / elapsed,
        "worker_ms_per_result": worker_s / max(results, 1) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--source-fps", type=int, default=10)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "camera_cost.json"
    )
    args = parser.parse_args()
    report: dict[str, object] = {"cpus": os.cpu_count(), "source_fps": args.source_fps,
                                 "published_fps": PUBLISHED_FPS, "clip": CLIP.name}  # fmt: skip
    rows: dict[str, dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory() as scratch,
        EmbeddedRedis(Path(scratch) / "redis", appendonly=False) as redis_server,
    ):
        client = redis.Redis.from_url(redis_server.url)
        engine = FaceEngine.from_settings(load_settings(models={"threads": 1}).models)
        enrol(client, engine)
        gallery, model_id = Gallery(client).export(engine.model_id), engine.model_id
        # Startup, warm-up and the steady stretch must fit in the clip, which is not looped.
        clips = make_streams(Path(scratch), args.source_fps, args.seconds + 25)
        servers = {name: Server(clip) for name, clip in clips.items()}
        main_url, sub_url = servers["H.264 1920x1080"].url, servers["H.264 640x360"].url
        sources = {
            "H.264 640x360 substream": ["--source", main_url, "--substream", sub_url],
            "H.264 1920x1080 main stream": ["--source", main_url],
            "MJPEG 1920x1080, passed through": ["--source", servers["MJPEG 1920x1080"].url],
        }
        try:
            for name, source in sources.items():
                for tracks in (True, False):
                    row = f"{name}, tracks {'on' if tracks else 'off'}"
                    rows[row] = camera(
                        client, redis_server.url, gallery, model_id, source, tracks, args.seconds
                    )
                    print(f"  {row}: {rows[row]['camera_core']:.3f} core", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    report["cameras"] = rows

    print(
        f"\none camera, {PUBLISHED_FPS:g} frames/s published, {args.source_fps} fps served, "
        f"cores over {args.seconds:g} s of steady streaming:"
    )
    columns = ("agent_core", "worker_core", "camera_core", "published_fps", "results_per_s",
               "worker_ms_per_result")  # fmt: skip
    print(f"  {'camera':<46}" + "".join(f"{c:>21}" for c in columns))
    for name, row in rows.items():
        print(f"  {name:<46}" + "".join(f"{row[c]:>21.3f}" for c in columns))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
