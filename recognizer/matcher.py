"""Match embeddings against the gallery: cosine to each identity's mean template."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from facestream.schemas import Identity

__all__ = ["Match", "Matcher"]


@dataclass(frozen=True)
class Match:
    identity: str | None
    similarity: float | None


class Matcher:
    """Top-1 identity per embedding, accepted above `threshold` and `margin` over the runner-up."""

    def __init__(
        self,
        identities: Sequence[Identity],
        threshold: float,
        margin: float,
        version: int = 0,
    ) -> None:
        self.threshold = threshold
        self.margin = margin
        self.version = version
        self.names = [identity.name for identity in identities]
        if identities:
            means = np.stack(
                [
                    np.asarray(identity.embeddings, dtype=np.float32).mean(axis=0)
                    for identity in identities
                ]
            )
            self.templates = means / np.linalg.norm(means, axis=1, keepdims=True)
        else:
            self.templates = np.zeros((0, 0), dtype=np.float32)

    def similarities(self, embeddings: NDArray[np.float32]) -> NDArray[np.float32]:
        """Cosine similarity of each (unit) embedding to each identity: N × identities."""
        if not self.names or len(embeddings) == 0:
            return np.zeros((len(embeddings), len(self.names)), dtype=np.float32)
        return np.asarray(embeddings @ self.templates.T, dtype=np.float32)

    def match(self, embeddings: NDArray[np.float32]) -> list[Match]:
        scores = self.similarities(embeddings)
        matches = []
        for row in scores:
            if row.size == 0:
                matches.append(Match(None, None))
                continue
            order = np.argsort(row)[::-1]
            best = float(row[order[0]])
            runner_up = float(row[order[1]]) if row.size > 1 else -1.0
            accepted = best >= self.threshold and best - runner_up >= self.margin
            matches.append(Match(self.names[order[0]] if accepted else None, round(best, 4)))
        return matches
