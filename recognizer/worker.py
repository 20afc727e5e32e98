"""The recogniser loop: find groups, read or reclaim frames, hand batches over, recover.

No Redis error ends the loop but a refused password (`facestream.redis_errors` classifies them).
Outages (unreachable, or "not now": LOADING, BUSY, OOM, READONLY, CLUSTERDOWN...) back off and
retry, logged seldom (`facestream.outage`); NOPERM and WRONGTYPE on a group's keys quarantine that
group (logged once, in the heartbeat and in metrics) while the other groups go on, and the group
is probed again every few seconds.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import redis
import structlog
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster

from facestream.outage import Outage
from facestream.redis_errors import REDIS_ERRORS, Fault, classify, is_group_fault
from facestream.replication import ReplicaWait
from facestream.schemas import FacestreamError, FrameLimits, Heartbeat, clip, keys

from .batch import BatchProcessor, BatchResult, FrameCounts
from .deliveries import Delivery, read_deliveries, text
from .embedder import check_embedding_size
from .engine import FaceEngine
from .gallery import Gallery
from .matcher import Matcher
from .metrics import quarantine_gauge, redis_errors_counter
from .settings import MatchSettings, TrackSettings, WorkerSettings
from .solo import SoloLedger
from .visitors import VisitorBook

__all__ = ["Worker"]

_DISCOVER_EVERY_S = 5.0
_SKIPPED_KEPT = 1000  # hostile stream names remembered (to warn once each)
_HEARTBEAT_EVERY_S = 5
# How long one blocking read on a cluster waits on one group while the others may get frames:
# the most an idle group's first frame waits for a read.
_CLUSTER_BLOCK_MS = 100
# Answers of a group check that only mean "nothing there yet" or "already done".
_HARMLESS = ("BUSYGROUP", "NOGROUP")


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
        cameras: Mapping[str, frozenset[str]] | None = None,
        replica_wait: ReplicaWait | None = None,
        tracks: TrackSettings | None = None,
    ) -> None:
        """`cameras`: each group's camera ids from the config; a frame naming another camera of
        a listed group is dead-lettered (groups not listed take any camera). `tracks`: face
        tracks and visit events (None: off)."""
        self.client = client
        self.engine = engine
        self.settings = settings
        self.match = match
        self.limits = limits
        self.consumer = consumer
        self.fixed_groups = [keys.validate_group(g) for g in groups]
        self.groups: list[str] = []
        self.quarantined: dict[str, str] = {}  # group -> why, as logged
        self.stats = FrameCounts()  # every batch's, added up
        self.gallery = Gallery(client)
        self.matcher = Matcher([], match.threshold, match.margin)  # until the gallery is read
        self.log = structlog.get_logger("worker").bind(consumer=consumer)
        self.batches = BatchProcessor(
            client, engine, settings, limits, consumer, visitors, cameras, tracks
        )
        self.solo = SoloLedger(client, consumer)
        self._gallery_checked = -float("inf")
        self._gallery_seen: int | None = None
        self._discovered = -float("inf")
        self._skipped: set[str | bytes] = set()
        self._ready_groups: set[str] = set()
        self._claimed = -float("inf")
        self._beat = -float("inf")
        self._claim_cursor: dict[str, str] = {}
        self._seconds_per_frame = 0.0
        self.cluster = isinstance(client, RedisCluster)
        self.replica_wait = replica_wait
        self._blocking_turn = 0

    # -- the loop ---------------------------------------------------------------------------

    def run(
        self, stop: threading.Event, on_round: Callable[[str | None], None] | None = None
    ) -> None:
        """Serve until `stop` is set; Redis errors mean log, back off (capped), carry on.

        `on_round` hears after every round: None when it served, else what went wrong (the
        process's /healthz and /readyz). Raises redis.AuthenticationError: no retry can fix a
        refused password.
        """
        report = on_round or (lambda _problem: None)
        # A solo attempt that ends because we are being stopped must not count against its
        # entry: say so on record as soon as the stop is asked for (the batch may never end).
        threading.Thread(
            target=self._excuse_on_stop, args=(stop,), name="solo-excuse", daemon=True
        ).start()
        backoff = ExponentialWithJitterBackoff(base=0.1, cap=5.0)
        failures = 0
        outage = Outage(self.log)
        self.log.info(
            "worker started", groups=self.fixed_groups or "discover", model=self.engine.model_id
        )
        try:
            while not stop.is_set():
                try:
                    if outage.down:  # a round may not touch Redis (no group yet): ask it first
                        self.client.ping()
                    self.step()
                    failures = 0
                    outage.recovered()
                    report(None)
                except Exception as exc:
                    fault = classify(exc)
                    if fault is Fault.CREDENTIALS:
                        raise
                    if fault is not None:
                        redis_errors_counter(type(exc).__name__).inc()
                    if fault is Fault.NO_GROUP:
                        # The server lost our consumer groups (restart without persistence).
                        self.log.warning("consumer group missing, recreating", error=str(exc))
                        self._forget_groups()
                        continue
                    failures += 1
                    delay = backoff.compute(failures)
                    if fault in (Fault.UNREACHABLE, Fault.TRANSIENT):
                        outage.failed(exc, delay)
                        report(f"redis unavailable: {clip(str(exc), 200)}")
                    elif fault is not None:  # refused: someone must change something
                        self.log.warning(
                            "redis refused a command, retrying",
                            error=clip(f"{type(exc).__name__}: {exc}", 300),
                            retry_in_s=round(delay, 2),
                        )
                        report(f"redis refused a command: {clip(str(exc), 200)}")
                    else:
                        # Our own bug, not a frame's (those are dead letters): the batch stays
                        # pending and is claimed again; the loop goes on.
                        self.log.exception("worker step failed; retrying")
                        report("worker step failed (see the log)")
                    stop.wait(delay)
        finally:
            self._goodbye()

    def step(self) -> int:
        """Handle one batch (claimed idle entries first, else new ones); returns its size."""
        self._refresh_groups()
        self._refresh_gallery()
        self._heartbeat()
        self.solo.settle_owed()
        deliveries = self._claim_idle()
        if not deliveries:
            deliveries = self._read_new()
        if deliveries:
            self.process(deliveries)
        return len(deliveries)

    def process(self, deliveries: Sequence[Delivery]) -> None:
        """Finish a batch: every entry ends with one result or one dead letter.

        Redelivered entries (their last delivery ended without a result) are tried one at a
        time, each on record as a solo attempt (recognizer/solo.py); the others together.
        """
        start = time.monotonic()
        refused: dict[str, redis.ResponseError] = {}
        for done in self._batches(deliveries):  # counted as each ends: one may raise
            self.stats += done.counts
            refused.update(done.refused)
        for group, exc in refused.items():
            self._quarantine(group, exc)
        if self.replica_wait is not None:
            committed = sorted({d.group for d in deliveries} - refused.keys())
            self.replica_wait.after_writes(self.client, map(keys.results, committed))
        per_frame = (time.monotonic() - start) / len(deliveries)
        self._seconds_per_frame = 0.8 * self._seconds_per_frame + 0.2 * per_frame

    def _batches(self, deliveries: Sequence[Delivery]) -> Iterator[BatchResult]:
        for delivery in deliveries:
            if delivery.redelivered:
                yield self._alone(delivery)
        together = [d for d in deliveries if not d.redelivered]
        if together:
            yield self.batches.process(together, self.matcher)

    def _excuse_on_stop(self, stop: threading.Event) -> None:
        stop.wait()
        self.solo.stopping()

    def _alone(self, delivery: Delivery) -> BatchResult:
        delivery.solo_failures = self.solo.begin(delivery)
        finished = False
        try:
            done = self.batches.process([delivery], self.matcher)
            finished = delivery.group not in done.refused
        finally:  # an exception we live through is no crash of the entry's: excused
            self.solo.end(finished)
        return done

    def _goodbye(self) -> None:
        with contextlib.suppress(*REDIS_ERRORS):  # it expires by itself
            self.client.delete(keys.worker_heartbeat(self.consumer))
        self.log.info("worker stopped", **vars(self.stats))

    # -- groups -----------------------------------------------------------------------------

    def _refresh_groups(self) -> None:
        now = time.monotonic()
        if now - self._discovered < _DISCOVER_EVERY_S:
            return
        self._discovered = now
        found = set(self.fixed_groups) or self._discover()
        # New groups, and quarantined ones given another chance.
        for group in sorted((found - self._ready_groups) | (found & self.quarantined.keys())):
            try:
                self._check_group(group)
            except redis.ResponseError as exc:
                if not is_group_fault(exc):
                    raise
                self._quarantine(group, exc)
                continue
            self._ready_groups.add(group)
            if self.quarantined.pop(group, None) is not None:
                quarantine_gauge(group).set(0)
                self.log.info("group back in service", group=group)
        self.groups = sorted(found)

    def _discover(self) -> set[str]:
        streams = self.client.scan_iter(
            match=keys.every_group("frames"), count=1000, _type="stream"
        )
        return keys.groups_in(streams, self._skip)

    def _skip(self, key: str | bytes) -> None:
        """Say once per key that a frames-like stream is not served (a bounded memory of it)."""
        if key in self._skipped or len(self._skipped) >= _SKIPPED_KEPT:
            return
        self._skipped.add(key)
        self.log.warning("stream skipped: not a valid group's frames stream", key=repr(key)[:120])

    def _check_group(self, group: str) -> None:
        """Create our consumer group if needed; raise what the group's keys answer wrongly."""
        pipe = self.client.pipeline(transaction=False)
        # From id 0: frames queued before any worker started are still served.
        pipe.xgroup_create(keys.frames(group), keys.RECOGNIZERS, id="0", mkstream=True)
        for target in (keys.results(group), keys.dead(group)):
            pipe.xpending(target, keys.RECOGNIZERS)  # answers WRONGTYPE if it is not a stream
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, redis.ResponseError) and not str(reply).startswith(_HARMLESS):
                raise reply

    def _quarantine(self, group: str, exc: redis.ResponseError) -> None:
        if group in self.quarantined:
            return
        reason = clip(f"{type(exc).__name__}: {exc}", 200)
        self.quarantined[group] = reason
        quarantine_gauge(group).set(1)
        redis_errors_counter(type(exc).__name__).inc()
        self._beat = -float("inf")  # show it in `status` now
        self.log.error(
            "group quarantined: its keys refuse our commands; serving the other groups",
            group=group,
            reason=reason,
            retry_every_s=_DISCOVER_EVERY_S,
        )

    def _forget_groups(self) -> None:
        self._discovered = -float("inf")
        self._ready_groups.clear()

    def _serving(self) -> list[str]:
        return [g for g in self.groups if g not in self.quarantined]

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._beat < _HEARTBEAT_EVERY_S:
            return
        self._beat = now
        beat = Heartbeat(
            groups=self.groups,
            quarantined=self.quarantined,
            pid=os.getpid(),
            at=int(time.time() * 1000),
            counts=vars(self.stats),
        )
        try:
            self.client.set(
                keys.worker_heartbeat(self.consumer), beat.dumps(), ex=3 * _HEARTBEAT_EVERY_S
            )
        except redis.ResponseError as exc:  # OOM, NOPERM: `status` misses us, frames do not
            redis_errors_counter(type(exc).__name__).inc()
            self.log.warning("heartbeat not written", error=clip(str(exc), 200))

    def _refresh_gallery(self) -> None:
        now = time.monotonic()
        if now - self._gallery_checked < self.settings.gallery_poll_s:
            return
        self._gallery_checked = now
        version = self.gallery.version()
        if version == self._gallery_seen:
            return
        self._gallery_seen = version
        try:
            matcher = self.gallery.matcher(
                self.engine.model_id, self.match.threshold, self.match.margin, self.match
            )
            if matcher.names:
                check_embedding_size(matcher.templates.shape[1])
        except (FacestreamError, ValueError) as exc:  # a bad import must not stop serving
            self.log.error(
                "gallery not loaded; matching against the previous one",
                version=version,
                error=clip(str(exc), 300),
            )
            return
        self.matcher = matcher
        self.log.info("gallery loaded", version=matcher.version, identities=len(matcher.names))
        if not matcher.names:
            self.log.warning(
                "gallery is empty: every face stays unknown until one is enrolled "
                "(facestream gallery enroll NAME PHOTOS)"
            )

    # -- reading ----------------------------------------------------------------------------

    def _read_size(self, groups: int) -> int:
        """COUNT per stream so that one read stays within `batch_size` across all groups, and
        within half of `claim_idle_ms` at the measured time per frame: a peer must not claim
        a batch we are still working on."""
        fits = self.settings.claim_idle_ms / 2000 / max(self._seconds_per_frame, 1e-6)
        return max(1, min(self.settings.batch_size, int(fits)) // groups)

    def _read_new(self) -> list[Delivery]:
        serving = self._serving()
        if not serving:
            time.sleep(min(self.settings.block_ms, 1000) / 1000)
            return []
        count = self._read_size(len(serving))
        # One XREADGROUP per group on one pipeline, without BLOCK: an error names its group.
        pipe = self.client.pipeline(transaction=False)
        for group in serving:
            pipe.xreadgroup(keys.RECOGNIZERS, self.consumer, {keys.frames(group): ">"}, count=count)
        deliveries: list[Delivery] = []
        errors: list[redis.ResponseError] = []
        for group, reply in zip(serving, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, redis.ResponseError):
                if is_group_fault(reply):
                    self._quarantine(group, reply)
                else:
                    errors.append(reply)
                continue
            deliveries += read_deliveries(reply)
        if deliveries or self._serving() != serving:
            return deliveries
        if errors:
            raise errors[0]
        # Nothing waiting anywhere: block until something comes, on every group at once; on a
        # cluster a read may not span slots, so on one group at a time, briefly, in turn.
        if self.cluster:
            self._blocking_turn = (self._blocking_turn + 1) % len(serving)
            waiting_on: dict[Any, Any] = {keys.frames(serving[self._blocking_turn]): ">"}
            block_ms = min(self.settings.block_ms, _CLUSTER_BLOCK_MS)
        else:
            waiting_on = {keys.frames(g): ">" for g in serving}
            block_ms = self.settings.block_ms
        try:
            response: Any = self.client.xreadgroup(
                keys.RECOGNIZERS, self.consumer, waiting_on, count=count, block=block_ms
            )
        except redis.ResponseError as exc:
            if not is_group_fault(exc):
                raise
            return []  # the next read, one group at a time, finds out which
        return read_deliveries(response)

    def _claim_idle(self) -> list[Delivery]:
        """XAUTOCLAIM entries idle past `claim_idle_ms` (their worker died or is stuck)."""
        now = time.monotonic()
        if now - self._claimed < min(self.settings.claim_idle_ms / 2000, 5.0):
            return []
        self._claimed = now
        claimed: list[Delivery] = []
        serving = self._serving()
        for group in serving:
            try:
                claimed += self._claim_group(group, self._read_size(len(serving)))
            except redis.ResponseError as exc:
                if not is_group_fault(exc):
                    raise
                self._quarantine(group, exc)
        return claimed

    def _claim_group(self, group: str, count: int) -> list[Delivery]:
        stream = keys.frames(group)
        claimed_raw: Any = self.client.xautoclaim(
            stream,
            keys.RECOGNIZERS,
            self.consumer,
            min_idle_time=self.settings.claim_idle_ms,
            start_id=self._claim_cursor.get(group, "0-0"),
            count=count,
        )
        cursor, entries = claimed_raw[0], claimed_raw[1]
        self._claim_cursor[group] = text(cursor)
        # Redis 7 reports pending entries MAXLEN trimmed, and drops them from the pending list
        # as it does: nothing is left to acknowledge, and only this reply knows of them.
        gone = [text(i) for i in claimed_raw[2]] if len(claimed_raw) > 2 else []
        claimed = [Delivery(group, entry_id, None, 0, pending=False) for entry_id in gone]
        present = [(text(i), fields) for i, fields in entries if i is not None]
        if len(present) < len(entries):
            # Redis 6.2 answers (nil, nil) for a claimed entry MAXLEN trimmed: find its id.
            present += [(i, None) for i in self._trimmed_pending(stream)]
        if present:
            counts = self._delivery_counts(stream, [i for i, _ in present])
            claimed += [
                Delivery(group, entry_id, fields or None, counts.get(entry_id, 1))
                for entry_id, fields in present
            ]
        if claimed:
            self.log.info("claimed idle entries", group=group, count=len(claimed))
        return claimed

    def _trimmed_pending(self, stream: str) -> list[str]:
        """Ids this consumer holds whose entries are gone from the stream."""
        pending: Any = self.client.xpending_range(
            stream, keys.RECOGNIZERS, "-", "+", 1000, consumername=self.consumer
        )
        ids = [text(p["message_id"]) for p in pending]
        lookup = self.client.pipeline(transaction=False)
        for entry_id in ids:
            lookup.xrange(stream, entry_id, entry_id)
        return [i for i, found in zip(ids, lookup.execute(), strict=True) if not found]

    def _delivery_counts(self, stream: str, entry_ids: list[str]) -> dict[str, int]:
        """How often each entry was delivered, asked one id at a time on one pipeline.

        Not one XPENDING over first..last: ids compare as numbers ("…-10" > "…-9"), and any
        range misses some once they are sorted as text.
        """
        lookup = self.client.pipeline(transaction=False)
        for entry_id in entry_ids:
            lookup.xpending_range(stream, keys.RECOGNIZERS, min=entry_id, max=entry_id, count=1)
        return {
            text(row["message_id"]): int(row["times_delivered"])
            for rows in lookup.execute()
            for row in rows
        }
