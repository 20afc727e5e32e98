"""Solo attempts: a redelivered entry is tried alone, on record where the next claimer looks.

An entry comes back (delivery count above 1) when its last delivery ended without a result:
its worker was killed (a restart, the OOM killer, a node going down), or a batch-mate crashed
it. Tried alone, a crash is its own doing. Before the attempt its record goes into the group's
hash `fs:{G}:solo` (keys.solo; one field per entry id, a `SoloAttempt`): who tries it, since
when, how many solo attempts before ended without a result. The commit that gives the entry
its result or dead letter deletes the record in the same script (recognizer/commit.py), so a
record the next claimer finds is an attempt that ended without one. It counts unless it was
excused: its worker was being stopped, or the attempt ended in an exception the worker survived
(a Redis failure). After `max_deliveries` counted attempts the entry is dead-lettered.
"""

from __future__ import annotations

import contextlib
import threading
import time

import redis
import structlog

from facestream.schemas import SoloAttempt, clip, keys

from .deliveries import Delivery
from .metrics import solo_gauge

__all__ = ["SoloLedger"]

log = structlog.get_logger("solo")
# A record outlives any retry schedule (attempts are claim_idle_ms apart); the TTL only ends
# one that nothing will read again (its group deleted meanwhile).
_RECORD_TTL_S = 86_400


class SoloLedger:
    """This worker's solo attempts: put on record, excused when they end for a reason not
    their own, and how many an entry's earlier attempts failed."""

    def __init__(self, client: redis.Redis, consumer: str) -> None:
        self.client = client
        self.consumer = consumer
        self._lock = threading.Lock()  # the stop watcher marks the attempt from another thread
        self._current: SoloAttempt | None = None
        self._current_group = ""
        self._stopping = False
        self._excused_while_running = False
        # Excuses not yet written (Redis was down as the attempt ended): group -> attempts.
        self._owed: dict[str, list[SoloAttempt]] = {}

    def begin(self, delivery: Delivery) -> int:
        """Put the attempt on record; returns the entry's earlier failed solo attempts."""
        key = keys.solo(delivery.group)
        raw = self.client.hget(key, delivery.entry_id)
        failed = 0
        if raw is not None:
            try:
                last = SoloAttempt.loads(raw)
                failed = last.failed + (0 if last.excused else 1)
            except ValueError as exc:  # somebody else's value: count the attempt it stood for
                log.warning("unreadable solo record", key=key, error=clip(str(exc), 200))
                failed = 1
        attempt = SoloAttempt(
            entry_id=delivery.entry_id,
            consumer=self.consumer,
            since=int(time.time() * 1000),
            failed=failed,
            excused=self._stopping,
        )
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(key, delivery.entry_id, attempt.dumps())
        pipe.expire(key, _RECORD_TTL_S)
        pipe.hlen(key)
        solo_gauge(delivery.group).set(pipe.execute()[-1])
        with self._lock:
            self._current, self._current_group = attempt, delivery.group
            self._excused_while_running = self._stopping
        if failed:
            log.info(
                "trying an entry alone",
                group=delivery.group,
                frame_id=delivery.entry_id,
                failed_before=failed,
            )
        return failed

    def end(self, finished: bool) -> None:
        """The attempt is over: `finished` if its batch ran to the end (it committed).

        An attempt that did not finish, or finished after the stop watcher marked it, is
        excused on record: the worker lived on, so the entry did not crash it.
        """
        with self._lock:
            attempt, group = self._current, self._current_group
            marked = self._excused_while_running
            self._current = None
        if attempt is None:
            return
        if finished and marked:
            self._write(group, attempt, clear=True)  # the mark may have landed after the commit
        elif not finished:
            self._write(group, attempt.model_copy(update={"excused": True}), clear=False)
        else:
            self._count(group)

    def stopping(self) -> None:
        """The worker is being stopped: the attempt in flight, if any, must not count."""
        with self._lock:
            self._stopping = True
            attempt, group = self._current, self._current_group
            if attempt is None or self._excused_while_running:
                return
            self._excused_while_running = True
            self._write(group, attempt.model_copy(update={"excused": True}), clear=False)

    def settle_owed(self) -> None:
        """Write the excuses Redis was down for; raises if it still is."""
        for group, attempts in list(self._owed.items()):
            key = keys.solo(group)
            pipe = self.client.pipeline(transaction=False)
            for attempt in attempts:
                pipe.hget(key, attempt.entry_id)
            current = pipe.execute()
            pipe = self.client.pipeline(transaction=False)
            for attempt, raw in zip(attempts, current, strict=True):
                if raw is not None and _same(raw, attempt):  # nobody took it on since
                    pipe.hset(key, attempt.entry_id, attempt.dumps())
            pipe.execute()
            del self._owed[group]

    def _write(self, group: str, attempt: SoloAttempt, clear: bool) -> None:
        """Excuse the attempt on record (or, `clear`, delete it: it has its outcome).

        Only while the record is still this attempt's: gone, its commit took it off record
        (and nothing may put it back); replaced, another worker has taken the entry on.
        """
        key = keys.solo(group)
        try:
            current = self.client.hget(key, attempt.entry_id)
            if current is not None and _same(current, attempt):  # type: ignore[arg-type]
                if clear:
                    self.client.hdel(key, attempt.entry_id)
                else:
                    self.client.hset(key, attempt.entry_id, attempt.dumps())
            self._count(group)
        except redis.RedisError as exc:
            log.warning("solo record not updated", error=clip(str(exc), 200))
            if not clear:
                self._owed.setdefault(group, []).append(attempt)

    def _count(self, group: str) -> None:
        # Unknown while Redis is down: the next attempt's count brings the gauge up to date.
        with contextlib.suppress(redis.RedisError):
            solo_gauge(group).set(self.client.hlen(keys.solo(group)))


def _same(raw: bytes, attempt: SoloAttempt) -> bool:
    """Whether a stored record is this attempt (same consumer, same start)."""
    try:
        stored = SoloAttempt.loads(raw)
    except ValueError:
        return False
    return (stored.consumer, stored.since) == (attempt.consumer, attempt.since)
