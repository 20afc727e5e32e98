"""Camera groups from the CLI: warn about a group nobody knows, `facestream group delete G`.

A group exists as soon as something writes to `fs:{G}:…`, so a typo in `--group` would
otherwise make a new group that stays in `status`, the page and the charts.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Annotated

import redis
import typer

from facestream.schemas import FacestreamError, keys

from .cli_options import cli_settings
from .config import Settings
from .connect import Connections
from .status import collect_site_status, known_groups
from .topology import Topology

__all__ = ["configured_groups", "group_app", "warn_unknown_groups"]

group_app = typer.Typer(no_args_is_help=True, help="Camera groups: delete one (admins).")

_UNLINK_BATCH = 500


def configured_groups(settings: Settings) -> set[str]:
    """Every group the config names: `groups:`, the nodes' groups and the cameras' groups."""
    named = set(settings.groups) | {camera.group for camera in settings.cameras}
    for node in settings.nodes.values():
        named.update(node.groups, node.draining)
    return named


def warn_unknown_groups(
    settings: Settings, connections: Connections, groups: Iterable[str]
) -> list[str]:
    """Warn (stderr) about each group neither the config nor Redis knows; returns them."""
    configured = configured_groups(settings)
    unknown = []
    for group in groups:
        if group in configured:
            continue
        try:
            client = connections.for_group(group)
        except FacestreamError:
            continue  # an unmapped or invalid group: the command itself says so
        if client.exists(keys.frames(group), keys.results(group)):  # one slot: {group}
            continue
        known = ", ".join(sorted(configured | set(known_groups(client)))) or "none"
        typer.echo(
            f"warning: group {group!r} is not in the config and not on Redis yet, so it will "
            f"be created (known: {known}); if it is a typo, `facestream group delete {group}` "
            "removes it",
            err=True,
        )
        unknown.append(group)
    return unknown


@group_app.command("delete")
def group_delete(
    group: Annotated[str, typer.Argument(help="The camera group to delete.")],
    yes: Annotated[bool, typer.Option("--yes", help="Delete without asking.")] = False,
) -> None:
    """Delete every key of a group (frames, results, dead letters, events, cache, tracks).

    Refused while a camera publishes to it (its health record in fs:cameras:* is live).
    """
    keys.validate_group(group)
    connections = Connections(Topology(cli_settings()))
    site = collect_site_status(connections)
    down = [node.node for node in site.nodes if not node.up]
    if down:  # a camera whose health record is there would go unseen
        raise FacestreamError(
            f"cannot check that no camera publishes to group {group}: {', '.join(down)} "
            "unreachable; try again once every node answers"
        )
    live = sorted(h.camera for h in site.cameras if h.group == group)
    if live:
        raise FacestreamError(
            f"camera(s) {', '.join(live)} publish to group {group}: stop them first "
            "(their health records in fs:cameras:* expire 15 s after they stop)"
        )
    client = connections.for_group(group)
    doomed = sorted(client.scan_iter(match=f"fs:{{{group}}}:*", count=_UNLINK_BATCH))
    if not doomed:
        raise FacestreamError(f"no group {group} on Redis (known: {_known(client)})")
    if not yes:
        if not sys.stdin.isatty():
            raise FacestreamError(f"deleting group {group} ({len(doomed)} keys) needs --yes")
        typer.confirm(f"delete group {group} and its {len(doomed)} keys?", abort=True)
    for start in range(0, len(doomed), _UNLINK_BATCH):
        # One slot (the `{group}` tag), so a multi-key UNLINK works on a cluster too.
        client.unlink(*doomed[start : start + _UNLINK_BATCH])
    typer.echo(
        f"deleted group {group}: {len(doomed)} keys; a worker started with --groups {group} "
        "would make it again"
    )


def _known(client: redis.Redis) -> str:
    return ", ".join(known_groups(client)) or "none"
