"""The gallery on every node: changed on the newest copy, then copied whole to the others.

Independent nodes share nothing, so each holds its own copy of `fs:{gallery}:*` and its workers
reload when that node's version changes. A change is made on the node with the newest version
and the result copied to every other node (key by key, in one transaction per node, version
last). A node down at the time is left behind: `status` shows the versions apart and
`facestream gallery sync` (or the next change) brings it up to date. On one Redis or a Redis
Cluster there is one copy, and this is a thin wrapper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

import redis
import structlog

from facestream.recognizer import Gallery
from facestream.schemas import GalleryError, keys

from .connect import Connections
from .redis_errors import REDIS_ERRORS, is_transient
from .topology import Node

__all__ = ["GalleryReplicas", "SyncReport"]

T = TypeVar("T")


log = structlog.get_logger("gallery")


@dataclass
class SyncReport:
    """Which nodes got the newest gallery, which had it already, which did not answer."""

    source: str
    version: int
    copied: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)  # node -> error

    def warning(self) -> str | None:
        """One line for the operator when a node was left behind, else None."""
        if not self.unreachable:
            return None
        return (
            f"gallery version {self.version} is not on {', '.join(sorted(self.unreachable))} "
            "(unreachable): run `facestream gallery sync` when it is back"
        )


class GalleryReplicas:
    """Gallery changes and reads across the topology's nodes."""

    def __init__(self, connections: Connections) -> None:
        self.connections = connections

    def change(self, make_change: Callable[[Gallery], T]) -> tuple[T, SyncReport]:
        """Apply `make_change` on the newest copy, then copy the gallery to every other node."""
        source, client = self._newest()
        outcome = make_change(Gallery(client))
        report = self._copy_from(source, client)
        if report.warning():
            log.warning("gallery not replicated everywhere", nodes=sorted(report.unreachable))
        return outcome, report

    def on_every_node(self, action: Callable[[Gallery], T]) -> dict[str, T]:
        """Run `action` on every node's copy (erasing must purge each node's cache); all nodes
        must answer, or nothing is done and GalleryError names the ones that did not."""
        clients = self._reachable()
        down = sorted(set(self.connections.topology.nodes) - clients.keys())
        if down:
            raise GalleryError(
                f"node(s) {', '.join(down)} unreachable: nothing changed; run it again when "
                "every node is back (an erase must reach every node's cache)"
            )
        return {name: action(Gallery(client)) for name, client in clients.items()}

    def erase(self, name: str, threshold: float) -> int:
        """Erase an identity everywhere: from every copy of the gallery and every node's cache
        and snapshots (all nodes must answer); returns the cache entries purged."""
        self.sync()  # every node must know the identity to find its faces in its own cache
        return sum(self.on_every_node(lambda gallery: gallery.erase(name, threshold)).values())

    def read(self) -> Gallery:
        """The newest copy, for listing and export."""
        return Gallery(self._newest()[1])

    def sync(self) -> SyncReport:
        """Copy the newest gallery to every node holding another version."""
        source, client = self._newest()
        return self._copy_from(source, client)

    def _reachable(self) -> dict[str, redis.Redis]:
        clients = {}
        for node, client in self._clients():
            try:
                client.ping()
            except REDIS_ERRORS as exc:
                if not is_transient(exc):
                    raise
                continue
            clients[node.name] = client
        return clients

    def _clients(self) -> list[tuple[Node, redis.Redis]]:
        return [(n, self.connections.node(n)) for n in self.connections.topology.nodes.values()]

    def _newest(self) -> tuple[Node, redis.Redis]:
        newest: tuple[int, Node, redis.Redis] | None = None
        last_error: Exception | None = None
        for node, client in self._clients():
            try:
                version = Gallery(client).version()
            except REDIS_ERRORS as exc:
                if not is_transient(exc):
                    raise
                last_error = exc
                continue
            if newest is None or version > newest[0]:
                newest = (version, node, client)
        if newest is None:
            assert last_error is not None
            raise last_error
        return newest[1], newest[2]

    def _copy_from(self, source: Node, source_client: redis.Redis) -> SyncReport:
        version = Gallery(source_client).version()
        report = SyncReport(source.name, version, current=[source.name])
        snapshot: list[tuple[bytes, dict[bytes, bytes] | bytes]] | None = None
        for node, client in self._clients():
            if node.name == source.name:
                continue
            try:
                if Gallery(client).version() == version:
                    report.current.append(node.name)
                    continue
                snapshot = snapshot if snapshot is not None else _read_gallery(source_client)
                _write_gallery(client, snapshot)
            except REDIS_ERRORS as exc:
                if not is_transient(exc):
                    raise
                report.unreachable[node.name] = str(exc)
                continue
            report.copied.append(node.name)
        if report.copied:
            log.info("gallery copied", source=source.name, to=report.copied, version=version)
        return report


def _read_gallery(client: redis.Redis) -> list[tuple[bytes, dict[bytes, bytes] | bytes]]:
    """Every gallery key and its value, the version last (it is what workers watch)."""
    found: list[tuple[bytes, dict[bytes, bytes] | bytes]] = []
    version: bytes | None = None
    for key in sorted(client.scan_iter(match=keys.GALLERY_KEYS)):
        kind = client.type(key)
        if kind == b"hash":
            found.append((key, cast(dict[bytes, bytes], client.hgetall(key))))
        elif kind == b"string":
            value = cast(bytes | None, client.get(key))
            if key == keys.GALLERY_VERSION.encode():
                version = value
            elif value is not None:
                found.append((key, value))
        else:
            raise GalleryError(f"gallery key {key!r} is a {kind!r}: cannot copy it")
    return [*found, (keys.GALLERY_VERSION.encode(), version or b"0")]


def _write_gallery(
    client: redis.Redis, snapshot: list[tuple[bytes, dict[bytes, bytes] | bytes]]
) -> None:
    """Replace the node's gallery with `snapshot` in one transaction."""
    stale = set(client.scan_iter(match=keys.GALLERY_KEYS)) - {key for key, _ in snapshot}
    pipe = client.pipeline(transaction=True)
    for key in stale:
        pipe.delete(key)
    for key, value in snapshot:
        pipe.delete(key)
        if isinstance(value, dict):
            if value:
                pipe.hset(key, mapping=value)  # type: ignore[arg-type]
        else:
            pipe.set(key, value)
    pipe.execute()
