"""Measure recognition on a labelled folder: genuine/impostor similarities, accuracy, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facestream.schemas import GalleryError

from .engine import FaceEngine
from .enrol import embed_photos
from .matcher import Matcher
from .settings import QualitySettings

__all__ = ["Evaluation", "ProbeOutcome", "evaluate", "load_labels"]


@dataclass
class ProbeOutcome:
    """What the matcher said about one labelled probe photo."""

    photo: str
    expected: list[str]
    named: list[str | None]

    @property
    def missed(self) -> list[str]:
        return [name for name in self.expected if name not in self.named]

    @property
    def wrong(self) -> list[str]:
        return [name for name in self.named if name is not None and name not in self.expected]


@dataclass
class Evaluation:
    """Similarity distributions and error counts at the matcher's operating point."""

    threshold: float  # the one applied: derived from the target FPIR, never below the floor
    margin: float
    identities: list[str]
    floor: float | None = None
    target_fpir: float | None = None
    weak_threshold: float | None = None  # what a small or soft view needs
    genuine: list[float] = field(default_factory=list)
    impostor: list[float] = field(default_factory=list)
    probes: list[ProbeOutcome] = field(default_factory=list)

    @property
    def expected_names(self) -> int:
        return sum(len(p.expected) for p in self.probes)

    @property
    def recognised(self) -> int:
        return self.expected_names - sum(len(p.missed) for p in self.probes)

    @property
    def false_accepts(self) -> int:
        return sum(len(p.wrong) for p in self.probes)

    @property
    def separating_range(self) -> tuple[float, float] | None:
        """Thresholds above every impostor and at most the lowest genuine, if any exist."""
        if not self.genuine:
            return None
        low, high = max(self.impostor, default=-1.0), min(self.genuine)
        return (low, high) if low < high else None

    def summary(self) -> dict[str, object]:
        def stats(values: list[float]) -> dict[str, float]:
            if not values:
                return {}
            array = np.asarray(values)
            return {
                "count": len(values),
                "min": round(float(array.min()), 4),
                "p50": round(float(np.percentile(array, 50)), 4),
                "max": round(float(array.max()), 4),
            }

        return {
            "identities": self.identities,
            "gallery_size": len(self.identities),
            "target_fpir": self.target_fpir,
            "floor": self.floor,
            "threshold": self.threshold,
            "weak_threshold": self.weak_threshold,
            "margin": self.margin,
            "genuine": stats(self.genuine),
            "impostor": stats(self.impostor),
            "top1_accuracy": round(self.recognised / max(self.expected_names, 1), 4),
            "recognised": self.recognised,
            "expected": self.expected_names,
            "false_accepts": self.false_accepts,
            "separating_range": self.separating_range,
            "probes": [
                {"photo": p.photo, "expected": p.expected, "named": p.named} for p in self.probes
            ],
        }


def load_labels(folder: Path, labels_file: Path | None = None) -> dict[str, list[str]]:
    """The probes of a labelled folder: photo path (relative to `folder`) -> names in it.

    Like tests/data/faces/labels.json; the folder must also hold train/<name>/ photos.
    """
    if not (folder / "train").is_dir():
        raise GalleryError(f"{folder} has no train/<name>/ folders to enrol from")
    labels_path = labels_file or folder / "labels.json"
    try:
        labels: dict[str, list[str]] = json.loads(labels_path.read_text())
    except OSError as exc:
        raise GalleryError(f"labels file {labels_path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise GalleryError(f"labels file {labels_path} is not JSON ({exc})") from exc
    return labels


def evaluate(
    engine: FaceEngine,
    folder: Path,
    labels: dict[str, list[str]],
    threshold: float = 0.363,
    margin: float = 0.05,
    on_photo: Callable[[Path], None] | None = None,
    target_fpir: float | None = None,
    quality: QualitySettings | None = None,
) -> Evaluation:
    """Enrol `folder/train/<name>/*`, then match every probe of `labels` (see load_labels).

    A photo's genuine score for a name is the best similarity of any of its faces to that
    identity; every other identity's similarity to each face is an impostor score.
    `on_photo` is called after each photo (enrolment or probe). `threshold` is the floor;
    with `target_fpir` the threshold applied is derived for the number of identities, and with
    `quality` faces that fail the gate are not named (recognizer/matcher.py).
    """
    train = folder / "train"
    identities = [
        embed_photos(
            engine,
            person.name,
            sorted(p for p in person.iterdir() if p.is_file()),
            largest_face=True,
            on_photo=on_photo,
        )
        for person in sorted(p for p in train.iterdir() if p.is_dir())
    ]
    matcher = Matcher(identities, threshold, margin, target_fpir=target_fpir, quality=quality)
    report = Evaluation(
        matcher.threshold, margin, matcher.names, threshold, target_fpir, matcher.thresholds["weak"]
    )
    for photo, expected in sorted(labels.items()):
        image = cv2.imread(str(folder / photo))
        if image is None:
            raise GalleryError(f"probe {folder / photo} is not a readable image")
        _, embeddings, views = engine.embed_views(np.asarray(image, np.uint8))
        scores = matcher.similarities(embeddings)
        for column, name in enumerate(matcher.names):
            if scores.size == 0:
                continue
            if name in expected:
                report.genuine.append(float(scores[:, column].max()))
            else:
                report.impostor.extend(float(v) for v in scores[:, column])
        named = [m.identity for m in matcher.match(embeddings, views)]
        report.probes.append(ProbeOutcome(photo, list(expected), named))
        if on_photo is not None:
            on_photo(folder / photo)
    return report
