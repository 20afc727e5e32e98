"""One batch of deliveries to one commit each: admit → cache → model → track → commit.

Whatever one frame does, it alone ends as a dead letter: a step that runs on several frames at
once (the model, the cache matrix product) is re-run frame by frame when it fails, and the frame
that fails alone is dead-lettered with the error. Redis errors are no frame's fault: they go up
to the worker, and the batch's entries stay pending.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np
import redis
import structlog
from blake3 import blake3
from numpy.typing import NDArray

from facestream.redis_errors import REDIS_ERRORS
from facestream.schemas import (
    CachedRecognition,
    DeadLetter,
    Frame,
    FrameLimits,
    InvalidFrame,
    InvalidMessage,
    Result,
    clip,
    keys,
)
from facestream.schemas.entries import entry_ms

from .commit import CONFLICT, Commit, Committer
from .deliveries import Delivery
from .embedder import check_embedding_size
from .engine import FaceEngine, Recognition, decode_jpeg, label
from .matcher import Matcher
from .metrics import COMMITS_LOST, faces_counter, frames_counter, stage_histogram
from .model_files import EMBEDDING_SIZE
from .settings import TrackSettings, WorkerSettings
from .tracking import Screen, Tracked, TrackingStage
from .views import FrameView
from .visitors import VisitorBook

__all__ = ["TRIMMED_REASON", "BatchProcessor", "BatchResult", "FrameCounts", "content_hash"]

TRIMMED_REASON = "entry was trimmed from the frames stream (MAXLEN) before it was processed"
# Commits refused because another worker moved a camera's tracks on are re-applied this often;
# after that the frame is published without touching its tracks (two workers racing forever).
_TRACK_ATTEMPTS = 5


def content_hash(data: bytes) -> str:
    """BLAKE3-128 of the encoded image, hex.

    Cryptographic, so nobody can craft an image that collides with someone else's and poison
    its cache entry (cheap with MD5), and 4x faster than MD5 or BLAKE2b on a 30 KB frame.
    """
    return blake3(data).hexdigest(16)


@dataclass(frozen=True)
class FrameCounts:
    """What became of the frames of a batch (or, added up, of all a worker's batches)."""

    read: int = 0
    recognised: int = 0
    cached: int = 0
    dead: int = 0
    lost: int = 0  # answered by another worker that had claimed them
    retracked: int = 0  # commits refused because another worker had moved the tracks on

    def __add__(self, other: FrameCounts) -> FrameCounts:
        return FrameCounts(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )


@dataclass(frozen=True)
class BatchResult:
    """What a batch came to: its counts, and the groups whose commits the server refused for
    good (WRONGTYPE, NOPERM; their entries stay pending)."""

    counts: FrameCounts
    refused: Mapping[str, redis.ResponseError]


@dataclass(frozen=True)
class _Outgoing:
    """A commit on its way out, and what to count once it is acknowledged."""

    commit: Commit
    group: str
    outcome: str  # recognised | cached | dead
    result: Result | None
    tracked: Tracked | None = None  # what its tracks made of it


@dataclass
class _Run:
    """One call of `process`: the gallery it matches against, and what it came to so far."""

    matcher: Matcher
    counts: Counter[str] = field(default_factory=Counter)
    refused: dict[str, redis.ResponseError] = field(default_factory=dict)

    def result(self) -> BatchResult:
        return BatchResult(FrameCounts(**self.counts), self.refused)


@dataclass
class _Pending:
    """An entry of the batch on its way to its one commit (result or dead letter)."""

    delivery: Delivery
    frame: Frame | None = None
    digest: str = ""
    recognition: Recognition | None = None
    dropped: int = 0  # faces over limits.max_faces, left out
    cached: bool = False
    latency_ms: dict[str, float] = field(default_factory=dict)
    outgoing: _Outgoing | None = None  # set once ready to commit
    untracked: _Outgoing | None = None  # the commit before its tracks were applied
    view: FrameView | None = None  # decoded, for the tracks' snapshots
    screen: Screen | None = None  # what its motion asked of the detector

    def frame_or_fail(self) -> Frame:
        assert self.frame is not None, "only accepted entries are recognised"
        return self.frame


class BatchProcessor:
    """Turns each delivery of a batch into exactly one ack-gated commit."""

    def __init__(
        self,
        client: redis.Redis,
        engine: FaceEngine,
        settings: WorkerSettings,
        limits: FrameLimits,
        consumer: str,
        visitors: VisitorBook | None = None,
        cameras: Mapping[str, frozenset[str]] | None = None,
        tracks: TrackSettings | None = None,
    ) -> None:
        self.client = client
        self.engine = engine
        self.settings = settings
        self.limits = limits
        self.log = structlog.get_logger("batch").bind(consumer=consumer)
        self.visitors = visitors
        self.cameras = cameras or {}
        self.committer = Committer(client, keys.RECOGNIZERS)
        self.tracking = (
            TrackingStage(client, tracks, engine.detector.input_size)
            if tracks is not None and tracks.enabled
            else None
        )
        # Cameras whose frames are separate photos (tracked or not, the rest are video).
        self.photo_cameras = frozenset((tracks or TrackSettings()).untracked_cameras)

    def process(self, deliveries: Sequence[Delivery], matcher: Matcher) -> BatchResult:
        """Finish a batch: every entry ends with one result or one dead letter.

        Admit → cache → model → track → commit. Commits go out in delivery order (so results
        of a camera stay in order), each time the longest ready run of entries: dead letters
        and cache hits at once, misses after the model ran on them, `recognise_batch` at a time.
        """
        run = _Run(matcher)
        run.counts["read"] = len(deliveries)
        slots = [self._admit(delivery) for delivery in deliveries]
        waiting = [item for item in slots if item.outgoing is None]
        self._serve_from_cache(waiting, run)
        slots = self._flush_ready(slots, run)

        # One recognition per distinct image; its duplicates in the batch reuse it.
        misses: dict[str, list[_Pending]] = {}
        for item in waiting:
            if item.outgoing is None:
                misses.setdefault(item.digest, []).append(item)
        leaders = [items[0] for items in misses.values()]
        for start in range(0, len(leaders), self.settings.recognise_batch):
            self._recognise(leaders[start : start + self.settings.recognise_batch], misses, run)
            slots = self._flush_ready(slots, run)
        return run.result()

    def _admit(self, delivery: Delivery) -> _Pending:
        item = _Pending(delivery)
        try:
            item.frame = self._accept(delivery)
            item.digest = content_hash(item.frame.img)
        except Exception as exc:  # whatever the entry holds, it alone is dead-lettered
            self._fail([item], exc, "validation")
        return item

    def _accept(self, delivery: Delivery) -> Frame:
        """The frame of a delivery, or InvalidFrame saying why it must be dead-lettered."""
        if delivery.fields is None:
            raise InvalidFrame(TRIMMED_REASON)
        if delivery.solo_failures >= self.settings.max_deliveries:
            raise InvalidFrame(
                f"tried alone and its worker died without a result {delivery.solo_failures}x "
                f"(max_deliveries={self.settings.max_deliveries}): it crashes workers"
            )
        frame = Frame.from_fields(delivery.fields, self.limits)
        if frame.group != delivery.group:
            raise InvalidFrame(
                f"entry names group {frame.group!r} but was sent to group {delivery.group!r}"
            )
        # Any camera of a group can XADD any fields: the config says which cameras it has.
        known = self.cameras.get(delivery.group)
        if known is not None and frame.camera not in known:
            raise InvalidFrame(
                f"camera {frame.camera!r} is not a camera of group {delivery.group!r} in the config"
            )
        return frame

    def _serve_from_cache(self, pending: list[_Pending], run: _Run) -> None:
        digests = sorted({p.digest for p in pending})
        if not digests:
            return
        start = time.perf_counter()
        group_of_digest = {p.digest: p.delivery.group for p in pending}
        # GETs on one pipeline: a single round trip, and no cross-slot MGET on a cluster.
        lookup = self.client.pipeline(transaction=False)
        for digest in digests:
            lookup.get(keys.cache(group_of_digest[digest], digest))
        found = []
        for digest, value in zip(digests, lookup.execute(), strict=True):
            if value is not None and (entry := self._cache_entry(digest, value)) is not None:
                found.append(entry)
        try:
            hits = self._match_cached(found, run.matcher)
        except Exception as exc:  # the cache only saves work: recognise them instead
            self.log.warning("cache hits not matched, recognising", error=clip(repr(exc), 200))
            hits = {}
        lookup_ms = (time.perf_counter() - start) * 1000 / len(pending)
        for item in pending:
            item.latency_ms["cache"] = lookup_ms
            if item.digest in hits:
                item.recognition, item.dropped = hits[item.digest]
                item.cached = True
                self._settle(item)

    def _cache_entry(
        self, digest: str, value: bytes
    ) -> tuple[str, CachedRecognition, NDArray[np.float32]] | None:
        """A cache value we can use; a malformed one is a miss, and its commit overwrites it."""
        try:
            cached = CachedRecognition.loads(value)
            matrix = cached.embedding_matrix()
            if matrix.size:
                check_embedding_size(matrix.shape[1])
        except Exception as exc:
            self.log.warning("unusable cache entry", hash=digest, error=clip(repr(exc), 200))
            return None
        return (digest, cached, matrix) if cached.model == self.engine.model_id else None

    def _match_cached(
        self, found: list[tuple[str, CachedRecognition, NDArray[np.float32]]], matcher: Matcher
    ) -> dict[str, tuple[Recognition, int]]:
        # One matrix product for every face of every hit.
        matches = matcher.match(
            _stack([matrix for _, _, matrix in found]),
            [face.quality for _, cached, _ in found for face in cached.faces],  # issue 17 gate
        )
        hits: dict[str, tuple[Recognition, int]] = {}
        cursor = 0
        for digest, cached, matrix in found:
            faces = label(cached.faces, matches[cursor : cursor + len(cached.faces)], "cache")
            cursor += len(cached.faces)
            hits[digest] = (Recognition(faces, matrix), cached.faces_dropped)
        return hits

    def _recognise(
        self, leaders: list[_Pending], misses: dict[str, list[_Pending]], run: _Run
    ) -> None:
        decoded: list[tuple[_Pending, FrameView]] = []
        for item in leaders:
            start = time.perf_counter()
            frame = item.frame_or_fail()
            if self.tracking is not None:
                large = bool(self.engine.detector.tiles_for(frame.h, frame.w))
                due = large and self._scans(frame)
                item.screen = self.tracking.screen(item.delivery.group, frame, due, large)
                if item.screen.scene == "still":  # nothing moved: no decode, no detection
                    item.latency_ms["decode"] = (time.perf_counter() - start) * 1000
                    self._finish_miss(item, _still(item.screen), misses[item.digest], None)
                    continue
            try:
                decoded.append((item, self._view(frame)))
            except Exception as exc:  # e.g. cv2.error from a corrupt scan
                self._fail(misses[item.digest], exc, "decode")
                continue
            item.latency_ms["decode"] = (time.perf_counter() - start) * 1000
        if not decoded:
            return
        plan = None
        if self.tracking is not None:
            plan = self.tracking.planner(
                [(item.delivery.group, item.frame_or_fail()) for item, _ in decoded]
            )
        tiled = [self._scans(item.frame_or_fail()) for item, _ in decoded]
        try:
            recognitions = self.engine.recognise(
                [image for _, image in decoded],
                run.matcher,
                self.limits.max_faces,
                plan,
                tiled=tiled,
                regions=[item.screen.regions if item.screen else None for item, _ in decoded],
            )
        except Exception as exc:
            if len(decoded) > 1:  # find the frame that breaks the model: run each alone
                for item, _ in decoded:
                    self._recognise([item], misses, run)
            elif decoded:
                self._fail(misses[decoded[0][0].digest], exc, "recognition")
            return
        for (item, image), recognition in zip(decoded, recognitions, strict=True):
            self._finish_miss(item, recognition, misses[item.digest], image)

    def _scans(self, frame: Frame) -> bool:
        """Whether a large frame gets the tiled search: a video camera's only now and then."""
        return self.engine.scans(frame.seq, video=frame.camera not in self.photo_cameras)

    def _finish_miss(
        self,
        item: _Pending,
        recognition: Recognition,
        same: list[_Pending],
        view: FrameView | None,
    ) -> None:
        try:
            dropped = recognition.dropped
            # Faces their tracks spared have no embedding, a still frame's were not even
            # detected, a windowed frame's were looked for near its tracks only: such an image
            # is not cached.
            cache_value = (
                b""
                if not (recognition.detected and recognition.scanned)
                or (recognition.embedded and not all(recognition.embedded))
                else CachedRecognition.build(
                    self.engine.model_id, recognition.faces, recognition.embeddings, dropped
                ).dumps()
            )
        except Exception as exc:
            self._fail(same, exc, "recognition")
            return
        item.latency_ms.update(recognition.latency_ms)
        for index, copy in enumerate(same):
            copy.recognition, copy.dropped = recognition, dropped
            copy.cached = index > 0
            copy.view = view if self.tracking is not None else None
            copy.screen = item.screen
            self._settle(copy, cache_value if index == 0 else b"")

    def _view(self, frame: Frame) -> FrameView:
        """The frame decoded for the model. Tracked cameras decode with libjpeg-turbo
        (simplejpeg, a third of OpenCV's time here), at reduced scale for detection when
        `tracks.reduced_decode` asks; others with OpenCV, as before."""
        if self.tracking is not None and self.tracking.covers(frame.camera):
            reduced = self.tracking.settings.reduced_decode
            try:
                size = self.tracking.detect_size if reduced else None
                return FrameView.reduced(frame.img, (frame.w, frame.h), size)
            except ValueError:  # libjpeg-turbo refused it: OpenCV says why, or decodes it
                pass
        return FrameView.whole(decode_jpeg(frame.img))

    def _settle(self, item: _Pending, cache_value: bytes = b"") -> None:
        """Make the item's result commit, or its dead letter if the result cannot be built."""
        try:
            item.outgoing = self._result(item, cache_value)
        except Exception as exc:
            self._fail([item], exc, "publishing")

    def _result(self, item: _Pending, cache_value: bytes) -> _Outgoing:
        assert item.recognition is not None
        frame, delivery = item.frame_or_fail(), item.delivery
        faces = item.recognition.faces
        if self.visitors is not None:
            faces = self.visitors.label(
                faces, item.recognition.embeddings, item.recognition.embedded
            )
        latency = {name: round(ms, 3) for name, ms in item.latency_ms.items()}
        latency["queue"] = round(max(delivery.read_at * 1000 - entry_ms(delivery.entry_id), 0), 3)
        latency["e2e"] = round(max(time.time() * 1000 - frame.ts, 0.0), 3)
        # Built from parts that are already validated: skip validating them again.
        result = Result.model_construct(
            frame_id=delivery.entry_id,
            camera=frame.camera,
            group=frame.group,
            seq=frame.seq,
            ts=frame.ts,
            hash=item.digest,
            cached=item.cached,
            faces=faces,
            faces_dropped=item.dropped,
            model=self.engine.model_id,
            latency_ms=latency,
        )
        commit = Commit(
            source=keys.frames(delivery.group),
            entry_id=delivery.entry_id,
            target=keys.results(delivery.group),
            target_maxlen=self.settings.results_maxlen,
            # With tracks, the tracking stage serialises the result it relabels: not this one.
            fields=result.to_fields() if self.tracking is None else {},
            cache_key=keys.cache(delivery.group, item.digest),
            cache_value=cache_value,
            cache_ttl_s=self.settings.cache_ttl_s,
        )
        return _Outgoing(commit, delivery.group, "cached" if item.cached else "recognised", result)

    def _fail(self, items: list[_Pending], exc: Exception, stage: str) -> None:
        """Dead-letter each of `items` with the error as the reason; Redis errors go up."""
        if isinstance(exc, REDIS_ERRORS):  # the cluster client's RedisClusterException too
            raise exc
        if isinstance(exc, InvalidMessage):
            reason = exc.reason
        else:
            reason = f"{stage} failed: {type(exc).__name__}: {exc}"
        for item in items:
            item.outgoing = self._dead_letter(item.delivery, reason)

    def _dead_letter(self, delivery: Delivery, reason: str) -> _Outgoing:
        fields = delivery.fields or {}
        letter = DeadLetter(
            frame_id=delivery.entry_id,
            group=delivery.group,
            reason=reason,
            deliveries=delivery.deliveries,
            camera=fields.get(b"camera", b"")[:64].decode(errors="replace"),
            image_bytes=len(fields.get(b"img", b"")),
        )
        commit = Commit(
            source=keys.frames(delivery.group),
            entry_id=delivery.entry_id,
            target=keys.dead(delivery.group),
            target_maxlen=self.settings.dead_maxlen,
            fields=letter.to_fields(),
            cache_key=keys.cache(delivery.group, "-"),  # unused; same slot as the others
            gated=delivery.pending,
        )
        self.log.warning(
            "frame dead-lettered",
            group=delivery.group,
            frame_id=delivery.entry_id,
            reason=letter.reason,
        )
        return _Outgoing(commit, delivery.group, "dead", None)

    def _flush_ready(self, slots: list[_Pending], run: _Run) -> list[_Pending]:
        """Track and commit the longest prefix of `slots` that is ready; return what is left."""
        ready = 0
        while ready < len(slots) and slots[ready].outgoing is not None:
            ready += 1
        todo = slots[:ready]
        if self.tracking is not None and todo:
            self.tracking.refresh(
                [(item.delivery.group, item.frame) for item in todo if item.frame]
            )
        # Each pass re-applies the frames whose tracks another worker moved on meanwhile.
        for attempt in range(_TRACK_ATTEMPTS + 1):
            if not todo:
                break
            if self.tracking is not None:
                for item in todo:
                    self._track(item, self.tracking, attempt < _TRACK_ATTEMPTS)
            todo = self._send(todo, run)
        return slots[ready:]

    def _track(self, item: _Pending, tracking: TrackingStage, update: bool) -> None:
        """The item's commit as its camera's tracks make it (`update`: moving them on)."""
        base = item.untracked = item.untracked or item.outgoing
        if base is None or base.result is None or item.recognition is None:
            return  # a dead letter: no tracks
        jpeg = item.frame.img if item.frame is not None else None
        tracked = tracking.apply(
            base.result, item.recognition, item.view, update, jpeg, item.screen
        )
        commit = replace(base.commit, fields=tracked.result.to_fields(), tracks=tracked.write)
        item.outgoing = replace(base, commit=commit, result=tracked.result, tracked=tracked)

    def _send(self, items: list[_Pending], run: _Run) -> list[_Pending]:
        """Commit `items` in one round trip; return those refused by a track conflict."""
        # A commit thread was tried: the GIL hand-back after each socket read (up to the
        # 5 ms switch interval) made cache hits 4x slower than committing inline.
        outgoing = [item.outgoing for item in items if item.outgoing is not None]
        outcomes = self.committer.commit([o.commit for o in outgoing])
        conflicts: list[_Pending] = []
        published: list[Tracked] = []
        for item, out, outcome in zip(items, outgoing, outcomes, strict=True):
            if outcome is True:
                _count(out, run.counts)
                if out.tracked is not None:
                    published.append(out.tracked)
                continue
            if out.commit.tracks is not None and self.tracking is not None:
                self.tracking.refused(out.group, item.frame_or_fail().camera)
            if outcome == CONFLICT:
                run.counts["retracked"] += 1
                conflicts.append(item)
            elif isinstance(outcome, redis.ResponseError):
                run.refused.setdefault(out.group, outcome)  # it stays pending
            else:
                # Another worker claimed this entry meanwhile and answers for it.
                run.counts["lost"] += 1
                COMMITS_LOST.inc()
        if self.tracking is not None:
            self.tracking.announce_seen(published)
        return conflicts


def _count(item: _Outgoing, counts: Counter[str]) -> None:
    counts[item.outcome] += 1
    frames_counter(item.group, item.outcome).inc()
    if item.result is not None:
        for stage, ms in item.result.latency_ms.items():
            stage_histogram(stage).observe(ms / 1000)
        for face in item.result.faces:
            faces_counter(face.identity is not None).inc()


def _still(screen: Screen) -> Recognition:
    """A frame where nothing moved: the faces of its tracks, neither detected nor embedded."""
    faces = list(screen.faces)
    empty = np.zeros((len(faces), EMBEDDING_SIZE), dtype=np.float32)
    return Recognition(faces, empty, {}, 0, [False] * len(faces), detected=False)


def _stack(matrices: list[NDArray[np.float32]]) -> NDArray[np.float32]:
    rows = [m for m in matrices if m.size]
    return np.vstack(rows) if rows else np.zeros((0, 0), dtype=np.float32)
