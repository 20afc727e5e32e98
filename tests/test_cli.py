"""The CLI a user types: shared flags anywhere, --version, one line and an exit code per failure."""

from __future__ import annotations

import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from facestream import __version__
from facestream.cli_options import hoist_shared_options
from facestream.schemas import CameraHealth, Result, keys
from facestream.server import EmbeddedRedis, free_port

from .helpers import FACES, REPO, wait_for

PASSWORD = "s3cret-for-tests"


def facestream(
    *args: str, model_cache: Path | None = None, redis_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"FACESTREAM_MODELS__CACHE_DIR": str(model_cache)} if model_cache else {}
    if redis_url:  # a URL with a password: off the command line, where it draws a warning
        env["FACESTREAM_REDIS__URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "facestream", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def assert_one_line_failure(done: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: {text}"), done.stderr


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A redis-server with a password and a user that may only PING (for NOPERM)."""
    server = EmbeddedRedis(
        tmp_path_factory.mktemp("locked"), appendonly=False, extra_args=("--requirepass", PASSWORD)
    )
    with server:
        admin = redis.Redis(port=server.port, password=PASSWORD)
        admin.acl_setuser("pinger", enabled=True, passwords=["+pinger-pw"], commands=["+ping"])
        admin.close()
        yield server


def test_hoisting_keeps_order_and_stops_at_double_dash() -> None:
    argv = ["worker", "--groups", "a", "--redis-url", "redis://x", "--log-level=debug", "--", "-c"]
    assert hoist_shared_options(argv) == [
        "--redis-url", "redis://x", "--log-level=debug", "worker", "--groups", "a", "--", "-c",
    ]  # fmt: skip


def test_version() -> None:
    done = facestream("--version")
    assert done.returncode == 0
    assert done.stdout == f"facestream {__version__}\n"


def test_shared_flags_after_the_subcommand_win(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.xadd(keys.frames("hall"), {"v": "1"})
    # The flag after the subcommand is the one used, even with a dead URL before it.
    done = facestream(
        "--redis-url", "redis://127.0.0.1:1/0", "status", "--redis-url", redis_server.url, "--json"
    )
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert [g["group"] for g in report["groups"]] == ["hall"]
    assert report["groups"][0]["frames"] == 1
    client.close()


def test_unreachable_redis_is_exit_3() -> None:
    done = facestream("status", "--redis-url", "redis://127.0.0.1:1/0")
    assert_one_line_failure(done, 3, "cannot reach Redis (Error 111 connecting to 127.0.0.1:1")


def test_wrong_password_is_authentication_failed(locked_server: EmbeddedRedis) -> None:
    done = facestream("status", redis_url=f"redis://:wrong@127.0.0.1:{locked_server.port}/0")
    assert_one_line_failure(done, 4, "authentication failed")


def test_refused_acl_command_is_exit_4(locked_server: EmbeddedRedis) -> None:
    url = f"redis://pinger:pinger-pw@127.0.0.1:{locked_server.port}/0"
    done = facestream("status", redis_url=url)
    assert_one_line_failure(done, 4, "Redis refused a command for this ACL user")
    assert "pinger-pw" not in done.stderr


def test_tail_of_an_unknown_group_says_so(redis_server: EmbeddedRedis) -> None:
    redis.Redis.from_url(redis_server.url).flushall()
    done = facestream("results", "tail", "--group", "nowhere", "--redis-url", redis_server.url)
    assert_one_line_failure(done, 2, "no group nowhere on this Redis yet (known: none)")


def test_tail_and_status_skip_what_they_cannot_parse_and_print_no_escapes(
    redis_server: EmbeddedRedis,
) -> None:
    """A malformed result ended `results tail` with exit 2; escapes reached the terminal."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.xadd(keys.results("g1"), {"v": "1", "faces": "[1, 2"})
    good = Result(
        frame_id="1-1", camera="c\x1b[2J1", group="g1", seq=7, ts=0, hash="h", cached=False,
        faces=[], model="m",
    )  # fmt: skip
    client.xadd(keys.results("g1"), good.to_fields())  # type: ignore[arg-type]
    health = CameraHealth(camera="c1", group="g1", source="s", last_error="\x1b]0;owned\x07boom")
    client.set(keys.camera_health("c1"), health.model_dump_json())
    done = facestream(
        "results", "tail", "--group", "g1", "--from-start", "--count", "1",
        "--redis-url", redis_server.url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "skipping invalid result" in done.stderr
    assert re.search(r"^ +c1 #7 ", done.stdout), done.stdout
    done = facestream("status", "--redis-url", redis_server.url)
    assert done.returncode == 0, done.stderr
    assert "boom" in done.stdout and "\x1b" not in done.stdout and "\x07" not in done.stdout
    client.close()


def test_missing_photo_and_unwritable_export(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    missing = tmp_path / "nobody.jpg"
    done = facestream("gallery", "enroll", "x", str(missing), "--redis-url", redis_server.url)
    assert_one_line_failure(done, 2, f"{missing}: no such photo or folder")
    target = tmp_path / "no-such-dir" / "gallery.json"
    done = facestream("gallery", "export", str(target), "--redis-url", redis_server.url)
    assert_one_line_failure(done, 2, f"cannot write {target}: No such file or directory")


def test_enrolling_shows_progress_and_the_result(
    redis_server: EmbeddedRedis, model_cache: Path
) -> None:
    redis.Redis.from_url(redis_server.url).flushall()
    folder = FACES / "train" / "obama"
    done = facestream(
        "gallery", "enroll", "obama", str(folder), "--redis-url", redis_server.url,
        model_cache=model_cache,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "embedding obama" in done.stderr  # the progress label (a bar on a terminal)
    assert done.stdout == "enrolled obama from 2 photo(s); gallery version 1\n"


def test_published_schemas_match_the_models(tmp_path: Path) -> None:
    done = facestream("schema", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    published = REPO / "docs" / "schema"
    written = sorted(path.name for path in tmp_path.glob("*.schema.json"))
    assert written == sorted(path.name for path in published.glob("*.schema.json"))
    for name in written:  # every wire format, not a chosen few
        assert (published / name).read_text() == (tmp_path / name).read_text(), (
            f"docs/schema/{name} is stale: run `facestream schema --out docs/schema`"
        )


def test_invalid_group_name_is_one_line(redis_server: EmbeddedRedis) -> None:
    done = facestream(
        "replay", str(FACES / "test"), "--group", "east wing", "--camera-id", "c1",
        "--redis-url", redis_server.url,
    )  # fmt: skip
    assert_one_line_failure(done, 2, "invalid camera group 'east wing'")


def test_a_refused_command_is_one_line(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.set(keys.frames("east"), "not a stream")  # WRONGTYPE for every stream command
    done = facestream(
        "replay", str(FACES / "test"), "--group", "east", "--camera-id", "c1", "--fps", "0",
        "--redis-url", redis_server.url,
    )  # fmt: skip
    client.close()
    assert_one_line_failure(done, 4, "Redis refused a command (WRONGTYPE")


def test_status_shows_workers_quarantine_and_skips_hostile_keys(
    redis_server: EmbeddedRedis, model_cache: Path
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.xadd("fs:{a b}:frames", {"v": "1"})  # a name no group may have: skipped, not fatal
    client.xadd(keys.frames("hall"), {"v": "1"})
    client.set(keys.results("lobby"), "not a stream")  # WRONGTYPE: the worker quarantines it
    client.xadd(keys.frames("lobby"), {"v": "1"})
    client.set(keys.camera_health("junk"), "not a health report")  # a camera may write its own
    worker = subprocess.Popen(
        [sys.executable, "-m", "facestream", "worker", "--groups", "hall,lobby",
         "--consumer", "status-test", "--redis-url", redis_server.url],
        env={**os.environ, "FACESTREAM_MODELS__CACHE_DIR": str(model_cache)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def quarantined() -> bool:
            report = orjson.loads(
                facestream("status", "--json", "--redis-url", redis_server.url).stdout
            )
            return "lobby" in report["quarantined"]

        wait_for(quarantined, timeout_s=90, what="the worker to report the quarantine", poll_s=0.5)
        done = facestream("status", "--redis-url", redis_server.url)
    finally:
        worker.terminate()
        worker.wait(30)
        client.close()
    assert done.returncode == 0, done.stderr
    assert re.search(r"^QUARANTINED lobby: \w+: WRONGTYPE", done.stdout, re.M), done.stdout
    assert "status-test" in done.stdout
    assert "a b" not in done.stdout


def test_status_watch_refreshes_until_interrupted(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.xadd(keys.frames("hall"), {"v": "1"})
    watcher = subprocess.Popen(
        [sys.executable, "-m", "facestream", "status", "--watch", "0.2", "--json",
         "--redis-url", redis_server.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert watcher.stdout is not None
    first = orjson.loads(watcher.stdout.readline())
    client.xadd(keys.frames("hall"), {"v": "1"})  # the next refreshes see the second frame
    while orjson.loads(watcher.stdout.readline())["groups"][0]["frames"] != 2:
        pass
    watcher.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert watcher.wait(30) == 0
    assert first["groups"][0]["frames"] == 1
    client.close()


def test_embedded_redis_has_a_password_only_its_user_can_read(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "facestream", "redis", "--port", str(port),
         "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stderr is not None
        assert server.stdout.readline() == f"redis://127.0.0.1:{port}/0\n"  # no secret shown
        secret = tmp_path / "password"
        assert (
            server.stderr.readline() == f"export FACESTREAM_REDIS__URL=redis://127.0.0.1:{port}/0\n"
        )
        assert server.stderr.readline() == f"export FACESTREAM_REDIS__PASSWORD_FILE={secret}\n"
        assert secret.stat().st_mode & 0o777 == 0o600
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        url = f"redis://127.0.0.1:{port}/0"
        done = subprocess.run(
            [sys.executable, "-m", "facestream", "status", "--redis-url", url],
            env={**os.environ, "FACESTREAM_REDIS__PASSWORD_FILE": str(secret)},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


# -- expected failures at the CLI's boundary: one line, the documented code, no traceback -----


def test_a_port_that_is_not_redis_is_exit_3() -> None:
    """A web server where Redis should be answers in another protocol (InvalidResponse)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = facestream("status", "--redis-url", f"redis://127.0.0.1:{server.server_port}/0")
    finally:
        server.shutdown()
        server.server_close()
    assert_one_line_failure(done, 3, "cannot reach Redis: the server does not speak Redis")
    assert done.stderr.count("\n") == 1, done.stderr


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "facestream.yaml"
    config.write_text("redis:\n  url: [redis://127.0.0.1:6379\n")
    done = facestream("--config", str(config), "status")
    assert_one_line_failure(done, 2, f"config file {config} is not valid YAML: ")
    assert "line 3, column 1" in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_writing_into_a_missing_folder_is_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    done = facestream("schema", "--out", str(missing))
    assert_one_line_failure(done, 2, f"{missing}/frame.schema.json: No such file or directory")
    config = tmp_path / "groups.yaml"
    config.write_text("groups: [east]\n")
    done = facestream(
        "--config", str(config), "acl", "generate", "--secrets", str(tmp_path / "secrets"),
        "--out", str(missing / "acl"),
    )  # fmt: skip
    assert_one_line_failure(done, 2, f"{missing}/acl: No such file or directory")


def test_the_page_on_a_port_in_use_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "web.yaml"
    config.write_text("web:\n  token: a-token-long-enough-for-the-page-0123\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = facestream(
            "--config", str(config), "--redis-url", "redis://127.0.0.1:1/0", "web",
            "--port", str(port),
        )  # fmt: skip
    assert_one_line_failure(
        done, 2, f"cannot listen on 127.0.0.1:{port} (Address already in use): pick another"
    )
