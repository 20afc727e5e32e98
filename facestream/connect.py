"""Make redis-py clients from the settings: retries on transient errors only, TLS, ACL."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

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
    if settings.username is not None:
        options["username"] = settings.username
    if settings.password is not None:
        options["password"] = settings.password.get_secret_value()
    if settings.url.startswith("rediss://"):
        options["ssl_ca_certs"] = str(settings.tls_ca_file) if settings.tls_ca_file else None
        options["ssl_certfile"] = str(settings.tls_cert_file) if settings.tls_cert_file else None
        options["ssl_keyfile"] = str(settings.tls_key_file) if settings.tls_key_file else None
    client = redis.Redis.from_url(settings.url, **options)
    _refuse_bad_credentials(client)
    return client


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
