"""The page against a guesser and a bomb: back-off on failed logins and tokens, uploads capped
while they stream, photos measured before they are decoded, /readyz quiet to strangers."""

from __future__ import annotations

import select
import socket
import urllib.parse
from collections.abc import Iterator

import orjson
import pytest
import redis

from facestream.config import Settings
from facestream.recognizer import FaceEngine
from facestream.schemas import FrameLimits
from facestream.server import free_port
from facestream.web import WebSettings
from facestream.web.app import create_app

from .helpers import FACES, png_header, wait_for
from .web_support import PASSWORD, TOKEN, Page, multipart, page, serving, web_settings

__all__ = ["page"]  # the fixture, imported so that pytest finds it here


@pytest.fixture()
def strict(client: redis.Redis, settings: Settings, engine: FaceEngine) -> Iterator[Page]:
    """The page with a short back-off and one photo of at most 64 KiB per enrolment."""
    web = web_settings(free_port()).model_copy(
        update={"auth_free_failures": 2, "auth_backoff_s": 0.2, "max_upload_files": 1}
    )
    small = settings.model_copy(update={"limits": FrameLimits(max_bytes=64 * 1024)})
    with serving(create_app(small, web, engine=engine), web) as running:
        yield running


def _metric(running: Page, line: str) -> bool:
    text = running.call("GET", "/metrics", Authorization=f"Bearer {TOKEN}")[1].decode()
    return line in text


def test_wrong_bearer_tokens_are_logged_counted_and_backed_off(strict: Page) -> None:
    wrong = {"Authorization": "Bearer " + "x" * 24}
    assert [strict.call("GET", "/api/overview", **wrong)[0] for _ in range(3)] == [401] * 3
    # Past the free failures the client waits; meanwhile even the right token is not checked.
    status, _, headers = strict.call("GET", "/api/overview", **wrong)
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert strict.call("GET", "/api/overview", Authorization=f"Bearer {TOKEN}")[0] == 429
    wait_for(
        lambda: strict.call("GET", "/api/overview", Authorization=f"Bearer {TOKEN}")[0] == 200,
        timeout_s=10,
        what="the back-off to end",
    )
    assert _metric(strict, 'facestream_web_auth_failures_total{kind="bearer"} 3.0')
    assert _metric(strict, 'facestream_web_auth_throttled_total{kind="bearer"}')
    assert not _metric(strict, 'facestream_web_auth_throttled_total{kind="bearer"} 0.0')


def test_failed_logins_back_off(strict: Page) -> None:
    def log_in(secret: str) -> tuple[int, str]:
        form = urllib.parse.urlencode({"password": secret}).encode()
        status, _, headers = strict.call("POST", "/login", form)
        return status, headers.get("location", "")

    assert [log_in("guess") for _ in range(3)] == [(303, "/login?failed=1")] * 3
    assert log_in(PASSWORD)[0] == 429  # not even checked while it waits
    wait_for(lambda: log_in(PASSWORD) == (303, "/"), timeout_s=10, what="the back-off to end")
    assert _metric(strict, 'facestream_web_auth_failures_total{kind="login"} 3.0')


def test_a_chunked_upload_is_refused_at_the_cap(strict: Page) -> None:
    """Without a length the body is counted as it streams: the page answers 413 once past
    the cap, long before the (endless) body would end."""
    host, port = urllib.parse.urlsplit(strict.url).netloc.split(":")
    sent, limit = 0, 64 * 1024 * 1024
    chunk = b"x" * 65536
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /api/gallery HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        part = b'--b\r\nContent-Disposition: form-data; name="photos"; filename="a"\r\n\r\n'
        conn.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
        reply = b""
        while sent < limit and not reply:
            if select.select([conn], [], [], 0)[0]:
                reply = conn.recv(65536)
                break
            try:
                conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        while not reply.endswith(b"}"):
            more = conn.recv(65536)
            if not more:
                break
            reply += more
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
    assert sent < limit
    assert reply.endswith(b'{"error":"upload larger than the photo limits"}')


def test_a_photo_declaring_too_many_pixels_is_refused_before_decoding(
    client: redis.Redis, settings: Settings, engine: FaceEngine
) -> None:
    """The header says 20000x20000; its data would not even decode, so only a check of the
    header can give this answer (a decode first would say "not a readable image")."""
    web = web_settings(free_port())
    with serving(create_app(settings, web, engine=engine), web) as running:
        body, kind = multipart(
            {"name": "bomb"},
            [
                ("bomb.png", png_header(20000, 20000)),
                ("obama.jpg", (FACES / "train" / "obama" / "obama.jpg").read_bytes()),
            ],
        )
        status, reply, _ = running.call(
            "POST",
            "/api/gallery",
            body,
            **{"Content-Type": kind, "Authorization": f"Bearer {TOKEN}"},
        )
    assert status == 422, reply
    errors = orjson.loads(reply)["errors"]
    assert errors == [
        {
            "file": "bomb.png",
            "error": "20000x20000 = 400000000 pixels, over limits.max_pixels (16777216); "
            "scale it down first",
        }
    ]
    assert client.hlen("fs:{gallery}:identities") == 0


def test_readyz_shows_the_error_only_to_a_login(settings: Settings) -> None:
    web: WebSettings = web_settings(free_port())
    nowhere = redis.Redis(port=free_port(), socket_connect_timeout=1)
    with serving(create_app(settings, web, client=nowhere), web) as running:
        wait_for(lambda: running.app.state.monitor.error is not None, 10, "a failed sample")
        status, body, _ = running.call("GET", "/readyz")
        assert (status, orjson.loads(body)) == (503, {"status": "not ready"})
        status, body, _ = running.call("GET", "/readyz", Authorization=f"Bearer {TOKEN}")
        assert status == 503
        assert orjson.loads(body)["error"].startswith("ConnectionError: Error 111 connecting")


def test_the_page_counts_unusable_identities_and_sabotaged_streams(
    page: Page, client: redis.Redis
) -> None:
    client.hset("fs:{gallery}:identities", "zero", orjson.dumps({"name": "zero"}))
    client.incr("fs:{gallery}:version")
    client.xadd("fs:{g1}:frames", {"v": "1"}, id=f"{2**64 - 1}-{2**64 - 1}")
    fault = 'facestream_stream_fault{fault="last-id",group="g1",stream="fs:{g1}:frames"} 1.0'
    wait_for(lambda: _metric(page, fault), 10, "the stream fault on /metrics")
    assert _metric(page, "facestream_gallery_identities_unusable 1.0")
