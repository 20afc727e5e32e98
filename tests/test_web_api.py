"""The page's REST API for backends against a real Redis and a real worker: visits, people,
recognise, and the OpenAPI document checked against the routes."""

from __future__ import annotations

import threading
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import redis
from pydantic import ValidationError
from starlette.routing import Route

from facestream.config import Settings
from facestream.ingest import FramePublisher, iter_frames
from facestream.recognizer import FaceEngine
from facestream.schemas import Event, keys
from facestream.server import free_port
from facestream.web import WebSettings, api
from facestream.web.app import _routes, create_app

from .helpers import FACES, enrol, make_worker, wait_for
from .web_support import TOKEN, Page, multipart, page, serving, snapshot_jpeg

__all__ = ["page"]  # the fixture, imported so that pytest finds it here

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def _get(page: Page, path: str) -> tuple[int, object]:
    status, body, _ = page.call("GET", path, **BEARER)
    return status, orjson.loads(body)


def _wait_for_group(page: Page) -> None:
    def sampled() -> bool:
        report = page.app.state.monitor.report
        return report is not None and "g1" in [g.group for g in report.groups]

    wait_for(sampled, 20, "a status sample that knows g1")


def _visit(client: redis.Redis, track: str, camera: str, identity: str | None, at: int) -> None:
    """One visit's events, written now; the camera's clock says `at`."""
    common = {"group": "g1", "camera": camera, "track": track, "frame_id": "1-0"}
    snapshot = keys.snapshot("g1", track)
    client.set(snapshot, snapshot_jpeg(), ex=60)
    client.xadd(keys.events("g1"), Event(type="appeared", ts=at, first_ts=at, **common).to_fields())
    if identity is not None:
        named = Event(type="identified", ts=at + 500, identity=identity, similarity=0.7,
                      snapshot=snapshot, **common)  # fmt: skip
        client.xadd(keys.events("g1"), named.to_fields())
    left = Event(type="left", ts=at + 3000, identity=identity, first_ts=at, last_ts=at + 3000,
                 dwell_ms=3000, frames=15, snapshot=snapshot, **common)  # fmt: skip
    client.xadd(keys.events("g1"), left.to_fields())


def test_visits_and_people_by_time_range(
    page: Page, client: redis.Redis, engine: FaceEngine
) -> None:
    enrol(engine, client, ["obama"])
    publisher = FramePublisher(client, "g1", "door", 1000, Settings().limits)
    publisher.publish(next(iter(iter_frames(FACES / "test"))))  # the group exists
    _wait_for_group(page)
    _visit(client, "t1", "door", "obama", 1_000)
    between = int(time.time() * 1000) + 1
    wait_for(lambda: int(time.time() * 1000) > between, 5, "the next millisecond", poll_s=0.001)
    _visit(client, "t2", "hall", None, 2_000)
    client.xadd(keys.events("g1"), {"v": "1", "type": "exploded"})  # skipped and counted
    _visit(client, "t3", "hall", "obama", 3_000)

    status, found = _get(page, "/api/visits")
    assert status == 200 and isinstance(found, dict)
    assert [v["track"] for v in found["visits"]] == ["t3", "t2", "t1"]  # newest first
    assert (found["skipped"], found["truncated"]) == (1, False)
    first = found["visits"][2]
    assert first == {
        "group": "g1", "camera": "door", "track": "t1", "identity": "obama", "similarity": None,
        "first_ts": 1_000, "last_ts": 4_000, "dwell_ms": 3_000, "frames": 15, "left": True,
        "snapshot": "/api/snapshots/g1/t1", "frame_id": "1-0",
    }  # fmt: skip
    assert [v["track"] for v in _get(page, "/api/visits?identity=obama")[1]["visits"]] == [
        "t3",
        "t1",
    ]  # type: ignore[index]
    assert [v["track"] for v in _get(page, "/api/visits?unknown=true")[1]["visits"]] == ["t2"]  # type: ignore[index]
    assert [v["track"] for v in _get(page, "/api/visits?camera=hall&limit=1")[1]["visits"]] == [
        "t3"
    ]  # type: ignore[index]
    # By the time Redis wrote them (stream ids in ms): only what came before `between`.
    early = _get(page, f"/api/visits?to={between}")[1]
    assert [v["track"] for v in early["visits"]] == ["t1"]  # type: ignore[index]
    iso = datetime.fromtimestamp(between / 1000, UTC).isoformat()  # with ms and +00:00
    late = _get(page, f"/api/visits?from={urllib.parse.quote(iso)}")[1]
    assert [v["track"] for v in late["visits"]] == ["t3", "t2"]  # type: ignore[index]

    status, person = _get(page, "/api/people/obama")
    assert status == 200 and isinstance(person, dict)
    assert (person["enrolled"], person["photos"]) == (True, 2)
    assert person["last_seen"]["track"] == "t3" and person["last_seen"]["camera"] == "hall"
    assert [v["track"] for v in person["visits"]] == ["t3", "t1"]
    assert person["snapshots"] == ["/api/snapshots/g1/t3", "/api/snapshots/g1/t1"]
    # Outside the range the visits are empty, but where and when they were last seen is kept.
    status, person = _get(page, "/api/people/obama?from=1&to=2")
    assert person["visits"] == [] and person["last_seen"]["track"] == "t3"  # type: ignore[index]
    status, nobody = _get(page, "/api/people/nobody")
    assert (status, nobody["enrolled"], nobody["last_seen"]) == (200, False, None)  # type: ignore[index]

    for path, error in [
        (
            "/api/visits?from=yesterday",
            "from: 'yesterday' is neither epoch ms nor an ISO 8601 time",
        ),
        ("/api/visits?limit=0", "limit: Input should be greater than or equal to 1"),
        ("/api/visits?colour=red", "colour: Extra inputs are not permitted"),
        ("/api/visits?from=5&to=4", "from must not be after to"),
        ("/api/people/%3Cscript%3E", "invalid name '<script>'"),
    ]:
        assert _get(page, path) == (422, {"error": error}), path
    assert page.call("GET", "/api/visits")[0] == 401  # neither logged in nor a token


def test_recognise_one_photo_through_a_worker(
    page: Page, client: redis.Redis, engine: FaceEngine, settings: Settings
) -> None:
    enrol(engine, client, ["obama"])
    worker = make_worker(client, engine, settings)
    worker.step()  # the consumer group (and so the group) exists before the request
    stop = threading.Event()
    serving = threading.Thread(target=worker.run, args=(stop,))
    serving.start()
    photo = (FACES / "test" / "obama1.jpg").read_bytes()
    try:
        _wait_for_group(page)
        status, body, _ = page.call(
            "POST", "/api/recognise?group=g1", photo, **{**BEARER, "Content-Type": "image/jpeg"}
        )
        assert status == 200, body
        first = orjson.loads(body)
        form, kind = _photo_form(photo)
        status, body, _ = page.call(
            "POST", "/api/recognise?group=g1", form, **{**BEARER, "Content-Type": kind}
        )
        second = orjson.loads(body)
    finally:
        stop.set()
        serving.join(10)
    assert [f["identity"] for f in first["faces"]] == ["obama"] and not first["cached"]
    assert second["cached"] and second["hash"] == first["hash"] and second["camera"] == "request"

    jpeg = {**BEARER, "Content-Type": "image/jpeg"}
    refusals = [
        ("/api/recognise?group=nowhere", photo, jpeg, 404,
         "no camera group 'nowhere' on this node"),
        ("/api/recognise?group=g1", b"not a jpeg", jpeg, 422,
         "image is not a JPEG (starts with 6e6f7420)"),
        ("/api/recognise?group=g1&timeout=99", photo, jpeg, 422,
         "timeout must be a number of seconds in (0, 30]"),
        ("/api/recognise?group=g1", photo, {**BEARER, "Content-Type": "text/plain"}, 422,
         "send one JPEG: as the body (image/jpeg) or as multipart field `photo`"),
        ("/api/recognise?group=g1", b"\xff" * (settings.limits.max_bytes + 1), jpeg, 413,
         "photo larger than limits.max_bytes"),
    ]  # fmt: skip
    for path, data, headers, code, error in refusals:
        status, body, _ = page.call("POST", path, data, **headers)
        assert (status, orjson.loads(body)) == (code, {"error": error}), path
    # No worker now: a new photo times out with the reason, as `facestream recognise` does.
    cold = (FACES / "test" / "alex_lacamoire1.jpg").read_bytes()
    status, body, _ = page.call("POST", "/api/recognise?group=g1&timeout=0.3", cold, **jpeg)
    assert status == 504 and "is a worker serving this group?" in orjson.loads(body)["error"]


def _photo_form(photo: bytes) -> tuple[bytes, str]:
    body, kind = multipart({}, [("obama1.jpg", photo)])
    return body.replace(b'name="photos"', b'name="photo"'), kind


def test_openapi_document_matches_the_routes(page: Page) -> None:
    status, document = _get(page, "/api/openapi.json")
    assert status == 200 and isinstance(document, dict)
    assert document["openapi"] == "3.1.0"
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    served = {
        (route.path, method)
        for route in api.ROUTES
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert documented == served
    # Every API route is mounted by the app, and every schema a path names is defined.
    mounted = {route.path for route in _routes() if isinstance(route, Route)}
    assert {path for path, _ in served} <= mounted
    text = orjson.dumps(document).decode()
    for name in ("Visits", "Person", "Result", "Visit"):
        assert f'"#/components/schemas/{name}"' in text or name == "Visit"
        assert name in document["components"]["schemas"]
    query = {p["name"] for p in document["paths"]["/api/visits"]["get"]["parameters"]}
    assert query == {"identity", "unknown", "camera", "group", "from", "to", "limit"}
    assert page.call("GET", "/api/openapi.json")[0] == 401


def test_api_token_reaches_the_api_and_nothing_else(
    settings: Settings, client: redis.Redis
) -> None:
    """A backend's token (`web.api_token`) uses the REST API and the snapshots it names, but
    neither logs in nor reads the page's gallery, overview, metrics or changes anything."""
    backend = "b" * 24
    web = WebSettings(port=free_port(), token=TOKEN, api_token=backend, sample_s=0.2)
    client.set(keys.snapshot("g1", "t1"), snapshot_jpeg(), ex=60)
    with serving(create_app(settings, web, client=client), web) as running:
        bearer = {"Authorization": f"Bearer {backend}"}
        for path in ("/api/visits", "/api/people/obama", "/api/openapi.json",
                     "/api/snapshots/g1/t1"):  # fmt: skip
            assert running.call("GET", path, **bearer)[0] == 200, path
        for path in ("/api/overview", "/api/gallery", "/api/dead", "/api/stream", "/metrics"):
            assert running.call("GET", path, **bearer)[0] == 401, path
        assert running.call("POST", "/api/dead/g1/purge", **bearer)[0] == 401
        assert running.call("DELETE", "/api/gallery/obama", **bearer)[0] == 401
        form = urllib.parse.urlencode({"password": backend}).encode()
        assert running.call("POST", "/login", form)[2]["location"] == "/login?failed=1"
        # The operator's token still reaches everything, the API included.
        assert running.call("GET", "/api/visits", **BEARER)[0] == 200
    with pytest.raises(ValidationError, match=r"set web\.api_token or web\.api_token_file, not"):
        WebSettings(api_token=backend, api_token_file=Path(__file__))


def test_api_without_redis_answers_503(settings: Settings) -> None:
    web = WebSettings(port=free_port(), token=TOKEN, sample_s=0.2)
    nowhere = redis.Redis(port=free_port(), socket_connect_timeout=1)
    with serving(create_app(settings, web, client=nowhere), web) as running:
        for path in ("/api/visits", "/api/people/obama", "/api/snapshots/g1/t1", "/api/dead"):
            status, body, _ = running.call("GET", path, **BEARER)
            assert status == 503, path
            assert orjson.loads(body)["error"].startswith("Redis unavailable: ConnectionError: ")
