"""The identity gallery in Redis: enrol, reject, list, remove, erase, export/import, matching."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import redis
import structlog
from numpy.typing import NDArray

from facestream.schemas import (
    CachedRecognition,
    Event,
    FaceQuality,
    GalleryError,
    GalleryExport,
    Identity,
    InvalidMessage,
    keys,
)

from .engine import FaceEngine
from .matcher import Matcher
from .quality import gate
from .settings import EnrolSettings, MatchSettings
from .tracks import parse_tracks

__all__ = ["Gallery", "embed_photos", "refuse_outliers", "refuse_poor_view"]

log = structlog.get_logger("gallery")
_SCAN_BATCH = 500


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

    def reject(self, name: str, examples: Identity) -> int:
        """Add `examples` (photos of other people) as negatives of `name`; the new version.

        From then on a face at least as close to one of them as to `name` is not `name`.
        """
        if not examples.embeddings:
            raise GalleryError(f"no negative examples given for {name!r}")
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    # An enrolment meanwhile would be overwritten: WATCH, and redo if it came.
                    pipe.watch(keys.GALLERY_IDENTITIES)  # type: ignore[no-untyped-call]
                    raw = pipe.hget(keys.GALLERY_IDENTITIES, name)
                    if raw is None:
                        raise GalleryError(f"no identity named {name!r} in the gallery")
                    identity = Identity.loads(raw)  # type: ignore[arg-type]
                    if identity.model != examples.model:
                        raise GalleryError(
                            f"{name!r} was enrolled with model {identity.model}, the negatives "
                            f"were embedded with {examples.model}: re-enrol {name!r} first"
                        )
                    updated = identity.model_copy(
                        update={
                            "negatives": [*identity.negatives, *examples.embeddings],
                            "negative_photos": [*identity.negative_photos, *examples.photos],
                        }
                    )
                    pipe.multi()
                    pipe.hset(keys.GALLERY_IDENTITIES, name, updated.dumps())
                    pipe.incr(keys.GALLERY_VERSION)
                    return int(pipe.execute()[-1])
                except redis.WatchError:
                    continue

    def remove(self, name: str) -> bool:
        """Forget an identity; False if there was none by that name."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(keys.GALLERY_IDENTITIES, name)
        pipe.incr(keys.GALLERY_VERSION)
        removed, _ = pipe.execute()
        return bool(removed)

    def import_(self, export: GalleryExport, model_id: str) -> int:
        """Enrol every identity of an export in one transaction; returns the new version."""
        if export.model != model_id:
            raise GalleryError(
                f"the export was made with model {export.model}, this installation runs "
                f"{model_id}: re-enrol from photos instead"
            )
        pipe = self.client.pipeline(transaction=True)
        for identity in export.identities:
            pipe.hset(keys.GALLERY_IDENTITIES, identity.name, identity.dumps())
        pipe.incr(keys.GALLERY_VERSION)
        return int(pipe.execute()[-1])

    def export(self, model_id: str) -> GalleryExport:
        _, identities = self.identities()
        return GalleryExport(
            model=model_id, exported_at=int(time.time() * 1000), identities=identities
        )

    def erase(self, name: str, threshold: float) -> int:
        """Remove an identity, purge every cached recognition holding a face of it and every
        snapshot of a track that was given its name.

        Cache entries keep embeddings (never names), so a face counts as this person's when
        it is at least `threshold` similar to one of the identity's embeddings. Snapshots are
        found through the live track states and the events that name them. Returns the
        number of cache entries purged; the log records the erase without biometric data.
        """
        raw = self.client.hget(keys.GALLERY_IDENTITIES, name)
        if raw is None:
            raise GalleryError(f"no identity named {name!r} in the gallery")
        identity = Identity.loads(raw)  # type: ignore[arg-type]
        self.remove(name)
        templates = np.asarray(identity.embeddings, dtype=np.float32)
        templates /= np.linalg.norm(templates, axis=1, keepdims=True)
        purged = 0
        batch: list[bytes] = []
        for key in self.client.scan_iter(match="fs:{*}:cache:*", count=_SCAN_BATCH):
            batch.append(key)
            if len(batch) >= _SCAN_BATCH:
                purged += self._purge_matching(batch, templates, threshold)
                batch = []
        purged += self._purge_matching(batch, templates, threshold)
        snapshots = self._purge_snapshots(name)
        log.info(
            "identity erased", name=name, cache_entries_purged=purged, snapshots_purged=snapshots
        )
        return purged

    def _purge_snapshots(self, name: str) -> int:
        doomed: set[str] = set()
        for key in self.client.scan_iter(match="fs:{*}:track:*", count=_SCAN_BATCH, _type="hash"):
            state = parse_tracks(self.client.hget(key, "state"))  # type: ignore[arg-type]
            doomed.update(t.snapshot for t in state.tracks if t.identity == name and t.snapshot)
        for key in self.client.scan_iter(match="fs:{*}:events", count=_SCAN_BATCH, _type="stream"):
            doomed.update(self._snapshots_named(key, name))
        purge = self.client.pipeline(transaction=False)
        for snapshot in doomed:
            purge.unlink(snapshot)
        return sum(purge.execute())

    def _snapshots_named(self, stream: bytes, name: str) -> set[str]:
        """Snapshot keys in the events of `stream` that carry `name`, read in chunks."""
        found: set[str] = set()
        group = keys.group_of(stream)
        start = "-"
        while True:
            chunk: list[tuple[bytes, dict[bytes, bytes]]]
            chunk = self.client.xrange(stream, min=start, count=_SCAN_BATCH)  # type: ignore[assignment]
            for _, fields in chunk:
                try:
                    event = Event.from_fields(fields)
                except InvalidMessage:
                    continue  # not ours to judge here; it names no snapshot we can trust
                # Only the key the event's own track would have: never any key an entry names.
                if event.identity == name and event.snapshot == keys.snapshot(group, event.track):
                    found.add(event.snapshot)
            if len(chunk) < _SCAN_BATCH:
                return found
            start = "(" + chunk[-1][0].decode()

    def _purge_matching(
        self, cache_keys: list[bytes], templates: NDArray[np.float32], threshold: float
    ) -> int:
        if not cache_keys:
            return 0
        # GETs on a pipeline rather than MGET: the keys span many groups' slots on a cluster.
        lookup = self.client.pipeline(transaction=False)
        for key in cache_keys:
            lookup.get(key)
        doomed = []
        for key, value in zip(cache_keys, lookup.execute(), strict=True):
            if value is None:
                continue
            embeddings = CachedRecognition.loads(value).embedding_matrix()
            if embeddings.size and float((embeddings @ templates.T).max()) >= threshold:
                doomed.append(key)
        purge = self.client.pipeline(transaction=False)
        for key in doomed:
            purge.unlink(key)
        return sum(purge.execute())

    def identities(self) -> tuple[int, list[Identity]]:
        """The version and every identity, read in one transaction so they agree."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(keys.GALLERY_VERSION)
        pipe.hgetall(keys.GALLERY_IDENTITIES)
        version, raw = pipe.execute()
        identities = sorted((Identity.loads(value) for value in raw.values()), key=lambda i: i.name)
        return int(version or 0), identities

    def matcher(
        self, model_id: str, threshold: float, margin: float, match: MatchSettings | None = None
    ) -> Matcher:
        """A matcher over the current gallery, refusing identities enrolled by another model.

        With `match`, the config's matcher (FPIR-derived threshold, quality gate; its own
        threshold and margin stand in for the two given); without, the fixed threshold alone.
        """
        version, identities = self.identities()
        foreign = [i.name for i in identities if i.model != model_id]
        if foreign:
            raise GalleryError(
                f"gallery identities {', '.join(foreign)} were enrolled with model "
                f"{identities[0].model if identities[0].model != model_id else '?'}, "
                f"this worker runs {model_id}: re-enrol them with `facestream gallery enroll`"
            )
        if match is not None:
            return Matcher.from_settings(identities, match, version)
        return Matcher(identities, threshold, margin, version)


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
) -> Identity:
    """Build an identity from photos that each show exactly one face (or take the largest).

    `on_photo` is called after each photo is embedded (progress for long folders).
    """
    if not photos:
        raise GalleryError(f"no photos given for {name!r}")
    embeddings = []
    for photo in photos:
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        if image is None:
            raise GalleryError(f"{photo}: not a readable image")
        detections, vectors, views = engine.embed_views(np.asarray(image, np.uint8))
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
