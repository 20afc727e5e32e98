"""How a long-running role says Redis is away: once when it goes, then seldom, and once when back.

A worker, a replay, a subscriber or a bridge retries for as long as Redis is away; logging every
retry would fill a log with one line a second for a whole night. `Outage` says the first failure
at once, repeats it at a backed-off interval (redis-py's ExponentialBackoff: 2, 4, 8... s, capped
at `say_cap_s`) with how long Redis has been away, and says "redis available again" with the
length of the outage on the first call that goes through.
"""

from __future__ import annotations

import time
from typing import Any

from redis.backoff import ExponentialBackoff

from facestream.schemas import clip

__all__ = ["Outage"]


class Outage:
    """The state of one role's Redis outage and its log lines (not thread-safe: one per loop)."""

    def __init__(self, log: Any, say_cap_s: float = 60.0, **context: Any) -> None:
        """`log`: a structlog logger; `context`: fields added to each line (who is waiting)."""
        self.log = log
        self.context = context
        self.failures = 0  # failed attempts in the current outage
        self._say_every = ExponentialBackoff(cap=say_cap_s, base=1.0)
        self._since: float | None = None
        self._said = 0
        self._next_say = 0.0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException, retry_in_s: float | None = None) -> None:
        """Count a failed attempt; log it if it is the first or the interval has passed."""
        now = time.monotonic()
        self.failures += 1
        if self._since is None:
            self._since = now
        if now < self._next_say:
            return
        self._said += 1
        self._next_say = now + self._say_every.compute(self._said)
        fields = dict(self.context, error=clip(f"{type(exc).__name__}: {exc}", 300))
        if retry_in_s is not None:
            fields["retry_in_s"] = round(retry_in_s, 2)
        if self._said > 1:
            fields.update(down_s=round(now - self._since, 1), attempts=self.failures)
        self.log.warning("redis unavailable", **fields)

    def recovered(self) -> None:
        """A call went through: say so once if Redis was away, and start afresh."""
        if self._since is None:
            return
        down_s = round(time.monotonic() - self._since, 1)
        self.log.info(
            "redis available again", down_s=down_s, attempts=self.failures, **self.context
        )
        self._since = None
        self._said = 0
        self._next_say = 0.0
        self.failures = 0
