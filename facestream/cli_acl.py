"""`facestream acl`: the deployment's Redis ACL file, a password per user, the commit function."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from facestream.recognizer.commit import COMMIT_FUNCTION, COMMIT_LIBRARY

from .acl import (
    SERVICE_SECRETS,
    AclError,
    CameraScope,
    check_strength,
    plan_users,
    render_acl,
    write_secrets,
)
from .cli_options import cli_settings, split_list
from .connect import Connections
from .topology import Topology

__all__ = ["acl_app"]

acl_app = typer.Typer(no_args_is_help=True, help="Redis users per role, group and camera.")


def _redis_version(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", text.strip())
    if match is None:
        raise AclError(f"--redis-version {text!r}: expected MAJOR.MINOR, e.g. 7.0")
    return int(match[1]), int(match[2])


@acl_app.command("generate")
def generate_command(
    secrets: Annotated[
        Path,
        typer.Option(
            help="Folder for the clear passwords, one <user>.password (0600) each, and the web "
            "page's and Grafana's secrets; existing ones are kept, so regenerating leaves "
            "running processes logged in."
        ),
    ],
    out: Annotated[
        Path | None, typer.Option(help="Write the ACL file here (default: standard output).")
    ] = None,
    redis_version: Annotated[
        str, typer.Option(help="Version of the servers that load the file.")
    ] = "7.0",
    camera_scope: Annotated[
        str,
        typer.Option(
            help="camera: a user per camera (least privilege); group: one per camera group, "
            "for an agent process that runs several cameras of a group."
        ),
    ] = "camera",
    replay: Annotated[
        str | None, typer.Option(help="Comma-separated groups that get a replay-<group> user.")
    ] = None,
    allow_weaker: Annotated[
        bool, typer.Option(help="On Redis 6, write the file although it restricts less.")
    ] = False,
) -> None:
    """Generate the ACL for the groups and cameras of the config (users.acl for --aclfile).

    Users: admin, worker, backend, web, bridge, camera-<id> (or camera-<group>),
    replay-<group>, health; the default user is off. Give each process its user and
    `redis.password_file`.
    """
    settings = cli_settings()
    if camera_scope not in ("camera", "group"):
        raise AclError(f"--camera-scope {camera_scope!r}: use camera or group")
    scope: CameraScope = "camera" if camera_scope == "camera" else "group"
    version = _redis_version(redis_version)
    users = plan_users(settings, version, scope, split_list(replay) or [])
    # Before any password file is written: a weaker file must be asked for.
    weaker = check_strength(users, version, allow_weaker)
    text = render_acl(users, write_secrets(users, secrets), version, allow_weaker)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
    for user in users:
        typer.echo(f"{user.role:8} {user.name}: {secrets / f'{user.name}.password'}", err=True)
    for name, purpose in SERVICE_SECRETS.items():
        typer.echo(f"{'secret':8} {secrets / name}: {purpose}", err=True)
    for line in weaker:
        typer.echo(f"WEAKER than on Redis 7: {line}", err=True)


@acl_app.command("functions")
def functions_command() -> None:
    """Load the workers' commit function (as admin) on every node of the config (on a cluster,
    every master); again after a FUNCTION FLUSH.

    Functions persist with the data (RDB/AOF) and reach replicas, so a restart keeps it.
    """
    for node, client in Connections(Topology(cli_settings())).every_node():
        # On a cluster redis-py sends FUNCTION LOAD to every master.
        client.function_load(COMMIT_LIBRARY, replace=True)
        typer.echo(f"loaded {COMMIT_FUNCTION} on {node.name}", err=True)
