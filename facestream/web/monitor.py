"""What the page shows, gathered in the background: status samples, the live feed, sightings.

One thread samples `collect_status` every `sample_s` and keeps `history_s` of samples for the
charts; one thread per group follows its results stream with `tail_results` (a group found
later gets its own thread, so no group waits on another's read). Browsers never make the web
process query Redis for the feed: they read these in-memory copies, however many are open.

Feed items carry a `kind`; today every item is a `recognition` (a results-stream entry). The
planned events (`appeared`, `identified`, `left`, with a snapshot key) are meant to become
items of kind `event` with a `snapshot` URL, read by one more tail thread per group.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog

from facestream.client import ResultFilter, tail_results
from facestream.recognizer import Gallery
from facestream.schemas import Face, Identity, InvalidMessage, Result, clip
from facestream.status import StatusReport, collect_status

from .settings import WebSettings

__all__ = ["FeedItem", "Monitor", "Sighting"]

log = structlog.get_logger("web")


@dataclass(frozen=True)
class FeedItem:
    """One line of the live feed: a result now, an event once tracks exist."""

    id: int
    result: Result
    kind: str = "recognition"

    def to_dict(self) -> dict[str, Any]:
        result = self.result
        return {
            "id": self.id,
            "kind": self.kind,
            "group": result.group,
            "camera": result.camera,
            "seq": result.seq,
            "ts": result.ts,
            "frame_id": result.frame_id,
            "frame_url": f"/api/frames/{result.group}/{result.frame_id}",
            "cached": result.cached,
            "faces": [face.model_dump(mode="json") for face in result.faces],
            "latency_ms": result.latency_ms,
            "snapshot": None,  # the visits issue's snapshot URL, once events exist
        }


@dataclass(frozen=True)
class Sighting:
    """Where an identity was last seen: the frame and the box, for its gallery thumbnail."""

    group: str
    frame_id: str
    face: Face


@dataclass
class _Interval:
    """What the tails saw since the last sample: results per group, latency per stage."""

    results: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    latency_sum: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    latency_count: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Monitor:
    """Background sampler and feed; start() in the app's lifespan, stop() at its end."""

    def __init__(self, client: redis.Redis, settings: WebSettings) -> None:
        self.client = client
        self.settings = settings
        self.report: StatusReport | None = None
        self.sampled_at = 0.0  # monotonic time of the last good sample
        self.error: str | None = None
        self.history: deque[dict[str, Any]] = deque(
            maxlen=max(2, int(settings.history_s / settings.sample_s))
        )
        self.feed: deque[FeedItem] = deque(maxlen=settings.feed_size)
        self.latest: dict[str, FeedItem] = {}  # camera → its newest result
        self.sightings: dict[str, Sighting] = {}
        # The gallery as of the last sample, read again only when its version changed.
        self.gallery: tuple[int, list[Identity]] = (-1, [])
        self._interval = _Interval()
        self._last_sample = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tails: dict[str, threading.Thread] = {}
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._spawn(self._sample_loop, "web-sampler")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def ready(self) -> bool:
        """Sampled Redis successfully within the last three sample periods."""
        return self.error is None and time.monotonic() - self.sampled_at < 3 * max(
            self.settings.sample_s, 1.0
        )

    def items_after(
        self, after: int, group: str | None = None, wanted: ResultFilter | None = None
    ) -> list[FeedItem]:
        with self._lock:
            items = [item for item in self.feed if item.id > after]
        return [
            item
            for item in items
            if (group is None or item.result.group == group)
            and (wanted is None or wanted(item.result))
        ]

    def forget(self, name: str) -> None:
        """Drop what the page remembers of an identity (on remove and erase)."""
        with self._lock:
            self.sightings.pop(name, None)

    def sample(self) -> None:
        """One status sample: group counters, results/s and latency since the last one."""
        report = collect_status(self.client)
        if self.gallery[0] != report.gallery_version:
            self.gallery = Gallery(self.client).identities()
        for status in report.groups:
            if status.group not in self._tails:
                self._tails[status.group] = self._spawn(
                    self._tail, f"web-tail-{status.group}", status.group
                )
        now = time.monotonic()
        with self._lock:
            interval, self._interval = self._interval, _Interval()
            elapsed, self._last_sample = max(now - self._last_sample, 1e-3), now
        self.history.append(
            {
                "t": int(time.time() * 1000),
                "groups": {
                    g.group: {
                        "results_per_s": round(interval.results.get(g.group, 0) / elapsed, 2),
                        "lag": g.lag,
                        "pending": g.pending,
                        "frames": g.frames,
                        "dead": g.dead,
                    }
                    for g in report.groups
                },
                "latency_ms": {
                    stage: round(total / interval.latency_count[stage], 1)
                    for stage, total in interval.latency_sum.items()
                },
            }
        )
        self.report, self.sampled_at, self.error = report, now, None

    def _sample_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as exc:  # Redis down, or a key we cannot read: the page says so
                self.error = clip(f"{type(exc).__name__}: {exc}", 300)
                log.warning("status sample failed", error=self.error)
            self._stop.wait(self.settings.sample_s)

    def _tail(self, group: str) -> None:
        while not self._stop.is_set():
            try:
                for result in tail_results(self.client, [group], block_ms=500, stop=self._stop):
                    self._add(result)
            except (redis.RedisError, InvalidMessage) as exc:
                # The tail starts again at the newest result (past an invalid one): the feed
                # is live, not a log.
                log.warning("results tail interrupted", group=group, error=clip(str(exc), 300))
                self._stop.wait(1.0)

    def _add(self, result: Result) -> None:
        with self._lock:
            item = FeedItem(self.feed[-1].id + 1 if self.feed else 1, result)
            self.feed.append(item)
            self.latest[result.camera] = item
            for face in result.faces:
                if face.identity is not None:
                    self.sightings[face.identity] = Sighting(result.group, result.frame_id, face)
            self._interval.results[result.group] += 1
            for stage, ms in result.latency_ms.items():
                self._interval.latency_sum[stage] += ms
                self._interval.latency_count[stage] += 1

    def _spawn(self, target: Any, name: str, *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread
