"""The backend's side: read results and visit events (resumable subscribers), ask for one photo."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import cv2
import numpy as np
import orjson
import redis
import structlog

from facestream.ingest import EncodedFrame, FramePublisher
from facestream.ingest.outages import Outages, Stopped
from facestream.schemas import (
    Event,
    EventType,
    Face,
    FacestreamError,
    FrameLimits,
    InvalidFrame,
    InvalidMessage,
    Result,
    keys,
)

__all__ = [
    "DeliveredEvent",
    "DeliveredResult",
    "EventFilter",
    "EventSubscriber",
    "RecognitionTimeout",
    "ResultFilter",
    "ResultSubscriber",
    "StreamSubscriber",
    "SubscriberStats",
    "describe_event",
    "describe_result",
    "fetch_snapshot",
    "recognise_image",
    "tail_events",
    "tail_results",
]

log = structlog.get_logger("client")

T = TypeVar("T")
P = TypeVar("P")


def tail_results(
    client: redis.Redis,
    groups: Sequence[str],
    *,
    from_start: bool = False,
    count: int | None = None,
    block_ms: int = 1000,
    stop: threading.Event | None = None,
    wanted: ResultFilter | None = None,
) -> Iterator[Result]:
    """Yield results of `groups` as they are published (from the start with `from_start`).

    `count` counts the results yielded, i.e. those that pass `wanted`. While Redis is
    unreachable it waits (and logs) rather than ending the tail.
    """
    streams = [keys.results(group) for group in groups]
    return _tail(
        client, streams, lambda _stream, fields: Result.from_fields(fields), "results",
        from_start=from_start, count=count, block_ms=block_ms, stop=stop, wanted=wanted,
    )  # fmt: skip


def tail_events(
    client: redis.Redis,
    groups: Sequence[str],
    *,
    from_start: bool = False,
    count: int | None = None,
    block_ms: int = 1000,
    stop: threading.Event | None = None,
    wanted: EventFilter | None = None,
) -> Iterator[Event]:
    """Yield visit events of `groups` as they are published, as `tail_results` does results.

    Invalid events (see EventSubscriber) are logged and skipped.
    """
    streams = [keys.events(group) for group in groups]
    return _tail(
        client, streams, _parse_event, "events",
        from_start=from_start, count=count, block_ms=block_ms, stop=stop, wanted=wanted,
        skip_invalid=True,
    )  # fmt: skip


def _tail(
    client: redis.Redis,
    streams: list[str],
    parse: Callable[[str, dict[bytes, bytes]], P],
    noun: str,
    *,
    from_start: bool,
    count: int | None,
    block_ms: int,
    stop: threading.Event | None,
    wanted: Callable[[P], bool] | None,
    skip_invalid: bool = False,
) -> Iterator[P]:
    stop = stop or threading.Event()
    outages = Outages(stop, f"{noun} tail")
    cursors = dict.fromkeys(streams, "0-0")
    seen = 0
    try:
        if not from_start:
            # Resolve "$" once, so entries added between two reads are not skipped.
            for stream in cursors:
                cursors[stream] = outages.call(partial(_last_id, client, stream))
        while not stop.is_set() and (count is None or seen < count):
            read = partial(client.xread, cursors, count=100, block=block_ms)  # type: ignore[arg-type]
            response: Any = outages.call(read)
            for stream, entries in response or []:
                for entry_id, fields in entries:
                    cursors[stream.decode()] = entry_id.decode()
                    try:
                        item = parse(stream.decode(), fields)
                    except InvalidMessage as exc:
                        if not skip_invalid:
                            raise
                        log.warning(
                            f"skipping invalid {noun[:-1]}", entry_id=entry_id, error=exc.reason
                        )
                        continue
                    if wanted is not None and not wanted(item):
                        continue
                    yield item
                    seen += 1
                    if count is not None and seen >= count:
                        return
    except Stopped:
        return


# What a subscriber adds to an entry; never part of what is passed on.
_DELIVERY_FIELDS = {"entry_id", "redelivered"}


class DeliveredResult(Result):
    """A result as a subscriber hands it out: its stream entry and whether it came before.

    `redelivered` is true for a result this consumer group handed out earlier without an
    acknowledgement (a crash, a consumer that never came back): the backend may already have
    acted on it, so drop duplicates by `frame_id`.
    """

    entry_id: str = ""
    redelivered: bool = False

    def to_json(self) -> bytes:
        """The result as it is on the stream, without this delivery's own fields."""
        return orjson.dumps(self.model_dump(exclude=_DELIVERY_FIELDS))


class DeliveredEvent(Event):
    """An event as a subscriber hands it out; `redelivered` as for DeliveredResult.

    Events of a track are identified by (`track`, `type`, `frame_id`): drop duplicates by that.
    """

    entry_id: str = ""
    redelivered: bool = False

    def to_json(self) -> bytes:
        """The event as it is on the stream, without this delivery's own fields."""
        return orjson.dumps(self.model_dump(exclude_none=True, exclude=_DELIVERY_FIELDS))


@dataclass
class SubscriberStats:
    """What a subscriber saw; `gaps` counts entries removed before anyone read them."""

    delivered: int = 0
    redelivered: int = 0
    claimed: int = 0
    gaps: int = 0
    regrouped: int = 0
    invalid: int = 0


class _Entry(NamedTuple):
    stream: str
    entry_id: bytes
    fields: dict[bytes, bytes] | None
    redelivered: bool


D = TypeVar("D")


class StreamSubscriber(Generic[D]):
    """A consumer group of its own on one stream per camera group, so a reader resumes.

    Each entry is acknowledged when the next one is requested, i.e. after the caller's loop
    body ran for it; a crash in between means the entry is delivered again (marked
    `redelivered`). Entries that `wanted` filters out are acknowledged without being yielded.
    A new consumer group starts at entries added from now on, or at the oldest kept one with
    `start="oldest"`. Entries left pending by a consumer idle for `claim_idle_ms` are claimed
    (XAUTOCLAIM). While Redis is unreachable every call is retried; a group lost with a restart
    or a flush is created again where this subscriber stopped reading. `on_round`, if set, is
    called each time the loop goes round (a liveness beat). Subclasses name the stream of a
    camera group and parse its entries.
    """

    #: What the entries are called in log lines ("results", "events").
    noun = "entries"

    def __init__(
        self,
        client: redis.Redis,
        groups: Sequence[str],
        consumer_group: str = "backend",
        consumer: str = "backend-1",
        block_ms: int = 1000,
        wanted: Callable[[D], bool] | None = None,
        *,
        start: Literal["new", "oldest"] = "new",
        claim_idle_ms: int = 30_000,
    ) -> None:
        self.client = client
        self.streams = [self.stream_of(group) for group in groups]
        self.consumer_group = consumer_group
        self.consumer = consumer
        self.block_ms = block_ms
        self.wanted = wanted
        self.claim_idle_ms = claim_idle_ms
        self.stats = SubscriberStats()
        self.on_round: Callable[[], None] | None = None
        self._stop = threading.Event()
        self._outages = Outages(self._stop, f"{self.noun} subscriber {consumer_group}/{consumer}")
        self._claim_from = dict.fromkeys(self.streams, "0-0")
        self._next_claim = 0.0
        self._claiming = True
        self._gap_seen: dict[str, tuple[bytes, int]] = {}
        # Where to put the group again if it is lost: after the last entry we were handed.
        self._position = dict.fromkeys(self.streams, "0-0")
        for stream in self.streams:
            self._outages.call(
                partial(self._create_group, stream, "0" if start == "oldest" else "$")
            )
            # Asked of the group rather than the stream (XREVRANGE): a bridge's ACL user may
            # only XINFO, and an existing group may be behind the stream's end.
            self._position[stream] = self._outages.call(partial(self._delivered_id, stream))

    @staticmethod
    def stream_of(group: str) -> str:
        """The stream this subscriber reads for camera group `group`."""
        raise NotImplementedError

    def parse(self, stream: str, fields: dict[bytes, bytes], entry_id: str, again: bool) -> D:
        """One entry as handed out (`again`: redelivered), or InvalidMessage with the reason."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[D]:
        return self.listen()

    def listen(self, stop: threading.Event | None = None) -> Iterator[D]:
        """Yield entries until `stop` is set (the caller's loop may also just break)."""
        if stop is not None:
            self._stop = self._outages.stop = stop
        cursor = "0"  # our own unacknowledged entries first (a previous run died mid-way)
        try:
            while not self._stop.is_set():
                if self.on_round is not None:
                    self.on_round()
                batch = self._call(self._claim) if self._claim_due() else []
                if not batch:
                    batch = self._call(partial(self._read, cursor))
                    if cursor == "0" and not batch:
                        cursor = ">"
                for entry in batch:
                    item = self._parse(entry)
                    if item is not None and (self.wanted is None or self.wanted(item)):
                        yield item
                    self.ack(entry.stream, entry.entry_id)
                    if self._stop.is_set():
                        return  # the rest of the batch stays pending: delivered again later
        except Stopped:
            return

    def ack(self, stream: str, entry_id: bytes | str) -> None:
        """Acknowledge one entry (through outages; the group is put back if it was lost)."""
        self._call(partial(self.client.xack, stream, self.consumer_group, entry_id))

    def _read(self, cursor: str) -> list[_Entry]:
        if cursor == ">":
            self._count_gaps()
        response: Any = self.client.xreadgroup(
            self.consumer_group,
            self.consumer,
            dict.fromkeys(self.streams, cursor),
            count=100,
            block=None if cursor == "0" else self.block_ms,
        )
        return [
            _Entry(stream.decode(), entry_id, fields, cursor == "0")
            for stream, entries in response or []
            for entry_id, fields in entries
        ]

    def _claim_due(self) -> bool:
        return self._claiming and time.monotonic() >= self._next_claim

    def _claim(self) -> list[_Entry]:
        """Take over entries another consumer of the group left pending for too long."""
        claimed: list[_Entry] = []
        try:
            for stream in self.streams:
                reply: Any = self.client.xautoclaim(
                    stream, self.consumer_group, self.consumer, self.claim_idle_ms,
                    start_id=self._claim_from[stream], count=100,
                )  # fmt: skip
                self._claim_from[stream] = reply[0].decode()
                claimed += [_Entry(stream, i, fields, True) for i, fields in reply[1] if i]
                # Redis 7 names the trimmed pending entries it dropped; Redis 6 answers nil.
                trimmed = len(reply[2]) if len(reply) > 2 else sum(not i for i, _ in reply[1])
                if trimmed:
                    self._gap(stream, trimmed, f"pending {self.noun} were trimmed unread")
        except redis.exceptions.NoPermissionError as exc:
            self._claiming = False
            log.warning(
                f"cannot claim {self.noun} of idle consumers (grant XAUTOCLAIM)", error=str(exc)
            )
        busy = any(cursor != "0-0" for cursor in self._claim_from.values())
        self._next_claim = time.monotonic() + (0 if busy else self.claim_idle_ms / 2000)
        self.stats.claimed += len(claimed)
        return claimed

    def _parse(self, entry: _Entry) -> D | None:
        if _id_tuple(entry.entry_id) > _id_tuple(self._position[entry.stream].encode()):
            self._position[entry.stream] = entry.entry_id.decode()
        if not entry.fields:  # trimmed after it was handed out, before it was acknowledged
            self._gap(entry.stream, 1, f"a pending {self.noun[:-1]} was trimmed unread")
            return None
        try:
            item = self.parse(
                entry.stream, entry.fields, entry.entry_id.decode(), entry.redelivered
            )
        except InvalidMessage as exc:
            # Not ours to fix; acknowledged by the caller so it does not come back forever.
            self.stats.invalid += 1
            log.warning(
                f"skipping invalid {self.noun[:-1]}", entry_id=entry.entry_id, error=exc.reason
            )
            return None
        self.stats.delivered += 1
        self.stats.redelivered += entry.redelivered
        return item

    def _count_gaps(self) -> None:
        """Count entries trimmed before the group was handed them (needs Redis 7's `lag`).

        While the oldest kept entry is newer than the last one handed out, everything the group
        has yet to read is in the stream, except what trimming took: lag minus length.
        """
        pipe = self.client.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xinfo_stream(stream)
            pipe.xinfo_groups(stream)
        replies = pipe.execute(raise_on_error=False)
        for index, stream in enumerate(self.streams):
            info, groups = replies[2 * index], replies[2 * index + 1]
            if isinstance(info, Exception) or isinstance(groups, Exception):
                continue  # no stream or no group yet: the read that follows will say
            ours = next((g for g in groups if g["name"] == self.consumer_group.encode()), None)
            if ours is None or ours.get("lag") is None:
                continue
            delivered = ours["last-delivered-id"]
            first = info.get("first-entry")
            if first is not None and _id_tuple(first[0]) <= _id_tuple(delivered):
                continue
            missing = int(ours["lag"]) - int(info["length"])
            seen_at, counted = self._gap_seen.get(stream, (b"", 0))
            already = counted if seen_at == delivered else 0
            if missing > already:
                self._gap(stream, missing - already, f"{self.noun} were trimmed before delivery")
                self._gap_seen[stream] = (delivered, missing)

    def _gap(self, stream: str, count: int, why: str) -> None:
        self.stats.gaps += count
        log.warning(why, stream=stream, missing=count, gaps=self.stats.gaps)

    def _call(self, command: Callable[[], T]) -> T:
        """Run a Redis call through outages; put the group back if Redis lost it."""

        def attempt() -> T:
            try:
                return command()
            except redis.ResponseError as exc:
                # A blocked read learns of a flush as UNBLOCKED (Redis 7), any other as NOGROUP.
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    raise
            for stream in self.streams:
                self._create_group(stream, self._position[stream], lost=True)
            return command()

        return self._outages.call(attempt)

    def _create_group(self, stream: str, at: str, lost: bool = False) -> None:
        try:
            self.client.xgroup_create(stream, self.consumer_group, id=at, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            return
        if lost:
            self.stats.regrouped += 1
            self._gap_seen.pop(stream, None)
            log.warning(f"{self.noun} group was missing, created again", stream=stream, at=at)

    def _delivered_id(self, stream: str) -> str:
        groups: Any = self.client.xinfo_groups(stream)
        ours = next(g for g in groups if g["name"] == self.consumer_group.encode())
        delivered: bytes = ours["last-delivered-id"]
        return delivered.decode()


class ResultSubscriber(StreamSubscriber[DeliveredResult]):
    """Results for a backend (`fs:{G}:results`), as StreamSubscriber describes."""

    noun = "results"

    def __init__(
        self,
        client: redis.Redis,
        groups: Sequence[str],
        consumer_group: str = "backend",
        consumer: str = "backend-1",
        block_ms: int = 1000,
        wanted: ResultFilter | None = None,
        *,
        start: Literal["new", "oldest"] = "new",
        claim_idle_ms: int = 30_000,
    ) -> None:
        super().__init__(
            client, groups, consumer_group, consumer, block_ms, wanted or ResultFilter(),
            start=start, claim_idle_ms=claim_idle_ms,
        )  # fmt: skip

    @staticmethod
    def stream_of(group: str) -> str:
        return keys.results(group)

    def parse(
        self, stream: str, fields: dict[bytes, bytes], entry_id: str, again: bool
    ) -> DeliveredResult:
        result = Result.from_fields(fields)
        return DeliveredResult.model_construct(**dict(result), entry_id=entry_id, redelivered=again)


@dataclass(frozen=True)
class ResultFilter:
    """Which results a reader wants: any face of these identities, from these cameras, at least
    this similar. Unset parts let everything through."""

    identities: frozenset[str] | None = None
    cameras: frozenset[str] | None = None
    min_similarity: float | None = None

    def __call__(self, result: Result) -> bool:
        if self.cameras is not None and result.camera not in self.cameras:
            return False
        if self.identities is None and self.min_similarity is None:
            return True
        return any(self._face_matches(face) for face in result.faces)

    def _face_matches(self, face: Face) -> bool:
        if self.identities is not None and face.identity not in self.identities:
            return False
        if self.min_similarity is not None:
            return face.similarity is not None and face.similarity >= self.min_similarity
        return True


class EventSubscriber(StreamSubscriber[DeliveredEvent]):
    """Visit events (`fs:{G}:events`) for a backend or a bridge, as StreamSubscriber describes.

    An event that names another group than its stream, or a snapshot key outside its group's
    snapshots, is skipped as invalid (counted in `stats.invalid`): a bridge or `fetch_snapshot`
    must never be pointed at an arbitrary key.
    """

    noun = "events"

    def __init__(
        self,
        client: redis.Redis,
        groups: Sequence[str],
        consumer_group: str = "backend",
        consumer: str = "backend-1",
        block_ms: int = 1000,
        wanted: EventFilter | None = None,
        *,
        start: Literal["new", "oldest"] = "new",
        claim_idle_ms: int = 30_000,
    ) -> None:
        super().__init__(
            client, groups, consumer_group, consumer, block_ms, wanted or EventFilter(),
            start=start, claim_idle_ms=claim_idle_ms,
        )  # fmt: skip

    @staticmethod
    def stream_of(group: str) -> str:
        return keys.events(group)

    def parse(
        self, stream: str, fields: dict[bytes, bytes], entry_id: str, again: bool
    ) -> DeliveredEvent:
        event = _parse_event(stream, fields)
        return DeliveredEvent.model_construct(**dict(event), entry_id=entry_id, redelivered=again)


@dataclass(frozen=True)
class EventFilter:
    """Which events a reader wants: of these groups, cameras, identities and types. Unset parts
    let everything through; with `identities` set, events of unknown faces are left out."""

    groups: frozenset[str] | None = None
    cameras: frozenset[str] | None = None
    identities: frozenset[str] | None = None
    types: frozenset[EventType] | None = None

    def __call__(self, event: Event) -> bool:
        return (
            (self.groups is None or event.group in self.groups)
            and (self.cameras is None or event.camera in self.cameras)
            and (self.identities is None or event.identity in self.identities)
            and (self.types is None or event.type in self.types)
        )


def fetch_snapshot(client: redis.Redis, event: Event) -> bytes | None:
    """The JPEG of the best face crop an event names; None if it names none or it expired.

    Raises InvalidMessage for a snapshot key outside the event's group's snapshots.
    """
    if event.snapshot is None:
        return None
    _check_snapshot_key(event)
    jpeg: Any = client.get(event.snapshot)
    return bytes(jpeg) if jpeg is not None else None


def _parse_event(stream: str, fields: dict[bytes, bytes]) -> Event:
    """An event of `stream`; InvalidMessage if it names another group or a foreign snapshot."""
    event = Event.from_fields(fields)
    if event.group != keys.group_of(stream):
        raise InvalidMessage(f"event of group {event.group[:64]!r} on {stream}")
    _check_snapshot_key(event)
    return event


def _check_snapshot_key(event: Event) -> None:
    prefix = keys.snapshot(event.group, "")
    if event.snapshot is not None and not (
        event.snapshot.startswith(prefix) and len(event.snapshot) > len(prefix)
    ):
        raise InvalidMessage(
            f"snapshot key {event.snapshot[:100]!r} is not a snapshot of group {event.group}"
        )


class RecognitionTimeout(FacestreamError, TimeoutError):
    """No worker published a result for a submitted image in time."""


def recognise_image(
    client: redis.Redis,
    group: str,
    jpeg: bytes,
    *,
    camera: str = "request",
    timeout_s: float = 10.0,
    limits: FrameLimits | None = None,
    maxlen: int = 2000,
) -> Result:
    """Submit one JPEG to a group's workers and wait for its result (the seed's use case).

    A photo seen before is answered from the cache. Raises RecognitionTimeout when no
    worker answered in time (none running, or all busy).
    """
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidFrame("the photo is not a decodable image")
    stream = keys.results(group)
    cursor = _last_id(client, stream)
    publisher = FramePublisher(client, group, camera, maxlen, limits or FrameLimits())
    height, width = image.shape[:2]
    frame_id = publisher.publish(EncodedFrame(jpeg, width, height))
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        response: Any = client.xread({stream: cursor}, count=100, block=max(1, int(left * 1000)))
        for _, entries in response or []:
            for entry_id, entry in entries:
                cursor = entry_id.decode()
                if entry.get(b"frame_id") == frame_id.encode():
                    return Result.from_fields(entry)
    raise RecognitionTimeout(
        f"no result for frame {frame_id} on {stream} within {timeout_s:g}s: "
        "is a worker serving this group?"
    )


def describe_result(result: Result) -> str:
    """One human line per result: camera, frame, who, how fast."""
    people = ", ".join(
        f"{face.identity} ({face.similarity:.2f})" if face.identity else "unknown"
        for face in result.faces
    )
    source = "cache" if result.cached else "model"
    e2e = result.latency_ms.get("e2e", 0.0)
    return f"{result.camera:>12} #{result.seq:<5} {people or '-':<44} {source}  {e2e:6.0f} ms"


def describe_event(event: Event) -> str:
    """One human line per event: camera, type, track, who, how long."""
    who = event.identity or "unknown"
    if event.similarity is not None:
        who += f" ({event.similarity:.2f})"
    if event.dwell_ms is not None:
        who += f", {event.dwell_ms / 1000:.1f} s in {event.frames} frames"
    return f"{event.camera:>12} {event.type:<10} {event.track:<14} {who}"


def _last_id(client: redis.Redis, stream: str) -> str:
    """Id of the newest entry of `stream` ("0-0" if empty): read after it to see only new ones."""
    last: Any = client.xrevrange(stream, count=1)
    return last[0][0].decode() if last else "0-0"


def _id_tuple(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.decode().partition("-")
    return int(ms), int(seq or 0)
