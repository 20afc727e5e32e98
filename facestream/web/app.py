"""`facestream web`: the operators' page (Starlette + uvicorn), its JSON API, health and metrics.

Everything under `/api` and `/` needs a login (or the bearer token), `/metrics` a login or the
metrics token; `/healthz`, `/readyz`, `/login` and the static assets do not. Reads come from the
background `Monitor` (feed, charts, tiles) or straight from Redis for what must be current
(gallery, dead letters, frames, snapshots); writes are in `admin.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import redis
import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from facestream.cli_wait import wait_for_redis
from facestream.client import EventFilter, ResultFilter
from facestream.config import ConfigError, Settings
from facestream.connect import Connections
from facestream.redis_errors import REDIS_ERRORS
from facestream.replicas import GalleryReplicas
from facestream.schemas import FacestreamError, GalleryError, clip, keys
from facestream.topology import Topology

from . import admin, api
from .auth import API, COOKIE, CSRF_HEADER, METRICS, Guard, SessionAuth, Sessions, login, logout
from .metrics import render_metrics
from .monitor import Filters, Monitor
from .settings import WebSettings
from .uploads import BodyTooLarge

if TYPE_CHECKING:  # the page loads the models only when an admin enrols a photo
    from facestream.recognizer import FaceEngine

__all__ = ["build_server", "create_app", "serve"]

log = structlog.get_logger("web")
STATIC = Path(__file__).resolve().parent / "static"
_POLL_S = 0.25  # how often an open event stream looks at the in-memory feed
_KEEPALIVE_S = 15.0  # a comment line, so proxies do not close an idle stream


def create_app(
    settings: Settings,
    web: WebSettings,
    client: redis.Redis | None = None,
    engine: FaceEngine | None = None,
) -> Starlette:
    """The ASGI app; the monitor starts with the app's lifespan. Refuses to run unlocked."""
    web.require_credentials()
    sessions = Sessions(web)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.monitor.start()
        log.info("web page up", host=web.host, port=web.port)
        try:
            yield
        finally:
            app.state.monitor.stop()
            if client is None:  # ours to close; a caller's client stays the caller's
                redis_client.close()

    app = Starlette(
        routes=_routes(),
        middleware=[
            Middleware(Guard, sessions=sessions),
            Middleware(AuthenticationMiddleware, backend=SessionAuth(sessions)),
        ],
        exception_handlers={
            FacestreamError: _refused,
            BodyTooLarge: _too_large,
            **dict.fromkeys(REDIS_ERRORS, _unavailable),
        },
        lifespan=lifespan,
    )
    topology = Topology(settings)
    shown = topology.select([web.node] if web.node else [])
    if len(shown) != 1:
        raise ConfigError(
            f"one page shows one node: set web.node (facestream web --node) to one of "
            f"{', '.join(topology.nodes)}"
        )
    # Gallery changes reach every node, the shown one through the page's own client.
    connections = Connections(topology, {shown[0].name: client} if client else None)
    if client is None and shown[0].is_cluster:
        # A plain client connects lazily and the page shows its 503 banner while Redis is
        # away; a cluster client cannot be made before some node answers with the slot map.
        redis_client = wait_for_redis("web", connections, shown, lambda: connections.node(shown[0]))
    else:
        redis_client = connections.node(shown[0])
    app.state.settings, app.state.web, app.state.sessions = settings, web, sessions
    app.state.client = redis_client
    app.state.gallery = GalleryReplicas(connections)
    app.state.monitor = Monitor(redis_client, web)
    app.state.engine = engine
    app.state.engine_lock = threading.Lock()
    return app


def _routes() -> list[Route | Mount]:
    return [
        Route("/", index, name="index"),
        Route("/login", lambda _: FileResponse(STATIC / "login.html"), name="login_page"),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/healthz", lambda _: JSONResponse({"status": "ok"})),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/api/session", session),
        Route("/api/overview", overview),
        Route("/api/history", history),
        Route("/api/stream", stream),
        Route("/api/frames/{group}/{frame_id}", frame),
        Route("/api/snapshots/{group}/{track}", snapshot),
        Route("/api/gallery", admin.gallery),
        Route("/api/gallery", admin.enrol, methods=["POST"]),
        Route("/api/gallery/{name}/thumbnail", admin.thumbnail),
        Route("/api/gallery/{name}", admin.remove_identity, methods=["DELETE"]),
        Route("/api/gallery/{name}/erase", admin.erase_identity, methods=["POST"]),
        Route("/api/dead", admin.dead_letters),
        Route("/api/dead/{group}/purge", admin.purge_dead, methods=["POST"]),
        Route("/api/dead/{group}/{entry_id}/retry", admin.retry_dead, methods=["POST"]),
        Route("/api/dead/{group}/{entry_id}/purge", admin.purge_dead, methods=["POST"]),
        *api.ROUTES,  # the REST API for backends (api.py, documented at /api/openapi.json)
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


async def _refused(request: Request, exc: Exception) -> Response:
    """An expected failure is one line for the page: bad input 422, a refused action 409."""
    status = 422 if isinstance(exc, GalleryError | ValueError) else 409
    return JSONResponse({"error": str(exc)}, status_code=status)


async def _unavailable(request: Request, exc: Exception) -> Response:
    """Redis did not answer a read made for this request: 503 with the reason, not a 500."""
    return JSONResponse(
        {"error": clip(f"Redis unavailable: {type(exc).__name__}: {exc}", 300)}, status_code=503
    )


async def _too_large(request: Request, exc: Exception) -> Response:
    # Closing the connection: the rest of the body is never read.
    return JSONResponse(
        {"error": "upload larger than the photo limits"},
        status_code=413,
        headers={"connection": "close"},
    )


@requires("authenticated", redirect="login_page")
async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})


def readyz(request: Request) -> JSONResponse:
    """Ready once the status sampler has read Redis recently; 503 otherwise, with the reason
    for a logged-in caller only (an error can quote key names, identities, hosts)."""
    monitor: Monitor = request.app.state.monitor
    if monitor.ready():
        return JSONResponse({"status": "ready"})
    shown = {"error": monitor.error} if request.user.is_authenticated else {}
    return JSONResponse({"status": "not ready", **shown}, status_code=503)


@requires(METRICS, status_code=401)
def metrics(request: Request) -> Response:
    state = request.app.state
    return Response(render_metrics(state.monitor, state.sessions.throttle), media_type="text/plain")


@requires("authenticated", status_code=401)
def session(request: Request) -> JSONResponse:
    """The page's CSRF token (bound to its session cookie) and the header to send it in."""
    cookie = request.cookies.get(COOKIE, "")
    token = request.app.state.sessions.csrf_token(cookie) if cookie else ""
    return JSONResponse({"csrf": token, "header": CSRF_HEADER})


@requires("authenticated", status_code=401)
def overview(request: Request) -> JSONResponse:
    return JSONResponse(_overview(request.app.state.monitor))


@requires("authenticated", status_code=401)
def history(request: Request) -> JSONResponse:
    return JSONResponse(list(request.app.state.monitor.history))


@requires("authenticated", status_code=401)
async def stream(request: Request) -> StreamingResponse:
    """Server-sent events: `recognition` and `event` items as they come, `status` after every
    sample.

    Filters: ?group=, ?camera= and ?identity= (comma-separated lists; an event passes on its
    camera and its track's identity); ?after= or the
    browser's Last-Event-ID resumes after the item of that id while the feed still holds it.
    """
    monitor: Monitor = request.app.state.monitor
    group, wanted = _filters(request)
    start = request.headers.get("last-event-id") or request.query_params.get("after") or "0"

    async def events() -> AsyncIterator[bytes]:
        after, quiet = int(start) if start.isdigit() else 0, 0.0
        sampled: tuple[float, str | None] = (-1.0, None)
        while not monitor.stopped:
            for item in monitor.items_after(after, group, wanted):
                after = item.id
                yield _event(item.kind, item.to_dict(), item.id)
                quiet = 0.0
            # A failed sample is news too: the page must say Redis is gone, not wait on.
            if (monitor.sampled_at, monitor.error) != sampled:
                sampled = (monitor.sampled_at, monitor.error)
                yield _event("status", _overview(monitor))
                quiet = 0.0
            elif quiet >= _KEEPALIVE_S:
                yield b": keepalive\n\n"
                quiet = 0.0
            await asyncio.sleep(_POLL_S)
            quiet += _POLL_S

    headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


@requires(API, status_code=401)
def frame(request: Request) -> Response:
    """A frame's JPEG while the frames stream still keeps it (404 once trimmed)."""
    group = keys.validate_group(request.path_params["group"])
    jpeg = admin.read_frame(request.app.state.client, group, request.path_params["frame_id"])
    if jpeg is None:
        return Response(status_code=404)
    return Response(jpeg, media_type="image/jpeg", headers={"cache-control": "private, max-age=60"})


@requires(API, status_code=401)
def snapshot(request: Request) -> Response:
    """A track's best face crop, named by its events, while its TTL keeps it (404 after)."""
    group = keys.validate_group(request.path_params["group"])
    track = request.path_params["track"]
    jpeg = request.app.state.client.get(keys.snapshot(group, track)) if len(track) <= 200 else None
    if jpeg is None:
        return Response(status_code=404)
    return Response(jpeg, media_type="image/jpeg", headers={"cache-control": "private, max-age=60"})


def _filters(request: Request) -> tuple[str | None, Filters]:
    params = request.query_params

    def listed(name: str) -> frozenset[str] | None:
        values = {v.strip() for v in params.get(name, "").split(",") if v.strip()}
        return frozenset(values) if values else None

    group = params.get("group") or None
    identities, cameras = listed("identity"), listed("camera")
    return group, Filters(
        ResultFilter(identities=identities, cameras=cameras),
        EventFilter(identities=identities, cameras=cameras),
    )


def _overview(monitor: Monitor) -> dict[str, Any]:
    """Groups, cameras (health and newest result) and the newest chart sample."""
    report = monitor.report
    health = {h.camera: h for h in report.cameras} if report else {}
    latest = dict(monitor.latest)
    cameras = []
    for camera in sorted(set(health) | set(latest)):
        item = latest.get(camera)
        cameras.append(
            {
                "camera": camera,
                "group": health[camera].group if camera in health else item and item.entry.group,
                "health": health[camera].model_dump(mode="json") if camera in health else None,
                "latest": item.to_dict() if item else None,
            }
        )
    return {
        "groups": [asdict(group) for group in report.groups] if report else [],
        "gallery_version": report.gallery_version if report else None,
        "gallery_size": len(monitor.gallery[1]),
        "cameras": cameras,
        "sample": monitor.history[-1] if monitor.history else None,
        "sampled": report is not None,  # False until the first sample: not yet "live"
        "error": monitor.error,
        "error_since": monitor.error_since,
        "now": int(time.time() * 1000),  # the page's clock for frame ages (cameras' is theirs)
    }


def _event(kind: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


def build_server(app: Starlette, web: WebSettings) -> uvicorn.Server:
    """A uvicorn server for `app` on the configured address (tests run it in a thread)."""
    config = uvicorn.Config(
        app,
        host=web.host,
        port=web.port,
        log_config=None,  # structlog owns the logging set-up
        access_log=False,
        proxy_headers=True,  # X-Forwarded-For/-Proto from a reverse proxy on loopback
        timeout_graceful_shutdown=3,  # open event streams would otherwise hold a stop
    )
    return uvicorn.Server(config)


def serve(settings: Settings, web: WebSettings) -> None:
    """Run the page until SIGTERM/Ctrl-C (uvicorn's handlers stop it gracefully)."""
    if not web.loopback:
        log.warning(
            "web page bound beyond loopback: it shows faces, put it behind TLS (docs/web.md)",
            host=web.host,
        )
    server = build_server(create_app(settings, web), web)
    listening = _listen(web)
    # uvicorn raises the signal that stopped it again once it has shut down gracefully; the
    # stop was orderly, so a SIGTERM ends here and the process exits 0 like every role.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run(sockets=[listening])


def _listen(web: WebSettings) -> socket.socket:
    """The page's listening socket, bound as uvicorn would; a port in use is a config error
    (uvicorn itself would exit 3, the code that means "Redis unreachable")."""
    listening = socket.socket(socket.AF_INET6 if ":" in web.host else socket.AF_INET)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((web.host, web.port))
    except OSError as exc:
        listening.close()
        raise ConfigError(
            f"cannot listen on {web.host}:{web.port} ({exc.strerror}): pick another --port "
            "or web.port, or stop what uses it"
        ) from None
    return listening
