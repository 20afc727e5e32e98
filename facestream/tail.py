"""Following streams with XREAD (no consumer group): every entry parsed, bad ones skipped.

The one tail loop of `results tail`, `events tail` (tail_results, tail_events) and the page's
live feed. A tail starts after the newest entry of each stream, or at the oldest kept one; an
entry that does not parse is skipped, counted with the reason and logged, never the stream.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import redis
import structlog

from facestream.ingest.outages import Outages, Stopped
from facestream.schemas import InvalidMessage, StreamFields, clip

from .skipped import count_skipped

__all__ = ["Parser", "TailStats", "follow", "last_id"]

log = structlog.get_logger("tail")

P = TypeVar("P")

#: Parses one entry of the stream it is named for; InvalidMessage with the reason if it cannot.
Parser = Callable[[str, StreamFields], P]


@dataclass
class TailStats:
    """What a tail handed out, and what it skipped by reason."""

    delivered: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def invalid(self) -> int:
        return sum(self.skipped.values())


def last_id(client: redis.Redis, stream: str) -> str:
    """Id of the newest entry of `stream` ("0-0" if empty): read after it to see only new ones."""
    last: Any = client.xrevrange(stream, count=1)
    return last[0][0].decode() if last else "0-0"


def follow(
    client: redis.Redis,
    parsers: Mapping[str, Parser[P]],
    noun: str,
    *,
    from_start: bool = False,
    block_ms: int = 1000,
    stop: threading.Event | None = None,
    stats: TailStats | None = None,
    on_start: Callable[[], None] | None = None,
) -> Iterator[P]:
    """Yield each new entry of the streams `parsers` names, parsed by its stream's parser.

    While Redis is unreachable it waits (and logs) and then resumes where it was; a refusal
    (ResponseError) ends it. `on_start` is called once the starting points are known.
    """
    stop = stop or threading.Event()
    stats = stats if stats is not None else TailStats()
    outages = Outages(stop, f"{noun} tail")
    cursors = dict.fromkeys(parsers, "0-0")
    try:
        if not from_start:
            # Resolve "$" once, so entries added between two reads are not skipped.
            for stream in cursors:
                cursors[stream] = outages.call(partial(last_id, client, stream))
        if on_start is not None:
            on_start()
        while not stop.is_set():
            read = partial(client.xread, cursors, count=100, block=block_ms)  # type: ignore[arg-type]
            response: Any = outages.call(read)
            for raw_stream, entries in response or []:
                stream = raw_stream.decode()
                for entry_id, fields in entries:
                    cursors[stream] = entry_id.decode()
                    try:
                        item = parsers[stream](stream, fields)
                    except InvalidMessage as exc:
                        stats.skipped[count_skipped(f"{noun} tail", exc.reason)] += 1
                        log.warning(
                            f"skipping invalid {noun[:-1]}",
                            stream=stream,
                            entry_id=entry_id,
                            error=clip(exc.reason, 300),
                            skipped=stats.invalid,
                        )
                        continue
                    stats.delivered += 1
                    yield item
    except Stopped:
        return
