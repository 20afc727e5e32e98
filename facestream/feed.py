"""One feed from many sources (a node, or a slot of a cluster), each read in its own thread.

A source hands over its next item only once the caller has finished with the previous one, so
a subscriber that acknowledges an entry when asked for the next (ResultSubscriber) still
acknowledges only what the caller's loop body ran for. Each source keeps its own position (a
consumer group per node), so the merged feed resumes per node after a restart.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any, Generic, TypeVar

import redis
import structlog

from .connect import Connections
from .subscriber import StreamSubscriber

__all__ = ["MergedFeed", "read_sources", "subscribe"]

T = TypeVar("T")

_POLL_S = 0.2  # how often an idle merge looks at `stop`

log = structlog.get_logger("feed")


class MergedFeed(Generic[T]):
    """Items of every source, in the order they arrive; per source, in the source's order."""

    def __init__(
        self,
        sources: Mapping[str, Callable[[threading.Event], Iterator[T]]],
        stop: threading.Event | None = None,
    ) -> None:
        """`sources`: name -> a function that, given the stop event, yields that source's items."""
        self.sources = dict(sources)
        self.stop = stop or threading.Event()
        self._ready: queue.Queue[tuple[str, T | BaseException | None]] = queue.Queue()
        self._handled = {name: threading.Event() for name in self.sources}

    def __iter__(self) -> Iterator[T]:
        threads = [
            threading.Thread(target=self._pump, args=(name,), name=f"feed-{name}", daemon=True)
            for name in self.sources
        ]
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running and not self.stop.is_set():
                try:
                    name, item = self._ready.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
                    self._handled[name].set()  # the caller is back: that source may go on
        finally:
            self.stop.set()
            for event in self._handled.values():
                event.set()
            for thread in threads:
                thread.join(timeout=5.0)

    def _pump(self, name: str) -> None:
        handled = self._handled[name]
        try:
            for item in self.sources[name](self.stop):
                handled.clear()
                self._ready.put((name, item))
                handled.wait()
                if self.stop.is_set():
                    return
        except Exception as exc:  # the caller sees it, once, where it iterates
            log.error("feed source failed", source=name, error=str(exc))
            self._ready.put((name, exc))
        finally:
            self._ready.put((name, None))


def read_sources(
    connections: Connections, groups: list[str]
) -> dict[str, tuple[redis.Redis, list[str]]]:
    """Where to read `groups` from: one source per node (a group moving between nodes is read
    on both), and per group on a cluster (a read may not name keys of two slots there).
    Name -> (client, its groups)."""
    sources: dict[str, tuple[redis.Redis, list[str]]] = {}
    for node_name, node_groups in connections.topology.by_node(groups, draining=True).items():
        node = connections.topology.nodes[node_name]
        client = connections.node(node)
        if node.is_cluster:
            sources.update({f"{node_name}/{g}": (client, [g]) for g in node_groups})
        else:
            sources[node_name] = (client, node_groups)
    return sources


def subscribe(
    connections: Connections,
    subscriber: type[StreamSubscriber[T]],
    groups: list[str],
    **options: Any,
) -> MergedFeed[T]:
    """A backend's feed over every node: one `subscriber` (ResultSubscriber, EventSubscriber)
    per node, or per group on a cluster, each with its consumer group where it reads, so the
    feed resumes on each node where it left off. `options` go to every subscriber."""

    def listen(client: redis.Redis, node_groups: list[str], stop: threading.Event) -> Iterator[T]:
        return subscriber(client, node_groups, **options).listen(stop)

    sources = read_sources(connections, groups)
    return MergedFeed({name: partial(listen, *source) for name, source in sources.items()})
