"""Dead letters in one place: list, retry and purge them (the page and `facestream dead`).

A dead letter keeps only its frame's id; the frame itself stays in the frames stream until
MAXLEN trims it, so a retry sends that frame again as a new entry and drops the letter, in one
transaction that watches the dead-letter stream (a double click sends it once). A letter that
does not parse (a hostile or foreign entry) is never shown as one: it is counted with the
reason and logged, and `purge` removes it like any other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog

from facestream.schemas import DeadLetter, FacestreamError, InvalidMessage, clip, keys
from facestream.schemas.entries import validate_entry_id

from .skipped import count_skipped
from .status import known_groups

__all__ = ["DeadLetterPage", "DeadLetters", "InvalidRequest", "ListedLetter", "NotRetryable"]

log = structlog.get_logger("dead_letters")

#: Newest letters shown per group by default: enough to see a pattern.
SHOWN = 100


class NotRetryable(FacestreamError):
    """A dead letter that is gone, does not parse, or whose frame is no longer kept."""


class InvalidRequest(FacestreamError, ValueError):
    """A request naming something that cannot exist (a malformed entry id)."""


@dataclass(frozen=True)
class ListedLetter:
    """One dead letter and its entry id on `fs:{G}:dead`."""

    id: str
    letter: DeadLetter

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.letter.model_dump()}


@dataclass(frozen=True)
class DeadLetterPage:
    """The newest letters of some groups, newest first; how many each group holds in all, and
    how many of those shown could not be read (by group, then by reason)."""

    letters: list[ListedLetter]
    total: dict[str, int]
    unreadable: dict[str, Counter[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "letters": [letter.to_dict() for letter in self.letters],
            "total": self.total,
            "unreadable": {group: sum(why.values()) for group, why in self.unreadable.items()},
        }


class DeadLetters:
    """The dead letters of the groups on one Redis node (or cluster)."""

    def __init__(self, client: redis.Redis, frames_maxlen: int) -> None:
        """`frames_maxlen`: the cap a retried frame is added with (`ingest.frames_maxlen`)."""
        self.client = client
        self.frames_maxlen = frames_maxlen

    def groups(self) -> list[str]:
        """The groups this node holds, sorted."""
        return known_groups(self.client)

    def list(self, groups: Sequence[str] | None = None, count: int = SHOWN) -> DeadLetterPage:
        """The newest `count` letters of each of `groups` (every group here if None)."""
        names = [keys.validate_group(g) for g in groups] if groups else self.groups()
        letters: list[ListedLetter] = []
        unreadable: dict[str, Counter[str]] = {}
        for group in names:
            entries: Any = self.client.xrevrange(keys.dead(group), count=count)
            for entry_id, fields in entries:
                try:
                    letters.append(ListedLetter(entry_id.decode(), _parse(group, fields)))
                except InvalidMessage as exc:
                    reason = count_skipped("dead letters", exc.reason)
                    unreadable.setdefault(group, Counter())[reason] += 1
                    log.warning(
                        "dead letter skipped: it does not parse",
                        group=group,
                        entry_id=entry_id,
                        error=clip(exc.reason, 300),
                    )
        total = {group: int(self.client.xlen(keys.dead(group))) for group in names}
        return DeadLetterPage(letters, total, unreadable)

    def retry(self, group: str, entry_id: str) -> str:
        """Send the letter's frame again and drop the letter; the frame's id.

        NotRetryable if the letter is gone or unreadable, or its frame was trimmed.
        """
        group, entry_id = keys.validate_group(group), _entry_id(entry_id)
        dead, frames = keys.dead(group), keys.frames(group)
        resent: list[str] = []

        def resend(pipe: Any) -> None:
            found = pipe.xrange(dead, entry_id, entry_id, count=1)
            if not found:
                raise NotRetryable(f"no dead letter {entry_id} in group {group}")
            try:
                frame_id = _parse(group, found[0][1]).frame_id
            except InvalidMessage as exc:
                raise NotRetryable(
                    f"dead letter {entry_id} does not parse ({exc.reason}): purge it"
                ) from exc
            frame = pipe.xrange(frames, frame_id, frame_id, count=1)
            if not frame:
                raise NotRetryable(
                    f"frame {frame_id} is no longer kept in {frames}: it cannot be retried"
                )
            pipe.multi()
            pipe.xadd(frames, frame[0][1], maxlen=self.frames_maxlen, approximate=True)
            pipe.xdel(dead, entry_id)
            resent[:] = [frame_id]  # a retried transaction (the stream changed) overwrites it

        self.client.transaction(resend, dead)
        log.info("dead letter retried", group=group, entry_id=entry_id, frame_id=resent[0])
        return resent[0]

    def purge(self, group: str, entry_id: str | None = None) -> int:
        """Delete one letter (by id) or every letter of the group; how many went."""
        group = keys.validate_group(group)
        dead = keys.dead(group)
        if entry_id is not None:
            purged = int(self.client.xdel(dead, _entry_id(entry_id)))
        else:
            pipe = self.client.pipeline(transaction=True)
            pipe.xlen(dead)
            pipe.delete(dead)
            purged = int(pipe.execute()[0])
        log.info("dead letters purged", group=group, purged=purged)
        return purged


def _parse(group: str, fields: dict[bytes, bytes]) -> DeadLetter:
    """A letter of `group`'s stream; InvalidMessage if it names another group (its purge or
    retry would then act elsewhere)."""
    letter = DeadLetter.from_fields(fields)
    if letter.group != group:
        raise InvalidMessage(f"dead letter of group {letter.group[:64]!r} on {keys.dead(group)}")
    return letter


def _entry_id(entry_id: str) -> str:
    try:
        return validate_entry_id(entry_id)
    except InvalidMessage:
        raise InvalidRequest(f"invalid entry id {entry_id[:40]!r}") from None
