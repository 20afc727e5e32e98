"""Enrolment: photos that each show one face become an `Identity` (the model runs here)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from facestream.schemas import FaceQuality, GalleryError, Identity

from .engine import FaceEngine
from .photos import DEFAULT_MAX_PIXELS, read_photo
from .quality import gate
from .settings import EnrolSettings

__all__ = ["embed_photos", "refuse_outliers", "refuse_poor_view"]


_WHY = {
    "too_small": "the face is too small (eyes {iod:.0f} px apart, at least {min_iod:.0f} needed)",
    "turned_away": "the face is turned away (yaw {yaw:.0f}°, pitch {pitch:.0f}°; at most "
    "{max_yaw:.0f}° and {max_pitch:.0f}°)",
    "blurred": "the face is blurred (sharpness {sharpness:.0f}, at least {min_sharpness:.0f})",
    "low_score": "the face is unclear (detection score {score:.2f}, at least {min_score:.2f})",
}


def refuse_poor_view(photo: Path, view: FaceQuality, settings: EnrolSettings) -> None:
    """Raise GalleryError saying why, when a photo's face is too poor to enrol."""
    reason = gate(view, settings)
    if reason is not None:
        measures = {**view.model_dump(), **settings.model_dump()}
        raise GalleryError(
            f"{photo}: {_WHY[reason].format(**measures)} ({reason}); use a larger, sharper, "
            "frontal photo"
        )


def refuse_outliers(
    name: str,
    photos: Sequence[Path],
    embeddings: Sequence[Sequence[float]],
    settings: EnrolSettings,
) -> None:
    """Raise GalleryError naming a photo that does not look like the identity's other photos.

    Each photo is compared with the mean of the others: another person's photo (or a bad crop)
    in an identity would let that other person be named.
    """
    if len(embeddings) < 2:
        return
    unit = np.asarray(embeddings, np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    total = unit.sum(axis=0)
    for photo, row in zip(photos, unit, strict=True):
        others = total - row
        similarity = float(row @ others / max(float(np.linalg.norm(others)), 1e-12))
        if similarity < settings.outlier_similarity:
            raise GalleryError(
                f"{photo}: does not look like the other photos of {name!r} (similarity "
                f"{similarity:.2f}, at least {settings.outlier_similarity:.2f}) (outlier); "
                "leave it out or check it is the same person"
            )


def embed_photos(
    engine: FaceEngine,
    name: str,
    photos: Sequence[Path],
    largest_face: bool = False,
    on_photo: Callable[[Path], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Identity:
    """Build an identity from photos that each show exactly one face (or take the largest).

    `on_photo` is called after each photo is embedded (progress for long folders); a photo
    whose header declares over `max_pixels` is refused before it is decoded.
    """
    if not photos:
        raise GalleryError(f"no photos given for {name!r}")
    embeddings = []
    for photo in photos:
        # No tiles: an enrolled face must be a good view, which the letterbox finds, and the
        # tiles' small faces in the background would only make a photo look like a group's.
        image = read_photo(photo, max_pixels)
        detections, vectors, views = engine.embed_views(image, tiled=False)
        if not detections:
            raise GalleryError(f"{photo}: no face found; use a clearer, frontal photo")
        if len(detections) > 1 and not largest_face:
            raise GalleryError(
                f"{photo}: {len(detections)} faces found; crop it to one person "
                "or pass --largest-face"
            )
        areas = [d.box[2] * d.box[3] for d in detections]
        chosen = int(np.argmax(areas))
        refuse_poor_view(photo, views[chosen], engine.enrol)
        embeddings.append(vectors[chosen].tolist())
        if on_photo is not None:
            on_photo(photo)
    refuse_outliers(name, photos, embeddings, engine.enrol)
    return Identity(
        name=name,
        model=engine.model_id,
        embeddings=embeddings,
        photos=[photo.name for photo in photos],
        enrolled_at=int(time.time() * 1000),
    )
