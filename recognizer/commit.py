"""The ack-gated commit (one Lua call per frame), retried through "not now" replies.

The commit acknowledges the entry and publishes its output (and sets the cache) only if the
entry was still pending: if another worker claimed and answered it first, nothing is published.

A worker whose entry was claimed and answered by another one finds it no longer pending and
publishes nothing, so a frame never gets two results; a crash before the commit leaves the
entry pending for XAUTOCLAIM, so it never gets none. All keys carry the group's hash tag: one
slot, works on Redis Cluster.
Because of the gate, running a commit twice is harmless, which makes reloading the code simple.

The commit that acknowledges an entry also clears its solo attempt on record (`fs:{G}:solo`,
recognizer/solo.py): an entry is on record as tried alone exactly while it has no outcome, so
the next claimer can tell an attempt that ended without a result from one that ended with it.

With tracking, the same call also writes the camera's track state (only if nobody changed it
since the worker read it: a compare-and-set on its token, else nothing is written and the entry
stays pending), the frame's visit events and its tracks' new snapshots: a result and its events
are published together or not at all, and a redelivered frame whose gate is closed writes none
of them. Keys that must take a write are type-checked before anything is written, so no write
can fail half-way.

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
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import NoPermissionError, NoScriptError
from redis.retry import Retry

from facestream.redis_errors import REDIS_ERRORS, is_transient
from facestream.schemas.keys import group_of, solo

__all__ = [
    "COMMIT_FUNCTION",
    "COMMIT_LIBRARY",
    "CONFLICT",
    "Commit",
    "Committer",
    "Outcome",
    "TrackWrite",
]

# KEYS: frames, output stream, cache, solo attempts, then with tracking: track state, events,
# snapshots...
# ARGV: 1 consumer group, 2 entry id, 3 output MAXLEN, 4 cache TTL, 5 cache value ('' none),
# 6 gated, 7 tracking, 8 expected state token, 9 new token, 10 state, 11 state TTL,
# 12 events (JSON list of field lists), 13 events MAXLEN, 14 snapshot TTL, then one value per
# snapshot key, then the output's fields.
_ACK_THEN_PUBLISH = """
local snapshots = math.max(#KEYS - 6, 0)
if ARGV[6] == '1' and #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
    return 0
end
if ARGV[7] == '1' then
    if (redis.call('HGET', KEYS[5], 'v') or '') ~= ARGV[8] then
        return 2
    end
    local kinds = {[6] = 'stream'}
    for i = 7, #KEYS do kinds[i] = 'string' end
    for i, kind in pairs(kinds) do
        local found = redis.call('TYPE', KEYS[i]).ok
        if found ~= 'none' and found ~= kind then
            return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind '
                .. 'of value: ' .. KEYS[i])
        end
    end
end
local added = redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
    unpack(ARGV, 15 + snapshots))
if type(added) == 'table' and added.err then
    return redis.error_reply(added.err .. ': ' .. KEYS[2])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
-- pcall: a foreign key of another type there must not stop the writes that follow the ack.
redis.pcall('HDEL', KEYS[4], ARGV[2])
if ARGV[5] ~= '' then
    redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[4])
end
if ARGV[7] == '1' then
    redis.call('HSET', KEYS[5], 'v', ARGV[9], 'state', ARGV[10])
    redis.call('EXPIRE', KEYS[5], ARGV[11])
    for _, event in ipairs(cjson.decode(ARGV[12])) do
        redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[13], '*', unpack(event))
    end
    for i = 1, snapshots do
        redis.call('SET', KEYS[6 + i], ARGV[14 + i], 'EX', ARGV[14])
    end
end
return 1
"""

# Versioned: a library of the same name with other code would answer with the old protocol.
COMMIT_FUNCTION = "facestream_commit_v3"
#: The commit as a Redis 7 Function library, for `FUNCTION LOAD REPLACE`.
COMMIT_LIBRARY = (
    "#!lua name=facestream_v3\n"
    f"redis.register_function('{COMMIT_FUNCTION}', function(KEYS, ARGV)\n"
    f"{_ACK_THEN_PUBLISH}end)\n"
)

#: A commit refused because another worker moved the camera's tracks on since we read them.
CONFLICT: Literal["conflict"] = "conflict"


@dataclass(frozen=True)
class TrackWrite:
    """The tracking part of a commit: a camera's new track state, its events and snapshots.

    Written only if the state's token is still `expect` (compare-and-set); else the commit
    writes nothing, acknowledges nothing, and comes back as CONFLICT.
    """

    key: str
    expect: str
    token: str
    state: bytes
    state_ttl_s: int
    events_key: str
    events: Sequence[Mapping[str, str | int]]
    events_maxlen: int
    snapshots: Mapping[str, bytes] = field(default_factory=dict)
    snapshot_ttl_s: int = 1

    def events_json(self) -> bytes:
        return orjson.dumps(
            [
                [part for name, value in e.items() for part in (name, str(value))]
                for e in self.events
            ]
        )


#: What one commit came to: published, answered by another worker, CONFLICT, or the refusal.
Outcome = bool | Literal["conflict"] | redis.ResponseError


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
    tracks: TrackWrite | None = None

    def keys(self) -> list[str]:
        names = [self.source, self.target, self.cache_key, solo(group_of(self.source))]
        if self.tracks is not None:
            names += [self.tracks.key, self.tracks.events_key, *self.tracks.snapshots]
        return names

    def arguments(self, consumer_group: str) -> list[Any]:
        args: list[Any] = [
            consumer_group,
            self.entry_id,
            self.target_maxlen,
            self.cache_ttl_s,
            self.cache_value,
            "1" if self.gated else "0",
        ]
        t = self.tracks
        if t is None:
            args += ["0", "", "", "", 1, "[]", 1, 1]
        else:
            args += ["1", t.expect, t.token, t.state, t.state_ttl_s, t.events_json()]
            args += [t.events_maxlen, t.snapshot_ttl_s, *t.snapshots.values()]
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
            supported_errors=REDIS_ERRORS,
        )

    def commit(self, commits: Sequence[Commit]) -> list[Outcome]:
        """Run `commits` in one round trip; one outcome each, in order.

        True: it acknowledged its entry, and so published; False: another worker had, and
        answers for it; CONFLICT: its track state moved on meanwhile (nothing written, the
        entry still pending: apply the frame to the new state and commit again); an error:
        the server refused that commit for good. Commits refused for
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
        return [_outcome(reply) for reply in replies]

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
            keys = commit.keys()
            args = commit.arguments(self.consumer_group)
            if self._function:
                pipe.fcall(COMMIT_FUNCTION, len(keys), *keys, *args)
            else:
                pipe.evalsha(self._sha or "-", len(keys), *keys, *args)
        return list(pipe.execute(raise_on_error=False))


def _outcome(reply: object) -> Outcome:
    if isinstance(reply, redis.ResponseError):
        return reply
    if reply == 2:
        return "conflict"
    return bool(reply)


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
