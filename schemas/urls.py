"""Credentials in URLs: the one place that hides them (logs, health, errors) or strips them.

Two places carry secrets in the URLs facestream handles: the userinfo (`rtsp://admin:pw@cam`,
`redis://worker:pw@node`) and the query string (`rtsp://cam/stream?user=admin&password=pw`,
the way several camera makers take them). `redact` hides both wherever a URL appears in a
text, so it can be applied to a whole log line or exception message, not only to a bare URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MASK", "redact", "redact_event", "without_userinfo"]

#: What a hidden secret is replaced with.
MASK = "***"

# scheme://userinfo@ — the userinfo runs to the last "@" before the path, so an unencoded "@"
# in a password is hidden whole rather than half.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#]*)@")
# A query or matrix parameter whose name says it holds a secret (password, passwd, pwd, pass,
# token, secret, key, auth, sig, credential; any case, any prefix such as "x-amz-signature").
_SECRET_PARAMETER = re.compile(
    r"(?P<name>[?&;][^=&#\s]*?(?:pass|pwd|token|secret|key|auth|sig|credential)[^=&#\s]*=)"
    r"(?P<value>[^&#\s]*)",
    re.IGNORECASE,
)


def _hide_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    # Keep the user name (which account, for the operator); a userinfo without a colon may be
    # a bare token (https://TOKEN@host), so it is hidden whole.
    shown = f"{user}:{MASK}" if colon else MASK
    return f"{match['scheme']}{shown}@"


def redact(text: str) -> str:
    """`text` with every URL password, userinfo token and secret query parameter masked."""
    if "://" not in text and "=" not in text:
        return text  # the common case: nothing that could hold a credential
    text = _USERINFO.sub(_hide_userinfo, text)
    return _SECRET_PARAMETER.sub(lambda m: f"{m['name']}{MASK}", text)


def without_userinfo(url: str) -> str:
    """`url` without `user:password@` (to open it with the credentials passed apart)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal loses its brackets in .hostname
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def redact_event(_logger: object, _method: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """A structlog processor: `redact` every text value of a log event (exceptions included).

    Put it after the processor that formats exceptions and before the renderer, so that the
    traceback text is redacted too.
    """
    # exc_info is left for the exception formatter (a tuple or True, not text yet).
    return {
        name: value if name == "exc_info" else _redact_value(value) for name, value in event.items()
    }


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    if isinstance(value, Mapping):
        return {name: _redact_value(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value
