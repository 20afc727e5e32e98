"""Pseudonymous visitor ids for unknown faces (opt-in): count unique and returning visitors.

An unknown face is compared with the embeddings of visitors seen within `ttl_s`; above
`threshold` it gets that visitor's id, otherwise a new random one. Nothing links an id to a
person, but the stored embeddings are biometric data: they expire after `ttl_s`, and
`facestream visitors purge` deletes them all. Two workers meeting the same new face at the
same moment may give it two ids; counts are estimates.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence

import numpy as np
import redis
from numpy.typing import NDArray

from facestream.schemas import Face, keys

from .settings import VisitorSettings

__all__ = ["VisitorBook"]


class VisitorBook:
    """Recent unknown visitors, mirrored locally and refreshed from Redis."""

    def __init__(self, client: redis.Redis, settings: VisitorSettings) -> None:
        self.client = client
        self.settings = settings
        self._ids: list[str] = []
        self._embeddings = np.zeros((0, 0), dtype=np.float32)
        self._loaded = -float("inf")

    def label(
        self,
        faces: Sequence[Face],
        embeddings: NDArray[np.float32],
        embedded: Sequence[bool] = (),
    ) -> list[Face]:
        """The faces, with a visitor id on each one that has no identity.

        `embedded`, if given, says which faces have an embedding; the others (spared by their
        track) get no visitor id on that frame.
        """
        unknown = [
            i
            for i, face in enumerate(faces)
            if face.identity is None and (not embedded or embedded[i])
        ]
        if not unknown:
            return list(faces)
        self._refresh()
        now_ms = int(time.time() * 1000)
        labelled = list(faces)
        pipe = self.client.pipeline(transaction=False)
        for index in unknown:
            vector = embeddings[index]
            visitor = self._closest(vector)
            if visitor is None:
                visitor = f"v-{secrets.token_hex(6)}"
                pipe.hset(keys.VISITOR_EMBEDDINGS, visitor, vector.astype("<f4").tobytes())
                self._remember(visitor, vector)
            pipe.zadd(keys.VISITOR_SEEN, {visitor: now_ms})
            labelled[index] = faces[index].model_copy(update={"visitor": visitor})
        pipe.execute()
        return labelled

    def purge(self) -> int:
        """Forget every visitor; returns how many there were."""
        count = int(self.client.zcard(keys.VISITOR_SEEN))
        self.client.delete(keys.VISITOR_SEEN, keys.VISITOR_EMBEDDINGS)
        self._ids, self._embeddings = [], np.zeros((0, 0), dtype=np.float32)
        return count

    def _closest(self, vector: NDArray[np.float32]) -> str | None:
        if not self._ids:
            return None
        scores = self._embeddings @ vector
        best = int(np.argmax(scores))
        return self._ids[best] if float(scores[best]) >= self.settings.threshold else None

    def _remember(self, visitor: str, vector: NDArray[np.float32]) -> None:
        self._ids.append(visitor)
        row = vector.reshape(1, -1)
        self._embeddings = row if self._embeddings.size == 0 else np.vstack([self._embeddings, row])

    def _refresh(self) -> None:
        """Expire old visitors in Redis and reload the recent ones (every `refresh_s`)."""
        now = time.monotonic()
        if now - self._loaded < self.settings.refresh_s:
            return
        self._loaded = now
        cutoff = int(time.time() * 1000) - self.settings.ttl_s * 1000
        expired = self.client.zrangebyscore(keys.VISITOR_SEEN, "-inf", cutoff)
        if expired:
            pipe = self.client.pipeline(transaction=True)
            pipe.zrem(keys.VISITOR_SEEN, *expired)
            pipe.hdel(keys.VISITOR_EMBEDDINGS, *expired)
            pipe.execute()
        raw: dict[bytes, bytes] = self.client.hgetall(keys.VISITOR_EMBEDDINGS)  # type: ignore[assignment]
        self._ids = [name.decode() for name in raw]
        vectors = [np.frombuffer(value, dtype="<f4") for value in raw.values()]
        self._embeddings = np.vstack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
