"""Smoke tests of the multi-node Redis helpers, and of the redis-py behaviours facestream relies on
for a Redis Cluster: per-group streams on their own slots, pipelined XREADGROUP, functions and
scripts on every primary, MULTI within one hash tag, SCAN over all masters, a live slot
migration and a failover under a running client. `pytest -s` shows what redis-py did
("FINDING:" lines); the tests assert only what the design depends on, never timings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from tests.servers.redis_nodes import ClusterProcess, RedisNodes

pytest_plugins = ("tests.cluster_fixtures",)

GROUP = "recognizers"
TAGS = ("east", "west", "north")
LIBRARY = """#!lua name=fstest
redis.register_function('fs_xlen', function(keys, args) return redis.call('XLEN', keys[1]) end)
"""
SCRIPT = "return redis.call('XLEN', KEYS[1])"


def frames(tag: str) -> str:
    """The frame stream of camera group `tag` (design.md: `fs:{G}:frames`)."""
    return f"fs:{{{tag}}}:frames"


def finding(text: str) -> None:
    """What redis-py did, for `pytest -s` readers (the lead's design depends on these)."""
    print(f"FINDING: {text}")


@pytest.fixture(scope="module")
def cluster_client(redis_cluster: ClusterProcess) -> Iterator[RedisCluster]:
    """A redis-py cluster client seeded from the URLs, bytes replies, 2 s socket timeout."""
    client = RedisCluster(
        startup_nodes=redis_cluster.startup_nodes(),
        password=redis_cluster.password,
        decode_responses=False,
        socket_timeout=2,
    )
    yield client
    client.close()


@pytest.fixture(scope="module")
def streams(cluster_client: RedisCluster) -> dict[str, list[bytes]]:
    """One stream per tag with the consumer group and three entries; entry ids by tag."""
    ids: dict[str, list[bytes]] = {}
    for tag in TAGS:
        cluster_client.xgroup_create(frames(tag), GROUP, id="0", mkstream=True)
        ids[tag] = [cluster_client.xadd(frames(tag), {"tag": tag, "n": n}) for n in range(3)]
    return ids


def test_cluster_is_healthy_and_seed_urls_work(redis_cluster: ClusterProcess) -> None:
    nodes = redis_cluster.nodes
    assert sorted(node.role for node in nodes) == ["master"] * 3 + ["slave"] * 3
    assert all(node.pid for node in nodes)
    for node in nodes:
        if node.role == "master":
            assert len(redis_cluster.replicas_of(node.port)) == 1
    owners = redis_cluster.slot_owners()
    assert len(owners) == 16384
    assert set(owners.values()) == {node.port for node in nodes if node.role == "master"}
    # One seed URL is enough for redis-py to find the rest (the password rides in the URL).
    client = RedisCluster.from_url(redis_cluster.urls[0])
    try:
        assert client.ping()
        assert {node.port for node in client.get_primaries()} == set(owners.values())
    finally:
        client.close()


def test_stream_per_tag_and_pipelined_xreadgroup(
    redis_cluster: ClusterProcess, cluster_client: RedisCluster, streams: dict[str, list[bytes]]
) -> None:
    placement = {tag: redis_cluster.master_for_key(frames(tag)) for tag in TAGS}
    finding(f"masters by tag (port): {placement}; slots: "
            f"{ {tag: redis_cluster.keyslot(frames(tag)) for tag in TAGS} }")  # fmt: skip
    pipe = cluster_client.pipeline(transaction=False)
    for tag in TAGS:
        pipe.xreadgroup(GROUP, "smoke", {frames(tag): ">"}, count=10)
    replies = pipe.execute()
    for tag, reply in zip(TAGS, replies, strict=True):
        [[stream, entries]] = reply
        assert stream == frames(tag).encode()
        assert [entry_id for entry_id, _ in entries] == streams[tag]
        assert all(fields[b"tag"] == tag.encode() for _, fields in entries)

    with pytest.raises(RedisClusterException) as raised:
        cluster_client.xreadgroup(GROUP, "smoke", {frames("east"): ">", frames("west"): ">"})
    finding(
        f"XREADGROUP over two tags raises {type(raised.value).__module__}."
        f"{type(raised.value).__name__} client-side ({raised.value}); "
        f"it is a redis.RedisError: {isinstance(raised.value, redis.RedisError)}"
    )


def test_blocking_xreadgroup_returns_empty_within_socket_timeout(
    cluster_client: RedisCluster, streams: dict[str, list[bytes]]
) -> None:
    cluster_client.xreadgroup(GROUP, "blocker", {frames("north"): ">"})  # drain what is there
    reply = cluster_client.xreadgroup(GROUP, "blocker", {frames("north"): ">"}, block=500)
    finding(f"XREADGROUP BLOCK 500 (socket_timeout 2 s) on an empty group returned {reply!r}")
    assert not reply


def test_function_load_reaches_every_primary_and_fcall_routes_by_key(
    redis_cluster: ClusterProcess, cluster_client: RedisCluster, streams: dict[str, list[bytes]]
) -> None:
    reply = cluster_client.function_load(LIBRARY, replace=True)
    finding(f"RedisCluster.function_load(code, replace=True) -> {reply!r} (one per primary)")
    primaries = {node.port for node in redis_cluster.nodes if node.role == "master"}
    for port in primaries:
        with redis_cluster.node_client(port) as node:
            libraries = node.function_list(library="fstest")
            assert libraries and libraries[0][1] == b"fstest", port
    for tag in TAGS:
        assert cluster_client.fcall("fs_xlen", 1, frames(tag)) == len(streams[tag])


def test_script_load_reaches_every_primary_and_evalsha_routes_by_key(
    redis_cluster: ClusterProcess, cluster_client: RedisCluster, streams: dict[str, list[bytes]]
) -> None:
    sha = cluster_client.script_load(SCRIPT)
    where = {
        (node.port, node.role): redis_cluster.node_client(node.port).script_exists(sha)[0]
        for node in redis_cluster.nodes
    }
    finding(f"RedisCluster.script_load reached (port, role) -> exists: {where}")
    assert all(exists for (_, role), exists in where.items() if role == "master")
    for tag in TAGS:
        assert cluster_client.evalsha(sha, 1, frames(tag)) == len(streams[tag])


def test_multi_within_one_hash_tag(cluster_client: RedisCluster) -> None:
    pipe = cluster_client.pipeline(transaction=True)
    pipe.set("fs:{gallery}:name:alice", b"1").incr("fs:{gallery}:version")
    replies = pipe.execute()
    assert replies[1] == 1 and replies[0] in (True, b"OK")
    plain = cluster_client.pipeline(transaction=False).set("fs:{gallery}:x", b"1").execute()
    finding(
        f"MULTI on one tag works; SET's reply inside it is {replies[0]!r} "
        f"(outside a transaction: {plain[0]!r}): compare against both"
    )
    cross = cluster_client.pipeline(transaction=True)
    cross.set("fs:{east}:x", b"1").set("fs:{west}:x", b"1")
    with pytest.raises(RedisClusterException) as raised:
        cross.execute()
    finding(f"MULTI over two tags raises {type(raised.value).__name__} ({raised.value})")


def test_scan_iter_finds_streams_on_every_master(
    redis_cluster: ClusterProcess, cluster_client: RedisCluster, streams: dict[str, list[bytes]]
) -> None:
    # Add groups until every master holds at least one stream, so SCAN must visit them all.
    masters = {node.port for node in redis_cluster.nodes if node.role == "master"}
    expected = {frames(tag).encode() for tag in TAGS}
    holders = {redis_cluster.master_for_key(frames(tag)) for tag in TAGS}
    n = 0
    while holders != masters:
        tag = f"g{n}"
        n += 1
        if redis_cluster.master_for_key(frames(tag)) not in holders:
            cluster_client.xadd(frames(tag), {"n": 0})
            expected.add(frames(tag).encode())
            holders.add(redis_cluster.master_for_key(frames(tag)))
    cluster_client.set("fs:{east}:not-a-stream:frames", b"x")  # matches MATCH, not TYPE
    found = set(cluster_client.scan_iter(match="fs:{*}:frames", _type="stream"))
    assert found == expected


def test_client_follows_a_live_slot_migration(
    redis_cluster: ClusterProcess, cluster_client: RedisCluster, streams: dict[str, list[bytes]]
) -> None:
    key = frames("east")
    ids = [cluster_client.xadd(key, {"n": n}) for n in range(200)]  # several MIGRATE batches
    delivered = cluster_client.xreadgroup(GROUP, "mover", {key: ">"}, count=50)
    pending_before = cluster_client.xpending(key, GROUP)
    slot = redis_cluster.keyslot(key)
    source = redis_cluster.master_for_slot(slot)
    target = next(n.port for n in redis_cluster.nodes if n.role == "master" and n.port != source)
    redis_cluster.migrate_slot(slot, target)
    assert redis_cluster.master_for_slot(slot) == target

    # The same client, its slot cache now stale: MOVED sends it to the new master.
    new_id = cluster_client.xadd(key, {"after": "migration"})
    entries = cluster_client.xrange(key)
    assert [entry_id for entry_id, _ in entries] == [*streams["east"], *ids, new_id]
    assert cluster_client.xpending(key, GROUP) == pending_before
    [[_, mine]] = cluster_client.xreadgroup(GROUP, "mover", {key: "0"})  # my pending list
    assert [entry_id for entry_id, _ in mine] == [entry_id for entry_id, _ in delivered[0][1]]
    [[_, rest]] = cluster_client.xreadgroup(GROUP, "mover", {key: ">"})
    assert rest[-1][0] == new_id
    with redis_cluster.node_client(target) as node:
        assert node.xlen(key) == len(entries)  # the data itself moved
    finding(f"slot {slot} moved {source} -> {target}: client followed MOVED, group intact")


def test_client_recovers_after_master_failover(
    redis_cluster: ClusterProcess, cluster_client: RedisCluster
) -> None:
    key = frames("west")
    sha = cluster_client.script_load(SCRIPT)
    cluster_client.function_load(LIBRARY, replace=True)  # so this test also runs alone
    before = cluster_client.xlen(key)
    old = redis_cluster.master_for_key(key)
    redis_cluster.kill_master(old)
    try:
        # Write until it works again, as a worker would (bounded: the failover takes seconds).
        errors: dict[str, int] = {}
        started = time.monotonic()
        deadline = started + 60
        while True:
            try:
                cluster_client.xadd(key, {"after": "failover"})
                break
            except (redis.RedisError, RedisClusterException) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        window = time.monotonic() - started
        new = redis_cluster.wait_failover(old)
        assert new != old and redis_cluster.master_for_key(key) == new
        finding(
            f"master {old} SIGKILLed: client saw errors for {window:.2f}s ({errors}), "
            f"then wrote to new master {new}"
        )
        assert cluster_client.xlen(key) == before + 1  # acknowledged entries survived here
        # Functions are replicated with the data; scripts are not: a promoted replica lacks
        # them until reloaded (redis-py's Script objects fall back to EVAL by themselves).
        assert cluster_client.fcall("fs_xlen", 1, key) == before + 1
        try:
            cluster_client.evalsha(sha, 1, key)
            finding("EVALSHA after failover: the script was there")
        except redis.exceptions.NoScriptError:
            finding("EVALSHA after failover raises NoScriptError (SCRIPT LOAD is not replicated)")
        assert cluster_client.register_script(SCRIPT)(keys=[key]) == before + 1
    finally:
        redis_cluster.restart(old)  # later modules (same fixture scope) get a whole cluster
    assert next(n.role for n in redis_cluster.nodes if n.port == old) == "slave"
    assert old in redis_cluster.replicas_of(new)


def test_independent_node_restart_keeps_stream_and_pending(redis_nodes: RedisNodes) -> None:
    key = frames("east")
    index = 1
    with redis_nodes.client(index) as client:
        client.xgroup_create(key, GROUP, id="0", mkstream=True)
        ids = [client.xadd(key, {"n": n}) for n in range(5)]
        client.xreadgroup(GROUP, "w1", {key: ">"}, count=3)  # three pending, never acked
        other = redis_nodes.client(0)
        other.set("untouched", b"1")
    redis_nodes.kill(index)
    assert not redis_nodes.alive(index)
    assert other.get("untouched") == b"1"  # the other nodes are independent
    other.close()
    redis_nodes.restart(index)
    with redis_nodes.client(index) as client:
        assert [entry_id for entry_id, _ in client.xrange(key)] == ids
        pending = client.xpending(key, GROUP)
        assert pending["pending"] == 3
        assert pending["consumers"] == [{"name": b"w1", "pending": 3}]
        [[_, rest]] = client.xreadgroup(GROUP, "w2", {key: ">"})
        assert [entry_id for entry_id, _ in rest] == ids[3:]
