"""Redis outages: ride them out (retry until a call goes through) or fail fast (single shot)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar, cast

import redis
import structlog
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from facestream.outage import Outage
from facestream.redis_errors import REDIS_ERRORS, is_transient
from facestream.schemas import FacestreamError

__all__ = ["Outages", "Stopped", "single_shot"]

T = TypeVar("T")

log = structlog.get_logger("ingest.outages")


class Stopped(FacestreamError):
    """Raised out of `Outages.call` when a stop was asked for while Redis was away."""


class Outages:
    """Retries calls through an outage (unreachable, or "not now": LOADING, CLUSTERDOWN...) for
    as long as it takes, saying so seldom (`facestream.outage.Outage`).

    For loops that lose nothing by waiting (a replay, a results subscriber). The server saying
    no for good (WRONGTYPE, NOPERM, a refused password) is not retried: that needs someone to
    change something. `count` is the number of failed attempts so far.
    """

    def __init__(self, stop: threading.Event, what: str, cap_s: float = 2.0) -> None:
        self.stop = stop
        self.what = what
        self.count = 0
        self._outage = Outage(log, who=what)
        # The cap also bounds how long a stop request waits while Redis is away.
        self._retry = Retry(
            ExponentialWithJitterBackoff(base=0.1, cap=cap_s),
            retries=-1,
            supported_errors=REDIS_ERRORS,
        )

    def call(self, command: Callable[[], T]) -> T:
        result = self._retry.call_with_retry(command, self._failed, is_retryable=is_transient)
        self._outage.recovered()
        return result

    def _failed(self, error: Exception) -> None:
        self.count += 1
        if self.stop.is_set():
            raise Stopped from error
        self._outage.failed(error)


def single_shot(client: redis.Redis) -> redis.Redis:
    """A client for the same server that sends each command once and fails fast.

    redis-py resends a command after a connection error: an XADD whose reply was lost is then
    added twice (FramePublisher.send decides about resending instead), and a loop that has
    other work (the camera supervisor) would wait out every retry.
    """
    if isinstance(client, RedisCluster):
        # MOVED and ASK are still followed (they are not retries); failovers are not retried.
        kwargs = {
            key: value
            for key, value in client.get_connection_kwargs().items()
            if key not in ("host", "port", "retry", "maint_notifications_pool_handler")
        }
        nodes = [ClusterNode(node.host, node.port) for node in client.get_nodes()]
        cluster = RedisCluster(startup_nodes=nodes, retry=Retry(NoBackoff(), 0), **kwargs)
        return cast(redis.Redis, cluster)
    pool = client.connection_pool
    options = {
        key: value
        for key, value in pool.connection_kwargs.items()
        if key != "maint_notifications_pool_handler"  # bound to the original pool
    }
    options["retry"] = Retry(NoBackoff(), 0)
    return redis.Redis(
        connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **options)
    )
