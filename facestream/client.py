"""The backend's side: read results (plain tail or resumable subscriber), ask for one photo."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import redis
import structlog

from facestream.ingest import EncodedFrame, FramePublisher
from facestream.schemas import (
    Face,
    FacestreamError,
    FrameLimits,
    InvalidFrame,
    InvalidMessage,
    Result,
    keys,
)

__all__ = [
    "RecognitionTimeout",
    "ResultFilter",
    "ResultSubscriber",
    "describe_result",
    "recognise_image",
    "tail_results",
]

log = structlog.get_logger("client")


def tail_results(
    client: redis.Redis,
    groups: Sequence[str],
    *,
    from_start: bool = False,
    count: int | None = None,
    block_ms: int = 1000,
    stop: threading.Event | None = None,
    wanted: ResultFilter | None = None,
) -> Iterator[Result]:
    """Yield results of `groups` as they are published (from the start with `from_start`).

    `count` counts the results yielded, i.e. those that pass `wanted`.
    """
    cursors = {keys.results(group): "0-0" if from_start else "$" for group in groups}
    if not from_start:
        # Resolve "$" once, so results published between two reads are not skipped.
        for stream in cursors:
            cursors[stream] = _last_id(client, stream)
    seen = 0
    while not (stop and stop.is_set()) and (count is None or seen < count):
        response: Any = client.xread(cursors, count=100, block=block_ms)  # type: ignore[arg-type]
        for stream, entries in response or []:
            for entry_id, fields in entries:
                cursors[stream.decode()] = entry_id.decode()
                result = Result.from_fields(fields)
                if wanted is not None and not wanted(result):
                    continue
                yield result
                seen += 1
                if count is not None and seen >= count:
                    return


class ResultSubscriber:
    """Results for a backend: its own consumer group, so it resumes after a restart.

    Each result is acknowledged when the next one is requested, i.e. after the caller's loop
    body ran for it; a crash in between means the result is delivered again. Results that
    `wanted` filters out are acknowledged without being yielded.
    """

    def __init__(
        self,
        client: redis.Redis,
        groups: Sequence[str],
        consumer_group: str = "backend",
        consumer: str = "backend-1",
        block_ms: int = 1000,
        wanted: ResultFilter | None = None,
    ) -> None:
        self.client = client
        self.streams = [keys.results(group) for group in groups]
        self.consumer_group = consumer_group
        self.consumer = consumer
        self.block_ms = block_ms
        self.wanted = wanted or ResultFilter()
        for stream in self.streams:
            try:
                self.client.xgroup_create(stream, consumer_group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def __iter__(self) -> Iterator[Result]:
        return self.listen()

    def listen(self, stop: threading.Event | None = None) -> Iterator[Result]:
        # Our own unacknowledged entries first (a previous run died mid-way), then new ones.
        cursor = "0"
        while not (stop and stop.is_set()):
            response: Any = self.client.xreadgroup(
                self.consumer_group,
                self.consumer,
                {stream: cursor for stream in self.streams},
                count=100,
                block=None if cursor == "0" else self.block_ms,
            )
            entries = [(s.decode(), e) for s, batch in response or [] for e in batch]
            if cursor == "0" and not entries:
                cursor = ">"
                continue
            for stream, (entry_id, fields) in entries:
                if fields:
                    try:
                        result = Result.from_fields(fields)
                        if self.wanted(result):
                            yield result
                    except InvalidMessage as exc:
                        # Not ours to fix; acked below so it does not come back forever.
                        log.warning("skipping invalid result", entry_id=entry_id, error=exc.reason)
                self.client.xack(stream, self.consumer_group, entry_id)


@dataclass(frozen=True)
class ResultFilter:
    """Which results a reader wants: any face of these identities, from these cameras, at least
    this similar. Unset parts let everything through."""

    identities: frozenset[str] | None = None
    cameras: frozenset[str] | None = None
    min_similarity: float | None = None

    def __call__(self, result: Result) -> bool:
        if self.cameras is not None and result.camera not in self.cameras:
            return False
        if self.identities is None and self.min_similarity is None:
            return True
        return any(self._face_matches(face) for face in result.faces)

    def _face_matches(self, face: Face) -> bool:
        if self.identities is not None and face.identity not in self.identities:
            return False
        if self.min_similarity is not None:
            return face.similarity is not None and face.similarity >= self.min_similarity
        return True


class RecognitionTimeout(FacestreamError, TimeoutError):
    """No worker published a result for a submitted image in time."""


def recognise_image(
    client: redis.Redis,
    group: str,
    jpeg: bytes,
    *,
    camera: str = "request",
    timeout_s: float = 10.0,
    limits: FrameLimits | None = None,
    maxlen: int = 2000,
) -> Result:
    """Submit one JPEG to a group's workers and wait for its result (the seed's use case).

    A photo seen before is answered from the cache. Raises RecognitionTimeout when no
    worker answered in time (none running, or all busy).
    """
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidFrame("the photo is not a decodable image")
    stream = keys.results(group)
    cursor = _last_id(client, stream)
    publisher = FramePublisher(client, group, camera, maxlen, limits or FrameLimits())
    height, width = image.shape[:2]
    frame_id = publisher.publish(EncodedFrame(jpeg, width, height))
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        response: Any = client.xread({stream: cursor}, count=100, block=max(1, int(left * 1000)))
        for _, entries in response or []:
            for entry_id, entry in entries:
                cursor = entry_id.decode()
                if entry.get(b"frame_id") == frame_id.encode():
                    return Result.from_fields(entry)
    raise RecognitionTimeout(
        f"no result for frame {frame_id} on {stream} within {timeout_s:g}s: "
        "is a worker serving this group?"
    )


def describe_result(result: Result) -> str:
    """One human line per result: camera, frame, who, how fast."""
    people = ", ".join(
        f"{face.identity} ({face.similarity:.2f})" if face.identity else "unknown"
        for face in result.faces
    )
    source = "cache" if result.cached else "model"
    e2e = result.latency_ms.get("e2e", 0.0)
    return f"{result.camera:>12} #{result.seq:<5} {people or '-':<44} {source}  {e2e:6.0f} ms"


def _last_id(client: redis.Redis, stream: str) -> str:
    """Id of the newest entry of `stream` ("0-0" if empty): read after it to see only new ones."""
    last: Any = client.xrevrange(stream, count=1)
    return last[0][0].decode() if last else "0-0"
