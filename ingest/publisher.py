"""Publish frames of one camera to its group's frames stream (XADD with MAXLEN ~)."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import redis

from facestream.schemas import Frame, FrameLimits, keys

from .sources import EncodedFrame

__all__ = ["FramePublisher"]


class FramePublisher:
    """Numbers a camera's frames and XADDs them; can wait until the workers catch up."""

    def __init__(
        self,
        client: redis.Redis,
        group: str,
        camera: str,
        maxlen: int,
        limits: FrameLimits,
        first_seq: int = 0,
    ) -> None:
        self.client = client
        self.group = keys.validate_group(group)
        self.camera = camera
        self.stream = keys.frames(group)
        self.maxlen = maxlen
        self.limits = limits
        self.seq = first_seq
        self._unread: deque[bytes] = deque()

    def publish(self, encoded: EncodedFrame, captured_ms: int | None = None) -> str:
        """Validate and XADD one frame; returns its stream id."""
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
        fields: dict[Any, Any] = frame.to_fields()
        entry_id: bytes = self.client.xadd(  # type: ignore[assignment]  # bytes: no decoding
            self.stream, fields, maxlen=self.maxlen, approximate=True
        )
        self.seq += 1
        self._unread.append(entry_id)
        return entry_id.decode()

    @property
    def unconfirmed(self) -> int:
        """Frames sent that were not yet seen delivered: an upper bound of `backlog()`."""
        return len(self._unread)

    def backlog(self) -> int:
        """How many of our frames the `recognizers` group has not been handed yet."""
        delivered = self._last_delivered()
        while self._unread and _id_tuple(self._unread[0]) <= delivered:
            self._unread.popleft()
        return len(self._unread)

    def _last_delivered(self) -> tuple[int, int]:
        try:
            groups = self.client.xinfo_groups(self.stream)
        except redis.ResponseError:  # no stream yet
            return (0, 0)
        for info in groups:
            if info["name"] in (keys.RECOGNIZERS, keys.RECOGNIZERS.encode()):
                return _id_tuple(info["last-delivered-id"])
        return (0, 0)


def _id_tuple(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
