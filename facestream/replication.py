"""Wait for replicas after a write that acknowledges work (a frame sent, a result committed).

Redis replicates asynchronously: a master that fails right after a write can take it with it,
and the replica promoted in its place never saw it. `WAIT n` after the write closes most of that
window (not all: a replica that had the write can still lose the election). Off by default; its
latency cost is measured in benchmarks/topology.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis
import structlog
from prometheus_client import Counter
from redis.cluster import RedisCluster

__all__ = ["ReplicaWait"]

log = structlog.get_logger("replication")

SHORT_WAITS = Counter(
    "facestream_replica_waits_short_total",
    "Writes that fewer replicas than redis.wait_replicas confirmed within the timeout.",
)


@dataclass(frozen=True)
class ReplicaWait:
    """How many replicas must confirm a write, and for how long to wait for them."""

    replicas: int
    timeout_ms: int

    def after_writes(self, client: redis.Redis, written: Iterable[str]) -> int:
        """Block until `replicas` replicas hold every write this client sent to the nodes of
        the keys `written` (at most `timeout_ms` each); return the fewest that confirmed.

        WAIT counts the writes of its own connection, so one WAIT per node covers every key
        there: on a cluster it goes to each node holding one of the keys, through that node's
        pool, whose last used connection made the writes.
        """
        targets: list[tuple[redis.Redis, str]]
        if isinstance(client, RedisCluster):
            holders: dict[str, tuple[redis.Redis, str]] = {}
            for key in written:
                node = client.get_node_from_key(key)
                holders.setdefault(node.name, (client.get_redis_connection(node), key))
            targets = list(holders.values())
        else:
            targets = [(client, key) for key in list(written)[:1]]
        fewest = self.replicas
        for target, key in targets:
            confirmed = int(target.wait(self.replicas, self.timeout_ms))
            if confirmed < self.replicas:
                SHORT_WAITS.inc()
                log.warning(
                    "write not confirmed by enough replicas",
                    key=key,
                    confirmed=confirmed,
                    wanted=self.replicas,
                )
            fewest = min(fewest, confirmed)
        return fewest
