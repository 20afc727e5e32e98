"""Make redis-py clients from the settings: retries on transient errors only, TLS, ACL."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis
from redis._parsers import CommandsParser
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from facestream.schemas.urls import without_userinfo

from .config import RedisSettings
from .redis_errors import REDIS_ERRORS, is_transient
from .topology import Node, Topology

__all__ = ["Connections", "connect", "connect_node"]


def connect(settings: RedisSettings) -> redis.Redis:
    """A client for binary-safe stream work (responses stay bytes); bad credentials raise."""
    client = redis.Redis.from_url(without_userinfo(settings.url), **_options(settings))
    _refuse_bad_credentials(client)
    return client


def connect_node(node: Node) -> redis.Redis:
    """A client for one node of the topology: a plain one, or a RedisCluster for a cluster.

    redis-py types RedisCluster apart from Redis although it offers the same command methods;
    the few callers that must differ on a cluster (a blocking read over several groups) check
    `isinstance(client, RedisCluster)`.
    """
    if not node.is_cluster:
        return connect(node.redis)
    options = _options(node.redis)
    # Cluster-level retries follow MOVED/ASK and failovers; the per-connection ones stay off.
    options.pop("retry_on_error")
    options["retry"] = Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=6)
    if node.redis.url.startswith("rediss://"):
        options["ssl"] = True  # from_url reads it off the scheme; the constructor must be told
    seeds = [urlsplit(url) for url in node.cluster_urls]
    startup = [
        ClusterNode(seed.hostname or "127.0.0.1", seed.port or 6379)  # type: ignore[no-untyped-call]
        for seed in seeds
    ]
    cluster = RedisCluster(startup_nodes=startup, **options)
    # Shared with the cluster's pipelines, which route by it too.
    cluster.commands_parser = _KnownKeysParser(cluster)  # type: ignore[no-untyped-call]
    client = cast(redis.Redis, cluster)
    _refuse_bad_credentials(client)
    return client


class _KnownKeysParser(CommandsParser):
    """Reads the keys of FCALL and XREAD/XREADGROUP from their arguments.

    redis-py's cluster client asks a server (`COMMAND GETKEYS`, with every argument) where the
    keys of a command with movable keys are, before sending it: a synchronous round trip and
    the commit's payload twice over the wire for each commit and each read (4.4 a frame,
    docs/capacity.md). Where the keys are in these commands is fixed by their syntax.
    """

    def _get_moveable_keys(self, redis_conn: Any, *args: Any) -> Any:
        keys = _keys_by_syntax(args)
        if keys is not None:
            return keys
        return super()._get_moveable_keys(redis_conn, *args)  # type: ignore[no-untyped-call]


def _keys_by_syntax(args: tuple[Any, ...]) -> list[Any] | None:
    name = str(args[0]).upper()
    if name in ("FCALL", "FCALL_RO") and len(args) >= 3:
        return list(args[3 : 3 + int(args[2])])  # FCALL fn numkeys key… arg…
    if name in ("XREAD", "XREADGROUP"):
        words = [a.upper() if isinstance(a, str) else a for a in args]
        for marker in ("STREAMS", b"STREAMS"):
            if marker in words:
                rest = args[words.index(marker) + 1 :]  # STREAMS key… id…
                return list(rest[: len(rest) // 2])
    return None


class Connections:
    """One client per node of the topology, made when first needed (a down node waits)."""

    def __init__(self, topology: Topology, clients: dict[str, redis.Redis] | None = None) -> None:
        """`clients`: clients already made, by node name (used instead of new ones)."""
        self.topology = topology
        self._clients: dict[str, redis.Redis] = dict(clients or {})

    def node(self, node: Node) -> redis.Redis:
        if node.name not in self._clients:
            self._clients[node.name] = connect_node(node)
        return self._clients[node.name]

    def for_group(self, group: str) -> redis.Redis:
        """The client of the node that holds `group` (UnmappedGroup if none does)."""
        return self.node(self.topology.node_for(group))

    def holding(self, groups: Iterable[str], draining: bool = True) -> list[Node]:
        """The nodes that hold `groups`, and (with `draining`: readers, which finish what is
        left there) those the groups are draining from; writers send to the new node only."""
        names = self.topology.by_node(groups, draining=draining)
        return [self.topology.nodes[name] for name in names]

    def ping(self, nodes: Iterable[Node]) -> None:
        """Raise unless every one of `nodes` answers (a cluster: some node, with the slot map)."""
        for node in nodes:
            self.node(node).ping()

    def every_node(self) -> list[tuple[Node, redis.Redis]]:
        return [(node, self.node(node)) for node in self.topology.nodes.values()]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def _options(settings: RedisSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=3),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    # redis-py lets the URL's userinfo win over keyword arguments; here the fields win, so the
    # URL is passed without it and its parts come last.
    url = urlsplit(settings.url)
    username = settings.username or (unquote(url.username) if url.username else None)
    password = settings.secret() or (unquote(url.password) if url.password else None)
    if username:
        options["username"] = username
    if password is not None:
        options["password"] = password
    if settings.url.startswith("rediss://"):
        options.update(_tls_options(settings))
    return options


def _tls_options(settings: RedisSettings) -> dict[str, Any]:
    """Verify the server's chain and host name (redis-py leaves the name unchecked by default);
    present a client certificate where one is configured."""

    def path(file: Path | None) -> str | None:
        return str(file) if file is not None else None

    return {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": settings.tls_check_hostname,
        "ssl_ca_certs": path(settings.tls_ca_file),
        "ssl_certfile": path(settings.tls_cert_file),
        "ssl_keyfile": path(settings.tls_key_file),
    }


def _refuse_bad_credentials(client: redis.Redis) -> None:
    """Fail now on a wrong password, instead of retrying it forever as an outage later.

    An unreachable or loading server is not an error here: every role rides out outages.
    """
    try:
        client.ping()
    except REDIS_ERRORS as exc:
        if is_transient(exc):
            return
        client.close()
        raise
