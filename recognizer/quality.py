"""Face quality from the detector's five points, box and score, and the aligned crop's pixels.

A face is named only when its quality passes the gate: a small, blurred or turned face gives
an embedding whose similarities to strangers spread wide (every false accept measured on
held-out crowds was a face with an inter-ocular distance of 17–28 px), so such a face is still
detected, tracked and counted, but never named and never enrolled.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from facestream.schemas import FaceQuality, UnnamedReason

from .openset import Tier
from .settings import QualitySettings

__all__ = ["GATED", "assess", "gate", "measure", "pose", "rank", "refusal", "sharpness", "tier"]

#: The reasons the quality gate gives (the rest come from the decision on the similarities).
GATED: frozenset[str | None] = frozenset({"too_small", "turned_away", "blurred", "low_score"})

# Where the nose tip sits between the eye line and the mouth line on a level, frontal face:
# the median of the bundled frontal photos (tests/data/faces) is 0.50-0.55; 0.52 is zero pitch.
_FRONTAL_NOSE_DROP = 0.52


def pose(landmarks: NDArray[np.float32]) -> tuple[float, float]:
    """Yaw and pitch in degrees, estimated from the five points (0 is frontal).

    In the frame where the eyes are level, the nose tip moves sideways by about its depth
    (close to half the inter-ocular distance) times sin(yaw) while the eyes' half-distance
    shrinks by cos(yaw): tan(yaw) ≈ offset / half-distance. Pitch moves the nose tip between
    the eye line and the mouth line in the same way. Estimates, good to about ten degrees: they
    tell a turned face from a frontal one, not the exact angle.
    """
    right_eye, left_eye, nose, right_mouth, left_mouth = (
        np.asarray(p, np.float64) for p in landmarks
    )
    axis = left_eye - right_eye
    distance = float(np.hypot(*axis))
    if distance < 1e-6:
        return 90.0, 90.0
    cos, sin = axis / distance
    eyes = (right_eye + left_eye) / 2
    mouth = (right_mouth + left_mouth) / 2

    def level(point: NDArray[np.float64]) -> tuple[float, float]:
        dx, dy = point - eyes
        return float(dx * cos + dy * sin), float(-dx * sin + dy * cos)

    nose_x, nose_y = level(nose)
    _, mouth_y = level(mouth)
    yaw = math.degrees(math.atan2(nose_x, distance / 2))
    if mouth_y <= 1e-6:
        return yaw, 90.0
    drop = nose_y / mouth_y - _FRONTAL_NOSE_DROP
    pitch = math.degrees(math.atan2(drop * mouth_y, distance / 2))
    return yaw, pitch


def sharpness(crop: NDArray[np.uint8]) -> float:
    """Variance of the Laplacian of the aligned 112×112 crop: blur (and upscaling) lowers it."""
    import cv2  # here: the gates below run in light processes (the page's matcher), this not

    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def measure(landmarks: NDArray[np.float32], score: float, crop: NDArray[np.uint8]) -> FaceQuality:
    """The quality measures of one detected face and its aligned crop."""
    return _measures(landmarks, score, sharpness(crop))


def rank(
    landmarks: NDArray[np.float32], score: float, settings: QualitySettings
) -> tuple[bool, float]:
    """A face's rank before alignment (higher is better), for a frame with more faces than may
    be embedded: faces the gate refuses on size, pose or score come last; then the larger and
    surer first (inter-ocular distance × score)."""
    quality = _unaligned(landmarks, score, settings)
    return gate(quality, settings) is None, quality.iod * quality.score


def refusal(
    landmarks: NDArray[np.float32], score: float, settings: QualitySettings
) -> UnnamedReason | None:
    """Why the gate refuses a face whatever its crop shows (too small, turned away, low score),
    judged before alignment; None: only the crop can tell (its sharpness)."""
    return gate(_unaligned(landmarks, score, settings), settings)


def _unaligned(
    landmarks: NDArray[np.float32], score: float, settings: QualitySettings
) -> FaceQuality:
    """The measures the five points and the score give. Sharpness needs the aligned crop, which
    is what deciding early saves, so it is taken as passing: never held against any face."""
    return _measures(landmarks, score, settings.min_sharpness)


def _measures(landmarks: NDArray[np.float32], score: float, sharp: float) -> FaceQuality:
    right_eye, left_eye = np.asarray(landmarks[0], np.float64), np.asarray(landmarks[1], np.float64)
    yaw, pitch = pose(landmarks)
    return FaceQuality(
        iod=round(float(np.hypot(*(left_eye - right_eye))), 1),
        sharpness=round(sharp, 1),
        yaw=round(yaw, 1),
        pitch=round(pitch, 1),
        score=round(min(max(score, 0.0), 1.0), 4),
    )


def gate(quality: FaceQuality, settings: QualitySettings) -> UnnamedReason | None:
    """Why a face of this quality may not be named (None: it may), the gravest reason first."""
    if quality.iod < settings.min_iod:
        return "too_small"
    if abs(quality.yaw) > settings.max_yaw or abs(quality.pitch) > settings.max_pitch:
        return "turned_away"
    if quality.sharpness < settings.min_sharpness:
        return "blurred"
    if quality.score < settings.min_score:
        return "low_score"
    return None


def tier(quality: FaceQuality | None, settings: QualitySettings) -> Tier:
    """Which impostor model judges this view: good (large and sharp) or weak (unknown: weak)."""
    if quality is None:
        return "weak"
    good = quality.iod >= settings.good_iod and quality.sharpness >= settings.good_sharpness
    return "good" if good else "weak"


def assess(
    landmarks: NDArray[np.float32], score: float, crop: NDArray[np.uint8], settings: QualitySettings
) -> tuple[FaceQuality, UnnamedReason | None]:
    """The measures of one face and the gate's verdict on them."""
    quality = measure(landmarks, score, crop)
    return quality, gate(quality, settings)
