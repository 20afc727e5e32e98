"""Ride out Redis outages: retry a call with capped, jittered back-off until it goes through."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import redis
import structlog
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

__all__ = ["Outages", "Stopped"]

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
