"""The ack-gated commit: XACK, and only if it acked, XADD the output and SET the cache.

A worker whose entry was claimed by another one gets 0 from XACK and publishes nothing, so a
frame never gets two results; a crash before the commit leaves the entry pending for XAUTOCLAIM,
so it never gets none. All keys carry the group's hash tag: one slot, works on Redis Cluster.
Because of the gate, running a commit twice is harmless, which makes NOSCRIPT recovery simple.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import NoScriptError

__all__ = ["Commit", "Committer"]

_ACK_THEN_PUBLISH = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
    return 0
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 6))
if ARGV[5] ~= '' then
    redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[4])
end
return 1
"""


@dataclass(frozen=True)
class Commit:
    """Acknowledge `entry_id` on `source`; if that acked it, publish `fields` on `target`."""

    source: str
    entry_id: str
    target: str
    target_maxlen: int
    fields: Mapping[str, bytes | str | int]
    cache_key: str
    cache_value: bytes = b""  # empty: leave the cache alone
    cache_ttl_s: int = 0

    def arguments(self, consumer_group: str) -> list[Any]:
        args: list[Any] = [
            consumer_group,
            self.entry_id,
            self.target_maxlen,
            self.cache_ttl_s,
            self.cache_value,
        ]
        for name, value in self.fields.items():
            args.extend((name, value))
        return args


class Committer:
    """Runs many commits in one pipeline round trip with EVALSHA."""

    def __init__(self, client: redis.Redis, consumer_group: str) -> None:
        self.client = client
        self.consumer_group = consumer_group
        self._sha: str | None = None

    def commit(self, commits: Sequence[Commit]) -> list[bool]:
        """True for each commit that acknowledged its entry (and so published)."""
        if not commits:
            return []
        if self._sha is None:
            self._sha = str(self.client.script_load(_ACK_THEN_PUBLISH))
        replies = self._run(self._sha, commits)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            # The server lost its script cache (restart, SCRIPT FLUSH): load it and redo those.
            self._sha = str(self.client.script_load(_ACK_THEN_PUBLISH))
            redone = self._run(self._sha, [commits[i] for i in missing])
            for index, reply in zip(missing, redone, strict=True):
                replies[index] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return [bool(reply) for reply in replies]

    def _run(self, sha: str, commits: Sequence[Commit]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for commit in commits:
            keys = (commit.source, commit.target, commit.cache_key)
            pipe.evalsha(sha, 3, *keys, *commit.arguments(self.consumer_group))
        return list(pipe.execute(raise_on_error=False))
