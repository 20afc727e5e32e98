"""The identity gallery in Redis: enrol from photos, list, remove, load for matching."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import redis
from facestream.schemas import GalleryError, Identity, keys

from .engine import FaceEngine
from .matcher import Matcher

__all__ = ["Gallery", "embed_photos"]


class Gallery:
    """Enrolled identities under `fs:{gallery}:*`; every change bumps the version counter."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def version(self) -> int:
        return int(self.client.get(keys.GALLERY_VERSION) or 0)

    def enroll(self, identity: Identity) -> int:
        """Store (or replace) an identity; returns the new gallery version."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(keys.GALLERY_IDENTITIES, identity.name, identity.dumps())
        pipe.incr(keys.GALLERY_VERSION)
        return int(pipe.execute()[-1])

    def remove(self, name: str) -> bool:
        """Forget an identity; False if there was none by that name."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(keys.GALLERY_IDENTITIES, name)
        pipe.incr(keys.GALLERY_VERSION)
        removed, _ = pipe.execute()
        return bool(removed)

    def identities(self) -> tuple[int, list[Identity]]:
        """The version and every identity, read in one transaction so they agree."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(keys.GALLERY_VERSION)
        pipe.hgetall(keys.GALLERY_IDENTITIES)
        version, raw = pipe.execute()
        identities = sorted((Identity.loads(value) for value in raw.values()), key=lambda i: i.name)
        return int(version or 0), identities

    def matcher(self, model_id: str, threshold: float, margin: float) -> Matcher:
        """A matcher over the current gallery, refusing identities enrolled by another model."""
        version, identities = self.identities()
        foreign = [i.name for i in identities if i.model != model_id]
        if foreign:
            raise GalleryError(
                f"gallery identities {', '.join(foreign)} were enrolled with model "
                f"{identities[0].model if identities[0].model != model_id else '?'}, "
                f"this worker runs {model_id}: re-enrol them with `facestream gallery enroll`"
            )
        return Matcher(identities, threshold, margin, version)


def embed_photos(
    engine: FaceEngine, name: str, photos: Sequence[Path], largest_face: bool = False
) -> Identity:
    """Build an identity from photos that each show exactly one face (or take the largest)."""
    if not photos:
        raise GalleryError(f"no photos given for {name!r}")
    embeddings = []
    for photo in photos:
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        if image is None:
            raise GalleryError(f"{photo}: not a readable image")
        detections, vectors = engine.embed_faces(np.asarray(image, np.uint8))
        if not detections:
            raise GalleryError(f"{photo}: no face found; use a clearer, frontal photo")
        if len(detections) > 1 and not largest_face:
            raise GalleryError(
                f"{photo}: {len(detections)} faces found; crop it to one person "
                "or pass --largest-face"
            )
        areas = [d.box[2] * d.box[3] for d in detections]
        embeddings.append(vectors[int(np.argmax(areas))].tolist())
    return Identity(
        name=name,
        model=engine.model_id,
        embeddings=embeddings,
        photos=[photo.name for photo in photos],
        enrolled_at=int(time.time() * 1000),
    )
