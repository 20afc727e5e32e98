"""The `web:` config section and the password-hash format it stores (stdlib scrypt, no wheels).

A password hash reads `scrypt$<n>$<r>$<p>$<salt, base64>$<key, base64>`; make one with
`hash_password` (or `facestream web --hash-password`). scrypt from hashlib keeps the web part
free of platform wheels (argon2-cffi, bcrypt) while still being memory-hard.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from facestream.schemas import FacestreamError

__all__ = ["WebSettings", "hash_password", "verify_password"]

# 2^15 × 8 × 128 bytes = 32 MiB and ~0.1 s per check: slow for a guesser, fine for a login.
_N, _R, _P, _KEY_BYTES = 2**15, 8, 1, 32
_MIN_TOKEN = 16
_HASH_RE = re.compile(r"^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")


class WebSettings(BaseModel):
    """`facestream web`: where it listens, who may log in, how much history it keeps."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        "127.0.0.1", description="Bind address; loopback by default (see docs/web.md for TLS)."
    )
    port: int = Field(8080, ge=1, le=65535, description="TCP port.")
    node: str | None = Field(
        None,
        description="With `nodes:` in the config, the node whose groups the page shows (one "
        "page per node); its gallery changes still reach every node.",
    )
    password_hash: str | None = Field(
        None, description="scrypt hash of the login password (`facestream web --hash-password`)."
    )
    token: SecretStr | None = Field(
        None,
        min_length=16,
        description="Bearer token for scripts and Prometheus; also accepted at the login form.",
    )
    token_file: Path | None = Field(
        None, description="File holding the token (Docker/Kubernetes secrets); one line."
    )
    metrics_token: SecretStr | None = Field(
        None,
        min_length=16,
        description="Bearer token that may read /metrics and nothing else (for Prometheus).",
    )
    metrics_token_file: Path | None = Field(
        None, description="File holding the metrics token (Prometheus' credentials_file)."
    )
    api_token: SecretStr | None = Field(
        None,
        min_length=16,
        description="Bearer token of backends: the REST API (recognise, visits, people) and "
        "the snapshots and frames it names; no gallery or dead-letter changes, no page login.",
    )
    api_token_file: Path | None = Field(None, description="File holding the API token; one line.")
    session_secret: SecretStr | None = Field(
        None,
        min_length=16,
        description="Signs session cookies; unset: a random one per start (logins end then).",
    )
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="Login lifetime.")
    secure_cookies: bool = Field(
        False, description="Mark cookies Secure: set it when a TLS proxy serves the page."
    )
    sample_s: float = Field(
        2.0,
        ge=0.1,
        le=60,
        description="Seconds between status samples (each SCANs the keyspace for groups and "
        "cameras: raise it on a Redis with millions of keys).",
    )
    history_s: int = Field(600, ge=10, le=86_400, description="Seconds of history in charts.")
    feed_size: int = Field(500, ge=10, le=100_000, description="Recognitions kept for the feed.")
    max_upload_files: int = Field(20, ge=1, le=500, description="Most photos per enrolment.")
    auth_free_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description="Failed logins or bearer tokens in a row a client may make before it waits.",
    )
    auth_backoff_s: float = Field(
        1.0,
        gt=0,
        le=3600,
        description="First wait after the free failures; each further failure doubles it.",
    )
    auth_backoff_max_s: float = Field(
        300.0, gt=0, le=86_400, description="Longest wait a client is made to keep."
    )

    @field_validator("password_hash")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        if value is not None and not _HASH_RE.fullmatch(value):
            raise ValueError("must read scrypt$N$r$p$salt$key (make it with --hash-password)")
        return value

    @model_validator(mode="after")
    def _one_source_each(self) -> WebSettings:
        for name in ("token", "metrics_token", "api_token"):
            if getattr(self, name) is not None and getattr(self, f"{name}_file") is not None:
                raise ValueError(f"set web.{name} or web.{name}_file, not both")
            path = getattr(self, f"{name}_file")
            if path is not None and not path.is_file():
                raise ValueError(f"web.{name}_file {path} is not a readable file")
        return self

    def require_credentials(self) -> None:
        """Refuse to serve faces to anyone: a password hash or a token must be set."""
        if self.password_hash is None and self.token is None and self.token_file is None:
            raise FacestreamError(
                "the web page shows faces and is locked: set web.password_hash "
                "(facestream web --hash-password), web.token (FACESTREAM_WEB__TOKEN) "
                "or web.token_file"
            )

    def login_token(self) -> str | None:
        """The token that logs in and authorises scripts (field, then file), if any."""
        return _secret(self.token, self.token_file, "web.token_file")

    def scrape_token(self) -> str | None:
        """The token that may only read /metrics (field, then file), if any."""
        return _secret(self.metrics_token, self.metrics_token_file, "web.metrics_token_file")

    def backend_token(self) -> str | None:
        """The token that may use the REST API only (field, then file), if any."""
        return _secret(self.api_token, self.api_token_file, "web.api_token_file")

    @property
    def loopback(self) -> bool:
        """Whether only this machine can reach the bind address."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def _secret(value: SecretStr | None, path: Path | None, name: str) -> str | None:
    if value is not None:
        return value.get_secret_value()
    if path is None:
        return None
    # One line: a trailing newline from `echo secret > file` is not part of it.
    text = path.read_text().rstrip("\r\n")
    if len(text) < _MIN_TOKEN:
        raise FacestreamError(f"{name} {path} holds fewer than {_MIN_TOKEN} characters")
    return text


def hash_password(password: str) -> str:
    """A new salted scrypt hash of `password` in the format `web.password_hash` takes."""
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, _N, _R, _P)
    encoded = [base64.b64encode(part).decode() for part in (salt, key)]
    return f"scrypt${_N}${_R}${_P}${encoded[0]}${encoded[1]}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored` (compared in constant time)."""
    match = _HASH_RE.fullmatch(stored)
    if match is None:
        return False
    n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    salt, key = (base64.b64decode(match.group(i)) for i in (4, 5))
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(key)), key)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, size: int = _KEY_BYTES) -> bytes:
    # maxmem above OpenSSL's 32 MiB default, which 128·n·r of exactly 32 MiB would exceed.
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=size, maxmem=256 * n * r + 2**20
    )
