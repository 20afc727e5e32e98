"""`facestream demo`: embedded Redis, bundled gallery, two workers, a clip, live results."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import redis
import typer
import yaml
from numpy.typing import NDArray

from facestream.ingest import FramePublisher, replay
from facestream.recognizer import FaceEngine, Gallery, embed_photos
from facestream.schemas import FacestreamError, Result, keys

from .acl import password_file
from .cli_redis import export_lines
from .client import describe_result, tail_results
from .config import Settings
from .connect import connect
from .server import EmbeddedRedis
from .signals import deferred_signals

__all__ = ["DEMO_DATA", "build_clip", "enrol_demo_gallery", "fit_frame", "run_demo"]

DEMO_DATA = Path(__file__).parent / "demo_data"
_GROUP = "demo"


def build_clip(
    scenes: list[Path],
    target: Path,
    size: tuple[int, int] = (960, 540),
    fps: int = 10,
    moving: int = 8,
    still: int = 6,
) -> int:
    """Write an MJPEG clip: each scene slowly zooms (new frames), then holds (repeated frames).

    Held frames decode to identical pixels, so they re-encode to identical JPEGs: the cache
    serves them without running the model. Returns the number of frames written.
    """
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise FacestreamError(f"OpenCV cannot write an MJPEG video to {target}")
    frames = 0
    try:
        for scene in scenes:
            image = cv2.imread(str(scene), cv2.IMREAD_COLOR)
            if image is None:
                raise FacestreamError(f"{scene}: not a readable image")
            for step in range(moving + still):
                zoom = 1.0 + 0.1 * min(step, moving) / moving
                writer.write(fit_frame(np.asarray(image, np.uint8), size, zoom))
                frames += 1
    finally:
        writer.release()
    return frames


def fit_frame(image: NDArray[np.uint8], size: tuple[int, int], zoom: float) -> NDArray[np.uint8]:
    """Letterbox `image` into a canvas of `size`, zoomed about its centre."""
    width, height = size
    h, w = image.shape[:2]
    scale = min(width / w, height / h) * zoom
    resized = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    rh, rw = resized.shape[:2]
    # Centre-crop what overflows, centre-pad what does not fill.
    sy, sx = max(0, (rh - height) // 2), max(0, (rw - width) // 2)
    crop = resized[sy : sy + height, sx : sx + width]
    oy, ox = (height - crop.shape[0]) // 2, (width - crop.shape[1]) // 2
    canvas[oy : oy + crop.shape[0], ox : ox + crop.shape[1]] = crop
    return canvas


def run_demo(settings: Settings, workers: int = 2, keep_running: bool = False) -> int:
    """Run the whole pipeline on this machine; returns the exit code.

    With `keep_running`, Redis and the workers stay up after the summary, until Ctrl-C, so the
    page (`facestream web`) and `status` can be opened on the demo's data.
    """
    # SIGTERM cleans up like Ctrl-C does: workers stopped, Redis shut down, temp dir removed.
    # SIGINT too, even where it was inherited as ignored (a job started with `&`).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="facestream-demo-") as scratch:
        work = Path(scratch)
        secret = work / "redis.password"  # 0600: loopback alone does not stop other users
        server = EmbeddedRedis(work / "redis", password=password_file(secret))
        started: list[subprocess.Popen[bytes]] = []
        try:
            server.start()
            typer.echo(f"embedded Redis on {server.address} (AOF on, data in {work / 'redis'})")
            redis_settings = settings.redis.model_copy(
                update={"url": server.address, "password": None, "password_file": secret}
            )
            settings = settings.model_copy(update={"redis": redis_settings})
            client = connect(settings.redis)
            _enrol_gallery(settings, client)
            clip = work / "entrance.avi"
            scenes = sorted((DEMO_DATA / "scenes").glob("*.jpg"))
            clip_frames = build_clip(scenes, clip)
            typer.echo(f"built a {clip_frames}-frame clip from {len(scenes)} photos")
            processes = _start_workers(settings, work, workers, started)
            _wait_for_consumers(client, workers, processes)
            expected = clip_frames + 2 * len(scenes)
            sender = threading.Thread(
                target=_send_frames, args=(settings, client, clip, scenes), daemon=True
            )
            sender.start()
            results = _collect(client, expected, processes, describe_result)
            _summarise(results, expected)
            typer.echo(NEXT_STEPS)
            if keep_running:
                _hold(server, secret, processes)
            return 0 if len(results) == expected else 1
        except KeyboardInterrupt:
            typer.echo("\ninterrupted, cleaning up", err=True)
            return 130
        except FacestreamError:
            _show_log_tail(work / "workers.log")
            raise
        finally:
            for process in started:
                _stop(process)
            server.stop()


NEXT_STEPS = """
next steps
  facestream demo --keep-running   the same, then Redis and the workers stay up for the page
  facestream web --init            a login for the page (./facestream.yaml); then facestream web
  your own camera                  README.md, "Your cameras": facestream redis, camera, worker
  docs                             docs/web.md, docs/configuration.md, docs/cameras.md"""


def _hold(server: EmbeddedRedis, secret: Path, workers: subprocess.Popen[bytes]) -> None:
    """Keep Redis and the workers up until Ctrl-C (or SIGTERM), saying how to reach them."""
    lines = "\n".join(f"  {line}" for line in export_lines(server.address, secret))
    typer.echo(
        "\nthe demo keeps running (Ctrl-C stops it); in another terminal, on its data:\n"
        f"{lines}\n"
        "  facestream status\n"
        "  facestream web --init && facestream web    # then http://127.0.0.1:8080/"
    )
    sys.stdout.flush()
    try:
        workers.wait()  # returns early only if the workers die
    except KeyboardInterrupt:
        typer.echo("\nstopping the demo", err=True)


def _enrol_gallery(settings: Settings, client: redis.Redis) -> None:
    engine = FaceEngine.from_settings(settings.models, settings.match.enrol)
    for name, photos in enrol_demo_gallery(engine, client).items():
        typer.echo(f"enrolled {name} ({photos} photo(s))")


def enrol_demo_gallery(engine: FaceEngine, client: redis.Redis) -> dict[str, int]:
    """Enrol the bundled demo people; how many photos each one has."""
    gallery = Gallery(client)
    enrolled = {}
    for folder in sorted(p for p in (DEMO_DATA / "gallery").iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        gallery.enroll(embed_photos(engine, folder.name, photos))
        enrolled[folder.name] = len(photos)
    return enrolled


def _start_workers(
    settings: Settings, work: Path, count: int, started: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    """Start the worker processes and record them in `started` before any signal can land."""
    config = work / "facestream.yaml"
    data = settings.model_dump(mode="json", exclude_none=True)
    data["worker"]["block_ms"] = 200
    config.write_text(yaml.safe_dump(data))
    log_file = (work / "workers.log").open("wb")
    command = [sys.executable, "-m", "facestream", "--config", str(config), "--log-format", "json"]
    command += ["worker", "--groups", _GROUP, "--concurrency", str(count)]
    typer.echo(f"starting {count} worker processes (logs: {work / 'workers.log'})")
    with deferred_signals():  # Ctrl-C here must not orphan the workers
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        started.append(process)
    return process


def _wait_for_consumers(client: redis.Redis, count: int, process: subprocess.Popen[bytes]) -> None:
    """Wait until `count` workers report in (their models are loaded)."""
    while process.poll() is None:
        if len(list(client.scan_iter(match=keys.worker_heartbeat("*")))) >= count:
            return
        time.sleep(0.2)
    raise FacestreamError("the worker processes exited during start-up; see workers.log")


def _send_frames(settings: Settings, client: redis.Redis, clip: Path, scenes: list[Path]) -> None:
    def publisher(camera: str) -> FramePublisher:
        return FramePublisher(
            client,
            _GROUP,
            camera,
            settings.ingest.frames_maxlen,
            settings.limits,
        )

    # Two cameras: a video at 10 fps, and a photo folder shown twice (the second pass is cached).
    replay(clip, publisher("entrance-1"), fps=10, max_backlog=settings.ingest.max_backlog)
    atrium = publisher("atrium-2")
    for _ in range(2):
        replay(scenes[0].parent, atrium, fps=5)


def _collect(
    client: redis.Redis,
    expected: int,
    workers: subprocess.Popen[bytes],
    describe: Callable[[Result], str],
) -> list[Result]:
    results: list[Result] = []
    stop = threading.Event()

    def watchdog() -> None:
        deadline = time.monotonic() + 600
        while not stop.wait(0.5):
            if workers.poll() is not None or time.monotonic() > deadline:
                typer.echo("workers stopped before every frame had a result", err=True)
                stop.set()

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        for result in tail_results(client, [_GROUP], from_start=True, stop=stop):
            results.append(result)
            typer.echo(f"[{len(results):>3}/{expected}] {describe(result)}")
            if len(results) >= expected:
                break
    finally:
        stop.set()
    return results


def _summarise(results: list[Result], expected: int) -> None:
    faces = sum(len(r.faces) for r in results)
    seen = collections.Counter(name for r in results for name in r.identities)
    unknown = sum(1 for r in results for f in r.faces if f.identity is None)
    cached = sum(r.cached for r in results)
    e2e = np.array([r.latency_ms.get("e2e", 0.0) for r in results]) if results else np.zeros(1)
    typer.echo("\nsummary")
    typer.echo(f"  frames      {len(results)} of {expected} sent")
    typer.echo(f"  faces       {faces} ({unknown} unknown)")
    typer.echo("  identities  " + ", ".join(f"{n} ×{c}" for n, c in sorted(seen.items())))
    typer.echo(f"  cache hits  {cached} ({100 * cached / max(len(results), 1):.0f}%)")
    typer.echo(
        f"  latency     capture→result p50 {np.percentile(e2e, 50):.0f} ms, "
        f"p99 {np.percentile(e2e, 99):.0f} ms"
    )


def _show_log_tail(log: Path, lines: int = 20) -> None:
    """The temp dir is about to go: show what the workers said before it does."""
    if log.is_file():
        typer.echo(f"last lines of {log.name}:", err=True)
        for line in log.read_text(errors="replace").splitlines()[-lines:]:
            typer.echo(f"  {line}", err=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
