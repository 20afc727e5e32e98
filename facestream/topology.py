"""Where each camera group's keys live: one Redis, independent nodes, or one Redis Cluster."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from facestream.schemas import keys

from .config import ConfigError, RedisSettings, Settings

__all__ = ["SINGLE_NODE", "Node", "Topology", "UnmappedGroup"]

#: The name of the one node when the config has neither `nodes:` nor `cluster:`.
SINGLE_NODE = "redis"
_CLUSTER_NODE = "cluster"


class UnmappedGroup(ConfigError):
    """A camera group that no configured node holds."""


@dataclass(frozen=True)
class Node:
    """One place to connect to: a Redis server, or a whole Redis Cluster."""

    name: str
    redis: RedisSettings  # url: the node's (a cluster's first seed); user, password, TLS shared
    groups: tuple[str, ...]  # the groups it holds; () = whatever is there (discovered)
    cluster_urls: tuple[str, ...] = ()  # seeds, when the node is a cluster
    draining: tuple[str, ...] = ()  # groups moved away whose leftovers are still served here

    @property
    def is_cluster(self) -> bool:
        return bool(self.cluster_urls)


class Topology:
    """The deployment as the config describes it, and which node serves which group."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.nodes: dict[str, Node] = {}
        if settings.nodes:
            for name, node in settings.nodes.items():
                redis = settings.redis.model_copy(update={"url": node.url})
                self.nodes[name] = Node(
                    name, redis, tuple(node.groups), draining=tuple(node.draining)
                )
        elif settings.cluster is not None:
            seeds = tuple(settings.cluster.urls)
            redis = settings.redis.model_copy(update={"url": seeds[0]})
            self.nodes[_CLUSTER_NODE] = Node(_CLUSTER_NODE, redis, (), seeds)
        else:
            self.nodes[SINGLE_NODE] = Node(SINGLE_NODE, settings.redis, ())

    @property
    def kind(self) -> Literal["single", "nodes", "cluster"]:
        if self.settings.nodes:
            return "nodes"
        return "cluster" if self.settings.cluster is not None else "single"

    def node_for(self, group: str) -> Node:
        """The node holding `group`'s keys; UnmappedGroup names the config fix."""
        keys.validate_group(group)
        if self.kind != "nodes":
            return next(iter(self.nodes.values()))
        for node in self.nodes.values():
            if group in node.groups:
                return node
        raise UnmappedGroup(
            f"camera group {group} is on no node: add it to the groups of one of "
            f"{', '.join(self.nodes)} under nodes: in the config"
        )

    def by_node(self, groups: Iterable[str], draining: bool = False) -> dict[str, list[str]]:
        """`groups` sorted by the node that holds each (node name -> its groups, in order);
        with `draining`, also by the nodes they are moving away from (to read every result)."""
        placed: dict[str, list[str]] = {}
        for group in groups:
            placed.setdefault(self.node_for(group).name, []).append(group)
            if draining:
                for node in self.nodes.values():
                    if group in node.draining:
                        placed.setdefault(node.name, []).append(group)
        return placed

    def select(self, names: Sequence[str]) -> list[Node]:
        """The nodes named (all of them when `names` is empty); a typo names the known ones."""
        unknown = sorted(set(names) - self.nodes.keys())
        if unknown:
            raise ConfigError(
                f"no node {', '.join(unknown)} in the config (known: {', '.join(self.nodes)})"
            )
        return [node for name, node in self.nodes.items() if not names or name in names]

    def settings_for(self, node: Node) -> Settings:
        """The settings one worker process of `node` runs with: that node alone, its groups
        (those draining from it included).

        Groups named by `groups:` (or --groups) narrow a node's own list; a node without a
        list (single Redis, cluster) serves them, or discovers groups when there are none.
        """
        wanted = self.settings.groups
        held = node.groups + node.draining
        groups = [g for g in held if not wanted or g in wanted] if held else wanted
        return self.settings.model_copy(update={"redis": node.redis, "groups": groups, "nodes": {}})
