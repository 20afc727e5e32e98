"""What `facestream redis` tells the shell, and which credential a refused login lacked."""

from __future__ import annotations

import shlex
from pathlib import Path
from urllib.parse import urlsplit

from facestream.schemas import FacestreamError

from .cli_options import cli_settings

__all__ = ["authentication_hint", "export_lines"]


def export_lines(url: str, password_file: Path | None) -> list[str]:
    """Shell lines that point the other commands, run in that shell, at this server."""
    lines = [f"export FACESTREAM_REDIS__URL={shlex.quote(url)}"]
    if password_file is not None:
        lines.append(f"export FACESTREAM_REDIS__PASSWORD_FILE={shlex.quote(str(password_file))}")
    return lines


def authentication_hint(message: str) -> str:
    """The failure line for a refused login: when no password was given, name the variables."""
    if not _password_given():
        return (
            f"authentication failed ({message}): no password was given; set "
            "FACESTREAM_REDIS__PASSWORD_FILE (the `export` line `facestream redis` printed) "
            "or FACESTREAM_REDIS__PASSWORD, or put it in --redis-url"
        )
    return (
        f"authentication failed ({message}); check the user and password "
        "(--redis-url, FACESTREAM_REDIS__PASSWORD, FACESTREAM_REDIS__PASSWORD_FILE or the config)"
    )


def _password_given() -> bool:
    """Whether this invocation's settings carry a Redis password (field, file or URL)."""
    try:
        redis_settings = cli_settings().redis
    except FacestreamError:
        return True  # cannot tell: give the general hint
    url_password = urlsplit(redis_settings.url).password
    return bool(redis_settings.password or redis_settings.password_file or url_password)
