"""The backend's side: read results and visit events (resumable subscribers), ask for one photo."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

import orjson
import redis
import structlog

from facestream.ingest import EncodedFrame, FramePublisher
from facestream.schemas import (
    Event,
    EventType,
    Face,
    FacestreamError,
    FrameLimits,
    InvalidMessage,
    Result,
    StreamFields,
    jpeg_size,
    keys,
    printable,
)

from .subscriber import StreamSubscriber, SubscriberStats
from .tail import TailStats, follow, last_id

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
    "TailStats",
    "describe_event",
    "describe_result",
    "fetch_snapshot",
    "recognise_image",
    "tail_events",
    "tail_results",
]

log = structlog.get_logger("client")

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
    stats: TailStats | None = None,
) -> Iterator[Result]:
    """Yield results of `groups` as they are published (from the start with `from_start`).

    `count` counts the results yielded, i.e. those that pass `wanted`. While Redis is
    unreachable it waits (and logs) rather than ending the tail. A malformed result is logged,
    counted in `stats` and skipped.
    """
    parsers = dict.fromkeys((keys.results(group) for group in groups), _parse_result)
    items = follow(
        client, parsers, "results", from_start=from_start, block_ms=block_ms, stop=stop, stats=stats
    )
    return _first(items, wanted, count)


def tail_events(
    client: redis.Redis,
    groups: Sequence[str],
    *,
    from_start: bool = False,
    count: int | None = None,
    block_ms: int = 1000,
    stop: threading.Event | None = None,
    wanted: EventFilter | None = None,
    stats: TailStats | None = None,
) -> Iterator[Event]:
    """Yield visit events of `groups` as they are published, as `tail_results` does results.

    Invalid events (see EventSubscriber) are logged, counted and skipped.
    """
    parsers = dict.fromkeys((keys.events(group) for group in groups), _parse_event)
    items = follow(
        client, parsers, "events", from_start=from_start, block_ms=block_ms, stop=stop, stats=stats
    )
    return _first(items, wanted, count)


def _first(
    items: Iterator[P], wanted: Callable[[P], bool] | None, count: int | None
) -> Iterator[P]:
    """The items `wanted` lets through, at most `count` of them."""
    chosen = items if wanted is None else filter(wanted, items)
    return chosen if count is None else islice(chosen, count)


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


class ResultSubscriber(StreamSubscriber[DeliveredResult]):
    """Results for a backend (`fs:{G}:results`), as StreamSubscriber describes."""

    noun = "results"

    @staticmethod
    def stream_of(group: str) -> str:
        return keys.results(group)

    def parse(
        self, stream: str, fields: dict[bytes, bytes], entry_id: str, again: bool
    ) -> DeliveredResult:
        result = _parse_result(stream, fields)
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


def _parse_result(stream: str, fields: StreamFields) -> Result:
    """A result of `stream`; InvalidMessage if it names another group."""
    result = Result.from_fields(fields)
    if result.group != keys.group_of(stream):
        raise InvalidMessage(f"result of group {result.group[:64]!r} on {stream}")
    return result


def _parse_event(stream: str, fields: StreamFields) -> Event:
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
    # The size from the header, never by decoding: the limits are checked before any decode.
    width, height = jpeg_size(jpeg)
    stream = keys.results(group)
    cursor = last_id(client, stream)
    publisher = FramePublisher(client, group, camera, maxlen, limits or FrameLimits())
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
    named = [f"{f.identity} ({f.similarity:.2f})" for f in result.faces if f.identity is not None]
    unknown = len(result.faces) - len(named)
    if unknown:  # a crowd is "7 unknown", not seven words that push the columns apart
        named.append("unknown" if unknown == 1 else f"{unknown} unknown")
    people = ", ".join(named)
    source = "cache" if result.cached else "model"
    e2e = result.latency_ms.get("e2e", 0.0)
    line = f"{result.camera:>12} #{result.seq:<5} {people or '-':<44} {source}  {e2e:6.0f} ms"
    return printable(line)  # names and cameras come from the stream: no terminal escapes


def describe_event(event: Event) -> str:
    """One human line per event: local time of day, camera, type, track, who, how long."""
    when = time.strftime("%H:%M:%S", time.localtime(event.ts / 1000))
    who = event.identity or "unknown"
    if event.similarity is not None:
        who += f" ({event.similarity:.2f})"
    if event.dwell_ms is not None:
        who += f", {event.dwell_ms / 1000:.1f} s in {event.frames} frames"
    return printable(f"{when} {event.camera:>12} {event.type:<10} {event.track:<14} {who}")
