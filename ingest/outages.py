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

__all__ = ["Outages", "Stopped", "single_shot"]

T = TypeVar("T")

log = structlog.get_logger("ingest.outages")


class Stopped(Exception):
    """Raised out of `Outages.call` when a stop was asked for while Redis was away."""


class Outages:
    """Retries calls on connection errors and timeouts only, for as long as it takes.

    For loops that lose nothing by waiting (a replay, a results subscriber). The server saying
    no (ResponseError) is not retried: that needs someone to change something. `count` is the
    number of failed attempts so far.
    """

    def __init__(self, stop: threading.Event, what: str, cap_s: float = 2.0) -> None:
        self.stop = stop
        self.what = what
        self.count = 0
        # The cap also bounds how long a stop request waits while Redis is away.
        self._retry = Retry(
            ExponentialWithJitterBackoff(base=0.1, cap=cap_s),
            retries=-1,
            supported_errors=(redis.ConnectionError, redis.TimeoutError),
        )

    def call(self, command: Callable[[], T]) -> T:
        return self._retry.call_with_retry(command, self._failed)

    def _failed(self, error: Exception) -> None:
        self.count += 1
        if self.stop.is_set():
            raise Stopped from error
        log.warning("redis unavailable, will retry", who=self.what, error=str(error))


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
