"""The operator's first hour on the CLI: redis exports, the page's login, config files, groups."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from facestream.config import load_settings
from facestream.schemas import CameraHealth, keys
from facestream.server import EmbeddedRedis, free_port
from facestream.web.settings import verify_password

from .helpers import FACES, REPO


def facestream(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facestream", *args],
        cwd=cwd, env={**os.environ, **(env or {})}, input=stdin if stdin is not None else "",
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def assert_clean(done: subprocess.CompletedProcess[str], code: int = 0) -> None:
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture()
def embedded(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """`facestream redis` in the background: its URL (stdout) and its export lines (stderr)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "facestream", "redis", "--port", str(port),
         "--data-dir", str(tmp_path / "redis")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None and server.stderr is not None
    try:
        url = server.stdout.readline().strip()
        yield url, [server.stderr.readline().strip(), server.stderr.readline().strip()]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def test_the_export_lines_of_facestream_redis_work_in_a_shell(
    embedded: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, exports = embedded
    assert exports == [
        f"export FACESTREAM_REDIS__URL={url}",
        f"export FACESTREAM_REDIS__PASSWORD_FILE={tmp_path / 'redis' / 'password'}",
    ]
    status = shlex.join([sys.executable, "-m", "facestream", "status", "--json"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESTREAM_")}
    done = subprocess.run(
        ["bash", "-c", f"{exports[0]}; {exports[1]}; {status}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert_clean(done)
    assert orjson.loads(done.stdout)["groups"] == []
    # Only the URL exported: the failure names the variable that was missing.
    done = facestream("status", "--redis-url", url)
    assert_clean(done, 4)
    assert done.stderr.startswith("error: authentication failed (")
    assert "no password was given; set FACESTREAM_REDIS__PASSWORD_FILE" in done.stderr


def test_hash_password_from_a_pipe_warns_nothing_and_says_how_to_quote() -> None:
    done = facestream("web", "--hash-password", stdin="correct horse\n")
    assert_clean(done)
    hashed = done.stdout.strip()
    assert verify_password("correct horse", hashed)
    assert "GetPassWarning" not in done.stderr
    assert f"export FACESTREAM_WEB__PASSWORD_HASH='{hashed}'" in done.stderr
    done = facestream("web", "--hash-password", stdin="")
    assert_clean(done, 2)
    assert done.stderr == "error: no password given (type one, or pipe one line to stdin)\n"


def test_web_init_writes_a_login_that_the_config_reads(tmp_path: Path) -> None:
    done = facestream("web", "--init", cwd=tmp_path)
    assert_clean(done)
    written = tmp_path / "facestream.yaml"
    assert written.stat().st_mode & 0o777 == 0o600
    password = done.stdout.split("password: ", 1)[1].split()[0]
    assert "http://127.0.0.1:8080/" in done.stdout
    stored = load_settings(written).web.password_hash
    assert stored is not None and verify_password(password, stored)
    again = facestream("web", "--init", cwd=tmp_path)
    assert_clean(again, 2)
    assert again.stderr.startswith("error: facestream.yaml exists;")
    assert load_settings(written).web.password_hash == stored  # not replaced


def test_default_config_locations_and_their_precedence(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """./facestream.yaml, else $XDG_CONFIG_HOME/facestream/config.yaml; --config beats both."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.xadd(keys.frames("hall"), {"v": "1"})
    client.close()
    home = tmp_path / "xdg"
    (home / "facestream").mkdir(parents=True)
    (home / "facestream" / "config.yaml").write_text(f"redis:\n  url: {redis_server.url}\n")
    here = tmp_path / "here"
    here.mkdir()
    env = {"XDG_CONFIG_HOME": str(home)}
    done = facestream("status", "--json", cwd=here, env=env)
    assert_clean(done)  # the user config's Redis, not the default localhost:6379
    assert [g["group"] for g in orjson.loads(done.stdout)["groups"]] == ["hall"]
    (here / "facestream.yaml").write_text("redis:\n  url: redis://127.0.0.1:1/0\n")
    done = facestream("status", cwd=here, env=env)
    assert_clean(done, 3)  # ./facestream.yaml wins over the user config
    assert "127.0.0.1:1" in done.stderr
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text(f"redis:\n  url: {redis_server.url}\n")
    done = facestream("--config", str(explicit), "status", "--json", cwd=here, env=env)
    assert_clean(done)


def test_an_unknown_group_warns_and_group_delete_removes_it(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.xadd(keys.frames("east"), {"v": "1"})
    url = ("--redis-url", redis_server.url)
    replay = ("replay", str(FACES / "test"), "--camera-id", "c1", "--fps", "0", *url)
    done = facestream(*replay, "--group", "eats")
    assert_clean(done)
    assert done.stderr.startswith(
        "warning: group 'eats' is not in the config and not on Redis yet, so it will be "
        "created (known: east); if it is a typo, `facestream group delete eats` removes it\n"
    )
    assert "warning" not in facestream(*replay, "--group", "eats").stderr  # it exists now
    assert "warning" not in facestream(*replay, "--group", "east").stderr

    done = facestream("group", "delete", "eats", *url)
    assert_clean(done, 2)  # no terminal to ask on
    assert done.stderr.startswith("error: deleting group eats (1 keys) needs --yes")
    done = facestream("group", "delete", "eats", "--yes", *url)
    assert_clean(done)
    assert done.stdout.startswith("deleted group eats: 1 keys")
    assert client.keys("fs:{eats}:*") == []
    assert client.exists(keys.frames("east"))

    live = CameraHealth(camera="c7", group="east", source="rtsp://cam", state="streaming")
    client.set(keys.camera_health("c7"), live.model_dump_json(), ex=15)
    done = facestream("group", "delete", "east", "--yes", *url)
    assert_clean(done, 2)
    assert done.stderr.startswith("error: camera(s) c7 publish to group east: stop them first")
    assert client.exists(keys.frames("east"))
    done = facestream("group", "delete", "nowhere", "--yes", *url)
    assert_clean(done, 2)
    assert done.stderr == "error: no group nowhere on Redis (known: east)\n"
    client.close()


def test_status_ages_errors_splits_skipped_from_shed_and_explains_lag(
    redis_server: EmbeddedRedis,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.xadd(keys.frames("hall"), {"v": "1"})  # no worker yet: Redis knows no lag
    three_min_ago = int(time.time() * 1000) - 185_000
    health = CameraHealth(
        camera="c1", group="hall", source="rtsp://cam", state="streaming", frames_in=68_100,
        frames_out=55, dropped=68_045, skipped=68_040, shed=4, last_error="workers are behind",
        last_error_at=three_min_ago,
    )  # fmt: skip
    client.set(keys.camera_health("c1"), health.model_dump_json(), ex=15)
    done = facestream("status", "--redis-url", redis_server.url)
    assert_clean(done)
    lines = done.stdout.splitlines()
    assert re.search(r"^hall +1 +0 +\? +0 ", done.stdout, re.M), done.stdout
    assert any(line.startswith("lag ?: Redis cannot say how many frames") for line in lines)
    row = next(line for line in lines if line.startswith("c1 "))
    assert row.split()[5:9] == ["68040", "4", "1", "0"]  # skipped, shed, lost, reconnects
    assert row.endswith("workers are behind (3 min ago)")
    assert any(line.startswith("skipped: frames the fps limit replaced") for line in lines)
    client.close()


def test_status_watch_shows_when_it_was_taken(redis_server: EmbeddedRedis) -> None:
    redis.Redis.from_url(redis_server.url).flushall()
    watcher = subprocess.Popen(
        [sys.executable, "-m", "facestream", "status", "--watch", "0.2",
         "--redis-url", redis_server.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert watcher.stdout is not None
    first = watcher.stdout.readline()
    watcher.send_signal(signal.SIGINT)
    assert watcher.wait(30) == 0
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+, every 0.2 s \(Ctrl-C stops\)\n", first
    )


@pytest.mark.timeout(300)
def test_demo_keep_running_leaves_its_data_up_until_ctrl_c(model_cache: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "facestream", "demo", "--keep-running"],
        env={**os.environ, "FACESTREAM_MODELS__CACHE_DIR": str(model_cache)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert demo.stdout is not None
    try:
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if "facestream web --init && facestream web" in line:
                break
        text = "".join(lines)
        assert "frames      80 of 80 sent" in text
        assert "next steps\n  facestream demo --keep-running" in text
        exports = dict(
            line.strip().removeprefix("export ").split("=", 1)
            for line in lines
            if line.strip().startswith("export ")
        )
        assert sorted(exports) == ["FACESTREAM_REDIS__PASSWORD_FILE", "FACESTREAM_REDIS__URL"]
        done = facestream("status", "--json", env=exports)
        assert_clean(done)
        (group,) = orjson.loads(done.stdout)["groups"]
        assert group["group"] == "demo" and group["results"] == 80
    finally:
        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = demo.wait(60)
    assert code == 0, demo.stderr.read() if demo.stderr else ""
    # This demo's own folder: another test may run a demo of its own at the same time.
    found = re.search(r"data in (\S+)\)", text)
    assert found is not None, text
    work = Path(found.group(1)).parent
    assert work.name.startswith("facestream-demo-"), work
    leftover = subprocess.run(["pgrep", "-af", str(work)], capture_output=True)
    assert leftover.stdout == b""
