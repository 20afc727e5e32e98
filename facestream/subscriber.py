"""A resumable reader of one stream per camera group: its own consumer group, claims, gaps."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import redis
import structlog

from facestream.ingest.outages import Outages, Stopped
from facestream.redis_errors import Fault, classify
from facestream.schemas import InvalidMessage, clip
from facestream.schemas.entries import is_after

from .skipped import count_skipped

__all__ = ["StreamSubscriber", "SubscriberStats"]

log = structlog.get_logger("client")

T = TypeVar("T")


@dataclass
class SubscriberStats:
    """What a subscriber saw; `gaps` counts entries removed before anyone read them."""

    delivered: int = 0
    redelivered: int = 0
    claimed: int = 0
    gaps: int = 0
    regrouped: int = 0
    invalid: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # the invalid ones, by reason
    # Entries we handled whose XACK found them no longer ours (see `ack`).
    acked_elsewhere: int = 0


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
        """Acknowledge one entry (through outages; the group is put back if it was lost).

        XACK answering 0 means someone else acknowledged it first: another consumer of this
        group claimed it (a second instance of this reader after `claim_idle_ms`, or any
        reader of the stream: Redis ACLs cannot restrict consumer groups, docs/security.md),
        or the group was made again. Said and counted: it is how such a claim shows.
        """
        acked = self._call(partial(self.client.xack, stream, self.consumer_group, entry_id))
        if acked == 0:
            self.stats.acked_elsewhere += 1
            log.warning(
                "entry acknowledged by another consumer of our group first",
                stream=stream,
                group=self.consumer_group,
                entry_id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
            )

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
        if is_after(entry.entry_id, self._position[entry.stream]):
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
            reader = f"{self.noun} subscriber {self.consumer_group}"
            self.stats.skipped[count_skipped(reader, exc.reason)] += 1
            log.warning(
                f"skipping invalid {self.noun[:-1]}",
                stream=entry.stream,
                entry_id=entry.entry_id,
                error=clip(exc.reason, 300),
                invalid=self.stats.invalid,
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
            if first is not None and not is_after(first[0], delivered):
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
                if classify(exc) is not Fault.NO_GROUP:
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
