"""Secrets: where passwords come from, that they reach a real server intact, and never a log.

Every password below holds the characters that break a URL (`@`, `/`, `:`, `%`, `#`, `?`).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from facestream.acl import Grant, User, password_file, write_passwords
from facestream.config import ConfigError, RedisSettings, load_settings
from facestream.connect import connect
from facestream.schemas import keys
from facestream.schemas.urls import redact, redact_event, without_userinfo
from facestream.server import EmbeddedRedis, free_port

from .helpers import wait_for

PASSWORD = "p@ss/w:rd%2F#?x"
WRONG = "not-it"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    folder = tmp_path_factory.mktemp("secrets")
    digest = hashlib.sha256(PASSWORD.encode()).hexdigest()
    acl = folder / "users.acl"
    acl.write_text(f"user default off\nuser alice on #{digest} ~* +@all\n")
    with EmbeddedRedis(folder, appendonly=False, extra_args=("--aclfile", str(acl))) as started:
        yield started


def _url(server: EmbeddedRedis, userinfo: str = "") -> str:
    return f"redis://{userinfo}127.0.0.1:{server.port}/0"


def _logs_in(**redis_settings: object) -> bool:
    settings = load_settings(redis=redis_settings)
    return bool(connect(settings.redis).ping())


def test_password_from_the_environment(
    server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACESTREAM_REDIS__PASSWORD", PASSWORD)
    assert _logs_in(url=_url(server), username="alice")


def test_password_from_a_file(server: EmbeddedRedis, tmp_path: Path) -> None:
    secret = tmp_path / "alice.password"
    secret.write_text(PASSWORD + "\n")  # as `echo` writes it: the newline is not part of it
    assert _logs_in(url=_url(server), username="alice", password_file=secret)


def test_password_percent_encoded_in_the_url(server: EmbeddedRedis) -> None:
    assert _logs_in(url=_url(server, f"alice:{quote(PASSWORD, safe='')}@"))


def test_the_fields_win_over_the_url(server: EmbeddedRedis) -> None:
    # redis-py alone lets the URL's userinfo win over its keyword arguments.
    assert _logs_in(url=_url(server, f"mallory:{WRONG}@"), username="alice", password=PASSWORD)
    with pytest.raises(redis.AuthenticationError):
        _logs_in(url=_url(server, f"alice:{WRONG}@"))


def test_a_raw_password_that_breaks_the_url_is_named_not_shown() -> None:
    with pytest.raises(ConfigError, match=r"redis\.url: .*cannot be parsed") as refused:
        load_settings(redis={"url": "redis://alice:se/cret@node:6379/0"})
    assert "se/cret" not in str(refused.value)


def test_one_password_source_at_a_time(tmp_path: Path) -> None:
    secret = tmp_path / "p"
    secret.write_text("x")
    with pytest.raises(ConfigError, match=r"password or redis\.password_file, not both"):
        load_settings(redis={"password": "x", "password_file": secret})
    with pytest.raises(ConfigError, match=r"password_file .* is not a readable file"):
        load_settings(redis={"password_file": tmp_path / "missing"})


def test_generated_passwords_are_random_private_and_kept(tmp_path: Path) -> None:
    users = [User(name, "camera", (Grant(("ping",)),)) for name in ("a", "b")]
    first = write_passwords(users, tmp_path / "secrets")
    files = sorted((tmp_path / "secrets").iterdir())
    assert [f.name for f in files] == ["a.password", "b.password"]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    clear = [f.read_text().strip() for f in files]
    assert len(set(clear)) == 2 and all(len(p) >= 40 for p in clear)
    assert first["a"] == hashlib.sha256(clear[0].encode()).hexdigest()
    assert write_passwords(users, tmp_path / "secrets") == first  # regenerating keeps them


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/live", "rtsp://admin:***@10.0.0.5:554/live"),
        ("redis://:hunter2@node/0", "redis://:***@node/0"),
        ("redis://w:p@ss:w0rd@node:6379/0 refused", "redis://w:***@node:6379/0 refused"),
        ("https://hunter2@api.example/x", "https://***@api.example/x"),
        (
            "rtsp://cam/stream?user=admin&password=hunter2&channel=1",
            "rtsp://cam/stream?user=admin&password=***&channel=1",
        ),
        ("http://cam/snap.jpg?pwd=hunter2", "http://cam/snap.jpg?pwd=***"),
        ("http://cam/a?X-Amz-Signature=hunter2&t=1", "http://cam/a?X-Amz-Signature=***&t=1"),
        ("http://cam/a?auth_token=hunter2#f", "http://cam/a?auth_token=***#f"),
        ("cannot open /dev/video0: busy", "cannot open /dev/video0: busy"),
    ],
)
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown
    assert "hunter2" not in redact(text)


def test_without_userinfo_keeps_everything_else() -> None:
    url = "rtsp://admin:hunter2@[::1]:554/live?channel=1"
    assert without_userinfo(url) == "rtsp://[::1]:554/live?channel=1"
    assert without_userinfo("http://cam/snap.jpg") == "http://cam/snap.jpg"


def test_log_events_are_redacted_whole() -> None:
    error = OSError("cannot open rtsp://admin:hunter2@cam/live")
    event = redact_event(
        None,
        "warning",
        {
            "event": "source failed",
            "error": error,
            "source": "http://cam/snap?password=hunter2",
            "nested": {"urls": ["redis://w:hunter2@node/0"]},
            "exc_info": True,
            "count": 3,
        },
    )
    assert "hunter2" not in repr(event)
    assert event["error"] == "OSError: cannot open rtsp://admin:***@cam/live"
    assert event["exc_info"] is True and event["count"] == 3


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_no_credential_reaches_a_log_a_health_record_or_a_metric(
    server: EmbeddedRedis, tmp_path: Path
) -> None:
    """A camera agent with credentials in every place, against a source that keeps failing."""
    secret = "hunter2-camera"
    dead_port, metrics_port = free_port(), free_port()  # nothing listens on the camera's port
    source = (
        f"http://admin:{secret}@127.0.0.1:{dead_port}/snap.jpg"
        f"?user=admin&password={secret}&token={secret}"
    )
    cameras = [{"id": "leaky", "group": "g1", "source": source, "kind": "snapshot"}]
    environment = {
        **os.environ,
        "FACESTREAM_REDIS__URL": _url(server, f"alice:{quote(PASSWORD, safe='')}@"),
        "FACESTREAM_CAMERAS": json.dumps(cameras),
        "FACESTREAM_LOG__FORMAT": "json",
        "FACESTREAM_LOG__LEVEL": "debug",
    }
    command = [sys.executable, "-m", "facestream", "camera", "--metrics-port", str(metrics_port)]
    agent = subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True)
    admin = connect(RedisSettings(url=_url(server), username="alice", password=PASSWORD))
    try:
        health_key = keys.camera_health("leaky")
        wait_for(
            lambda: (
                b"last_error" in (admin.get(health_key) or b"")
                and json.loads(admin.get(health_key) or b"{}").get("last_error")
            ),
            what="the camera's health record with its error",
        )
        health = (admin.get(health_key) or b"").decode()
        metrics = _metrics(metrics_port)
    finally:
        agent.send_signal(signal.SIGTERM)
        _, logs = agent.communicate(timeout=30)
    assert "127.0.0.1" in health and "leaky" in metrics and "leaky" in logs  # all were seen
    for place, text in {"logs": logs, "metrics": metrics, "health record": health}.items():
        assert secret not in text, f"{place}: {text[:2000]}"
        assert PASSWORD not in text and quote(PASSWORD, safe="") not in text, place


def test_the_embedded_server_refuses_anyone_without_its_password(tmp_path: Path) -> None:
    password = password_file(tmp_path / "redis.password")
    with EmbeddedRedis(tmp_path / "data", appendonly=False, password=password) as embedded:
        anonymous = redis.Redis(port=embedded.port)
        with pytest.raises(redis.AuthenticationError):
            anonymous.config_set("dir", str(tmp_path))  # then SAVE: a file written as us
        assert redis.Redis.from_url(embedded.url).ping()
        assert password not in embedded.address
        command_lines = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True)
        assert str(embedded.port) in command_lines.stdout
        assert password not in command_lines.stdout  # in a 0600 file, not on a command line
        assert stat.S_IMODE((tmp_path / "data" / "auth.conf").stat().st_mode) == 0o600
