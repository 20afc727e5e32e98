"""The ack-gated commit (one Lua call per frame), and which Redis errors are worth a retry.

The commit acknowledges the entry and publishes its output (and sets the cache) only if the
entry was still pending: if another worker claimed and answered it first, nothing is published.

A worker whose entry was claimed and answered by another one finds it no longer pending and
publishes nothing, so a frame never gets two results; a crash before the commit leaves the
entry pending for XAUTOCLAIM, so it never gets none. All keys carry the group's hash tag: one
slot, works on Redis Cluster.
Because of the gate, running a commit twice is harmless, which makes reloading the code simple.

Inside the script the gate is checked first (XPENDING of that one id: would XACK ack it?), then
the output is added, and only then is the entry acknowledged. Nothing can come between in one
script, so this is the XACK-then-XADD gate; but Lua does not roll back, and in this order an
XADD that fails (its key holds a string: WRONGTYPE) leaves the entry pending instead of acked
with nothing published.

On Redis 7 the commit is a Function (`COMMIT_LIBRARY`): loaded once by the admin user
(`facestream acl functions`), so the worker's ACL user needs FCALL only and can load no code of
its own. Without an ACL the worker loads it itself; on Redis 6 it is a script (EVALSHA).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
)
from redis.retry import Retry

__all__ = [
    "COMMIT_FUNCTION",
    "COMMIT_LIBRARY",
    "Commit",
    "Committer",
    "Outcome",
    "is_group_fault",
    "is_transient",
]

# Replies that mean "not now" and that redis-py leaves as a plain ResponseError.
_NOT_NOW = ("BUSY ", "NOREPLICAS ", "CLUSTERDOWN ")
_TRANSIENT = (
    redis.ConnectionError,
    redis.TimeoutError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
)


def is_transient(exc: BaseException) -> bool:
    """A Redis error that goes away by itself (connection, LOADING, BUSY, OOM, READONLY...).

    A refused password is not one: it stays refused until somebody changes the config.
    """
    if isinstance(exc, redis.AuthenticationError):
        return False
    if isinstance(exc, _TRANSIENT):
        return True
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(_NOT_NOW)


def is_group_fault(exc: BaseException) -> bool:
    """A refusal tied to the keys of one group (NOPERM on them, a key of the wrong type)."""
    return isinstance(exc, NoPermissionError) or (
        isinstance(exc, redis.ResponseError) and str(exc).startswith("WRONGTYPE")
    )


_ACK_THEN_PUBLISH = """
if ARGV[6] == '1' and #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
    return 0
end
local added = redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 7))
if type(added) == 'table' and added.err then
    return redis.error_reply(added.err .. ': ' .. KEYS[2])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if ARGV[5] ~= '' then
    redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[4])
end
return 1
"""

COMMIT_FUNCTION = "facestream_commit"
#: The commit as a Redis 7 Function library, for `FUNCTION LOAD REPLACE`.
COMMIT_LIBRARY = (
    "#!lua name=facestream\n"
    f"redis.register_function('{COMMIT_FUNCTION}', function(KEYS, ARGV)\n"
    f"{_ACK_THEN_PUBLISH}end)\n"
)


#: What one commit came to: published, answered by another worker, or the server's refusal.
Outcome = bool | redis.ResponseError


@dataclass(frozen=True)
class Commit:
    """Acknowledge `entry_id` on `source`; if that acked it, publish `fields` on `target`.

    `gated=False` publishes even when there was nothing to acknowledge: for entries Redis 7
    already dropped from the pending list as it reported them trimmed (only the one XAUTOCLAIM
    that reported them knows of them, so they cannot be published twice).
    """

    source: str
    entry_id: str
    target: str
    target_maxlen: int
    fields: Mapping[str, bytes | str | int]
    cache_key: str
    cache_value: bytes = b""  # empty: leave the cache alone
    cache_ttl_s: int = 0
    gated: bool = True

    def arguments(self, consumer_group: str) -> list[Any]:
        args: list[Any] = [
            consumer_group,
            self.entry_id,
            self.target_maxlen,
            self.cache_ttl_s,
            self.cache_value,
            "1" if self.gated else "0",
        ]
        for name, value in self.fields.items():
            args.extend((name, value))
        return args


class Committer:
    """Runs many commits in one pipeline round trip (FCALL on Redis 7, EVALSHA on 6)."""

    def __init__(self, client: redis.Redis, consumer_group: str) -> None:
        self.client = client
        self.consumer_group = consumer_group
        self._function = True  # until the server says it has no FCALL
        self._sha: str | None = None
        self._retry = Retry(
            ExponentialWithJitterBackoff(base=0.05, cap=2.0),
            retries=6,
            supported_errors=(redis.RedisError,),
        )

    def commit(self, commits: Sequence[Commit]) -> list[Outcome]:
        """Run `commits` in one round trip; one outcome each, in order.

        True: it acknowledged its entry, and so published; False: another worker had, and
        answers for it; an error: the server refused that commit for good. Commits refused for
        now (OOM, BUSY, READONLY...) are sent again with back-off, which the gate makes safe;
        if they still are after the retries, or the connection is lost, this raises.
        """
        outcomes: list[Outcome] = [False] * len(commits)
        todo = list(range(len(commits)))

        def attempt() -> None:
            replies = self._commit_once([commits[i] for i in todo])
            again: list[redis.ResponseError] = []
            for index, reply in zip(list(todo), replies, strict=True):
                outcomes[index] = reply
                if isinstance(reply, redis.ResponseError) and is_transient(reply):
                    again.append(reply)
                else:
                    todo.remove(index)
            if again:
                raise again[0]

        self._retry.call_with_retry(attempt, lambda _exc: None, is_retryable=is_transient)
        return outcomes

    def _commit_once(self, commits: Sequence[Commit]) -> list[Outcome]:
        if not commits:
            return []
        replies = self._run(commits)
        missing = [i for i, reply in enumerate(replies) if _lacks_code(reply)]
        if missing:
            # First use, or the server lost its code (restart, FLUSH): load it, redo those.
            self._load(replies[missing[0]])
            redone = self._run([commits[i] for i in missing])
            for index, reply in zip(missing, redone, strict=True):
                replies[index] = reply
        return [
            reply if isinstance(reply, redis.ResponseError) else bool(reply) for reply in replies
        ]

    def _load(self, error: redis.ResponseError) -> None:
        if self._function and not _no_fcall(error):
            try:
                self.client.function_load(COMMIT_LIBRARY, replace=True)
                return
            except NoPermissionError:
                raise NoPermissionError(
                    f"the commit function {COMMIT_FUNCTION} is not loaded and this ACL user may "
                    "not load it: run `facestream acl functions` as admin"
                ) from None
        self._function = False  # Redis 6: no Functions
        self._sha = str(self.client.script_load(_ACK_THEN_PUBLISH))

    def _run(self, commits: Sequence[Commit]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for commit in commits:
            keys = (commit.source, commit.target, commit.cache_key)
            args = commit.arguments(self.consumer_group)
            if self._function:
                pipe.fcall(COMMIT_FUNCTION, 3, *keys, *args)
            else:
                pipe.evalsha(self._sha or "-", 3, *keys, *args)
        return list(pipe.execute(raise_on_error=False))


def _lacks_code(reply: object) -> bool:
    """The server has no commit code: NOSCRIPT, no such function, or no FCALL for us."""
    return isinstance(reply, NoScriptError) or (
        isinstance(reply, redis.ResponseError)
        and (str(reply).startswith("Function not found") or _no_fcall(reply))
    )


def _no_fcall(error: redis.ResponseError) -> bool:
    """Redis 6 (no Functions), or an ACL written for it (EVALSHA and SCRIPT LOAD, no FCALL)."""
    text = str(error)
    return text.startswith("unknown command") or (
        isinstance(error, NoPermissionError) and "'fcall'" in text
    )
