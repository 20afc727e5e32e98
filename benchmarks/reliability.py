"""Chaos run: replay frames through workers while SIGKILLing workers and Redis; count outcomes.

Every frame entry must end with exactly one result or dead letter (counted by frame_id): nothing
lost, nothing doubled, no good frame dead-lettered, and replay sends every file exactly once.
`make reliability` (or `python benchmarks/reliability.py`) prints the table and writes
benchmarks/results/reliability.json; tests/test_chaos.py runs the same scenario and asserts it.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import orjson
import redis

from facestream.config import Settings
from facestream.recognizer import FaceEngine, Gallery, embed_photos
from facestream.schemas import keys
from facestream.server import EmbeddedRedis, free_port

REPO = Path(__file__).resolve().parents[1]
FACES = REPO / "tests" / "data" / "faces"
GROUP = "chaos"


@dataclass
class ChaosReport:
    """What one chaos run saw; `lost`, `doubled` and `good_dead` must all be 0."""

    files: int = 0
    distinct_images: int = 0
    hostile: int = 0
    hostile_dead: int = 0
    replay_exit: int | None = None
    replay_sent: int = 0
    frame_entries: int = 0
    duplicate_seqs: int = 0
    results: int = 0
    dead_letters: int = 0
    lost: int = 0
    doubled: int = 0
    good_dead: int = 0
    cached_results: int = 0
    worker_kills: int = 0
    worker_starts: int = 0
    redis_kills: int = 0
    solo_retries: int = 0  # solo attempts that began after an earlier one died (worker logs)
    redis_down_s: list[float] = field(default_factory=list)
    seconds: float = 0.0
    dead_reasons: list[str] = field(default_factory=list)


def make_frames(folder: Path, count: int, distinct: int, seed: int = 7) -> int:
    """`count` JPEG files from `distinct` crops of the labelled photos (repeats: cache hits)."""
    rng = random.Random(seed)
    photos = [cv2.imread(str(p)) for p in sorted((FACES / "test").glob("*.jpg"))]
    images: list[bytes] = []
    for index in range(distinct):
        photo = photos[index % len(photos)]
        height, width = photo.shape[:2]
        # A different crop and size per image: distinct bytes, the faces still in the frame.
        crop = 0.03 + 0.07 * rng.random()
        top, left = int(height * crop), int(width * crop * rng.random())
        view = photo[top : height - int(height * crop * rng.random()), left:]
        scale = 360 / view.shape[0]
        view = cv2.resize(view, (int(view.shape[1] * scale) // 2 * 2, 360))
        ok, encoded = cv2.imencode(".jpg", view, [cv2.IMWRITE_JPEG_QUALITY, 85 + index % 10])
        assert ok
        images.append(encoded.tobytes())
    order = [i % distinct for i in range(count)]
    rng.shuffle(order)
    folder.mkdir(parents=True, exist_ok=True)
    for position, image in enumerate(order):
        (folder / f"f{position:05d}.jpg").write_bytes(images[image])
    return len(set(images))


def hostile_entries(photo: bytes) -> dict[str, dict[str, bytes | str | int]]:
    """Entries a broken or malicious camera could write, each of which must be dead-lettered."""
    real_h, real_w = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR).shape[:2]
    good: dict[str, bytes | str | int] = {
        "v": 1, "camera": "cam-evil", "group": GROUP, "seq": 0, "ts": int(time.time() * 1000),
        "codec": "jpeg", "w": real_w, "h": real_h, "img": photo,
    }  # fmt: skip
    width, height = _jpeg_dimensions_at(photo)
    bomb = bytearray(photo)
    bomb[height : height + 2] = (32768).to_bytes(2, "big")  # the header now says 32768×32768
    bomb[width : width + 2] = (32768).to_bytes(2, "big")
    png = cv2.imencode(".png", np.zeros((360, 640, 3), np.uint8))[1].tobytes()
    no_image = {k: v for k, v in good.items() if k != "img"}
    return {
        "decompression bomb header": {**good, "img": bytes(bomb)},
        "declared size is not the real one": {**good, "w": real_w // 2, "h": real_h // 2},
        "PNG bytes": {**good, "img": png},
        "truncated JPEG": {**good, "img": photo[: len(photo) // 2]},
        "empty image": {**good, "img": b""},
        "missing field": no_image,
        "400-digit ts": {**good, "ts": "9" * 400},
        "wrong schema version": {**good, "v": 99},
        "hostile camera name": {**good, "camera": "../../etc/passwd\n"},
    }


def _jpeg_dimensions_at(photo: bytes) -> tuple[int, int]:
    """Byte offsets of the width and height in the JPEG's SOF0 frame header."""
    sof = photo.index(b"\xff\xc0")
    return sof + 7, sof + 5


def _command(redis_url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "facestream", "--redis-url", redis_url, *args]


def run_chaos(
    workdir: Path,
    model_cache: Path,
    frames: int = 1000,
    distinct: int = 400,
    fps: float = 40.0,
    workers: int = 2,
    kill_every_s: float = 1.0,
    redis_kills: int = 2,
    redis_down_s: float = 3.0,
    timeout_s: float = 360.0,
) -> ChaosReport:
    """Run the scenario in `workdir` (frames, Redis data, logs) and count what came out."""
    report = ChaosReport(files=frames)
    report.distinct_images = make_frames(workdir / "frames", frames, distinct)
    port = free_port()
    server = EmbeddedRedis(
        workdir / "redis", port=port, extra_args=("--appendfsync", "always")
    ).start()
    url = server.url
    client = redis.Redis.from_url(url, socket_timeout=5)
    settings = Settings()
    engine = FaceEngine.from_settings(settings.models.model_copy(update={"cache_dir": model_cache}))
    gallery = Gallery(client)
    for person in sorted(p for p in (FACES / "train").iterdir() if p.is_dir()):
        gallery.enroll(embed_photos(engine, person.name, sorted(person.iterdir()), True))

    env = {
        **os.environ,
        "FACESTREAM_MODELS__CACHE_DIR": str(model_cache),
        "FACESTREAM_LOG__FORMAT": "json",
        "FACESTREAM_INGEST__FRAMES_MAXLEN": str(frames * 4),  # the run must not trim a frame
        "FACESTREAM_WORKER__BATCH_SIZE": "8",
        "FACESTREAM_WORKER__BLOCK_MS": "200",
        "FACESTREAM_WORKER__CLAIM_IDLE_MS": "2000",
    }
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)

    def start_worker(slot: int) -> subprocess.Popen[bytes]:
        report.worker_starts += 1
        log = (logs / f"worker-{slot}-{report.worker_starts}.log").open("wb")
        return subprocess.Popen(
            _command(url, "worker", "--groups", GROUP, "--consumer", f"chaos-{slot}"),
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    started = time.monotonic()
    pool = [start_worker(slot) for slot in range(workers)]
    replay_log = (logs / "replay.log").open("wb")
    replay = subprocess.Popen(
        _command(url, "replay", str(workdir / "frames"), "--group", GROUP,
                 "--camera-id", "cam-1", "--fps", str(fps)),
        env=env, stdout=replay_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    hostile = hostile_entries((workdir / "frames" / "f00000.jpg").read_bytes())
    report.hostile = len(hostile)
    hostile_ids: set[str] = set()
    rng = random.Random(11)
    redis_kill_at = [started + 6 + 9 * n for n in range(redis_kills)]
    next_kill = started + kill_every_s
    done_at_kill = 0
    deadline = started + timeout_s
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            if redis_kill_at and now >= redis_kill_at[0]:
                redis_kill_at.pop(0)
                assert server.process is not None
                server.process.kill()  # SIGKILL: no shutdown, the AOF is all that survives
                server.process.wait()
                down = time.monotonic()
                report.redis_kills += 1
                time.sleep(redis_down_s)
                server.start(timeout_s=60)
                report.redis_down_s.append(round(time.monotonic() - down, 1))
            if hostile and now >= started + 4 + len(hostile_ids):  # one a second, mid-run
                kind, fields = hostile.popitem()
                try:
                    entry_id = client.xadd(keys.frames(GROUP), fields)  # type: ignore[arg-type]
                    hostile_ids.add(entry_id.decode())
                except redis.ConnectionError:
                    hostile[kind] = fields  # Redis is down this moment: try again
            # Kill on schedule, but only once the pool made progress since the last kill: on a
            # loaded machine a restarted worker may need longer than the period to load models.
            if now >= next_kill and _done(client) >= done_at_kill + 20:
                slot = rng.randrange(workers)
                pool[slot].kill()
                pool[slot].wait()
                report.worker_kills += 1
                pool[slot] = start_worker(slot)
                next_kill = now + kill_every_s
                done_at_kill = _done(client)
            for slot, process in enumerate(pool):
                if process.poll() is not None:  # a worker must never exit by itself
                    raise AssertionError(f"worker {slot} exited with {process.returncode}")
            expected = report.files + report.hostile
            if not hostile and replay.poll() is not None and _done(client) >= expected:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"chaos run did not finish within {timeout_s}s")
    finally:
        for process in pool:
            process.send_signal(signal.SIGTERM)
        for process in pool:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        if replay.poll() is None:
            replay.kill()
        replay.wait()
    report.seconds = round(time.monotonic() - started, 1)
    report.solo_retries = sum(
        log.read_text(errors="replace").count("trying an entry alone")
        for log in logs.glob("worker-*.log")
    )
    report.replay_exit = replay.returncode
    tail = (logs / "replay.log").read_text(errors="replace").strip().splitlines()
    for line in tail:
        if line.startswith("sent "):
            report.replay_sent = int(line.split()[1])
    _count(client, report, hostile_ids)
    client.close()
    server.stop()
    return report


def _done(client: redis.Redis) -> int:
    """Frames with an outcome so far; -1 while Redis is down."""
    try:
        return int(client.xlen(keys.results(GROUP)) + client.xlen(keys.dead(GROUP)))
    except redis.RedisError:
        return -1


def _count(client: redis.Redis, report: ChaosReport, hostile_ids: set[str]) -> None:
    entries = client.xrange(keys.frames(GROUP))
    report.frame_entries = len(entries) - len(hostile_ids)
    seqs = Counter(int(f[b"seq"]) for i, f in entries if i.decode() not in hostile_ids)
    report.duplicate_seqs = sum(n - 1 for n in seqs.values() if n > 1)
    outcomes: Counter[str] = Counter()
    for _, fields in client.xrange(keys.results(GROUP)):
        report.results += 1
        outcomes[fields[b"frame_id"].decode()] += 1
        report.cached_results += fields[b"cached"] in (b"1", b"true")
    for _, fields in client.xrange(keys.dead(GROUP)):
        report.dead_letters += 1
        frame_id = fields[b"frame_id"].decode()
        outcomes[frame_id] += 1
        if frame_id in hostile_ids:
            report.hostile_dead += 1
        else:
            report.good_dead += 1
            report.dead_reasons.append(fields.get(b"reason", b"").decode()[:200])
    frame_ids = {entry_id.decode() for entry_id, _ in entries}
    report.lost = sum(1 for frame_id in frame_ids if outcomes[frame_id] == 0)
    report.doubled = sum(n - 1 for n in outcomes.values() if n > 1)


def table_rows(report: ChaosReport) -> list[tuple[str, object]]:
    return [
        ("frame files replayed", report.files),
        ("distinct images (rest are cache hits)", report.distinct_images),
        ("replay exit code / frames it sent", f"{report.replay_exit} / {report.replay_sent}"),
        ("frame entries / duplicate seqs", f"{report.frame_entries} / {report.duplicate_seqs}"),
        ("worker SIGKILLs / worker starts", f"{report.worker_kills} / {report.worker_starts}"),
        ("Redis SIGKILLs (down s, AOF restart)", f"{report.redis_kills} {report.redis_down_s}"),
        ("results (cached)", f"{report.results} ({report.cached_results})"),
        ("hostile entries injected / dead-lettered", f"{report.hostile} / {report.hostile_dead}"),
        ("dead letters", report.dead_letters),
        ("lost", report.lost),
        ("doubled", report.doubled),
        ("good frames dead-lettered", report.good_dead),
        ("solo attempts after a solo attempt died", report.solo_retries),
        ("wall time, s", report.seconds),
    ]  # fmt: skip


def print_table(report: ChaosReport) -> None:
    rows = table_rows(report)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


DOCS_BEGIN = "<!-- chaos figures: written by benchmarks/reliability.py -->"
DOCS_END = "<!-- end of chaos figures -->"


def update_docs(path: Path, report: ChaosReport) -> None:
    """Replace the figures between the markers in `path` with this run's (never typed by hand)."""
    text = path.read_text()
    if DOCS_BEGIN not in text or DOCS_END not in text:
        raise SystemExit(f"{path} has no chaos figure markers")
    table = "\n".join(
        ["| chaos run | figure |", "| --- | ---: |"]
        + [f"| {name} | {value} |" for name, value in table_rows(report)]
    )
    before, rest = text.split(DOCS_BEGIN, 1)
    after = rest.split(DOCS_END, 1)[1]
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    figures = f"{table}\n\n(measured {stamp} on {os.cpu_count()} cores)"
    path.write_text(f"{before}{DOCS_BEGIN}\n{figures}\n{DOCS_END}{after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--distinct", type=int, default=400)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/reliability.json")
    parser.add_argument("--docs", type=Path, help="Also write the table into this markdown file.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="facestream-chaos-") as scratch:
        cache = Path(os.environ.get("FACESTREAM_MODELS__CACHE_DIR", Path(scratch) / "models"))
        report = run_chaos(Path(scratch), cache, frames=args.frames, distinct=args.distinct)
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(asdict(report), option=orjson.OPT_INDENT_2))
    print(f"wrote {args.out}")
    if args.docs:
        update_docs(args.docs, report)
        print(f"updated {args.docs}")


if __name__ == "__main__":
    main()
