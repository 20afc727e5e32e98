"""Make redis-py clients from the settings: retries on transient errors only, TLS, ACL."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from .config import RedisSettings

__all__ = ["connect"]


def connect(settings: RedisSettings) -> redis.Redis:
    """A client for binary-safe stream work (responses stay bytes)."""
    options: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=3),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    if settings.username is not None:
        options["username"] = settings.username
    if settings.password is not None:
        options["password"] = settings.password.get_secret_value()
    if settings.url.startswith("rediss://"):
        options["ssl_ca_certs"] = str(settings.tls_ca_file) if settings.tls_ca_file else None
        options["ssl_certfile"] = str(settings.tls_cert_file) if settings.tls_cert_file else None
        options["ssl_keyfile"] = str(settings.tls_key_file) if settings.tls_key_file else None
    return redis.Redis.from_url(settings.url, **options)
