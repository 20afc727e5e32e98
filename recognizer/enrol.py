"""Enrolment: photos that each show one face become an `Identity` (the model runs here)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from facestream.schemas import GalleryError, Identity

from .engine import FaceEngine
from .photos import DEFAULT_MAX_PIXELS, read_photo

__all__ = ["embed_photos"]


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
        detections, vectors = engine.embed_faces(read_photo(photo, max_pixels))
        if not detections:
            raise GalleryError(f"{photo}: no face found; use a clearer, frontal photo")
        if len(detections) > 1 and not largest_face:
            raise GalleryError(
                f"{photo}: {len(detections)} faces found; crop it to one person "
                "or pass --largest-face"
            )
        areas = [d.box[2] * d.box[3] for d in detections]
        embeddings.append(vectors[int(np.argmax(areas))].tolist())
        if on_photo is not None:
            on_photo(photo)
    return Identity(
        name=name,
        model=engine.model_id,
        embeddings=embeddings,
        photos=[photo.name for photo in photos],
        enrolled_at=int(time.time() * 1000),
    )
