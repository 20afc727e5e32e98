"""The recogniser loop: find groups, read or reclaim frames, hand batches over, recover."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis
import structlog
from redis.backoff import ExponentialWithJitterBackoff

from facestream.schemas import DeadLetter, FrameLimits, keys

from .batch import TRIMMED_REASON, BatchProcessor, Delivery, WorkerStats, content_hash
from .engine import FaceEngine
from .gallery import Gallery
from .metrics import frames_counter
from .settings import MatchSettings, WorkerSettings
from .visitors import VisitorBook

__all__ = ["Delivery", "Worker", "WorkerStats", "content_hash"]

_DISCOVER_EVERY_S = 5.0
_HEARTBEAT_EVERY_S = 5


class Worker:
    """One consumer of the `recognizers` group on every frames stream of its groups."""

    def __init__(
        self,
        client: redis.Redis,
        engine: FaceEngine,
        settings: WorkerSettings,
        match: MatchSettings,
        limits: FrameLimits,
        consumer: str,
        groups: Sequence[str] = (),
        visitors: VisitorBook | None = None,
    ) -> None:
        self.client = client
        self.engine = engine
        self.settings = settings
        self.match = match
        self.limits = limits
        self.consumer = consumer
        self.fixed_groups = [keys.validate_group(g) for g in groups]
        self.groups: list[str] = []
        self.stats = WorkerStats()
        self.gallery = Gallery(client)
        self.log = structlog.get_logger("worker").bind(consumer=consumer)
        self.batches = BatchProcessor(
            client, engine, settings, limits, self.stats, self.log, visitors
        )
        self._gallery_checked = -float("inf")
        self._gallery_loaded = False
        self._discovered = -float("inf")
        self._ready_groups: set[str] = set()
        self._claimed = -float("inf")
        self._beat = -float("inf")
        self._claim_cursor: dict[str, str] = {}

    # -- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set; a lost Redis means log, back off (capped), carry on."""
        backoff = ExponentialWithJitterBackoff(base=0.1, cap=5.0)
        failures = 0
        self.log.info(
            "worker started", groups=self.fixed_groups or "discover", model=self.engine.model_id
        )
        while not stop.is_set():
            try:
                self.step()
                failures = 0
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                failures += 1
                delay = backoff.compute(failures)
                self.log.warning("redis unavailable", error=str(exc), retry_in_s=round(delay, 2))
                stop.wait(delay)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The server lost our consumer groups (restart without persistence): recreate.
                self.log.warning("consumer group missing, recreating", error=str(exc))
                self._discovered = -float("inf")
                self._ready_groups.clear()
            except Exception:
                # A bug or a frame that breaks the model: the batch stays pending, is claimed
                # again after claim_idle_ms and dead-lettered after max_deliveries.
                failures += 1
                self.log.exception("batch failed; its frames will be retried")
                stop.wait(backoff.compute(failures))
        self.client.delete(keys.worker_heartbeat(self.consumer))
        self.log.info("worker stopped", **vars(self.stats))

    def step(self) -> int:
        """Handle one batch (claimed idle entries first, else new ones); returns its size."""
        self._refresh_groups()
        self._refresh_gallery()
        self._heartbeat()
        deliveries = self._claim_idle()
        if not deliveries:
            deliveries = self._read_new()
        if deliveries:
            self.process(deliveries)
        return len(deliveries)

    # -- reading ----------------------------------------------------------------------------

    def _refresh_groups(self) -> None:
        now = time.monotonic()
        if now - self._discovered < _DISCOVER_EVERY_S:
            return
        self._discovered = now
        found = set(self.fixed_groups) or {
            keys.group_of(key)
            for key in self.client.scan_iter(match="fs:{*}:frames", count=1000, _type="stream")
        }
        for group in sorted(found - self._ready_groups):
            self._ensure_consumer_group(group)
        self._ready_groups |= found
        self.groups = sorted(found)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._beat < _HEARTBEAT_EVERY_S:
            return
        self._beat = now
        beat = {"groups": self.groups, "at": int(time.time() * 1000), **vars(self.stats)}
        self.client.set(
            keys.worker_heartbeat(self.consumer), orjson.dumps(beat), ex=3 * _HEARTBEAT_EVERY_S
        )

    def _ensure_consumer_group(self, group: str) -> None:
        try:
            # From id 0: frames queued before any worker started are still served.
            self.client.xgroup_create(keys.frames(group), keys.RECOGNIZERS, id="0", mkstream=True)
            self.log.info("consumer group created", group=group)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _refresh_gallery(self) -> None:
        now = time.monotonic()
        if now - self._gallery_checked < self.settings.gallery_poll_s:
            return
        self._gallery_checked = now
        if self._gallery_loaded and self.gallery.version() == self.engine.matcher.version:
            return
        matcher = self.gallery.matcher(
            self.engine.model_id, self.match.threshold, self.match.margin
        )
        self.engine.matcher = matcher
        self._gallery_loaded = True
        self.log.info("gallery loaded", version=matcher.version, identities=len(matcher.names))

    def _read_new(self) -> list[Delivery]:
        if not self.groups:
            time.sleep(min(self.settings.block_ms, 1000) / 1000)
            return []
        response: Any = self.client.xreadgroup(
            keys.RECOGNIZERS,
            self.consumer,
            {keys.frames(g): ">" for g in self.groups},
            count=self.settings.batch_size,
            block=self.settings.block_ms,
        )
        return [
            Delivery(keys.group_of(stream), _text(entry_id), fields, 1)
            for stream, entries in response or []
            for entry_id, fields in entries
        ]

    def _claim_idle(self) -> list[Delivery]:
        """XAUTOCLAIM entries idle past `claim_idle_ms` (their worker died or is stuck)."""
        now = time.monotonic()
        if now - self._claimed < min(self.settings.claim_idle_ms / 2000, 5.0):
            return []
        self._claimed = now
        claimed: list[Delivery] = []
        for group in self.groups:
            stream = keys.frames(group)
            claimed_raw: Any = self.client.xautoclaim(
                stream,
                keys.RECOGNIZERS,
                self.consumer,
                min_idle_time=self.settings.claim_idle_ms,
                start_id=self._claim_cursor.get(group, "0-0"),
                count=self.settings.batch_size,
            )
            cursor, entries = claimed_raw[0], claimed_raw[1]
            self._claim_cursor[group] = _text(cursor)
            if len(claimed_raw) > 2 and claimed_raw[2]:
                self._record_trimmed(group, [_text(i) for i in claimed_raw[2]])
            present = [(_text(i), fields) for i, fields in entries if i is not None]
            if len(present) < len(entries):
                # Redis 6.2 answers (nil, nil) for a claimed entry MAXLEN trimmed: find its id.
                present += [(i, None) for i in self._trimmed_pending(stream)]
            if not present:
                continue
            counts = self._delivery_counts(stream, sorted(i for i, _ in present))
            for entry_id, fields in present:
                claimed.append(Delivery(group, entry_id, fields or None, counts.get(entry_id, 1)))
            self.log.info("claimed idle entries", group=group, count=len(present))
        return claimed

    def _trimmed_pending(self, stream: str) -> list[str]:
        """Ids this consumer holds whose entries are gone from the stream."""
        pending: Any = self.client.xpending_range(
            stream, keys.RECOGNIZERS, "-", "+", 1000, consumername=self.consumer
        )
        ids = [_text(p["message_id"]) for p in pending]
        lookup = self.client.pipeline(transaction=False)
        for entry_id in ids:
            lookup.xrange(stream, entry_id, entry_id)
        return [i for i, found in zip(ids, lookup.execute(), strict=True) if not found]

    def _record_trimmed(self, group: str, entry_ids: list[str]) -> None:
        """Redis 7 drops pending entries that MAXLEN trimmed from the PEL as it reports them.

        Only this XAUTOCLAIM saw them, so their dead letters are written directly (there is
        nothing left to acknowledge); Redis 6.2 instead returns them with no fields, and they
        go through the usual ack-gated commit.
        """
        pipe = self.client.pipeline(transaction=False)
        for entry_id in entry_ids:
            letter = DeadLetter(
                frame_id=entry_id,
                group=group,
                reason=TRIMMED_REASON,
                deliveries=0,
            )
            pipe.xadd(
                keys.dead(group),
                letter.to_fields(),  # type: ignore[arg-type]
                maxlen=self.settings.dead_maxlen,
                approximate=True,
            )
        pipe.execute()
        self.stats.dead += len(entry_ids)
        frames_counter(group, "dead").inc(len(entry_ids))
        self.log.warning("pending frames were trimmed", group=group, count=len(entry_ids))

    def _delivery_counts(self, stream: str, entry_ids: list[str]) -> dict[str, int]:
        pending: Any = self.client.xpending_range(
            stream,
            keys.RECOGNIZERS,
            min=entry_ids[0],
            max=entry_ids[-1],
            count=len(entry_ids) * 4,
            consumername=self.consumer,
        )
        return {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}

    # -- processing -------------------------------------------------------------------------

    def process(self, deliveries: Sequence[Delivery]) -> None:
        """Finish a batch: every entry ends with one result or one dead letter."""
        self.batches.process(deliveries)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
