"""Where the CLI finds its YAML config, and the minimal one `facestream web --init` writes.

Precedence, first match wins (one file is read, never a merge of several): `--config FILE`,
then `FACESTREAM_CONFIG`, then `./facestream.yaml`, then `~/.config/facestream/config.yaml`
(`$XDG_CONFIG_HOME/facestream/config.yaml` where that is set). Within the settings, flags beat
`FACESTREAM_*` variables, which beat the file, which beats the defaults (`config.py`).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import yaml

from facestream.schemas import FacestreamError

__all__ = [
    "LOCAL_CONFIG",
    "default_config_file",
    "new_password",
    "user_config_file",
    "write_web_config",
]

LOCAL_CONFIG = Path("facestream.yaml")


def user_config_file() -> Path:
    """`$XDG_CONFIG_HOME/facestream/config.yaml`, by default under `~/.config`."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "facestream" / "config.yaml"


def default_config_file() -> Path | None:
    """The config read when neither `--config` nor `FACESTREAM_CONFIG` names one, if any."""
    for candidate in (LOCAL_CONFIG, user_config_file()):
        if candidate.is_file():
            return candidate
    return None


def write_web_config(target: Path, password_hash: str) -> None:
    """Write a new config (0600) holding only the page's login; refuse to replace a file."""
    written = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = (
        f"# Written by `facestream web --init` on {written}.\n"
        "# Every section and field: docs/configuration.md.\n"
    )
    body = yaml.safe_dump({"web": {"password_hash": password_hash}})
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: an existing config (perhaps with other sections) is never overwritten.
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise FacestreamError(
            f"{target} exists; add web.password_hash to it (facestream web --hash-password)"
        ) from None
    except OSError as exc:
        raise FacestreamError(f"cannot write {target}: {exc.strerror}") from exc
    with os.fdopen(descriptor, "w") as file:
        file.write(header + body)


def new_password() -> str:
    """A login password for `web --init`: 16 random URL-safe characters."""
    return secrets.token_urlsafe(12)
