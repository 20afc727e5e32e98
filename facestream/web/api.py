"""The REST API for backends: recognise one photo, search visits, a person; its OpenAPI document.

Served by the page's process behind the page's own guard: a login, `Authorization: Bearer
<web.token>` or the backends' own `web.api_token` (the scope `api`: this API and the snapshots
and frames it names, nothing else; the metrics token is refused), the same upload caps
(`limits.max_bytes`) and validation as the page. `GET /api/openapi.json` describes exactly
the routes of `ROUTES` (a test compares them), with the schemas of the models of each answer.
"""

from __future__ import annotations

import re
from typing import Any

import redis
from pydantic import ValidationError
from starlette.authentication import requires
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from facestream import __version__
from facestream.client import RecognitionTimeout, recognise_image
from facestream.config import Settings
from facestream.schemas import Result, keys
from facestream.schemas.gallery import IDENTITY_NAME_PATTERN
from facestream.status import known_groups

from .auth import API
from .monitor import Monitor
from .visits import Person, VisitQuery, Visits, find_visits, last_seen, parse_time

__all__ = ["ROUTES", "openapi", "people", "recognise", "visits"]

_MAX_TIMEOUT_S = 30.0
_NAME_RE = re.compile(IDENTITY_NAME_PATTERN)


def _groups(request: Request) -> list[str]:
    """The groups the page shows: the last status sample's, else the node's streams."""
    monitor: Monitor = request.app.state.monitor
    if monitor.report is not None:
        return [status.group for status in monitor.report.groups]
    return known_groups(request.app.state.client)


def _query(request: Request) -> VisitQuery:
    params = dict(request.query_params)
    for name in ("from", "to"):
        if params.get(name):
            params[name] = str(parse_time(params[name], name))
        else:
            params.pop(name, None)
    for name in ("identity", "camera", "group"):
        if not params.get(name):
            params.pop(name, None)
    if "group" in params:
        keys.validate_group(params["group"])
    return VisitQuery.model_validate(params)


def _invalid(exc: ValueError) -> JSONResponse:
    """422 naming each bad parameter (pydantic's errors without their URLs)."""
    if isinstance(exc, ValidationError):
        errors = [
            ": ".join(
                filter(None, [".".join(map(str, e["loc"])), e["msg"].removeprefix("Value error, ")])
            )
            for e in exc.errors()
        ]
        return JSONResponse({"error": "; ".join(errors)}, status_code=422)
    return JSONResponse({"error": str(exc)}, status_code=422)


@requires(API, status_code=401)
async def visits(request: Request) -> Response:
    """GET /api/visits?identity=&unknown=&camera=&group=&from=&to=&limit="""
    try:
        query = _query(request)
    except ValueError as exc:  # ValidationError too
        return _invalid(exc)
    client: redis.Redis = request.app.state.client
    found = await run_in_threadpool(find_visits, client, _groups(request), query)
    return JSONResponse(found.model_dump(mode="json"))


@requires(API, status_code=401)
async def people(request: Request) -> Response:
    """GET /api/people/{name}?from=&to=: enrolment, last seen, visits in range, snapshots."""
    name = request.path_params["name"]
    if not _name_ok(name):
        return JSONResponse({"error": f"invalid name {name[:80]!r}"}, status_code=422)
    try:
        query = _query(request).model_copy(update={"identity": name, "unknown": False})
    except ValueError as exc:  # ValidationError too
        return _invalid(exc)
    client: redis.Redis = request.app.state.client
    groups = _groups(request)

    def gather() -> Person:
        identities = {i.name: i for i in request.app.state.gallery.read().identities()[1]}
        found = find_visits(client, groups, query)
        newest = found.visits[0] if found.visits else last_seen(client, groups, name)
        enrolled = identities.get(name)
        return Person(
            name=name,
            enrolled=enrolled is not None,
            photos=len(enrolled.embeddings) if enrolled is not None else 0,
            last_seen=newest,
            visits=found.visits,
            snapshots=[v.snapshot for v in found.visits if v.snapshot is not None],
            truncated=found.truncated,
        )

    return JSONResponse((await run_in_threadpool(gather)).model_dump(mode="json"))


@requires(API, status_code=401)
async def recognise(request: Request) -> Response:
    """POST /api/recognise?group=&timeout=: one photo in (a JPEG body, or multipart `photo`),
    its result out, as `facestream recognise` does: a one-photo frame the workers answer."""
    settings: Settings = request.app.state.settings
    group = keys.validate_group(request.query_params.get("group", ""))
    if group not in _groups(request) and group not in settings.groups:
        # A typo would otherwise make a new group that no worker serves: wait, then time out.
        return JSONResponse({"error": f"no camera group {group!r} on this node"}, status_code=404)
    try:
        timeout_s = float(request.query_params.get("timeout", "10"))
    except ValueError:
        timeout_s = -1.0
    if not 0 < timeout_s <= _MAX_TIMEOUT_S:
        return JSONResponse(
            {"error": f"timeout must be a number of seconds in (0, {_MAX_TIMEOUT_S:g}]"},
            status_code=422,
        )
    cap = settings.limits.max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap + 64 * 1024:  # room for multipart framing
        return JSONResponse({"error": "photo larger than limits.max_bytes"}, status_code=413)
    photo = await _photo(request, cap)
    if photo is None:
        return JSONResponse(
            {"error": "send one JPEG: as the body (image/jpeg) or as multipart field `photo`"},
            status_code=422,
        )
    if len(photo) > cap:
        return JSONResponse({"error": "photo larger than limits.max_bytes"}, status_code=413)
    try:
        result: Result = await run_in_threadpool(
            recognise_image,
            request.app.state.client,
            group,
            photo,
            timeout_s=timeout_s,
            limits=settings.limits,
            maxlen=settings.ingest.frames_maxlen,
        )
    except RecognitionTimeout as exc:
        return JSONResponse({"error": str(exc)}, status_code=504)
    # InvalidFrame (not an image, too many pixels) is a ValueError: the app answers 422.
    return Response(result.to_json(), media_type="application/json")


async def _photo(request: Request, cap: int) -> bytes | None:
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=2) as form:
            upload = form.get("photo")
            return await upload.read(cap + 1) if isinstance(upload, UploadFile) else None
    if kind.startswith("image/jpeg"):
        body = bytearray()
        async for chunk in request.stream():  # stop reading past the cap
            body += chunk
            if len(body) > cap:
                break
        return bytes(body) if body else None
    return None


def _name_ok(name: str) -> bool:
    return _NAME_RE.fullmatch(name) is not None


@requires(API, status_code=401)
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(document())


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of `ROUTES`."""
    schemas: dict[str, Any] = {}
    for model in (Visits, Person, Result):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    query = VisitQuery.model_json_schema()["properties"]
    params = [
        {"name": name, "in": "query", "required": False, "schema": spec,
         "description": spec.get("description", "")}
        for name, spec in (
            (info.alias or field, query[info.alias or field])
            for field, info in VisitQuery.model_fields.items()
        )
    ]  # fmt: skip
    ranged = [p for p in params if p["name"] in ("from", "to")]

    def answer(model: str, text: str) -> dict[str, Any]:
        ref = {"$ref": f"#/components/schemas/{model}"}
        return {"description": text, "content": {"application/json": {"schema": ref}}}

    error = {"description": 'the reason, as {"error": "…"}'}
    return {
        "openapi": "3.1.0",
        "info": {"title": "facestream", "version": __version__},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"token": []}],
        "paths": {
            "/api/recognise": {
                "post": {
                    "summary": "Recognise one photo (as `facestream recognise`)",
                    "parameters": [
                        {
                            "name": "group",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "pattern": keys.GROUP_NAME_PATTERN},
                        },
                        {
                            "name": "timeout",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "number",
                                "exclusiveMinimum": 0,
                                "maximum": _MAX_TIMEOUT_S,
                                "default": 10,
                            },
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"photo": {"type": "string", "format": "binary"}},
                                    "required": ["photo"],
                                }
                            },
                        },
                    },
                    "responses": {
                        "200": answer("Result", "the photo's result"),
                        "404": error,
                        "413": error,
                        "422": error,
                        "504": {"description": "no worker answered in time"},
                    },
                }
            },
            "/api/visits": {
                "get": {
                    "summary": "Visits in a time range (default: the last day), newest first",
                    "parameters": params,
                    "responses": {"200": answer("Visits", "the visits"), "422": error},
                }
            },
            "/api/people/{name}": {
                "get": {
                    "summary": "A person: enrolment, last seen, visits in a range, snapshots",
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": IDENTITY_NAME_PATTERN},
                        },
                        *ranged,
                    ],
                    "responses": {"200": answer("Person", "the person"), "422": error},
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
    }


ROUTES = [
    Route("/api/recognise", recognise, methods=["POST"]),
    Route("/api/visits", visits),
    Route("/api/people/{name}", people),
    Route("/api/openapi.json", openapi),
]
