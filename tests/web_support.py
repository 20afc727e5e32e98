"""Shared by the web tests: the app served on loopback and a cookie-keeping HTTP client."""

from __future__ import annotations

import contextlib
import http.cookiejar
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import orjson
import pytest
import redis

from facestream.config import Settings
from facestream.recognizer import FaceEngine
from facestream.server import free_port
from facestream.web import WebSettings, hash_password
from facestream.web.app import build_server, create_app

from .helpers import FACES, wait_for

__all__ = [
    "PASSWORD",
    "TOKEN",
    "NoRedirect",
    "Page",
    "multipart",
    "page",
    "serving",
    "snapshot_jpeg",
    "web_settings",
]

PASSWORD = "correct horse battery staple"
TOKEN = "t" * 24


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

    def stream(self, query: str = "", token: str = TOKEN) -> list[tuple[str, Any]]:
        """The feed's server-sent events from its start, up to the first `status` (which
        follows the items the feed keeps): (kind, data) each."""
        request = urllib.request.Request(
            f"{self.url}/api/stream{query}", headers={"Authorization": f"Bearer {token}"}
        )
        events: list[tuple[str, Any]] = []
        kind = ""
        with self.opener.open(request, timeout=10) as response:
            for line in response:
                if line.startswith(b"event: "):
                    kind = line.removeprefix(b"event: ").strip().decode()
                elif line.startswith(b"data: "):
                    events.append((kind, orjson.loads(line.removeprefix(b"data: "))))
                    if kind == "status":
                        break
        return events

    def login(self, secret: str = PASSWORD) -> str:
        """Log in with the form; returns the CSRF token of the new session."""
        form = urllib.parse.urlencode({"password": secret}).encode()
        status, _, headers = self.call("POST", "/login", form)
        assert (status, headers["location"]) == (303, "/"), headers
        status, body, _ = self.call("GET", "/api/session")
        assert status == 200
        return str(orjson.loads(body)["csrf"])


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None  # let the test see the 303 itself


def multipart(fields: dict[str, str], files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body (fields, then `photos` files) and its content type."""
    boundary = secrets.token_hex(16)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    for filename, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="photos"; '
            f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'
        )
        parts.append(head.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def snapshot_jpeg(photo: Path = FACES / "test" / "obama1.jpg", side: int = 96) -> bytes:
    """A real JPEG the size of a track's snapshot, made from one of the bundled photos."""
    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    encoded = cv2.imencode(".jpg", cv2.resize(image, (side, side)))[1]
    return bytes(encoded.tobytes())


def web_settings(port: int) -> WebSettings:
    return WebSettings(
        port=port, password_hash=hash_password(PASSWORD), token=TOKEN, sample_s=0.2
    )  # fmt: skip


@contextlib.contextmanager
def serving(app: Any, web: WebSettings) -> Iterator[Page]:
    server = build_server(app, web)
    thread = threading.Thread(target=server.run, name="web-server")
    thread.start()
    try:
        wait_for(lambda: server.started, timeout_s=20, what="the web server to listen")
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
        yield Page(f"http://127.0.0.1:{web.port}", opener, app)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    assert not thread.is_alive(), "the web server did not stop"


@pytest.fixture()
def page(client: redis.Redis, settings: Settings, engine: FaceEngine) -> Iterator[Page]:
    web = web_settings(free_port())
    with serving(create_app(settings, web, engine=engine), web) as running:
        yield running
