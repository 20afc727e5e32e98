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

import numpy as np
import redis
import structlog
from starlette.authentication import requires
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from facestream.config import Settings
from facestream.dead_letters import DeadLetters
from facestream.schemas import GalleryError, Identity, InvalidMessage, keys
from facestream.schemas.entries import validate_entry_id
from facestream.schemas.gallery import IDENTITY_NAME_PATTERN

from .uploads import capped

__all__ = [
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
_THUMB_SIDE = 96
_PRIVATE = {"cache-control": "private, max-age=30"}  # faces: never in a shared cache


def read_frame(client: redis.Redis, group: str, frame_id: str) -> bytes | None:
    """The JPEG of a frame still kept in its group's frames stream, else None."""
    try:
        validate_entry_id(frame_id)
    except InvalidMessage:
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
    import cv2  # here: a page that shows no thumbnail never loads OpenCV

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
    # Uploads spool to disk: refused by their declared length, or at the cap while they
    # stream in (a chunked body declares none): the photos and room for their part headers.
    cap = web.max_upload_files * (settings.limits.max_bytes + 16 * 1024)
    async with capped(request, cap).form(max_files=web.max_upload_files, max_fields=10) as form:
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
    # Imported here: the page loads onnxruntime and OpenCV only once an admin enrols a photo.
    from facestream.recognizer import FaceEngine, embed_photos, refuse_outliers

    with state.engine_lock:  # one enrolment at a time: the models are CPU-bound
        if state.engine is None:
            settings: Settings = state.settings
            state.engine = FaceEngine.from_settings(settings.models, settings.match.enrol)
        verdicts: list[Identity] = []
        errors: list[dict[str, str]] = []
        for photo in photos:
            try:
                identity = embed_photos(
                    state.engine,
                    name,
                    [photo],
                    largest_face=largest,
                    max_pixels=state.settings.limits.max_pixels,
                )
                verdicts.append(identity)
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
    wanted = request.query_params.get("group")
    page = _dead(request).list([wanted] if wanted else None)
    return JSONResponse(page.to_dict())


@requires("authenticated", status_code=401)
def retry_dead(request: Request) -> JSONResponse:
    """Send a dead letter's frame again as a new frame entry, then drop the letter."""
    entry_id = request.path_params["entry_id"]
    frame_id = _dead(request).retry(request.path_params["group"], entry_id)
    return JSONResponse({"retried": entry_id, "frame_id": frame_id})


@requires("authenticated", status_code=401)
def purge_dead(request: Request) -> JSONResponse:
    """Delete one dead letter (with an id) or every dead letter of the group."""
    entry_id = request.path_params.get("entry_id")
    return JSONResponse({"purged": _dead(request).purge(request.path_params["group"], entry_id)})


def _dead(request: Request) -> DeadLetters:
    settings: Settings = request.app.state.settings
    return DeadLetters(request.app.state.client, settings.ingest.frames_maxlen)
