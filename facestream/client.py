"""Read results: a plain tail (XREAD) and a resumable subscriber with its own consumer group."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import redis
import structlog

from facestream.schemas import InvalidMessage, Result, keys

__all__ = ["ResultSubscriber", "tail_results"]

log = structlog.get_logger("client")


def tail_results(
    client: redis.Redis,
    groups: Sequence[str],
    *,
    from_start: bool = False,
    count: int | None = None,
    block_ms: int = 1000,
    stop: threading.Event | None = None,
) -> Iterator[Result]:
    """Yield results of `groups` as they are published (from the start with `from_start`)."""
    cursors = {keys.results(group): "0-0" if from_start else "$" for group in groups}
    if not from_start:
        # Resolve "$" once, so results published between two reads are not skipped.
        for stream in cursors:
            last: Any = client.xrevrange(stream, count=1)
            cursors[stream] = last[0][0].decode() if last else "0-0"
    seen = 0
    while not (stop and stop.is_set()) and (count is None or seen < count):
        response: Any = client.xread(cursors, count=100, block=block_ms)  # type: ignore[arg-type]
        for stream, entries in response or []:
            for entry_id, fields in entries:
                cursors[stream.decode()] = entry_id.decode()
                yield Result.from_fields(fields)
                seen += 1
                if count is not None and seen >= count:
                    return


class ResultSubscriber:
    """Results for a backend: its own consumer group, so it resumes after a restart.

    Each result is acknowledged when the next one is requested, i.e. after the caller's loop
    body ran for it; a crash in between means the result is delivered again.
    """

    def __init__(
        self,
        client: redis.Redis,
        groups: Sequence[str],
        consumer_group: str = "backend",
        consumer: str = "backend-1",
        block_ms: int = 1000,
    ) -> None:
        self.client = client
        self.streams = [keys.results(group) for group in groups]
        self.consumer_group = consumer_group
        self.consumer = consumer
        self.block_ms = block_ms
        for stream in self.streams:
            try:
                self.client.xgroup_create(stream, consumer_group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def __iter__(self) -> Iterator[Result]:
        return self.listen()

    def listen(self, stop: threading.Event | None = None) -> Iterator[Result]:
        # Our own unacknowledged entries first (a previous run died mid-way), then new ones.
        cursor = "0"
        while not (stop and stop.is_set()):
            response: Any = self.client.xreadgroup(
                self.consumer_group,
                self.consumer,
                {stream: cursor for stream in self.streams},
                count=100,
                block=None if cursor == "0" else self.block_ms,
            )
            entries = [(s.decode(), e) for s, batch in response or [] for e in batch]
            if cursor == "0" and not entries:
                cursor = ">"
                continue
            for stream, (entry_id, fields) in entries:
                if fields:
                    try:
                        yield Result.from_fields(fields)
                    except InvalidMessage as exc:
                        # Not ours to fix; acked below so it does not come back forever.
                        log.warning("skipping invalid result", entry_id=entry_id, error=exc.reason)
                self.client.xack(stream, self.consumer_group, entry_id)
