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
    """Top-1 identity per embedding, accepted above `threshold` and `margin` over the runner-up.

    An identity with negatives (`gallery reject`) is refused to a face that is at least as
    similar to one of its negatives as to its template: that face is someone else.
    """

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
        self.negatives = [_unit_rows(identity.negatives) for identity in identities]

    def similarities(self, embeddings: NDArray[np.float32]) -> NDArray[np.float32]:
        """Cosine similarity of each (unit) embedding to each identity: N × identities."""
        if not self.names or len(embeddings) == 0:
            return np.zeros((len(embeddings), len(self.names)), dtype=np.float32)
        return np.asarray(embeddings @ self.templates.T, dtype=np.float32)

    def match(self, embeddings: NDArray[np.float32]) -> list[Match]:
        scores = self.similarities(embeddings)
        matches = []
        for embedding, row in zip(embeddings, scores, strict=True):
            if row.size == 0:
                matches.append(Match(None, None))
                continue
            order = np.argsort(row)[::-1]
            best = float(row[order[0]])
            runner_up = float(row[order[1]]) if row.size > 1 else -1.0
            accepted = best >= self.threshold and best - runner_up >= self.margin
            if accepted and self._rejected(int(order[0]), embedding, best):
                accepted = False
            matches.append(Match(self.names[order[0]] if accepted else None, round(best, 4)))
        return matches

    def _rejected(self, index: int, embedding: NDArray[np.float32], similarity: float) -> bool:
        negatives = self.negatives[index]
        return bool(negatives.size) and float((negatives @ embedding).max()) >= similarity


def _unit_rows(rows: Sequence[Sequence[float]]) -> NDArray[np.float32]:
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    matrix = np.asarray(rows, dtype=np.float32)
    unit: NDArray[np.float32] = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return unit
