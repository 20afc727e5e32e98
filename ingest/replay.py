"""Replay a video file or an image folder into a camera group, paced and back-pressured."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
import structlog
from redis.backoff import ExponentialWithJitterBackoff

from .publisher import FramePublisher
from .sources import EncodedFrame, iter_frames

__all__ = ["ReplayStats", "replay"]

log = structlog.get_logger("ingest.replay")


@dataclass
class ReplayStats:
    sent: int = 0
    loops: int = 0
    waited_s: float = 0.0
    redis_errors: int = 0


def replay(
    path: Path,
    publisher: FramePublisher,
    *,
    fps: float | None,
    loop: bool = False,
    max_backlog: int = 0,
    quality: int = 90,
    max_side: int | None = None,
    stop: threading.Event | None = None,
    on_frame: Callable[[EncodedFrame, str], None] | None = None,
) -> ReplayStats:
    """Send every frame of `path` (again and again with `loop`) at `fps` (None: flat out)."""
    stop = stop or threading.Event()
    stats = ReplayStats()
    interval = 1.0 / fps if fps else 0.0
    next_at = time.monotonic()
    while not stop.is_set():
        for encoded in iter_frames(path, quality, max_side):
            if stop.is_set():
                break
            if max_backlog:
                stats.waited_s += _wait_for_room(publisher, max_backlog, stop)
            if interval:
                now = time.monotonic()
                if next_at > now:
                    stop.wait(next_at - now)
                next_at = max(next_at, now) + interval
            entry_id = _publish_until_sent(publisher, encoded, stop, stats)
            if entry_id is None:
                break
            stats.sent += 1
            if on_frame is not None:
                on_frame(encoded, entry_id)
        stats.loops += 1
        if not loop:
            break
    return stats


def _publish_until_sent(
    publisher: FramePublisher, encoded: EncodedFrame, stop: threading.Event, stats: ReplayStats
) -> str | None:
    """Publish one frame; while Redis is unreachable, wait (capped back-off) and try again.

    Unlike a live camera, a recording loses nothing by waiting, so no frame is skipped.
    Returns None only when stopped meanwhile.
    """
    backoff = ExponentialWithJitterBackoff(base=0.2, cap=5.0)
    failures = 0
    while not stop.is_set():
        try:
            return publisher.publish(encoded)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            failures += 1
            stats.redis_errors += 1
            delay = backoff.compute(failures)
            log.warning(
                "redis unavailable, will resend", error=str(exc), retry_in_s=round(delay, 2)
            )
            stop.wait(delay)
    return None


def _wait_for_room(publisher: FramePublisher, max_backlog: int, stop: threading.Event) -> float:
    """Block while the workers have more than `max_backlog` of our frames still to read."""
    if publisher.unconfirmed <= max_backlog:  # no round trip while it cannot be over
        return 0.0
    start = time.monotonic()
    logged = False
    while not stop.is_set() and publisher.backlog() > max_backlog:
        if not logged:
            log.info(
                "waiting for workers to catch up", backlog=max_backlog, stream=publisher.stream
            )
            logged = True
        stop.wait(0.05)
    return time.monotonic() - start
