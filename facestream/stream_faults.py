"""Streams sabotaged within the ACL: emptied by `XADD … MAXLEN 0`, or at the last possible id.

Redis ACLs check commands and keys, never arguments, so any role that may XADD to a stream
may also empty it or give the entry id 18446744073709551615-18446744073709551615, after
which every XADD to it fails ("exhausted the last possible ID") and `XTRIM` does not help:
the stream keeps its last id. `status` and the page's metrics report both; docs/security.md
gives the repair (`DEL`, or `XSETID` on an emptied stream).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import redis

from facestream.schemas import keys

__all__ = ["LAST_POSSIBLE_ID", "StreamFault", "stream_faults"]

LAST_POSSIBLE_ID = f"{2**64 - 1}-{2**64 - 1}"

FaultKind = Literal["emptied", "last-id"]


@dataclass(frozen=True)
class StreamFault:
    """One stream of a group that no longer works as it should."""

    stream: str
    kind: FaultKind

    def describe(self) -> str:
        if self.kind == "last-id":
            return (
                f"{self.stream} is at the last possible id: every XADD to it fails; "
                "repair: DEL it (docs/security.md), XTRIM does not help"
            )
        return (
            f"{self.stream} was emptied (entries were added, none is left): a MAXLEN 0 or "
            "XTRIM that its readers did not make (docs/security.md)"
        )


def stream_faults(client: redis.Redis, group: str) -> list[StreamFault]:
    """The faults of `group`'s streams; streams that are absent, or that this user may not
    inspect, are passed over (nothing to say about them)."""
    # Emptied is a fault only where nothing deletes entries on purpose: MAXLEN ~ never trims a
    # stream to zero, while dead letters are purged by operators.
    checked: list[tuple[str, bool]] = [
        (keys.frames(group), True),
        (keys.results(group), True),
        (keys.events(group), True),
        (keys.dead(group), False),
        (keys.events_dead(group), False),
    ]
    pipe = client.pipeline(transaction=False)  # one group's keys: one slot on a cluster
    for stream, _ in checked:
        pipe.xinfo_stream(stream)
    faults = []
    for (stream, may_empty), info in zip(checked, pipe.execute(raise_on_error=False), strict=True):
        if isinstance(info, Exception):
            continue
        kind = _fault(info, may_empty)
        if kind is not None:
            faults.append(StreamFault(stream, kind))
    return faults


def _fault(info: dict[str, Any], check_emptied: bool) -> FaultKind | None:
    last = info.get("last-generated-id")
    if isinstance(last, bytes):
        last = last.decode()
    if last == LAST_POSSIBLE_ID:
        return "last-id"
    added = info.get("entries-added")  # Redis 7+; older servers cannot tell
    if check_emptied and info.get("length") == 0 and added:
        return "emptied"
    return None
