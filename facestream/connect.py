"""Make redis-py clients from the settings: retries on transient errors only, TLS, ACL."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from facestream.schemas.urls import without_userinfo

from .config import RedisSettings

__all__ = ["connect"]


def connect(settings: RedisSettings) -> redis.Redis:
    """A client for binary-safe stream work (responses stay bytes); bad credentials raise."""
    options: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=3),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    # redis-py lets the URL's userinfo win over keyword arguments; here the fields win, so the
    # URL is passed without it and its parts come last.
    url = urlsplit(settings.url)
    username = settings.username or (unquote(url.username) if url.username else None)
    password = settings.secret() or (unquote(url.password) if url.password else None)
    if username:
        options["username"] = username
    if password is not None:
        options["password"] = password
    if settings.url.startswith("rediss://"):
        options.update(_tls_options(settings))
    client = redis.Redis.from_url(without_userinfo(settings.url), **options)
    _refuse_bad_credentials(client)
    return client


def _tls_options(settings: RedisSettings) -> dict[str, Any]:
    """Verify the server's chain and host name (redis-py leaves the name unchecked by default);
    present a client certificate where one is configured."""

    def path(file: Path | None) -> str | None:
        return str(file) if file is not None else None

    return {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": settings.tls_check_hostname,
        "ssl_ca_certs": path(settings.tls_ca_file),
        "ssl_certfile": path(settings.tls_cert_file),
        "ssl_keyfile": path(settings.tls_key_file),
    }


def _refuse_bad_credentials(client: redis.Redis) -> None:
    """Fail now on a wrong password, instead of retrying it forever as an outage later.

    An unreachable or loading server is not an error here: every role rides out outages.
    """
    try:
        client.ping()
    except redis.AuthenticationError:
        client.close()
        raise
    except (redis.ConnectionError, redis.TimeoutError):
        pass
