"""The page's first run: `facestream web --hash-password` and `facestream web --init`."""

from __future__ import annotations

import sys

import typer

from facestream.schemas import FacestreamError

from .config_files import LOCAL_CONFIG, new_password, write_web_config
from .web.settings import hash_password

__all__ = ["init_web_config", "print_password_hash"]

_QUOTING = (
    "in a shell, single-quote it, since the hash holds `$`: "
    "export FACESTREAM_WEB__PASSWORD_HASH='{hash}'"
)


def print_password_hash() -> None:
    """Hash a password typed twice on a terminal, or read once from piped stdin."""
    if sys.stdin.isatty():
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        # getpass warns (GetPassWarning) once per prompt when stdin is a pipe: read it plainly.
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise FacestreamError("no password given (type one, or pipe one line to stdin)")
    hashed = hash_password(password)
    typer.echo(hashed)
    typer.echo(f"web.password_hash in the config; {_QUOTING.format(hash=hashed)}", err=True)


def init_web_config(host: str, port: int) -> None:
    """Write ./facestream.yaml with a generated login and say how to use it."""
    password = new_password()
    write_web_config(LOCAL_CONFIG, hash_password(password))
    typer.echo(
        f"wrote {LOCAL_CONFIG} (mode 0600) with a login for the page; commands run in this\n"
        "folder read it (docs/configuration.md)\n"
        f"  password: {password}   (shown once; a new hash: facestream web --hash-password)\n"
        "start it:  facestream web   (Redis: the export lines `facestream redis` printed)\n"
        f"open:      http://{host}:{port}/ and log in with that password"
    )
