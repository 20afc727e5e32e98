"""The web app over HTTP against a real Redis: login, CSRF, token, metrics, readiness, writes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import pytest
import redis
from pydantic import ValidationError

from facestream.config import Settings
from facestream.ingest import FramePublisher, iter_frames
from facestream.recognizer import FaceEngine
from facestream.schemas import CameraHealth, DeadLetter, Event, FacestreamError, keys
from facestream.server import EmbeddedRedis, free_port
from facestream.web import WebSettings, hash_password, verify_password
from facestream.web.app import create_app

from .helpers import FACES, enrol, make_worker, wait_for
from .web_support import (
    PASSWORD,
    TOKEN,
    NoRedirect,
    Page,
    page,
    serving,
    snapshot_jpeg,
    web_settings,
)

__all__ = ["page"]  # the fixture, imported so that pytest finds it here


def test_password_hash_round_trip_and_format() -> None:
    stored = hash_password(PASSWORD)
    assert re.fullmatch(r"scrypt\$32768\$8\$1\$[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}", stored)
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + "!", stored)
    assert stored != hash_password(PASSWORD)  # salted
    with pytest.raises(ValueError, match=r"must read scrypt\$N\$r\$p\$salt\$key"):
        WebSettings(password_hash="$2b$12$bcrypt-is-not-this-format")


def test_refuses_to_serve_faces_unlocked(settings: Settings, client: redis.Redis) -> None:
    with pytest.raises(FacestreamError, match=r"^the web page shows faces and is locked: set "):
        create_app(settings, WebSettings(), client=client)
    assert WebSettings().host == "127.0.0.1" and WebSettings().loopback
    assert not WebSettings(host="0.0.0.0").loopback


def test_login_csrf_and_token(page: Page, client: redis.Redis) -> None:
    assert page.call("GET", "/healthz")[0] == 200
    status, _, headers = page.call("GET", "/")
    assert status == 303 and headers["location"].startswith(f"{page.url}/login?next=")
    assert page.call("GET", "/api/overview")[0] == 401
    assert page.call("GET", "/metrics")[0] == 401
    assert page.call("GET", "/api/frames/g1/1-0")[0] == 401

    wrong = urllib.parse.urlencode({"password": "guess"}).encode()
    assert page.call("POST", "/login", wrong)[2]["location"] == "/login?failed=1"
    assert page.call("GET", "/api/overview")[0] == 401

    csrf = page.login()
    status, body, headers = page.call("GET", "/")
    assert status == 200 and b"Live feed" in body
    assert "default-src 'self'" in headers["content-security-policy"]
    letter = DeadLetter(frame_id="1-0", group="g1", reason="r", deliveries=1)
    client.xadd(keys.dead("g1"), letter.to_fields())
    # A write from the session needs the CSRF token; a bearer token needs none.
    assert page.call("POST", "/api/dead/g1/purge")[0] == 403
    assert page.call("POST", "/api/dead/g1/purge", **{"X-CSRF-Token": "0" * 64})[0] == 403
    cross = {"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
    assert page.call("POST", "/api/dead/g1/purge", **cross)[0] == 403
    assert client.xlen(keys.dead("g1")) == 1
    status, body, _ = page.call("POST", "/api/dead/g1/purge", **{"X-CSRF-Token": csrf})
    assert (status, orjson.loads(body)) == (200, {"purged": 1})
    assert client.xlen(keys.dead("g1")) == 0

    bearer = urllib.request.build_opener(NoRedirect)
    scripted = Page(page.url, bearer, page.app)
    assert scripted.call("GET", "/api/overview", Authorization=f"Bearer {TOKEN}")[0] == 200
    assert scripted.call("GET", "/api/overview", Authorization="Bearer nope")[0] == 401
    assert scripted.call("POST", "/api/dead/g1/purge", Authorization=f"Bearer {TOKEN}")[0] == 200


def test_metrics_and_readiness_from_redis(page: Page, client: redis.Redis) -> None:
    publisher = FramePublisher(client, "g1", "cam-a", 1000, Settings().limits)
    for frame in list(iter_frames(FACES / "test"))[:3]:
        publisher.publish(frame)
    client.xgroup_create(keys.frames("g1"), keys.RECOGNIZERS, id="0")
    client.xreadgroup(keys.RECOGNIZERS, "w1", {keys.frames("g1"): ">"}, count=2)
    letter = DeadLetter(frame_id="1-0", group="g1", reason="not a JPEG", deliveries=1)
    client.xadd(keys.dead("g1"), letter.to_fields())
    health = CameraHealth(camera="cam-a", group="g1", source="rtsp://cam", state="streaming",
                          fps_in=9.5, fps_out=5.0)  # fmt: skip
    client.set(keys.camera_health("cam-a"), health.model_dump_json(), ex=60)

    def scrape() -> str:
        status, body, _ = page.call("GET", "/metrics", Authorization=f"Bearer {TOKEN}")
        assert status == 200
        return body.decode()

    wait_for(lambda: 'facestream_stream_pending{group="g1"} 2.0' in scrape(), 10, "metrics")
    metrics = scrape()
    for line in (
        'facestream_stream_length{group="g1"} 3.0',
        'facestream_stream_lag{group="g1"} 1.0',
        'facestream_stream_consumers{group="g1"} 1.0',
        'facestream_dead_letters{group="g1"} 1.0',
        'facestream_results_length{group="g1"} 0.0',
        "facestream_gallery_version 0.0",
        "facestream_gallery_identities 0.0",
        'facestream_camera_up{camera="cam-a",group="g1"} 1.0',
        'facestream_camera_fps_in{camera="cam-a",group="g1"} 9.5',
        "facestream_status_up 1.0",
    ):
        assert line in metrics, line
    status, body, _ = page.call("GET", "/readyz")
    assert (status, orjson.loads(body)) == (200, {"status": "ready"})
    assert "facestream_workers_up 0.0" in metrics


def test_worker_and_quarantine_gauges(
    page: Page, client: redis.Redis, engine: FaceEngine, settings: Settings
) -> None:
    client.set(keys.results("lobby"), "not a stream")  # WRONGTYPE: the worker quarantines it
    client.xadd(keys.frames("lobby"), {"v": "1"})
    worker = make_worker(client, engine, settings, "gauge-test", ["g1", "lobby"])
    worker.step()  # finds both groups, quarantines lobby, writes its heartbeat

    def scrape() -> str:
        return page.call("GET", "/metrics", Authorization=f"Bearer {TOKEN}")[1].decode()

    wait_for(
        lambda: 'facestream_status_group_quarantined{group="lobby"} 1.0' in scrape(), 10, "gauge"
    )
    metrics = scrape()
    assert "facestream_workers_up 1.0" in metrics
    assert 'facestream_worker_quarantined_groups{consumer="gauge-test"} 1.0' in metrics
    assert 'facestream_status_group_quarantined{group="g1"} 0.0' in metrics


def test_not_ready_without_redis(settings: Settings) -> None:
    web = web_settings(free_port())
    nowhere = redis.Redis(port=free_port(), socket_connect_timeout=1)
    with serving(create_app(settings, web, client=nowhere), web) as page:
        wait_for(lambda: page.app.state.monitor.error is not None, 10, "a failed sample")
        status, body, _ = page.call("GET", "/readyz", Authorization=f"Bearer {TOKEN}")
        assert status == 503
        assert orjson.loads(body)["error"].startswith("ConnectionError: Error 111 connecting")
        assert page.call("GET", "/healthz")[0] == 200  # alive: only not ready
        status, body, _ = page.call("GET", "/metrics", Authorization=f"Bearer {TOKEN}")
        assert status == 200 and "facestream_status_up 0.0" in body.decode()


def test_serve_is_ready_then_stops_on_sigterm(redis_server: EmbeddedRedis) -> None:
    """`facestream web` in its own process: ready, metrics, SIGTERM → exit 0."""
    port = free_port()
    command = [sys.executable, "-m", "facestream", "web", "--redis-url", redis_server.url]
    env = {**os.environ, "FACESTREAM_WEB__TOKEN": TOKEN, "FACESTREAM_WEB__PORT": str(port)}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    page = Page(f"http://127.0.0.1:{port}", urllib.request.build_opener(NoRedirect), None)

    def ready() -> bool:
        try:
            return page.call("GET", "/readyz")[0] == 200
        except OSError:  # not listening yet
            return False

    try:
        wait_for(ready, 60, "the web process to be ready", poll_s=0.1)
        status, body, _ = page.call("GET", "/metrics", Authorization=f"Bearer {TOKEN}")
        assert status == 200 and "facestream_status_up 1.0" in body.decode()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()
        process.wait()


def test_gallery_remove_and_erase(page: Page, client: redis.Redis, engine: FaceEngine) -> None:
    enrol(engine, client, ["obama", "biden"])
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    status, body, _ = page.call("GET", "/api/gallery", **bearer)
    listed = orjson.loads(body)
    assert (listed["version"], [i["name"] for i in listed["identities"]]) == (2, ["biden", "obama"])
    assert listed["identities"][0]["photos"] == 2 and not listed["identities"][0]["thumbnail"]
    assert page.call("GET", "/api/gallery/obama/thumbnail", **bearer)[0] == 404  # never seen
    status, body, _ = page.call("DELETE", "/api/gallery/nobody", **bearer)
    assert (status, orjson.loads(body)) == (
        422,
        {"error": "no identity named 'nobody' in the gallery"},
    )
    status, body, _ = page.call("DELETE", "/api/gallery/biden", **bearer)
    assert (status, orjson.loads(body)) == (200, {"removed": "biden"})
    status, body, _ = page.call("POST", "/api/gallery/obama/erase", **bearer)
    assert (status, orjson.loads(body)) == (200, {"erased": "obama", "purged": 0})
    assert client.hlen(keys.GALLERY_IDENTITIES) == 0


def test_dead_letter_retry_resends_the_frame_once(page: Page, client: redis.Redis) -> None:
    publisher = FramePublisher(client, "g1", "cam-a", 1000, Settings().limits)
    frame_id = publisher.publish(next(iter(iter_frames(FACES / "test"))))
    kept = DeadLetter(frame_id=frame_id, group="g1", reason="delivered 5 times", deliveries=5)
    gone = DeadLetter(frame_id="1-1", group="g1", reason="delivered 5 times", deliveries=5)
    kept_id = client.xadd(keys.dead("g1"), kept.to_fields()).decode()
    gone_id = client.xadd(keys.dead("g1"), gone.to_fields()).decode()
    csrf = {"X-CSRF-Token": page.login()}

    status, body, _ = page.call("GET", "/api/dead")
    listed = orjson.loads(body)
    assert [letter["id"] for letter in listed["letters"]] == [gone_id, kept_id]
    assert listed["total"] == {"g1": 2}

    status, body, _ = page.call("POST", f"/api/dead/g1/{gone_id}/retry", **csrf)
    assert status == 409
    assert orjson.loads(body)["error"] == (
        "frame 1-1 is no longer kept in fs:{g1}:frames: it cannot be retried"
    )
    status, body, _ = page.call("POST", f"/api/dead/g1/{kept_id}/retry", **csrf)
    assert (status, orjson.loads(body)) == (200, {"retried": kept_id, "frame_id": frame_id})
    assert page.call("POST", f"/api/dead/g1/{kept_id}/retry", **csrf)[0] == 409  # once only
    entries = client.xrange(keys.frames("g1"))
    assert len(entries) == 2 and entries[0][1] == entries[1][1]  # the same frame, sent again
    assert [e[0].decode() for e in client.xrange(keys.dead("g1"))] == [gone_id]
    status, body, _ = page.call("POST", f"/api/dead/g1/{gone_id}/purge", **csrf)
    assert (status, orjson.loads(body)) == (200, {"purged": 1})
    assert client.xlen(keys.dead("g1")) == 0
    status, body, _ = page.call("POST", "/api/dead/g1/9x/purge", **csrf)
    assert (status, orjson.loads(body)) == (422, {"error": "invalid entry id '9x'"})


def test_visit_events_in_the_feed_with_their_snapshots(page: Page, client: redis.Redis) -> None:
    """Events of fs:{G}:events reach the feed, filtered like results; snapshots are served
    while their key lives."""
    publisher = FramePublisher(client, "g1", "cam-a", 1000, Settings().limits)
    frame_id = publisher.publish(next(iter(iter_frames(FACES / "test"))))  # the group exists
    monitor = page.app.state.monitor
    wait_for(lambda: "g1" in monitor.following, 20, "the feed to follow g1")
    jpeg = snapshot_jpeg()
    client.set(keys.snapshot("g1", "t1"), jpeg, ex=60)
    track = {
        "group": "g1",
        "track": "t1",
        "frame_id": frame_id,
        "snapshot": keys.snapshot("g1", "t1"),
    }
    events = [
        Event(type="appeared", camera="cam-a", ts=1, **track),
        Event(type="identified", camera="cam-a", ts=2, identity="obama", similarity=0.71, **track),
        Event(type="left", camera="cam-b", ts=3, identity="obama", similarity=0.71, dwell_ms=2000,
              frames=20, best_similarity=0.8, **{**track, "snapshot": keys.snapshot("g1", "t2")}),
    ]  # fmt: skip
    client.xadd(keys.events("g1"), {"v": "1", "type": "exploded"})  # skipped, not the stream
    stray = events[0].model_copy(update={"group": "g2"})  # filed under g1's stream: skipped
    client.xadd(keys.events("g1"), stray.to_fields())
    for event in events:
        client.xadd(keys.events("g1"), event.to_fields())
    wait_for(lambda: len(monitor.items_after(0)) == 3, 20, "three events in the feed")

    feed = [data for kind, data in page.stream() if kind == "event"]
    assert [(e["type"], e["identity"], e["snapshot"]) for e in feed] == [
        ("appeared", None, "/api/snapshots/g1/t1"),
        ("identified", "obama", "/api/snapshots/g1/t1"),
        ("left", "obama", "/api/snapshots/g1/t2"),
    ]
    assert (feed[2]["dwell_ms"], feed[2]["frames"], feed[2]["camera"]) == (2000, 20, "cam-b")
    obama = [data["type"] for kind, data in page.stream("?identity=obama") if kind == "event"]
    assert obama == ["identified", "left"]
    at_a = [data["type"] for kind, data in page.stream("?camera=cam-a") if kind == "event"]
    assert at_a == ["appeared", "identified"]
    assert page.stream("?group=g2")[0][0] == "status"  # no item of another group

    bearer = {"Authorization": f"Bearer {TOKEN}"}
    status, body, headers = page.call("GET", "/api/snapshots/g1/t1", **bearer)
    assert (status, body, headers["content-type"]) == (200, jpeg, "image/jpeg")
    assert headers["cache-control"].startswith("private")
    assert page.call("GET", "/api/snapshots/g1/t1")[0] == 401  # not logged in
    assert page.call("GET", "/api/snapshots/g1/t2", **bearer)[0] == 404  # expired (never kept)
    client.delete(keys.snapshot("g1", "t1"))  # what its TTL does
    assert page.call("GET", "/api/snapshots/g1/t1", **bearer)[0] == 404


def test_metrics_token_reads_metrics_only(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    """Prometheus' token (from a file, as compose mounts it) reads /metrics and nothing else;
    the login token can come from a file too."""
    login, scrape = "l" * 24, "m" * 24
    (tmp_path / "login.token").write_text(login + "\n")
    (tmp_path / "metrics.token").write_text(scrape + "\n")
    web = WebSettings(port=free_port(), token_file=tmp_path / "login.token",
                      metrics_token_file=tmp_path / "metrics.token", sample_s=0.2)  # fmt: skip
    with serving(create_app(settings, web, client=client), web) as page:
        metrics = {"Authorization": f"Bearer {scrape}"}
        status, body, _ = page.call("GET", "/metrics", **metrics)
        assert status == 200 and "facestream_status_up" in body.decode()
        for path in ("/api/overview", "/api/gallery", "/api/snapshots/g1/t1", "/api/frames/g1/1-0"):
            assert page.call("GET", path, **metrics)[0] == 401, path
        assert page.call("POST", "/api/dead/g1/purge", **metrics)[0] == 403
        form = urllib.parse.urlencode({"password": scrape}).encode()
        assert page.call("POST", "/login", form)[2]["location"] == "/login?failed=1"
        page.login(login)
        assert page.call("GET", "/api/overview")[0] == 200
        assert page.call("GET", "/metrics")[0] == 200  # a login reads metrics too

    with pytest.raises(ValidationError, match=r"set web\.token or web\.token_file, not both"):
        WebSettings(token=login, token_file=tmp_path / "login.token")
    with pytest.raises(ValidationError, match=r"web\.metrics_token_file .* is not a readable file"):
        WebSettings(token=login, metrics_token_file=tmp_path / "missing")
    (tmp_path / "short.token").write_text("short\n")
    with pytest.raises(
        FacestreamError, match=r"^web\.token_file .*short\.token holds fewer than 16"
    ):
        create_app(settings, WebSettings(token_file=tmp_path / "short.token"), client=client)
