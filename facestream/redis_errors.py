"""What a Redis error means, decided here once for every role (workers, cameras, CLI, web).

redis-py raises two unrelated roots, `redis.RedisError` and the cluster client's
`RedisClusterException` (an `Exception`, not a RedisError); `classify` sorts both into the
faults below, and each role decides once what to do with a fault, never with a class:

    Fault.CREDENTIALS  the password or user was refused (WRONGPASS, NOAUTH, AuthorizationError):
                       no retry can fix it; the CLI exits 4, a worker stops
    Fault.UNREACHABLE  no server answers: connection refused or lost, a timeout, a reply that is
                       not Redis's protocol (InvalidResponse: another server on that port), a
                       cluster none of whose nodes answers; long-running roles back off and
                       retry, the CLI exits 3
    Fault.TRANSIENT    a server answers "not now": LOADING, BUSY, OOM, READONLY, MASTERDOWN,
                       CLUSTERDOWN, TRYAGAIN, NOREPLICAS, slots not covered during a failover;
                       retried like an outage, the CLI exits 3 (never 4: nobody must change
                       anything)
    Fault.GROUP        a refusal tied to the keys of one group (NOPERM on them, WRONGTYPE):
                       a worker quarantines that group, the CLI exits 4
    Fault.NO_GROUP     our consumer group or its stream is gone (NOGROUP, UNBLOCKED: a restart
                       without persistence, a deleted key): recreate it
    Fault.REFUSED      any other "no" from the server (an unknown command, a syntax error): the
                       command is refused until someone changes something; the CLI exits 4

Anything else (`classify` answers None) is not Redis's: a bug of ours or of redis-py's usage.
"""

from __future__ import annotations

import enum

import redis
from redis.exceptions import (
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    InvalidResponse,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)

__all__ = [
    "REDIS_ERRORS",
    "Fault",
    "classify",
    "is_group_fault",
    "is_transient",
    "is_unreachable",
]

# Everything redis-py raises on purpose, for an `except` that must catch any Redis error.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)


class Fault(enum.Enum):
    """What went wrong, in the terms a role acts on (see the module's docstring)."""

    CREDENTIALS = "credentials"
    UNREACHABLE = "unreachable"
    TRANSIENT = "transient"
    GROUP = "group"
    NO_GROUP = "no group"
    REFUSED = "refused"


# Replies that mean "not now", by their error code: redis-py gives most of them their own class,
# and these catch the rest (BUSY, NOREPLICAS) and any parser that leaves them a ResponseError.
_NOT_NOW = (
    "BUSY ",
    "NOREPLICAS ",
    "CLUSTERDOWN ",
    "MASTERDOWN ",
    "TRYAGAIN ",
    "LOADING ",
    "READONLY ",
)
_TRANSIENT: tuple[type[Exception], ...] = (
    BusyLoadingError,  # a ConnectionError in redis-py: tested before UNREACHABLE
    ClusterDownError,  # MasterDownError too
    ClusterError,  # the cluster client ran out of redirections (a failover in progress)
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
    SlotNotCoveredError,
)
_UNREACHABLE: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    InvalidResponse,
)
# The cluster client's plain RedisClusterException, by the start of its message: its other
# uses (a command with no key to route by, a bad argument) are ours to fix, not an outage.
_CLUSTER_UNREACHABLE = ("Redis Cluster cannot be connected",)
_CLUSTER_NOT_NOW = ("All slots are not covered", "startup_nodes could not agree")


def classify(exc: BaseException) -> Fault | None:
    """The fault `exc` stands for, or None if it is not a Redis error we can act on."""
    if isinstance(exc, (redis.AuthenticationError, AuthorizationError)):
        return Fault.CREDENTIALS
    if isinstance(exc, _TRANSIENT):
        return Fault.TRANSIENT
    if isinstance(exc, _UNREACHABLE):
        return Fault.UNREACHABLE
    if isinstance(exc, NoPermissionError):
        return Fault.GROUP
    if isinstance(exc, redis.ResponseError):
        text = str(exc)
        if text.startswith(_NOT_NOW):
            return Fault.TRANSIENT
        if text.startswith("WRONGTYPE"):
            return Fault.GROUP
        if text.startswith(("NOGROUP", "UNBLOCKED")):
            return Fault.NO_GROUP
        return Fault.REFUSED
    if isinstance(exc, RedisClusterException):
        text = str(exc)
        if text.startswith(_CLUSTER_UNREACHABLE):
            return Fault.UNREACHABLE
        if text.startswith(_CLUSTER_NOT_NOW):
            return Fault.TRANSIENT
    return None


def is_transient(exc: BaseException) -> bool:
    """Worth a retry as it is: the server is away or answers "not now" (an outage either way)."""
    return classify(exc) in (Fault.UNREACHABLE, Fault.TRANSIENT)


def is_unreachable(exc: BaseException) -> bool:
    """No server answered at all (a command sent may or may not have been run)."""
    return classify(exc) is Fault.UNREACHABLE


def is_group_fault(exc: BaseException) -> bool:
    """A refusal tied to the keys of one group (NOPERM on them, a key of the wrong type)."""
    return classify(exc) is Fault.GROUP
