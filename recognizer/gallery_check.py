"""What an identity must be to be imported or matched: this model's finite unit vectors, in bounds.

`gallery import` refuses a whole file at the first identity that fails, naming it and the
field; a worker (and `status`, `gallery list`, the page) skips an identity already in Redis
that fails, so one bad entry never costs the rest of the gallery.

Vectors of another length than 1 are refused, not normalised: the embedder writes unit
vectors (recognizer/embedder.py) and JSON keeps them to 1e-7, so any other length means the
vector was edited or made by another pipeline, and rescaling it would quietly accept it; an
all-zero vector cannot be normalised at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from pydantic import ValidationError

from facestream.schemas import GalleryError, GalleryExport, Identity

from .model_files import EMBEDDING_SIZE

__all__ = [
    "MAX_EXPORT_BYTES",
    "MAX_IDENTITIES",
    "MAX_VECTORS",
    "GalleryContents",
    "check_identity",
    "parse_export",
    "parse_identities",
]

#: Bounds on what one export may hold: far above any real site, far below what hurts Redis.
MAX_IDENTITIES = 100_000
MAX_VECTORS = 1_000  # embeddings, negatives and photo names, each, per identity
MAX_EXPORT_BYTES = 1024 * 1024 * 1024
_UNIT_TOLERANCE = 1e-3
_MAX_PHOTO_NAME = 255


@dataclass(frozen=True)
class GalleryContents:
    """A gallery as read from Redis: the usable identities, and why each other one is not."""

    version: int
    identities: list[Identity]
    unusable: dict[str, str] = field(default_factory=dict)  # name → "field: reason"


def check_identity(
    identity: Identity, model_id: str, size: int = EMBEDDING_SIZE
) -> tuple[str, str] | None:
    """(field, reason) of the first thing that makes `identity` unusable here, else None."""
    if identity.model != model_id:
        return "model", f"enrolled with {identity.model}, this installation runs {model_id}"
    for name in ("embeddings", "negatives", "photos", "negative_photos"):
        count = len(getattr(identity, name))
        if count > MAX_VECTORS:
            return name, f"{count} entries, at most {MAX_VECTORS}"
    for name in ("photos", "negative_photos"):
        for index, photo in enumerate(getattr(identity, name)):
            if len(photo) > _MAX_PHOTO_NAME or not photo.isprintable():
                return f"{name}[{index}]", "not a printable file name of at most 255 characters"
    for name in ("embeddings", "negatives"):
        for index, row in enumerate(getattr(identity, name)):
            where = f"{name}[{index}]"
            if len(row) != size:
                return where, f"{len(row)} values, the model makes {size}"
            vector = np.asarray(row, dtype=np.float64)
            if not np.isfinite(vector).all():
                return where, "holds NaN or infinity"
            norm = float(np.linalg.norm(vector))
            if abs(norm - 1.0) > _UNIT_TOLERANCE:
                return where, f"length {norm:.6g}, not a unit vector"
    return None


def parse_identities(
    raw: Mapping[bytes, bytes], version: int, model_id: str, size: int = EMBEDDING_SIZE
) -> GalleryContents:
    """The gallery hash's values, each parsed and checked on its own, sorted by name."""
    usable: list[Identity] = []
    unusable: dict[str, str] = {}
    for key, value in raw.items():
        name = key.decode(errors="replace")
        try:
            identity = Identity.loads(value)
        except ValidationError as exc:
            unusable[name] = _first_error(exc)
            continue
        problem = check_identity(identity, model_id, size)
        if problem is None and identity.name != name:
            problem = ("name", f"the entry says {identity.name!r}")
        if problem is None:
            usable.append(identity)
        else:
            unusable[name] = f"{problem[0]}: {problem[1]}"
    usable.sort(key=lambda identity: identity.name)
    return GalleryContents(version, usable, dict(sorted(unusable.items())))


def parse_export(data: bytes, model_id: str, size: int = EMBEDDING_SIZE) -> GalleryExport:
    """An export file checked whole; GalleryError names the first bad identity and field."""
    if len(data) > MAX_EXPORT_BYTES:
        raise GalleryError(f"the export is {len(data)} bytes, at most {MAX_EXPORT_BYTES}")
    try:
        # The standard parser, not orjson: it reads NaN and Infinity, so they are named below.
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise GalleryError(f"not a facestream gallery export: not JSON ({exc})") from exc
    listed = document.get("identities") if isinstance(document, dict) else None
    if isinstance(listed, list) and len(listed) > MAX_IDENTITIES:
        raise GalleryError(f"identities: {len(listed)}, at most {MAX_IDENTITIES}")
    try:
        export = GalleryExport.model_validate(document)
    except ValidationError as exc:
        raise GalleryError(_export_error(exc, listed)) from exc
    if export.model != model_id:
        raise GalleryError(
            f"the export was made with model {export.model}, this installation runs "
            f"{model_id}: re-enrol from photos instead"
        )
    check_export(export, model_id, size)
    return export


def check_export(export: GalleryExport, model_id: str, size: int = EMBEDDING_SIZE) -> None:
    """Raise GalleryError naming the first identity (and field) `import` must refuse."""
    if len(export.identities) > MAX_IDENTITIES:
        raise GalleryError(f"identities: {len(export.identities)}, at most {MAX_IDENTITIES}")
    seen: set[str] = set()
    for identity in export.identities:
        if identity.name in seen:
            raise GalleryError(f"identity {identity.name!r}: name: listed twice")
        seen.add(identity.name)
        problem = check_identity(identity, model_id, size)
        if problem is not None:
            raise GalleryError(f"identity {identity.name!r}: {problem[0]}: {problem[1]}")


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "entry"
    return f"{where}: {error['msg']}"


def _export_error(exc: ValidationError, listed: object) -> str:
    """One line naming the identity (by name where it has one) and the field."""
    error = exc.errors(include_input=False, include_url=False)[0]
    loc = list(error["loc"])
    if len(loc) >= 2 and loc[0] == "identities" and isinstance(loc[1], int):
        entry = listed[loc[1]] if isinstance(listed, list) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        who = f"identity {name!r}" if isinstance(name, str) else f"identity #{loc[1] + 1}"
        where = ".".join(str(part) for part in loc[2:]) or "entry"
        return f"{who}: {where}: {error['msg']}"
    where = ".".join(str(part) for part in loc) or "file"
    return f"not a facestream gallery export: {where}: {error['msg']}"
