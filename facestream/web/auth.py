"""Who may see the page: login (password or token), signed session cookies, CSRF on writes.

A session is a cookie `<expiry>.<nonce>.<mac>` signed with the session secret, so the server
keeps no session table; its CSRF token is a second MAC over the same cookie, sent back by the
page in `X-CSRF-Token` on every write. Scripts use `Authorization: Bearer <token>` instead:
such a header is never sent by a browser on its own, so it needs no CSRF. Prometheus gets a
token of its own, `web.metrics_token`, that reads /metrics and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from urllib.parse import urlsplit

import structlog
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    SimpleUser,
    UnauthenticatedUser,
)
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .settings import WebSettings, verify_password
from .throttle import Throttle

__all__ = [
    "API",
    "COOKIE",
    "CSRF_HEADER",
    "METRICS",
    "Guard",
    "SessionAuth",
    "Sessions",
    "login",
    "logout",
]

log = structlog.get_logger("web")
COOKIE = "facestream_session"
CSRF_HEADER = "x-csrf-token"
METRICS = "metrics"  # the scope /metrics asks for: every login has it, the metrics token only it
API = "api"  # the scope of the REST API for backends: every login has it, the API token only it
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What the browser may load and from where: only this origin, nothing inline but images.
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
        b"base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make forms send `Origin: null`
    (b"x-frame-options", b"DENY"),
]


class Sessions:
    """Issue and check signed session cookies and their CSRF tokens."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        secret = settings.session_secret
        self._key = (
            secret.get_secret_value().encode() if secret is not None else secrets.token_bytes(32)
        )
        # Read once: a secret file is not read again per request.
        self._token = _encoded(settings.login_token())
        self._metrics_token = _encoded(settings.scrape_token())
        self._api_token = _encoded(settings.backend_token())
        self.throttle = Throttle(
            settings.auth_free_failures, settings.auth_backoff_s, settings.auth_backoff_max_s
        )

    def issue(self) -> str:
        expiry = int(time.time() + self.settings.session_hours * 3600)
        body = f"{expiry}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._mac('session', body)}"

    def valid(self, cookie: str | None) -> bool:
        if not cookie or cookie.count(".") != 2:
            return False
        body, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._mac("session", body)):
            return False
        expiry = body.partition(".")[0]
        return expiry.isdigit() and int(expiry) > time.time()

    def csrf_token(self, cookie: str) -> str:
        return self._mac("csrf", cookie)

    def check_credentials(self, secret: str) -> bool:
        """A login: the password against its hash, or the token (never the metrics token)."""
        if self._token is not None and hmac.compare_digest(secret.encode(), self._token):
            return True
        stored = self.settings.password_hash
        return stored is not None and verify_password(secret, stored)

    def bearer_ok(self, authorization: str | None) -> bool:
        """`Authorization: Bearer <web.token>`: everything a login may do."""
        return _bearer_is(authorization, self._token)

    def metrics_bearer_ok(self, authorization: str | None) -> bool:
        """`Authorization: Bearer <web.metrics_token>`: /metrics only."""
        return _bearer_is(authorization, self._metrics_token)

    def api_bearer_ok(self, authorization: str | None) -> bool:
        """`Authorization: Bearer <web.api_token>`: the REST API only."""
        return _bearer_is(authorization, self._api_token)

    def _mac(self, purpose: str, body: str) -> str:
        return hmac.new(self._key, f"{purpose}:{body}".encode(), hashlib.sha256).hexdigest()


class SessionAuth(AuthenticationBackend):
    """Starlette authentication: a valid session cookie or bearer token is "authenticated";
    the metrics token has the `metrics` scope alone, which only /metrics asks for."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        authorization = conn.headers.get("authorization")
        if self.sessions.bearer_ok(authorization):
            return AuthCredentials(["authenticated", "bearer", METRICS, API]), SimpleUser("token")
        if self.sessions.metrics_bearer_ok(authorization):
            return AuthCredentials([METRICS]), SimpleUser("scraper")
        if self.sessions.api_bearer_ok(authorization):
            return AuthCredentials([API, "bearer"]), SimpleUser("backend")
        if self.sessions.valid(conn.cookies.get(COOKIE)):
            return AuthCredentials(["authenticated", METRICS, API]), SimpleUser("operator")
        return AuthCredentials(), UnauthenticatedUser()


class Guard:
    """ASGI middleware: security headers on every answer, a CSRF token on every cookie write,
    and back-off for clients that fail logins or bearer tokens (throttle.py).

    Writes authenticated by a bearer token pass without CSRF; the login form is checked by
    its Origin instead (there is no session yet to bind a token to).
    """

    def __init__(self, app: ASGIApp, sessions: Sessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self._throttled(request) or self._refusal(request)
        if refusal is not None:
            await refusal(scope, receive, self._with_headers(send))
            return
        await self.app(scope, receive, self._with_headers(send))

    def _throttled(self, request: Request) -> Response | None:
        """429 while this client waits out its failures; a wrong bearer token is a failure."""
        authorization = request.headers.get("authorization")
        bearer = authorization is not None and _scheme(authorization) == "bearer"
        if not bearer and not (request.url.path == "/login" and request.method == "POST"):
            return None
        client, throttle = client_of(request), self.sessions.throttle
        wait = throttle.wait_s(client, "bearer" if bearer else "login")
        if wait > 0:
            return JSONResponse(
                {"error": "too many failed attempts from this client; retry later"},
                status_code=429,
                headers={"retry-after": str(math.ceil(wait))},
            )
        if bearer and (
            self.sessions.bearer_ok(authorization) or self.sessions.api_bearer_ok(authorization)
        ):
            throttle.succeeded(client)
        elif bearer and not self.sessions.metrics_bearer_ok(authorization):
            throttle.failed(client, "bearer")  # the app answers 401
        return None

    def _refusal(self, request: Request) -> Response | None:
        if request.method in _SAFE_METHODS:
            return None
        if not _same_origin(request.headers):
            return JSONResponse({"error": "cross-origin write refused"}, status_code=403)
        authorization = request.headers.get("authorization")
        if request.url.path == "/login" or self.sessions.bearer_ok(authorization):
            return None
        if self.sessions.api_bearer_ok(authorization):  # its scope is checked by the route
            return None
        cookie = request.cookies.get(COOKIE)
        sent = request.headers.get(CSRF_HEADER, "")
        if cookie and hmac.compare_digest(sent.encode(), self.sessions.csrf_token(cookie).encode()):
            return None
        return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)

    def _with_headers(self, send: Send) -> Send:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        return send_with_headers


def _encoded(token: str | None) -> bytes | None:
    return token.encode() if token is not None else None


def client_of(request: Request) -> str:
    """The peer's address: who is throttled (behind a proxy, the proxy)."""
    return request.client.host if request.client else "?"


def _scheme(authorization: str) -> str:
    return authorization.partition(" ")[0].lower()


def _bearer_is(authorization: str | None, token: bytes | None) -> bool:
    scheme, _, value = (authorization or "").partition(" ")
    return (
        token is not None
        and scheme.lower() == "bearer"
        and hmac.compare_digest(value.strip().encode(), token)
    )


def _same_origin(headers: Headers) -> bool:
    """A browser names the page's origin on a write; it must be this host (absent: a script)."""
    origin = headers.get("origin")
    if origin is None:
        return True
    forwarded = headers.get("x-forwarded-host")  # behind a reverse proxy, the public name
    return urlsplit(origin).netloc in {headers.get("host"), forwarded}


async def login(request: Request) -> Response:
    """POST /login: the password (or token) in, a session cookie out."""
    sessions: Sessions = request.app.state.sessions
    form = await request.form()
    secret = form.get("password")
    client = client_of(request)
    # scrypt takes ~0.1 s of CPU: off the event loop, so other pages keep streaming.
    if not isinstance(secret, str) or not await run_in_threadpool(
        sessions.check_credentials, secret
    ):
        sessions.throttle.failed(client, "login")  # logged there, with the count
        return RedirectResponse("/login?failed=1", status_code=303)
    sessions.throttle.succeeded(client)
    log.info("logged in", client=client)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        sessions.issue(),
        max_age=int(sessions.settings.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=sessions.settings.secure_cookies,
    )
    return response


async def logout(request: Request) -> Response:
    """POST /logout: forget the cookie (it stays valid until it expires if copied elsewhere)."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, httponly=True, samesite="strict")
    return response
