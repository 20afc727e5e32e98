"""The recogniser loop: read frames, recognise or serve from cache, commit, recover."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
import structlog
from facestream.schemas import (
    CachedRecognition,
    DeadLetter,
    Frame,
    FrameLimits,
    InvalidFrame,
    Result,
    keys,
)
from redis.backoff import ExponentialWithJitterBackoff

from .commit import Committer
from .engine import FaceEngine, Recognition, decode_jpeg, label
from .gallery import Gallery
from .metrics import COMMITS_LOST, FACES, FRAMES, STAGE_SECONDS
from .settings import MatchSettings, WorkerSettings

__all__ = ["Delivery", "Worker", "WorkerStats", "content_hash"]

_DISCOVER_EVERY_S = 5.0
_HEARTBEAT_EVERY_S = 5


def content_hash(data: bytes) -> str:
    """BLAKE2b-128 of the encoded image (MD5 collisions are cheap and would poison the cache)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass
class Delivery:
    """One stream entry handed to this worker, and how often it has been delivered."""

    group: str
    entry_id: str
    fields: dict[bytes, bytes] | None  # None: trimmed from the stream before we got it
    deliveries: int
    read_at: float = field(default_factory=time.time)


@dataclass
class WorkerStats:
    read: int = 0
    recognised: int = 0
    cached: int = 0
    dead: int = 0
    lost: int = 0


@dataclass
class _Pending:
    """A valid frame on its way to a result."""

    delivery: Delivery
    frame: Frame
    digest: str
    recognition: Recognition | None = None
    cached: bool = False
    cache_value: bytes = b""
    latency_ms: dict[str, float] = field(default_factory=dict)


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
        self.committer = Committer(client, keys.RECOGNIZERS)
        self.log = structlog.get_logger("worker").bind(consumer=consumer)
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
            cursor, entries = claimed_raw[0], claimed_raw[1]  # Redis 7 adds deleted ids
            self._claim_cursor[group] = _text(cursor)
            if not entries:
                continue
            counts = self._delivery_counts(stream, [_text(e[0]) for e in entries])
            for entry_id, fields in entries:
                text_id = _text(entry_id)
                claimed.append(Delivery(group, text_id, fields or None, counts.get(text_id, 1)))
            self.log.info("claimed idle entries", group=group, count=len(entries))
        return claimed

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
        """Recognise a batch and commit every entry (result or dead letter) in one round trip."""
        self.stats.read += len(deliveries)
        pipe = self.client.pipeline(transaction=False)
        dead: list[Delivery] = []
        pending: list[_Pending] = []
        for delivery in deliveries:
            reason = self._reject_reason(delivery)
            if reason is not None:
                self._queue_dead(pipe, dead, delivery, reason)
                continue
            assert delivery.fields is not None
            try:
                frame = Frame.from_fields(delivery.fields, self.limits)
            except InvalidFrame as exc:
                self._queue_dead(pipe, dead, delivery, exc.reason)
                continue
            pending.append(_Pending(delivery, frame, content_hash(frame.img)))

        self._serve_from_cache(pending)
        self._recognise_misses(pipe, dead, pending)
        for item in pending:
            self._queue_result(pipe, item)
        self._execute(pipe, dead, pending)

    def _reject_reason(self, delivery: Delivery) -> str | None:
        if delivery.fields is None:
            return "entry was trimmed from the frames stream (MAXLEN) before it was processed"
        if delivery.deliveries > self.settings.max_deliveries:
            return (
                f"delivered {delivery.deliveries} times without a result "
                f"(max_deliveries={self.settings.max_deliveries}): it may crash workers"
            )
        return None

    def _serve_from_cache(self, pending: list[_Pending]) -> None:
        digests = sorted({p.digest for p in pending})
        if not digests:
            return
        start = time.perf_counter()
        group_of_digest = {p.digest: p.delivery.group for p in pending}
        # GETs on one pipeline: a single round trip, and no cross-slot MGET on a cluster.
        lookup = self.client.pipeline(transaction=False)
        for digest in digests:
            lookup.get(keys.cache(group_of_digest[digest], digest))
        raw = lookup.execute()
        hits: dict[str, CachedRecognition] = {}
        for digest, value in zip(digests, raw, strict=True):
            if value is None:
                continue
            cached = CachedRecognition.loads(value)
            if cached.model == self.engine.model_id:
                hits[digest] = cached
        lookup_ms = (time.perf_counter() - start) * 1000 / max(len(pending), 1)
        for item in pending:
            hit = hits.get(item.digest)
            item.latency_ms["cache"] = lookup_ms
            if hit is None:
                continue
            start = time.perf_counter()
            embeddings = hit.embedding_matrix()
            faces = label(hit.faces, self.engine.matcher.match(embeddings))
            item.latency_ms["match"] = (time.perf_counter() - start) * 1000
            item.recognition = Recognition(faces, embeddings)
            item.cached = True

    def _recognise_misses(self, pipe: Any, dead: list[Delivery], pending: list[_Pending]) -> None:
        # One recognition per distinct image: duplicates in a batch reuse it as cache hits.
        firsts: dict[str, _Pending] = {}
        for item in pending:
            if item.recognition is None and item.digest not in firsts:
                firsts[item.digest] = item
        images, decoded = [], []
        for item in firsts.values():
            start = time.perf_counter()
            try:
                images.append(decode_jpeg(item.frame.img))
            except InvalidFrame as exc:
                self._queue_dead(pipe, dead, item.delivery, exc.reason)
                continue
            item.latency_ms["decode"] = (time.perf_counter() - start) * 1000
            decoded.append(item)
        for item, recognition in zip(decoded, self.engine.recognise(images), strict=True):
            item.recognition = recognition
            item.latency_ms.update(recognition.latency_ms)
            item.cache_value = CachedRecognition.build(
                self.engine.model_id, recognition.faces, recognition.embeddings
            ).dumps()
        for item in pending:
            original = firsts.get(item.digest)
            if (
                item.recognition is None
                and original is not None
                and original.recognition is not None
            ):
                item.recognition = original.recognition
                item.cached = True
        # An undecodable image's duplicates in the batch are no better: dead-letter them too.
        for item in pending:
            if item.recognition is None and item is not firsts.get(item.digest):
                self._queue_dead(pipe, dead, item.delivery, "image data is not a decodable JPEG")
        pending[:] = [p for p in pending if p.recognition is not None]

    def _queue_result(self, pipe: Any, item: _Pending) -> None:
        assert item.recognition is not None
        frame, delivery = item.frame, item.delivery
        now_ms = time.time() * 1000
        latency = {name: round(ms, 3) for name, ms in item.latency_ms.items()}
        latency["queue"] = round(max(delivery.read_at * 1000 - _entry_ms(delivery.entry_id), 0), 3)
        latency["e2e"] = round(max(now_ms - frame.ts, 0.0), 3)
        result = Result(
            frame_id=delivery.entry_id,
            camera=frame.camera,
            group=frame.group,
            seq=frame.seq,
            ts=frame.ts,
            hash=item.digest,
            cached=item.cached,
            faces=item.recognition.faces,
            model=self.engine.model_id,
            latency_ms=latency,
        )
        self.committer.queue(
            pipe,
            source=keys.frames(delivery.group),
            entry_id=delivery.entry_id,
            target=keys.results(delivery.group),
            target_maxlen=self.settings.results_maxlen,
            fields=result.to_fields(),
            cache_key=keys.cache(delivery.group, item.digest),
            cache_value=item.cache_value,
            cache_ttl_s=self.settings.cache_ttl_s,
        )
        for stage, ms in latency.items():
            STAGE_SECONDS.labels(stage).observe(ms / 1000)

    def _queue_dead(self, pipe: Any, dead: list[Delivery], delivery: Delivery, reason: str) -> None:
        fields = delivery.fields or {}
        letter = DeadLetter(
            frame_id=delivery.entry_id,
            group=delivery.group,
            reason=reason,
            deliveries=delivery.deliveries,
            camera=fields.get(b"camera", b"").decode(errors="replace")[:64],
            image_bytes=len(fields.get(b"img", b"")),
        )
        self.committer.queue(
            pipe,
            source=keys.frames(delivery.group),
            entry_id=delivery.entry_id,
            target=keys.dead(delivery.group),
            target_maxlen=self.settings.dead_maxlen,
            fields=letter.to_fields(),
            cache_key=keys.cache(delivery.group, "-"),
        )
        dead.append(delivery)
        self.log.warning(
            "frame dead-lettered", group=delivery.group, frame_id=delivery.entry_id, reason=reason
        )

    def _execute(self, pipe: Any, dead: list[Delivery], outcomes: list[_Pending]) -> None:
        # Replies come back in queue order; all dead letters were queued before any result.
        replies = pipe.execute()
        for delivery, acked in zip(dead, replies[: len(dead)], strict=True):
            if acked:
                self.stats.dead += 1
                FRAMES.labels(delivery.group, "dead").inc()
        for item, acked in zip(outcomes, replies[len(dead) :], strict=True):
            if not acked:
                self.stats.lost += 1
                COMMITS_LOST.inc()
                continue
            outcome = "cached" if item.cached else "recognised"
            setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
            FRAMES.labels(item.delivery.group, outcome).inc()
            assert item.recognition is not None
            for face in item.recognition.faces:
                FACES.labels(str(face.identity is not None).lower()).inc()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry_ms(entry_id: str) -> float:
    return float(entry_id.split("-", 1)[0])
