"""Publish frames of one camera to its group's frames stream: XADD with MAXLEN ~, never twice."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from facestream.redis_errors import REDIS_ERRORS, is_unreachable
from facestream.replication import ReplicaWait
from facestream.schemas import Frame, FrameLimits, keys
from facestream.schemas.entries import entry_id_parts

from .outages import single_shot

__all__ = ["EncodedFrame", "FramePublisher"]

log = structlog.get_logger("ingest.publisher")

# Entries read per XREVRANGE while looking for a frame whose XADD reply was lost.
_SCAN_PAGE = 50
# How far the server's clock may lag ours and a frame's id still be found by its capture time.
_CLOCK_SKEW_MS = 60_000


# Here, not in sources.py: a publisher of ready JPEGs (`facestream recognise`) needs no OpenCV.
@dataclass(frozen=True)
class EncodedFrame:
    """One frame ready to send: JPEG bytes and their pixel size."""

    jpeg: bytes
    width: int
    height: int


class FramePublisher:
    """Numbers a camera's frames and XADDs them; can wait until the workers catch up.

    A frame whose XADD failed with a connection error is "in doubt": the server may have added
    it and lost only the reply. Before anything else is sent, the stream is searched for it, so
    a resend never doubles a frame and `seq` never repeats or skips.
    """

    def __init__(
        self,
        client: redis.Redis,
        group: str,
        camera: str,
        maxlen: int,
        limits: FrameLimits,
        first_seq: int = 0,
        replica_wait: ReplicaWait | None = None,
    ) -> None:
        """`replica_wait`: after each XADD, WAIT until replicas have the frame (a master lost
        right after would otherwise take it along; the frame is then looked up and resent)."""
        self.client = client
        self.replica_wait = replica_wait
        self.group = keys.validate_group(group)
        self.camera = camera
        self.stream = keys.frames(group)
        self.maxlen = maxlen
        self.limits = limits
        self.seq = first_seq
        self._adder = single_shot(client)
        # MAXLEN keeps about `maxlen` entries, so more of ours than that cannot be unread: the
        # bound keeps a long-running camera's memory flat.
        self._unread: deque[bytes] = deque(maxlen=maxlen)
        self._last_id: bytes | None = None
        self._in_doubt: Frame | None = None
        self._search_refused = False

    def frame(self, encoded: EncodedFrame, captured_ms: int | None = None) -> Frame:
        """The next frame of this camera, checked against the limits (InvalidFrame if over)."""
        frame = Frame(
            camera=self.camera,
            group=self.group,
            seq=self.seq,
            ts=captured_ms if captured_ms is not None else int(time.time() * 1000),
            w=encoded.width,
            h=encoded.height,
            img=encoded.jpeg,
        )
        frame.check_limits(self.limits)
        return frame

    def publish(self, encoded: EncodedFrame, captured_ms: int | None = None) -> str:
        """Validate and XADD one frame; returns its stream id."""
        return self.send(self.frame(encoded, captured_ms))

    def send(self, frame: Frame) -> str:
        """XADD `frame` and return its id; after a connection error, call again with the same
        frame to resend it: it is added only if the failed attempt did not land.

        A different frame is renumbered if the one in doubt turns out to have landed.
        """
        if self._in_doubt is not None:
            doubted = self._in_doubt
            landed = self._find(doubted)  # a connection error here leaves it in doubt
            self._in_doubt = None
            if landed is not None:
                self._added(landed)
                if doubted == frame:
                    return landed.decode()
        if frame.seq != self.seq:
            frame = frame.model_copy(update={"seq": self.seq})
        fields: dict[Any, Any] = frame.to_fields()
        try:
            entry_id: bytes = self._adder.xadd(  # type: ignore[assignment]  # bytes: no decoding
                self.stream, fields, maxlen=self.maxlen, approximate=True
            )
            if self.replica_wait is not None:
                self.replica_wait.after_writes(self._adder, [self.stream])
        except REDIS_ERRORS as exc:
            if is_unreachable(exc):  # the XADD may have landed before the reply was lost
                self._in_doubt = frame
            raise
        self._added(entry_id)
        return entry_id.decode()

    @property
    def unconfirmed(self) -> int:
        """Frames sent that were not yet seen delivered: an upper bound of `backlog()`."""
        return len(self._unread)

    def backlog(self) -> int:
        """How many of our frames the `recognizers` group has not been handed yet."""
        delivered = self._last_delivered()
        while self._unread and entry_id_parts(self._unread[0]) <= delivered:
            self._unread.popleft()
        return len(self._unread)

    def _added(self, entry_id: bytes) -> None:
        self.seq += 1
        self._last_id = entry_id
        self._unread.append(entry_id)

    def _find(self, frame: Frame) -> bytes | None:
        """The id of `frame` if an earlier XADD of it landed, else None.

        Only entries after our last confirmed one (or, for a first frame, from about its capture
        time on) can be it; camera, seq and capture time tell it from another run's frame.
        """
        if self._search_refused:
            return None
        wanted = (frame.camera.encode(), str(frame.seq).encode(), str(frame.ts).encode())
        if self._last_id is not None:
            lowest = b"(" + self._last_id
        else:  # our first frame: ids are server milliseconds, so not long before its capture
            lowest = str(max(frame.ts - _CLOCK_SKEW_MS, 0)).encode()
        highest: bytes = b"+"
        try:
            for _ in range(self.maxlen // _SCAN_PAGE + 2):  # the stream holds about maxlen
                page: Any = self.client.xrevrange(self.stream, highest, lowest, count=_SCAN_PAGE)
                for entry_id, fields in page:
                    if (fields[b"camera"], fields[b"seq"], fields[b"ts"]) == wanted:
                        return bytes(entry_id)
                if len(page) < _SCAN_PAGE:
                    break
                highest = b"(" + page[-1][0]
        except redis.exceptions.NoPermissionError as exc:
            self._search_refused = True
            log.warning(
                "cannot check whether a frame landed before resending it; a lost reply may "
                "double a frame (grant XREVRANGE on the frames stream)",
                camera=self.camera,
                error=str(exc),
            )
        return None

    def _last_delivered(self) -> tuple[int, int]:
        try:
            groups = self.client.xinfo_groups(self.stream)
        except redis.ResponseError:  # no stream yet
            return (0, 0)
        for info in groups:
            if info["name"] in (keys.RECOGNIZERS, keys.RECOGNIZERS.encode()):
                return entry_id_parts(info["last-delivered-id"])
        return (0, 0)
