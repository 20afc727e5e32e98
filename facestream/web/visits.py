"""Visits and people from the visit-events streams: a time range by stream id, folded by track.

A visit is one face track of one camera: its `appeared`, `identified` and `left` events in
`fs:{G}:events` share a track id. A time range is read with XRANGE over millisecond stream ids
(the time Redis wrote each event), so a search costs the events of that range, not the stream.
Every read is bounded (`max_scan` entries per group); an answer that hit the bound says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from facestream.schemas import Event, InvalidMessage, clip, keys
from facestream.skipped import count_skipped

from .monitor import snapshot_url

__all__ = [
    "DAY_MS",
    "Person",
    "Visit",
    "VisitQuery",
    "Visits",
    "find_visits",
    "last_seen",
    "parse_time",
]

log = structlog.get_logger("web")
DAY_MS = 24 * 3600 * 1000
_PAGE = 500  # entries per XRANGE call
_MAX_SCAN = 20_000  # entries read per group and query, at most
_SLACK_MS = 5_000  # camera and server clocks differ a little


class Visit(BaseModel):
    """One face track of one camera, as its events in the range tell it."""

    model_config = ConfigDict(extra="forbid")

    group: str
    camera: str
    track: str
    identity: str | None = Field(description="The track's identity (its last naming event).")
    similarity: float | None = None
    first_ts: int = Field(description="Its first frame in the range, epoch ms (camera clock).")
    last_ts: int = Field(description="Its last frame in the range, epoch ms (camera clock).")
    dwell_ms: int = Field(ge=0, description="last_ts - first_ts.")
    frames: int | None = Field(None, description="Frames the track was seen in (once it left).")
    left: bool = Field(description="Whether its `left` event is in the range.")
    snapshot: str | None = Field(None, description="URL of its best face crop, while kept.")
    frame_id: str = Field(description="Frame of its newest event (`/api/frames/{group}/{id}`).")


class Visits(BaseModel):
    """A search's answer: visits, newest first, and whether a bound cut the read short."""

    model_config = ConfigDict(extra="forbid")

    visits: list[Visit]
    truncated: bool = Field(description="True when more events were in range than were read.")
    skipped: int = Field(0, description="Malformed events skipped (each one logged).")


class Person(BaseModel):
    """`GET /api/people/{name}`: enrolment, last sighting, visits in the range, snapshots."""

    model_config = ConfigDict(extra="forbid")

    name: str
    enrolled: bool
    photos: int = Field(0, description="Enrolment photos (0 when not enrolled).")
    last_seen: Visit | None = Field(description="Newest visit naming them, in range or not.")
    visits: list[Visit]
    snapshots: list[str] = Field(description="Snapshot URLs of those visits, newest first.")
    truncated: bool


class VisitQuery(BaseModel):
    """Query parameters of `GET /api/visits` (unknown ones are refused)."""

    model_config = ConfigDict(extra="forbid")

    identity: str | None = Field(None, max_length=64, description="Only visits of this name.")
    unknown: bool = Field(False, description="Only visits nobody was named in.")
    camera: str | None = Field(None, max_length=64, description="Only this camera's visits.")
    group: str | None = Field(None, max_length=64, description="Only this group's visits.")
    start: int | None = Field(None, alias="from", ge=0, description="Epoch ms or ISO 8601.")
    end: int | None = Field(None, alias="to", ge=0, description="Epoch ms or ISO 8601.")
    limit: int = Field(100, ge=1, le=1000, description="Most visits returned.")

    @model_validator(mode="after")
    def _ordered(self) -> VisitQuery:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError("from must not be after to")
        return self


def parse_time(value: str, name: str) -> int:
    """Epoch milliseconds from digits or an ISO 8601 time (UTC when it names no offset)."""
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{name}: {value[:40]!r} is neither epoch ms nor an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def find_visits(
    client: redis.Redis,
    groups: Sequence[str],
    query: VisitQuery,
    max_scan: int = _MAX_SCAN,
) -> Visits:
    """The visits whose events fall in [from, to] (default: the last day), newest first."""
    end = query.end if query.end is not None else max(_now_ms(), query.start or 0)
    start = query.start if query.start is not None else max(end - DAY_MS, 0)
    folded: dict[tuple[str, str], dict[str, Any]] = {}
    truncated, skipped = False, 0
    for group in groups if query.group is None else [query.group]:
        read = 0
        for event in _events(client, group, start, end):
            if event is None:
                skipped += 1
                continue
            read += 1
            if read > max_scan:
                truncated = True
                break
            if event.type != "seen":  # a site-wide marker, not part of one track's visit
                _fold(folded.setdefault((group, event.track), {}), event)
    visits = [Visit.model_validate(fields) for fields in folded.values()]
    wanted = [visit for visit in visits if _matches(visit, query)]
    wanted.sort(key=lambda visit: visit.last_ts, reverse=True)
    return Visits(
        visits=wanted[: query.limit],
        truncated=truncated or len(wanted) > query.limit,
        skipped=skipped,
    )


def last_seen(
    client: redis.Redis, groups: Sequence[str], name: str, max_scan: int = _MAX_SCAN
) -> Visit | None:
    """The newest visit naming `name`, reading each group's events backwards (bounded)."""
    newest: tuple[str, int, Event] | None = None  # group, written at (ms), the event
    for group in groups:
        found = _newest_naming(client, group, name, max_scan)
        if found is not None and (newest is None or found[0] > newest[1]):
            newest = (group, *found)
    if newest is None:
        return None
    group, written, event = newest
    # The whole visit: its events from where its first frame falls on the server's clock (the
    # camera's clock says how long before this event that was), with a little slack.
    began = written - max(event.ts - (event.first_ts or event.ts), 0) - _SLACK_MS
    track = find_visits(client, [group], VisitQuery.model_validate({"from": max(began, 0)}))
    return next((v for v in track.visits if v.track == event.track), None)


def _newest_naming(
    client: redis.Redis, group: str, name: str, max_scan: int
) -> tuple[int, Event] | None:
    """The group's newest track event naming `name` and the ms it was written, if any."""
    cursor, read = "+", 0
    while read < max_scan:
        page: Any = client.xrevrange(keys.events(group), cursor, "-", count=_PAGE)
        for entry_id, fields in page:
            read += 1
            event = _parse(fields, group)
            if event is not None and event.identity == name and event.type != "seen":
                return int(entry_id.decode().partition("-")[0]), event
        if len(page) < _PAGE:
            return None
        cursor = f"({page[-1][0].decode()}"
    return None


def _events(client: redis.Redis, group: str, start: int, end: int) -> Iterator[Event | None]:
    """The group's events written in [start, end] ms, oldest first; None for a bad one."""
    cursor = str(start)
    while True:
        page: Any = client.xrange(keys.events(group), cursor, str(end), count=_PAGE)
        for _, fields in page:
            yield _parse(fields, group)
        if len(page) < _PAGE:
            return
        cursor = f"({page[-1][0].decode()}"


def _parse(fields: Any, group: str) -> Event | None:
    try:
        event = Event.from_fields(fields)
        if event.group != group:
            raise InvalidMessage(f"event of group {event.group[:64]!r} on {keys.events(group)}")
    except InvalidMessage as exc:  # one bad entry is skipped and logged, never the search
        count_skipped("visit events", exc.reason)
        log.warning("visit event skipped", group=group, error=clip(str(exc), 300))
        return None
    return event


def _fold(visit: dict[str, Any], event: Event) -> None:
    first = event.first_ts if event.first_ts is not None else event.ts
    last = event.last_ts if event.last_ts is not None else event.ts
    if not visit:
        visit.update(group=event.group, camera=event.camera, track=event.track, first_ts=first)
        visit.update(last_ts=last, identity=None, similarity=None, left=False, snapshot=None)
    visit["first_ts"] = min(visit["first_ts"], first)
    visit["last_ts"] = max(visit["last_ts"], last)
    visit["dwell_ms"] = visit["last_ts"] - visit["first_ts"]
    visit["frame_id"] = event.frame_id
    if event.type in ("identified", "left"):  # the newest naming event has the last word
        visit["identity"], visit["similarity"] = event.identity, event.similarity
    if event.type == "left":
        visit["left"], visit["frames"] = True, event.frames
    url = snapshot_url(event.group, event.snapshot)
    if url is not None:
        visit["snapshot"] = url


def _matches(visit: Visit, query: VisitQuery) -> bool:
    if query.identity is not None and visit.identity != query.identity:
        return False
    if query.unknown and visit.identity is not None:
        return False
    return query.camera is None or visit.camera == query.camera


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)
