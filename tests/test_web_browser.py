"""The web page in Debian's headless Chromium, during a replay and a live camera agent."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import redis
from playwright.sync_api import Page as Tab
from playwright.sync_api import expect, sync_playwright

from facestream.config import Settings
from facestream.demo import build_clip
from facestream.recognizer import FaceEngine
from facestream.schemas import CameraHealth, Event, keys
from facestream.server import EmbeddedRedis, free_port
from facestream.web.app import create_app

from .helpers import FACES, REPO, enrol, require_system_dependency
from .web_support import PASSWORD, Page, page, serving, snapshot_jpeg, web_settings

__all__ = ["page"]  # the fixture, imported so that pytest finds it here

ARTIFACTS = REPO / "build" / "screenshots"  # kept for people to look at (CI uploads them)
SCREENSHOT = ARTIFACTS / "web-page.png"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


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
                _visits_first(tab)
                _tile_opens_full_size(tab)
                _tile_from_a_health_record(tab, client)
                _charts_are_readable(tab)
                _person_page(tab)
                _enrol_through_the_form(tab)
                _purge_a_dead_letter(tab, client)
                _see_a_visit_event(tab, client)
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
    pattern = (
        r"^obama · similarity 0\.\d{3} · detection 0\.\d\d · track \S+ · from (model|track|cache)"
    )
    assert re.match(pattern, hover), hover
    expect(tab.locator('[data-camera="replay-1"] .state')).to_have_text("no agent")
    live = tab.locator('[data-camera="live-1"]')
    expect(live.locator(".state")).to_have_text("streaming", timeout=30_000)
    expect(live.locator(".health")).to_contain_text("out ")
    _tile_shows(tab, "live-1", "biden")
    # The filter narrows the feed to one camera's recognitions.
    tab.check("#filters input[name=frames]")  # per-frame rows are behind a toggle
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


def _see_a_visit_event(tab: Tab, client: redis.Redis) -> None:
    """A visit event arrives in the (still filtered) feed with its snapshot's thumbnail."""
    snapshot = keys.snapshot("g1", "t-browser")
    kit = sorted((FACES / "train" / "kit_harington").iterdir())[0]
    client.set(snapshot, snapshot_jpeg(kit), ex=300)
    event = Event(type="identified", group="g1", camera="live-1", track="t-browser",
                  ts=int(time.time() * 1000), frame_id="1-0", identity="kit_harington",
                  similarity=0.66, snapshot=snapshot)  # fmt: skip
    client.xadd(keys.events("g1"), event.to_fields())
    line = tab.locator('#feed li[data-kind="event"]', has_text="identified kit_harington (0.66)")
    expect(line).to_be_visible(timeout=30_000)
    expect(line).to_contain_text("track t-browser")
    thumbnail = "#feed li[data-kind=event] img.snapshot"
    tab.wait_for_function(f"() => document.querySelector('{thumbnail}')?.naturalWidth === 96")


def _shot(tab: Tab, name: str, selector: str | None = None) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = str(ARTIFACTS / f"{name}.png")
    if selector is None:
        tab.screenshot(path=path, full_page=True)
    else:
        tab.locator(selector).screenshot(path=path)


def _visits_first(tab: Tab) -> None:
    """The feed's default is the visits, with their snapshots; per-frame rows are a toggle,
    and so is a filter that keeps the unknowns."""
    tab.uncheck("#filters input[name=frames]")
    tab.fill("#filters input[name=camera]", "")
    tab.click("#filters button")
    tab.wait_for_function(
        """() => [...document.querySelectorAll('#feed li[data-visit] img.snapshot')]
                   .some(img => img.naturalWidth > 0)""",
        timeout=90_000,
    )
    # A track's visit line (data-visit) has a dwell; a site-wide `seen` line has none.
    visit = tab.locator("#feed li[data-visit]", has=tab.locator("img.snapshot")).first
    expect(visit).to_contain_text(re.compile(r"g1/(live|replay)-1"))
    expect(visit.locator(".time")).to_have_text(re.compile(r"\d{1,2}:\d\d:\d\d"))
    expect(visit.locator(".dwell")).to_have_text(re.compile(r"\d+ s|\d+ min"))
    expect(tab.locator("#feed li[data-kind=recognition]").first).to_be_hidden()
    _shot(tab, "visits-feed", "#feed-section")
    tab.check("#filters input[name=frames]")
    expect(tab.locator("#feed li[data-kind=recognition]").first).to_be_visible(timeout=30_000)
    tab.check("#filters input[name=unknown]")
    expect(tab.locator('#feed li[data-known="true"]').first).to_be_hidden()
    tab.uncheck("#filters input[name=unknown]")
    tab.uncheck("#filters input[name=frames]")


def _tile_opens_full_size(tab: Tab) -> None:
    """A click on a tile shows its newest frame at full size, boxed and named; labels of
    close faces are placed so that none covers another; each tile shows its frame's age."""
    live = tab.locator('[data-camera="live-1"]')
    expect(live.locator(".age")).to_have_text(re.compile(r"^frame \d+ s ago"))
    live.locator(".frame").click()
    viewer = tab.locator("#viewer")
    expect(viewer).to_be_visible()
    tab.wait_for_function(
        """() => { const d = document.querySelector('#viewer');
                   return d.querySelector('img').naturalWidth === 640
                          && d.querySelectorAll('svg rect').length > 0; }"""
    )
    expect(viewer.locator("h3")).to_contain_text("live-1")
    boxes = viewer.locator("svg rect").count()
    expect(viewer.locator(".faces li")).to_have_count(boxes)
    _shot(tab, "tile-full-size", "#viewer")
    # Three faces side by side, closer than their names are wide: no two labels overlap.
    faces = [{"box": [x, 100, 40, 40], "identity": "kit_harington"} for x in (100, 150, 200)]
    spots = tab.evaluate("(faces) => placeLabels(faces, 20, 640, 360)", faces)
    for i, a in enumerate(spots):
        for b in spots[i + 1 :]:
            apart = (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                     or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"])  # fmt: skip
            assert apart, (a, b)
    tab.keyboard.press("Escape")
    expect(viewer).to_be_hidden()


def _tile_from_a_health_record(tab: Tab, client: redis.Redis) -> None:
    """A camera whose agent reports health but that sent no frame still gets a tile."""
    health = CameraHealth(camera="quiet-1", group="g1", source="rtsp://127.0.0.1/quiet",
                          state="connecting", updated_at=int(time.time() * 1000))  # fmt: skip
    client.set(keys.camera_health("quiet-1"), health.model_dump_json(), ex=60)
    quiet = tab.locator('[data-camera="quiet-1"]')
    expect(quiet.locator(".state")).to_have_text("connecting", timeout=30_000)
    expect(quiet.locator(".no-frame")).to_have_text("no frame since the page opened")
    expect(quiet).to_have_class(re.compile(r"\bstale\b"))


def _person_page(tab: Tab) -> None:
    """A name in the feed opens that person's page: where and when last seen, visits, snapshots."""
    link = tab.locator("#feed li[data-kind=event] a.person").first
    link.wait_for(timeout=60_000)
    name = link.inner_text()
    link.click()
    expect(tab.locator("body")).to_have_attribute("data-view", "person")
    person = tab.locator("#person")
    expect(person.locator("h3")).to_contain_text(name, timeout=30_000)
    expect(person.locator(".last-seen")).to_contain_text(re.compile(r"^Last seen at g1/"))
    expect(person.locator("table.visits tbody tr").first).to_be_visible()
    tab.wait_for_function(
        "() => [...document.querySelectorAll('#person img.snapshot')].some(i => i.naturalWidth > 0)"
    )
    _shot(tab, "person-page")
    # The search narrows by time: a range in the past has no visit, but last seen stays.
    tab.fill("#person-search input[name=from]", "2001-01-01T00:00")
    tab.fill("#person-search input[name=to]", "2001-01-02T00:00")
    tab.click("#person-search button")
    expect(person).to_contain_text("No visit in this range.")
    expect(person.locator(".last-seen")).to_contain_text("Last seen at g1/")
    tab.click("header nav a >> text=Live")
    expect(tab.locator("body")).to_have_attribute("data-view", "live")


def test_browser_says_when_redis_is_down(settings: Settings, tmp_path: Path) -> None:
    """Redis stops under an open page: a banner says so (not "connecting…"); back, it goes."""
    require_system_dependency(
        Path(CHROMIUM).is_file(), "Debian's chromium (apt-get install chromium)"
    )
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    own = redis.Redis(port=server.port, socket_connect_timeout=1, socket_timeout=2)
    web = web_settings(free_port())
    try:
        with (
            serving(create_app(settings, web, client=own), web) as running,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            tab = browser.new_page(viewport={"width": 1400, "height": 900})
            try:
                _log_in(tab, running.url)
                expect(tab.locator("#connection")).to_have_text("live", timeout=20_000)
                expect(tab.locator("#banner")).to_be_hidden()
                server.stop()  # a real outage
                banner = tab.locator("#banner")
                expect(banner).to_be_visible(timeout=20_000)
                expect(banner).to_contain_text(re.compile(r"^Redis is unreachable since "))
                expect(tab.locator("#connection")).to_have_text("Redis unreachable")
                expect(tab.locator("#cameras")).to_contain_text(
                    "Cameras unknown: Redis is unreachable."
                )
                _shot(tab, "redis-down")
                server.start()
                expect(banner).to_be_hidden(timeout=30_000)
                expect(tab.locator("#connection")).to_have_text("live")
            finally:
                browser.close()
    finally:
        own.close()
        server.stop()


def _log_in(tab: Tab, url: str) -> None:
    tab.goto(url + "/")
    tab.fill("input[name=password]", PASSWORD)
    tab.click("button[type=submit]")


def _charts_are_readable(tab: Tab) -> None:
    """Legends name each series under its chart; counts get whole-number ticks only."""
    legend = tab.locator("#charts-section figure", has=tab.locator("#chart-backlog")).locator("li")
    expect(legend).to_contain_text([re.compile(r"^g1 lag \d+$"), re.compile(r"^g1 pending \d+$")])
    throughput = tab.locator("#charts-section figure", has=tab.locator("#chart-throughput"))
    expect(throughput.locator("li").first).to_contain_text("g1 results/s")
    for top in (0.0, 0.4, 3.0, 7.0, 23.0, 1234.0):
        ticks = tab.evaluate("(top) => valueTicks(top, true)", top)
        assert ticks[0] == 0 and ticks[-1] >= max(top, 1), (top, ticks)
        assert all(float(t).is_integer() for t in ticks) and len(ticks) <= 7, (top, ticks)
    start = 1_764_600_000_123
    moments = tab.evaluate("([a, b]) => timeTicks(a, b, 5)", [start, start + 120_000])
    assert 2 <= len(moments) <= 5 and all(t % 30_000 == 0 for t in moments), moments
