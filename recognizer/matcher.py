"""Match embeddings against the gallery: cosine to each identity's mean template.

A face is named only when its view passes the quality gate (recognizer/quality.py) and its
best similarity reaches the open-set threshold for the gallery's size (recognizer/openset.py),
beating the second-best identity by the margin; otherwise its Match says why not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from facestream.schemas import FaceQuality, Identity, UnnamedReason

from .openset import IMPOSTORS, Tier, derived_threshold
from .quality import gate, tier
from .settings import MatchSettings, QualitySettings

__all__ = ["Match", "Matcher"]


@dataclass(frozen=True)
class Match:
    identity: str | None
    similarity: float | None
    reason: UnnamedReason | None = None  # why not named (None when named)
    candidate: str | None = None  # below the derived threshold only: the floor's choice


class Matcher:
    """Top-1 identity per embedding, accepted above `threshold` and `margin` over the runner-up.

    `threshold` is the floor; with `target_fpir` the threshold applied is the one derived for
    the number of identities (never below the floor). With `quality`, a face whose quality
    fails the gate is never named. An identity with negatives (`gallery reject`) is refused to
    a face that is at least as similar to one of its negatives as to its template: that face
    is someone else.
    """

    def __init__(
        self,
        identities: Sequence[Identity],
        threshold: float,
        margin: float,
        version: int = 0,
        target_fpir: float | None = None,
        quality: QualitySettings | None = None,
    ) -> None:
        self.floor = threshold
        self.target_fpir = target_fpir
        self.thresholds: dict[Tier, float] = {
            name: derived_threshold(target_fpir, len(identities), threshold, model)
            for name, model in IMPOSTORS.items()
        }
        self.threshold = self.thresholds["good"]  # a good view's; a weak one needs more
        self.margin = margin
        self.quality = quality
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

    @classmethod
    def from_settings(
        cls, identities: Sequence[Identity], match: MatchSettings, version: int = 0
    ) -> Matcher:
        """The matcher the config asks for: derived threshold, margin and quality gate."""
        return cls(
            identities, match.threshold, match.margin, version, match.target_fpir, match.quality
        )

    def similarities(self, embeddings: NDArray[np.float32]) -> NDArray[np.float32]:
        """Cosine similarity of each (unit) embedding to each identity: N × identities."""
        if not self.names or len(embeddings) == 0:
            return np.zeros((len(embeddings), len(self.names)), dtype=np.float32)
        return np.asarray(embeddings @ self.templates.T, dtype=np.float32)

    def match(
        self,
        embeddings: NDArray[np.float32],
        qualities: Sequence[FaceQuality | None] | None = None,
    ) -> list[Match]:
        """One verdict per embedding; `qualities` (one per embedding) feed the quality gate."""
        scores = self.similarities(embeddings)
        views = list(qualities) if qualities is not None else [None] * len(embeddings)
        return [
            self._decide(embedding, row, view)
            for embedding, row, view in zip(embeddings, scores, views, strict=True)
        ]

    def _decide(
        self, embedding: NDArray[np.float32], row: NDArray[np.float32], view: FaceQuality | None
    ) -> Match:
        if row.size == 0:
            return Match(None, None, "no_gallery")
        order = np.argsort(row)[::-1]
        best = float(row[order[0]])
        runner_up = float(row[order[1]]) if row.size > 1 else -1.0
        reason: UnnamedReason | None = None
        threshold = self.threshold
        if self.quality is not None:
            reason = gate(view, self.quality) if view is not None else None
            threshold = self.thresholds[tier(view, self.quality)]
        if reason is None and best < self.floor:
            reason = "below_threshold"
        if reason is None and best - runner_up < self.margin:
            reason = "ambiguous"
        if reason is None and self._rejected(int(order[0]), embedding, best):
            reason = "rejected"
        name = self.names[order[0]]
        if reason is None and best < threshold:
            return Match(None, round(best, 4), "below_threshold", name)
        return Match(name if reason is None else None, round(best, 4), reason)

    def _rejected(self, index: int, embedding: NDArray[np.float32], similarity: float) -> bool:
        negatives = self.negatives[index]
        return bool(negatives.size) and float((negatives @ embedding).max()) >= similarity


def _unit_rows(rows: Sequence[Sequence[float]]) -> NDArray[np.float32]:
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    matrix = np.asarray(rows, dtype=np.float32)
    unit: NDArray[np.float32] = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return unit
