"""The open-set threshold: what similarity names a face at a target FPIR and gallery size.

A stranger's face is compared with every enrolled identity, so with N identities its chance of
being named is FPIR(t) = 1 − (1 − FAR(t))^N, where FAR(t) is the chance that one comparison of
different people scores at least t. For a target FPIR the threshold is the lowest t with
FAR(t) ≤ 1 − (1 − FPIR)^(1/N): it rises with the gallery. FAR(t) comes from the impostor
scores that `benchmarks/accuracy.py` measured (IMPOSTORS below, with its provenance), one model
per quality tier: small or soft faces spread far wider than large, sharp ones, so they need a
higher threshold for the same FPIR. The threshold is never below the configured floor
(`match.threshold`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the settings model only as a type: this module stays light (no pydantic use)
    from .settings import MatchSettings

#: Which impostor model applies to a face: see QualitySettings.good_iod / good_sharpness.
Tier = Literal["good", "weak"]

__all__ = [
    "IMPOSTORS",
    "ImpostorModel",
    "Tier",
    "derived_threshold",
    "describe",
    "fpir",
    "operating_point",
    "per_comparison_far",
]


@dataclass(frozen=True)
class ImpostorModel:
    """SFace cosine similarities of different people's faces of one quality tier, as measured.

    FAR(t) is the largest of three estimates, so that none of them is trusted alone: the
    normal distribution fitted to the scores, the measured share at or above each tabulated
    threshold (`tail`), and past the last tabulated point an exponential tail through the
    last decade of it (impostor tails measured here fall slower than a normal's).
    """

    mean: float
    sd: float
    pairs: int  # different-person pairs measured
    identities: int  # distinct people (clip tracks or labelled names) among them
    highest: float  # highest impostor similarity seen
    tail: tuple[tuple[float, float], ...]  # (t, measured FAR(t)) where ≥ 10 pairs reach t
    provenance: str

    def far(self, threshold: float) -> float:
        """Modelled chance that one impostor comparison scores at least `threshold`."""
        normal = 1.0 - NormalDist(self.mean, self.sd).cdf(threshold)
        return max(normal, self._measured(threshold))

    def threshold_for(self, far: float) -> float:
        """The lowest similarity (to 0.001) whose modelled FAR is at most `far`."""
        for step in range(-1000, 1001):
            if self.far(step / 1000) <= far:
                return step / 1000
        return 1.0

    def _measured(self, threshold: float) -> float:
        if not self.tail or threshold <= self.tail[0][0]:
            return self.tail[0][1] if self.tail else 0.0
        last_t, last_far = self.tail[-1]
        if threshold <= last_t:
            # The share at the tabulated point below: never less than the true share at t.
            return min(f for t, f in self.tail if t <= threshold)
        decade = next(point for point in self.tail if point[1] <= 10 * last_far)
        if decade[0] >= last_t:
            return 0.0
        slope = math.log(decade[1] / last_far) / (last_t - decade[0])
        return last_far * math.exp(-slope * (threshold - last_t))


_SOURCE = (
    "benchmarks/accuracy.py on 2026-12-01: the CC BY 4.0 Intel sample videos "
    "(tests/data/strangers and its source clips) and the bundled MIT photos (tests/data/faces); "
    "pairs of faces from different clips or of different labelled people"
)

#: Written by `python benchmarks/accuracy.py --table`: faces that pass the gate and are at
#: least `quality.good_iod` large and `quality.good_sharpness` sharp ("good"), and the others
#: that pass the gate ("weak": small or soft faces, where every measured false accept was).
IMPOSTORS: dict[Tier, ImpostorModel] = {
    "good": ImpostorModel(
        mean=0.0682,
        sd=0.0952,
        pairs=1570,
        identities=9,
        highest=0.356,
        tail=((0.2, 0.0783), (0.22, 0.0439), (0.24, 0.0204), (0.26, 0.0089)),
        provenance=_SOURCE,
    ),
    "weak": ImpostorModel(
        mean=0.1174,
        sd=0.1078,
        pairs=15180,
        identities=5,
        highest=0.549,
        tail=(
            (0.2, 0.2173),
            (0.3, 0.0605),
            (0.36, 0.0235),
            (0.4, 0.0144),
            (0.44, 0.0092),
            (0.48, 0.0037),
            (0.5, 0.0016),
        ),
        provenance=_SOURCE,
    ),
}


def per_comparison_far(target_fpir: float, gallery_size: int) -> float:
    """The FAR one comparison may have so that N of them name a stranger at most FPIR."""
    if gallery_size <= 0:
        return 1.0
    # log1p/expm1: 1 − (1 − FPIR)^(1/N) without losing digits when FPIR/N is tiny.
    return -math.expm1(math.log1p(-target_fpir) / gallery_size)


def fpir(far_per_comparison: float, gallery_size: int) -> float:
    """The chance a stranger is named by one of N identities: 1 − (1 − FAR)^N."""
    return -math.expm1(gallery_size * math.log1p(-far_per_comparison))


def derived_threshold(
    target_fpir: float | None,
    gallery_size: int,
    floor: float,
    model: ImpostorModel = IMPOSTORS["good"],
) -> float:
    """The similarity that names a face: the FPIR-derived one, never below `floor`.

    To the third decimal, rounded up, so that what `eval` and `status` print is what applies.
    """
    if target_fpir is None or gallery_size <= 0:
        return floor
    return max(floor, model.threshold_for(per_comparison_far(target_fpir, gallery_size)))


def operating_point(match: MatchSettings, gallery_size: int) -> dict[str, object]:
    """What names a face with `gallery_size` identities enrolled: shown by `eval` and `status`."""
    thresholds = {
        name: derived_threshold(match.target_fpir, gallery_size, match.threshold, model)
        for name, model in IMPOSTORS.items()
    }
    return {
        "gallery_size": gallery_size,
        "target_fpir": match.target_fpir,
        "floor": match.threshold,
        "margin": match.margin,
        "thresholds": thresholds,
    }


def describe(point: dict[str, object]) -> str:
    """One line for people: the thresholds a good and a weak view need, and why."""
    thresholds: dict[str, float] = point["thresholds"]  # type: ignore[assignment]
    return (
        f"naming threshold {thresholds['good']:.3f} (good views), {thresholds['weak']:.3f} "
        f"(small or soft views) for {point['gallery_size']} identities at target FPIR "
        f"{point['target_fpir']} per face; floor {point['floor']} (match.threshold)"
    )
