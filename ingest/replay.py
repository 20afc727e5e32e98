"""Replay a video file or an image folder into a camera group, paced, back-pressured, resumable."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import structlog

from facestream.schemas import InvalidFrame

from .outages import Outages, Stopped
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
    skipped: int = 0  # images over the byte limit even as JPEG, said in the log one by one


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
    on_pass: Callable[[ReplayStats], None] | None = None,
) -> ReplayStats:
    """Send every frame of `path` (again and again with `loop`) at `fps` (None: flat out).

    A recording loses nothing by waiting, so while Redis is unreachable every call is retried
    with capped back-off and no frame is skipped; a frame whose reply was lost is not resent if
    it landed (see FramePublisher.send), so each frame is in the stream exactly once.
    """
    stop = stop or threading.Event()
    stats = ReplayStats()
    interval = 1.0 / fps if fps else 0.0
    next_at = time.monotonic()
    outages = Outages(stop, f"replay of {path}")
    try:
        while not stop.is_set():
            frames = iter_frames(path, quality, max_side, publisher.limits.max_pixels)
            for encoded in frames:
                if stop.is_set():
                    break
                if max_backlog:
                    stats.waited_s += _wait_for_room(publisher, max_backlog, stop, outages)
                if interval:
                    now = time.monotonic()
                    if next_at > now:
                        stop.wait(next_at - now)
                    next_at = max(next_at, now) + interval
                try:
                    frame = publisher.frame(encoded)  # built once: a resend is the same frame
                except InvalidFrame as exc:  # one photo's fault: the rest of the folder goes
                    log.warning("skipping frame", seq=publisher.seq, error=str(exc))
                    stats.skipped += 1
                    continue
                entry_id = outages.call(partial(publisher.send, frame))
                stats.sent += 1
                if on_frame is not None:
                    on_frame(encoded, entry_id)
            stats.loops += 1
            if on_pass is not None and not stop.is_set():
                on_pass(stats)
            if not loop:
                break
    except Stopped:
        pass
    stats.redis_errors = outages.count
    return stats


def _wait_for_room(
    publisher: FramePublisher, max_backlog: int, stop: threading.Event, outages: Outages
) -> float:
    """Block while the workers have more than `max_backlog` of our frames still to read."""
    if publisher.unconfirmed <= max_backlog:  # no round trip while it cannot be over
        return 0.0
    start = time.monotonic()
    logged = False
    while not stop.is_set() and outages.call(publisher.backlog) > max_backlog:
        if not logged:
            log.info(
                "waiting for workers to catch up", backlog=max_backlog, stream=publisher.stream
            )
            logged = True
        stop.wait(0.05)
    return time.monotonic() - start
