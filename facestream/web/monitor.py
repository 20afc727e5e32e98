"""What the page shows, gathered in the background: status samples, the live feed, sightings.

One thread samples `collect_status` every `sample_s` and keeps `history_s` of samples for the
charts; one thread per group follows its results and visit-events streams with one blocking
XREAD (a group found later gets its own thread, so no group waits on another's read). Browsers
never make the web process query Redis for the feed: they read these in-memory copies, however
many are open.

Feed items carry a `kind`: `recognition` (a results-stream entry) or `event` (an entry of
`fs:{G}:events`: appeared, identified, left, seen), whose snapshot, if it names one, is served
by `/api/snapshots/{group}/{track}`.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote

import redis
import structlog

from facestream.client import EventFilter, ResultFilter
from facestream.outage import Outage
from facestream.recognizer import Gallery
from facestream.redis_errors import REDIS_ERRORS, is_transient
from facestream.schemas import Event, Face, Identity, InvalidMessage, Result, clip, keys
from facestream.schemas.frames import StreamFields
from facestream.status import StatusReport, collect_status
from facestream.tail import Parser, TailStats, follow

from .settings import WebSettings

__all__ = ["FeedItem", "Filters", "Monitor", "Sighting", "snapshot_url"]

log = structlog.get_logger("web")


def snapshot_url(group: str, key: str | None) -> str | None:
    """The page's URL of a snapshot key, if it is one of the group's snapshots."""
    prefix = keys.snapshot(group, "")
    if key is None or not key.startswith(prefix) or key == prefix:
        return None
    return f"/api/snapshots/{group}/{quote(key.removeprefix(prefix), safe='')}"


@dataclass(frozen=True)
class Filters:
    """What one reader of the feed wants: results by `results`, events by `events`."""

    results: ResultFilter | None = None
    events: EventFilter | None = None


@dataclass(frozen=True)
class FeedItem:
    """One line of the live feed: a recognition or a visit event."""

    id: int
    entry: Result | Event

    @property
    def kind(self) -> str:
        return "recognition" if isinstance(self.entry, Result) else "event"

    def matches(self, group: str | None, wanted: Filters) -> bool:
        """The feed's filters: its group, then the result's or the event's own filter."""
        entry = self.entry
        if group is not None and entry.group != group:
            return False
        if isinstance(entry, Result):
            return wanted.results is None or wanted.results(entry)
        return wanted.events is None or wanted.events(entry)

    def to_dict(self) -> dict[str, Any]:
        entry = self.entry
        common = {
            "id": self.id,
            "kind": self.kind,
            "group": entry.group,
            "camera": entry.camera,
            "ts": entry.ts,
            "frame_id": entry.frame_id,
            "frame_url": f"/api/frames/{quote(entry.group)}/{quote(entry.frame_id)}",
        }
        if isinstance(entry, Event):
            event = entry.model_dump(exclude={"v", "group", "camera", "ts", "frame_id"})
            return {**common, **event, "snapshot": snapshot_url(entry.group, entry.snapshot)}
        return {
            **common,
            "seq": entry.seq,
            "cached": entry.cached,
            "faces": [face.model_dump(mode="json") for face in entry.faces],
            "latency_ms": entry.latency_ms,
            "snapshot": None,
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
        self.error_since: int | None = None  # epoch ms of the first failed sample in a row
        self.history: deque[dict[str, Any]] = deque(
            maxlen=max(2, int(settings.history_s / settings.sample_s))
        )
        self.feed: deque[FeedItem] = deque(maxlen=settings.feed_size)
        self.latest: dict[str, FeedItem] = {}  # camera → its newest result
        self.sightings: dict[str, Sighting] = {}
        # The gallery as of the last sample, read again only when its version changed.
        self.gallery: tuple[int, list[Identity]] = (-1, [])
        self.gallery_unusable: dict[str, str] = {}  # identities workers skip, and why
        self._interval = _Interval()
        self._last_sample = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tails: dict[str, threading.Thread] = {}
        self.following: set[str] = set()  # groups whose feed tail is reading (tests wait on it)
        self.skipped = TailStats()  # what the feed tails read, and skipped by reason
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
        self, after: int, group: str | None = None, wanted: Filters = Filters()
    ) -> list[FeedItem]:
        with self._lock:
            items = [item for item in self.feed if item.id > after]
        return [item for item in items if item.matches(group, wanted)]

    def forget(self, name: str) -> None:
        """Drop what the page remembers of an identity (on remove and erase)."""
        with self._lock:
            self.sightings.pop(name, None)

    def sample(self) -> None:
        """One status sample: group counters, results/s and latency since the last one."""
        report = collect_status(self.client, check_gallery=False)
        if self.gallery[0] != report.gallery_version:
            contents = Gallery(self.client).contents()
            self.gallery = contents.version, contents.identities
            self.gallery_unusable = contents.unusable
        for status in report.groups:
            # A group whose keys refuse us (another deployment's, WRONGTYPE) is not followed:
            # its tail would only fail again every second. A later sample may start it.
            if status.error is None and status.group not in self._tails:
                self._tails[status.group] = self._spawn(
                    self._follow, f"web-tail-{status.group}", status.group
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
        self.report, self.sampled_at, self.error, self.error_since = report, now, None, None

    def _sample_loop(self) -> None:
        outage = Outage(log, who="web status")
        while not self._stop.is_set():
            try:
                self.sample()
                outage.recovered()
            except Exception as exc:  # Redis down, or a key we cannot read: the page says so
                self.error = clip(f"{type(exc).__name__}: {exc}", 300)
                self.error_since = self.error_since or int(time.time() * 1000)
                if is_transient(exc):
                    outage.failed(exc)  # logged seldom: the page shows it at every sample
                else:
                    log.warning("status sample failed", error=self.error)
            self._stop.wait(self.settings.sample_s)

    def _follow(self, group: str) -> None:
        """Feed the group's results and events from the newest entry on, as they come."""

        def of_group(parse: Callable[[StreamFields], Result | Event]) -> Parser[Result | Event]:
            def parsed(stream: str, fields: StreamFields) -> Result | Event:
                entry = parse(fields)
                if entry.group != group:  # it would be filed, and its snapshot looked up, elsewhere
                    raise InvalidMessage(f"entry of group {entry.group[:64]!r} on {stream}")
                return entry

            return parsed

        parsers = {
            keys.results(group): of_group(Result.from_fields),
            keys.events(group): of_group(Event.from_fields),
        }
        outage = Outage(log, who="web feed", group=group)
        while not self._stop.is_set():
            # Start at the newest entries (again after a refusal): the feed is live, not a log.
            entries = follow(
                self.client, parsers, "feed entries", block_ms=500, stop=self._stop,
                stats=self.skipped, on_start=partial(self._following, group, outage),
            )  # fmt: skip
            try:
                for entry in entries:
                    self._add(entry)
            except REDIS_ERRORS as exc:
                self.following.discard(group)
                if is_transient(exc):
                    outage.failed(exc, retry_in_s=1.0)
                else:
                    log.warning("feed tail interrupted", group=group, error=clip(str(exc), 300))
                self._stop.wait(1.0)

    def _following(self, group: str, outage: Outage) -> None:
        outage.recovered()
        self.following.add(group)

    def _add(self, entry: Result | Event) -> None:
        with self._lock:
            item = FeedItem(self.feed[-1].id + 1 if self.feed else 1, entry)
            self.feed.append(item)
            if isinstance(entry, Event):
                return
            self.latest[entry.camera] = item
            for face in entry.faces:
                if face.identity is not None:
                    self.sightings[face.identity] = Sighting(entry.group, entry.frame_id, face)
            self._interval.results[entry.group] += 1
            for stage, ms in entry.latency_ms.items():
                self._interval.latency_sum[stage] += ms
                self._interval.latency_count[stage] += 1

    def _spawn(self, target: Any, name: str, *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread
