"""The page's writes: enrol from uploaded photos, remove and erase identities, dead letters.

Enrolment goes through the recogniser's `embed_photos`, one photo at a time, so every photo
gets its own verdict (one face, readable) exactly as `facestream gallery enroll` judges it, and
nothing is enrolled unless every photo passed.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import redis
import structlog
from starlette.authentication import requires
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from facestream.config import Settings
from facestream.recognizer import FaceEngine, embed_photos, refuse_outliers
from facestream.schemas import (
    DeadLetter,
    FacestreamError,
    GalleryError,
    Identity,
    keys,
)
from facestream.schemas.gallery import IDENTITY_NAME_PATTERN
from facestream.status import known_groups

__all__ = [
    "InvalidRequest",
    "NotRetryable",
    "dead_letters",
    "enrol",
    "erase_identity",
    "gallery",
    "purge_dead",
    "read_frame",
    "remove_identity",
    "retry_dead",
    "thumbnail",
]

log = structlog.get_logger("web")
_NAME_RE = re.compile(IDENTITY_NAME_PATTERN)
_SAFE_FILE = re.compile(r"[^A-Za-z0-9_.-]+")
_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_DEAD_SHOWN = 100
_THUMB_SIDE = 96
_PRIVATE = {"cache-control": "private, max-age=30"}  # faces: never in a shared cache


class NotRetryable(FacestreamError):
    """A dead letter that is gone, or whose frame the frames stream no longer keeps."""


class InvalidRequest(FacestreamError, ValueError):
    """A request naming something that cannot exist (a malformed entry id)."""


def read_frame(client: redis.Redis, group: str, frame_id: str) -> bytes | None:
    """The JPEG of a frame still kept in its group's frames stream, else None."""
    if not _ENTRY_ID.fullmatch(frame_id):
        return None
    found: Any = client.xrange(keys.frames(group), frame_id, frame_id, count=1)
    return found[0][1].get(b"img") if found else None


@requires("authenticated", status_code=401)
def gallery(request: Request) -> JSONResponse:
    version, identities = request.app.state.gallery.read().identities()
    sightings = request.app.state.monitor.sightings
    return JSONResponse(
        {
            "version": version,
            "identities": [
                {
                    "name": identity.name,
                    "photos": len(identity.embeddings),
                    "model": identity.model,
                    "enrolled_at": identity.enrolled_at,
                    "thumbnail": identity.name in sightings,
                }
                for identity in identities
            ],
        }
    )


@requires("authenticated", status_code=401)
def thumbnail(request: Request) -> Response:
    """The identity's face as last seen by a camera (while that frame is kept), 96 px."""
    name = request.path_params["name"]
    sighting = request.app.state.monitor.sightings.get(name)
    jpeg = sighting and read_frame(request.app.state.client, sighting.group, sighting.frame_id)
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) if jpeg else None
    if sighting is None or image is None:
        return Response(status_code=404)
    x, y, w, h = sighting.face.box
    pad = 0.25 * max(w, h)
    top, left = max(int(y - pad), 0), max(int(x - pad), 0)
    crop = image[top : int(y + h + pad), left : int(x + w + pad)]
    if crop.size == 0:
        return Response(status_code=404)
    _, encoded = cv2.imencode(".jpg", cv2.resize(crop, (_THUMB_SIDE, _THUMB_SIDE)))
    return Response(encoded.tobytes(), media_type="image/jpeg", headers=_PRIVATE)


@requires("authenticated", status_code=401)
async def enrol(request: Request) -> JSONResponse:
    """POST /api/gallery (multipart: name, photos…, largest_face): all photos pass or none."""
    settings: Settings = request.app.state.settings
    web = request.app.state.web
    # Refused before reading: uploads spool to disk. A chunked body has no length; the proxy's
    # body cap (client_max_body_size, docs/web.md) bounds that one.
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > web.max_upload_files * settings.limits.max_bytes:
        return JSONResponse({"error": "upload larger than the photo limits"}, status_code=413)
    async with request.form(max_files=web.max_upload_files, max_fields=10) as form:
        name = str(form.get("name") or "").strip()
        if not _NAME_RE.fullmatch(name):
            raise GalleryError(f"invalid name {name!r}: use 1-64 letters, digits, _ . ' - or space")
        uploads = [f for f in form.getlist("photos") if isinstance(f, UploadFile) and f.filename]
        if not uploads:
            raise GalleryError("choose at least one photo")
        largest = form.get("largest_face") in ("on", "true", "1")
        with tempfile.TemporaryDirectory(prefix="facestream-enrol-") as scratch:
            photos: list[Path] = []
            errors: list[dict[str, str]] = []
            for index, upload in enumerate(uploads):
                label = Path(upload.filename or "photo").name
                data = await upload.read(settings.limits.max_bytes + 1)
                if len(data) > settings.limits.max_bytes:
                    errors.append({"file": label, "error": "larger than limits.max_bytes"})
                    continue
                photo = Path(scratch) / str(index) / (_SAFE_FILE.sub("_", label) or "photo")
                photo.parent.mkdir()
                photo.write_bytes(data)
                photos.append(photo)
            state = request.app.state
            identity, failed = await run_in_threadpool(_embed, state, name, photos, largest)
    errors += failed
    if errors or identity is None:
        return JSONResponse({"errors": errors}, status_code=422)
    version, _ = state.gallery.change(lambda gallery: gallery.enroll(identity))
    log.info("identity enrolled from the web page", name=name, photos=len(photos), version=version)
    return JSONResponse({"enrolled": name, "photos": len(photos), "version": version})


def _embed(
    state: Any, name: str, photos: list[Path], largest: bool
) -> tuple[Identity | None, list[dict[str, str]]]:
    """Embed each photo alone, so each gets its own error; one identity if all passed."""
    with state.engine_lock:  # one enrolment at a time: the models are CPU-bound
        if state.engine is None:
            settings: Settings = state.settings
            state.engine = FaceEngine.from_settings(settings.models, settings.match)
        verdicts: list[Identity] = []
        errors: list[dict[str, str]] = []
        for photo in photos:
            try:
                verdicts.append(embed_photos(state.engine, name, [photo], largest_face=largest))
            except GalleryError as exc:
                reason = (
                    str(exc)
                    .removeprefix(f"{photo}: ")
                    .replace("pass --largest-face", "tick 'use the largest face'")
                )
                errors.append({"file": photo.name, "error": reason})
    if errors or not verdicts:
        return None, errors
    try:  # issue 17: the photos must agree with each other, as `gallery enroll` checks
        refuse_outliers(name, photos, [v.embeddings[0] for v in verdicts], state.engine.enrol)
    except GalleryError as exc:
        shown, _, reason = str(exc).partition(": ")
        return None, [{"file": Path(shown).name, "error": reason}]
    merged = verdicts[0].model_copy(
        update={
            "embeddings": [e for v in verdicts for e in v.embeddings],
            "photos": [p for v in verdicts for p in v.photos],
        }
    )
    return merged, []


@requires("authenticated", status_code=401)
def remove_identity(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    removed, _ = request.app.state.gallery.change(lambda gallery: gallery.remove(name))
    if not removed:
        raise GalleryError(f"no identity named {name!r} in the gallery")
    request.app.state.monitor.forget(name)
    log.info("identity removed from the web page", name=name)
    return JSONResponse({"removed": name})


@requires("authenticated", status_code=401)
def erase_identity(request: Request) -> JSONResponse:
    """Remove the identity and purge cached recognitions of that person (`gallery erase`)."""
    name = request.path_params["name"]
    settings: Settings = request.app.state.settings
    purged = request.app.state.gallery.erase(name, settings.match.threshold)
    request.app.state.monitor.forget(name)
    return JSONResponse({"erased": name, "purged": purged})


@requires("authenticated", status_code=401)
def dead_letters(request: Request) -> JSONResponse:
    """The newest dead letters of every group (or ?group=), newest first, with reasons."""
    client: redis.Redis = request.app.state.client
    wanted = request.query_params.get("group")
    groups = [keys.validate_group(wanted)] if wanted else known_groups(client)
    letters = []
    for group in groups:
        entries: Any = client.xrevrange(keys.dead(group), count=_DEAD_SHOWN)
        for entry_id, fields in entries:
            letter = DeadLetter.from_fields(fields)
            letters.append({"id": entry_id.decode(), **letter.model_dump()})
    total = {group: client.xlen(keys.dead(group)) for group in groups}
    return JSONResponse({"letters": letters, "total": total})


@requires("authenticated", status_code=401)
def retry_dead(request: Request) -> JSONResponse:
    """Send a dead letter's frame again as a new frame entry, then drop the letter.

    A dead letter keeps only the frame's id; the frame itself is still in the frames stream
    until MAXLEN trims it. Watching the dead-letter stream makes a double click send it once.
    """
    group = keys.validate_group(request.path_params["group"])
    entry_id = _entry_id(request)
    client: redis.Redis = request.app.state.client
    maxlen = request.app.state.settings.ingest.frames_maxlen

    resent: list[str] = []

    def resend(pipe: Any) -> None:
        found = pipe.xrange(keys.dead(group), entry_id, entry_id, count=1)
        if not found:
            raise NotRetryable(f"no dead letter {entry_id} in group {group}")
        frame_id = DeadLetter.from_fields(found[0][1]).frame_id
        frame = pipe.xrange(keys.frames(group), frame_id, frame_id, count=1)
        if not frame:
            raise NotRetryable(
                f"frame {frame_id} is no longer kept in {keys.frames(group)}: it cannot be retried"
            )
        pipe.multi()
        pipe.xadd(keys.frames(group), frame[0][1], maxlen=maxlen, approximate=True)
        pipe.xdel(keys.dead(group), entry_id)
        resent[:] = [frame_id]  # a retried transaction (the stream changed) overwrites it

    client.transaction(resend, keys.dead(group))
    log.info("dead letter retried", group=group, entry_id=entry_id, frame_id=resent[0])
    return JSONResponse({"retried": entry_id, "frame_id": resent[0]})


@requires("authenticated", status_code=401)
def purge_dead(request: Request) -> JSONResponse:
    """Delete one dead letter (with an id) or every dead letter of the group."""
    group = keys.validate_group(request.path_params["group"])
    client: redis.Redis = request.app.state.client
    if "entry_id" in request.path_params:
        purged = int(client.xdel(keys.dead(group), _entry_id(request)))
    else:
        purged = int(client.xlen(keys.dead(group)))
        client.delete(keys.dead(group))
    log.info("dead letters purged", group=group, purged=purged)
    return JSONResponse({"purged": purged})


def _entry_id(request: Request) -> str:
    entry_id = str(request.path_params["entry_id"])
    if not _ENTRY_ID.fullmatch(entry_id):
        raise InvalidRequest(f"invalid entry id {entry_id[:40]!r}")
    return entry_id
