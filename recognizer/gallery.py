"""The identity gallery in Redis: enrol, reject, list, remove, erase, export/import, matching.

No model here: the page and `status` read the gallery without onnxruntime or OpenCV; photos
become identities in `enrol.py`.
"""

from __future__ import annotations

import time

import numpy as np
import redis
import structlog
from numpy.typing import NDArray

from facestream.schemas import (
    CachedRecognition,
    Event,
    GalleryError,
    GalleryExport,
    Identity,
    InvalidMessage,
    keys,
)

from .gallery_check import GalleryContents, check_export, parse_identities
from .matcher import Matcher
from .metrics import GALLERY_SKIPPED
from .model_files import current_model_id
from .settings import MatchSettings

__all__ = ["Gallery"]

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
        """Enrol every identity of an export in one transaction; returns the new version.

        The whole export is checked first (gallery_check): one bad identity refuses the file
        and nothing is written.
        """
        if export.model != model_id:
            raise GalleryError(
                f"the export was made with model {export.model}, this installation runs "
                f"{model_id}: re-enrol from photos instead"
            )
        check_export(export, model_id)
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
        contents = parse_identities({name.encode(): bytes(raw)}, 0, current_model_id())  # type: ignore[arg-type]
        self.remove(name)
        purged = 0
        # An unusable identity never matched a face, so no cached recognition can be its.
        if contents.identities:
            templates = _unit(contents.identities[0].embeddings)
            batch: list[bytes] = []
            for key in self.client.scan_iter(match=keys.every_group("cache"), count=_SCAN_BATCH):
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
        # Imported here: tracks.py needs OpenCV, which readers of the gallery never load.
        from .tracks import parse_tracks

        doomed: set[str] = set()
        tracks = keys.every_group("track")
        for key in self.client.scan_iter(match=tracks, count=_SCAN_BATCH, _type="hash"):
            state = parse_tracks(self.client.hget(key, "state"))  # type: ignore[arg-type]
            doomed.update(t.snapshot for t in state.tracks if t.identity == name and t.snapshot)
        streams = self.client.scan_iter(match=keys.every_group("events"), _type="stream")
        for group in keys.groups_in(streams):
            doomed.update(self._snapshots_named(group, name))
        purge = self.client.pipeline(transaction=False)
        for snapshot in doomed:
            purge.unlink(snapshot)
        return sum(purge.execute())

    def _snapshots_named(self, group: str, name: str) -> set[str]:
        """Snapshot keys in the group's events that carry `name`, read in chunks."""
        found: set[str] = set()
        stream = keys.events(group)
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

    def contents(self, model_id: str | None = None) -> GalleryContents:
        """The version and every identity usable with `model_id` (default: this
        installation's), read in one transaction so they agree, and why the others are not."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(keys.GALLERY_VERSION)
        pipe.hgetall(keys.GALLERY_IDENTITIES)
        version, raw = pipe.execute()
        return parse_identities(raw, int(version or 0), model_id or current_model_id())

    def identities(self) -> tuple[int, list[Identity]]:
        """The version and every usable identity (see `contents` for the unusable ones)."""
        contents = self.contents()
        return contents.version, contents.identities

    def matcher(
        self, model_id: str, threshold: float, margin: float, match: MatchSettings | None = None
    ) -> Matcher:
        """A matcher over the current gallery; an identity it cannot use (another model, bad
        vectors) is skipped, logged and counted, never the whole gallery lost to it.

        With `match`, the config's matcher (FPIR-derived threshold, quality gate; its own
        threshold and margin stand in for the two given); without, the fixed threshold alone.
        """
        contents = self.contents(model_id)
        for name, reason in contents.unusable.items():
            log.warning("gallery identity skipped", name=name, reason=reason)
        GALLERY_SKIPPED.set(len(contents.unusable))
        if match is not None:
            return Matcher.from_settings(contents.identities, match, contents.version)
        return Matcher(contents.identities, threshold, margin, contents.version)


def _unit(rows: list[list[float]]) -> NDArray[np.float32]:
    matrix = np.asarray(rows, dtype=np.float32)
    unit: NDArray[np.float32] = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return unit
