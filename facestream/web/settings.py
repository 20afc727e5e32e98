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

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from facestream.schemas import FacestreamError

__all__ = ["WebSettings", "hash_password", "verify_password"]

# 2^15 × 8 × 128 bytes = 32 MiB and ~0.1 s per check: slow for a guesser, fine for a login.
_N, _R, _P, _KEY_BYTES = 2**15, 8, 1, 32
_HASH_RE = re.compile(r"^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")


class WebSettings(BaseModel):
    """`facestream web`: where it listens, who may log in, how much history it keeps."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        "127.0.0.1", description="Bind address; loopback by default (see docs/web.md for TLS)."
    )
    port: int = Field(8080, ge=1, le=65535, description="TCP port.")
    password_hash: str | None = Field(
        None, description="scrypt hash of the login password (`facestream web --hash-password`)."
    )
    token: SecretStr | None = Field(
        None,
        min_length=16,
        description="Bearer token for scripts and Prometheus; also accepted at the login form.",
    )
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

    @field_validator("password_hash")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        if value is not None and not _HASH_RE.fullmatch(value):
            raise ValueError("must read scrypt$N$r$p$salt$key (make it with --hash-password)")
        return value

    def require_credentials(self) -> None:
        """Refuse to serve faces to anyone: a password hash or a token must be set."""
        if self.password_hash is None and self.token is None:
            raise FacestreamError(
                "the web page shows faces and is locked: set web.password_hash "
                "(facestream web --hash-password) or web.token (FACESTREAM_WEB__TOKEN)"
            )

    @property
    def loopback(self) -> bool:
        """Whether only this machine can reach the bind address."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


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
