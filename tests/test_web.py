"""The web page against a real Redis, a real worker and replay, and Debian's Chromium."""

from __future__ import annotations

import contextlib
import http.cookiejar
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from playwright.sync_api import Page as Tab
from playwright.sync_api import expect, sync_playwright

from facestream.config import Settings
from facestream.demo import build_clip
from facestream.ingest import FramePublisher, iter_frames
from facestream.recognizer import FaceEngine
from facestream.schemas import CameraHealth, DeadLetter, FacestreamError, keys
from facestream.server import EmbeddedRedis, free_port
from facestream.web import WebSettings, hash_password, verify_password
from facestream.web.app import build_server, create_app

from .helpers import FACES, REPO, enrol, require_system_dependency, wait_for

PASSWORD = "correct horse battery staple"
TOKEN = "t" * 24
ARTIFACTS = REPO / "build" / "test-artifacts"
SCREENSHOT = ARTIFACTS / "web-page.png"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@dataclass
class Page:
    """A running web app on loopback and a cookie-keeping HTTP client for it."""

    url: str
    opener: urllib.request.OpenerDirector
    app: Any

    def call(
        self, method: str, path: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, bytes, dict[str, str]]:
        request = urllib.request.Request(self.url + path, body, headers, method=method)
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)

    def login(self, secret: str = PASSWORD) -> str:
        """Log in with the form; returns the CSRF token of the new session."""
        form = urllib.parse.urlencode({"password": secret}).encode()
        status, _, headers = self.call("POST", "/login", form)
        assert (status, headers["location"]) == (303, "/"), headers
        status, body, _ = self.call("GET", "/api/session")
        assert status == 200
        return str(orjson.loads(body)["csrf"])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None  # let the test see the 303 itself


def _web_settings(port: int) -> WebSettings:
    return WebSettings(
        port=port, password_hash=hash_password(PASSWORD), token=TOKEN, sample_s=0.2
    )  # fmt: skip


@contextlib.contextmanager
def _serving(app: Any, web: WebSettings) -> Iterator[Page]:
    server = build_server(app, web)
    thread = threading.Thread(target=server.run, name="web-server")
    thread.start()
    try:
        wait_for(lambda: server.started, timeout_s=20, what="the web server to listen")
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect)
        yield Page(f"http://127.0.0.1:{web.port}", opener, app)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    assert not thread.is_alive(), "the web server did not stop"


@pytest.fixture()
def page(client: redis.Redis, settings: Settings, engine: FaceEngine) -> Iterator[Page]:
    web = _web_settings(free_port())
    with _serving(create_app(settings, web, engine=engine), web) as serving:
        yield serving


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

    bearer = urllib.request.build_opener(_NoRedirect)
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


def test_not_ready_without_redis(settings: Settings) -> None:
    web = _web_settings(free_port())
    nowhere = redis.Redis(port=free_port(), socket_connect_timeout=1)
    with _serving(create_app(settings, web, client=nowhere), web) as page:
        wait_for(lambda: page.app.state.monitor.error is not None, 10, "a failed sample")
        status, body, _ = page.call("GET", "/readyz")
        assert status == 503
        assert orjson.loads(body)["error"].startswith("ConnectionError: Error 111 connecting")
        assert page.call("GET", "/healthz")[0] == 200  # alive: only not ready
        status, body, _ = page.call("GET", "/metrics", Authorization=f"Bearer {TOKEN}")
        assert status == 200 and "facestream_status_up 0.0" in body.decode()


SERVE = """
import sys
from facestream.config import load_settings
from facestream.web import WebSettings
from facestream.web.app import serve
web = WebSettings(port=int(sys.argv[2]), token=sys.argv[3])
serve(load_settings(redis={"url": sys.argv[1]}), web)
"""


def test_serve_is_ready_then_stops_on_sigterm(redis_server: EmbeddedRedis) -> None:
    """The function `facestream web` runs, in its own process: ready, metrics, SIGTERM → 0."""
    port = free_port()
    command = [sys.executable, "-c", SERVE, redis_server.url, str(port), TOKEN]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    page = Page(f"http://127.0.0.1:{port}", urllib.request.build_opener(_NoRedirect), None)

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


def _start(redis_server: EmbeddedRedis, model_cache: Path, *args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "facestream", "--redis-url", redis_server.url, *args]
    env = {
        **os.environ,
        "FACESTREAM_MODELS__CACHE_DIR": str(model_cache),
        "FACESTREAM_WORKER__GALLERY_POLL_S": "0.2",
    }
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(process: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM, then the exit code; None (after a SIGKILL) if it did not stop within 60 s."""
    process.terminate()
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def test_browser_sees_replay_and_enrols(
    page: Page, client: redis.Redis, engine: FaceEngine, redis_server: EmbeddedRedis,
    model_cache: Path, tmp_path: Path,
) -> None:  # fmt: skip
    require_system_dependency(
        Path(CHROMIUM).is_file(), "Debian's chromium (apt-get install chromium)"
    )
    enrol(engine, client, ["obama", "biden"])
    clip = tmp_path / "clip.avi"
    build_clip(sorted((FACES / "test").glob("*.jpg")), clip, size=(640, 360), moving=4, still=0)
    replay = ["replay", str(FACES / "test"), "--group", "g1", "--camera-id", "replay-1"]
    # 5 fps from a 10 fps clip: every scene is sent (2 fps would skip one scene each loop).
    camera = ["camera", "--source", str(clip), "--camera-id", "live-1", "--group", "g1"]
    processes = [
        _start(redis_server, model_cache, "worker", "--groups", "g1", "--consumer", "web-w"),
        _start(redis_server, model_cache, *replay, "--fps", "2", "--loop"),
        _start(redis_server, model_cache, *camera, "--fps", "5"),
    ]
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                _watch_live_page(tab, page.url)
                _enrol_through_the_form(tab)
                _purge_a_dead_letter(tab, client)
            finally:  # the artefact shows what the page showed, also when a step failed
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                tab.screenshot(path=str(SCREENSHOT), full_page=True)
                browser.close()
    finally:
        codes = [_stop(process) for process in processes]
    assert codes[0] == codes[2] == 0  # worker and camera agent stop cleanly on SIGTERM
    assert SCREENSHOT.stat().st_size > 10_000
    assert "kit_harington" in [i.decode() for i in client.hkeys(keys.GALLERY_IDENTITIES)]


def _watch_live_page(tab: Tab, url: str) -> None:
    """Log in, then see names arrive in the feed and on both camera tiles, boxes drawn."""
    tab.goto(url + "/")
    expect(tab).to_have_url(re.compile(r"/login\?next="))
    tab.fill("input[name=password]", "not it")
    tab.click("button[type=submit]")
    expect(tab.locator("#failed")).to_be_visible()
    tab.fill("input[name=password]", PASSWORD)
    tab.click("button[type=submit]")
    expect(tab.locator("#connection")).to_have_text("live", timeout=20_000)
    expect(tab.locator("#feed")).to_contain_text("obama (0.", timeout=90_000)
    hover = _tile_shows(tab, "replay-1", "obama")
    assert re.match(r"^obama · similarity 0\.\d{3} · detection 0\.\d\d · track ", hover), hover
    expect(tab.locator('[data-camera="replay-1"] .state')).to_have_text("no agent")
    live = tab.locator('[data-camera="live-1"]')
    expect(live.locator(".state")).to_have_text("streaming", timeout=30_000)
    expect(live.locator(".health")).to_contain_text("out ")
    _tile_shows(tab, "live-1", "biden")
    # The filter narrows the feed to one camera's recognitions.
    tab.fill("#filters input[name=camera]", "live-1")
    tab.click("#filters button")
    expect(tab.locator("#feed li").first).to_contain_text("g1/live-1", timeout=30_000)
    assert "replay-1" not in tab.locator("#feed").inner_text()  # read once: no waiting it away


def _tile_shows(tab: Tab, camera: str, name: str) -> str:
    """Wait until a tile names `name` under its picture and boxes it; the box's hover text.

    Tiles change with every frame, so this is checked on every animation frame in the page
    rather than by a locator polled now and then, which could miss a frame each time.
    """
    found = tab.wait_for_function(
        """([camera, name]) => {
            const tile = document.querySelector(`[data-camera="${camera}"]`);
            if (!tile?.querySelector(".names").textContent.includes(name)) return false;
            const box = [...tile.querySelectorAll("svg title")]
                .find(title => title.textContent.startsWith(`${name} `));
            return box ? box.textContent : false;
        }""",
        arg=[camera, name],
        timeout=60_000,
    )
    return str(found.json_value())


def _enrol_through_the_form(tab: Tab) -> None:
    """Errors per file first (nothing enrolled), then a clean enrolment the workers pick up."""
    form = tab.locator("#enrol")
    form.locator("input[name=name]").fill("kit_harington")
    kit = sorted((FACES / "train" / "kit_harington").iterdir())
    group_photo = FACES / "test" / "obama_and_biden.jpg"
    form.locator("input[name=photos]").set_input_files(
        [
            {"name": path.name, "mimeType": "image/jpeg", "buffer": path.read_bytes()}
            for path in (group_photo, kit[0])
        ]
        + [{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo"}]
    )
    form.locator("button").click()
    errors = tab.locator("#enrol-result .error li")
    expect(errors).to_have_text(
        [
            re.compile(r"^obama_and_biden\.jpg: 3 faces found; crop it to one person or"),
            re.compile(r"^notes\.txt: not a readable image$"),
        ],
        timeout=30_000,
    )
    expect(tab.locator('#gallery [data-identity="kit_harington"]')).to_have_count(0)
    form.locator("input[name=photos]").set_input_files(kit)
    form.locator("button").click()
    expect(tab.locator("#enrol-result")).to_contain_text(
        "enrolled kit_harington from 2 photo(s)", timeout=30_000
    )
    expect(tab.locator('#gallery [data-identity="kit_harington"]')).to_be_visible()
    # Obama was seen by a camera: the gallery shows his face from that frame, 96 px square.
    thumb = "#gallery [data-identity=obama] img.thumb"
    # (a function, not a string to eval: the page's CSP forbids eval, also to Playwright)
    tab.wait_for_function(f"() => document.querySelector('{thumb}')?.naturalWidth === 96")
    # The workers re-match cached frames against the new gallery: the name reaches the feed.
    tab.fill("#filters input[name=camera]", "")
    tab.fill("#filters input[name=identity]", "kit_harington")
    tab.click("#filters button")
    expect(tab.locator("#feed")).to_contain_text("kit_harington (0.", timeout=60_000)
    lines = tab.locator("#feed li").all_inner_texts()
    assert lines and all("kit_harington" in line for line in lines), lines
    tab.on("dialog", lambda dialog: dialog.accept())  # the page asks before removing
    tab.locator('#gallery [data-identity="biden"] button', has_text="Remove").click()
    expect(tab.locator('#gallery [data-identity="biden"]')).to_have_count(0)
    expect(tab.locator("#gallery-version")).to_contain_text("2 identities")


def _purge_a_dead_letter(tab: Tab, client: redis.Redis) -> None:
    """A frame the worker must refuse shows up with its reason; purging it empties the list."""
    hostile = {"v": 1, "camera": "evil", "group": "g1", "seq": 1, "ts": 0, "codec": "jpeg"}
    client.xadd(keys.frames("g1"), {**hostile, "w": 64, "h": 64, "img": b"not a jpeg"})
    row = tab.locator("#dead tbody tr", has_text="evil")
    expect(row).to_have_count(1, timeout=30_000)
    expect(row).to_contain_text("JPEG")
    row.locator("button", has_text="Purge").click()
    expect(tab.locator("#dead tbody")).to_have_text("No dead letters.")
    assert client.xlen(keys.dead("g1")) == 0
