"""What `results tail` and `events tail` share: where to read each group, printing a feed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import redis
import typer

from facestream.schemas import FacestreamError, keys

from .cli_wait import wait_for_redis
from .config import Settings
from .connect import Connections
from .feed import read_sources
from .status import known_groups
from .topology import Topology

__all__ = ["echo_feed", "tail_sources"]

T = TypeVar("T")


def tail_sources(settings: Settings, names: list[str]) -> dict[str, tuple[redis.Redis, list[str]]]:
    """Where to read the groups `names` (feed.read_sources), once Redis answers (a tail waits
    for it at start-up); FacestreamError names a group that no node has yet (a typo, or no
    camera has sent anything)."""
    connections = Connections(Topology(settings))
    return wait_for_redis(
        "tail", connections, connections.holding(names), lambda: _sources(connections, names)
    )


def _sources(
    connections: Connections, names: list[str]
) -> dict[str, tuple[redis.Redis, list[str]]]:
    sources = read_sources(connections, names)
    for name, (client, node_groups) in sources.items():
        unknown = [group for group in node_groups if not _has_streams(client, group)]
        if unknown:
            where = "this Redis" if len(sources) == 1 else f"node {name}"
            raise FacestreamError(
                f"no group {', '.join(unknown)} on {where} yet{_known(client)}; "
                "start a camera or replay for it first"
            )
    return sources


def _has_streams(client: redis.Redis, group: str) -> bool:
    """Whether the group has results, events or (where this user may look) frames here."""
    outputs = (keys.results(group), keys.events(group))
    try:
        return bool(client.exists(*outputs, keys.frames(group)))
    except redis.exceptions.NoPermissionError:  # the backend sees no frames (acl.py)
        return bool(client.exists(*outputs))


def _known(client: redis.Redis) -> str:
    """ " (known: …)" where this user may SCAN; the backend's ACL user may not (acl.py)."""
    try:
        return f" (known: {', '.join(known_groups(client)) or 'none'})"
    except redis.exceptions.NoPermissionError:
        return ""


def echo_feed(items: Iterable[T], line: Callable[[T], str], count: int | None) -> None:
    """Print one line per item until `count` of them, or Ctrl-C."""
    try:
        for shown, item in enumerate(items, start=1):
            typer.echo(line(item))
            if count is not None and shown >= count:
                break
    except KeyboardInterrupt:
        pass
