"""Many Redis nodes from one config: routing, workers per node, a node down, the merged feed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import pytest
import redis
import yaml

from facestream.client import ResultSubscriber
from facestream.config import ConfigError, Settings, load_settings
from facestream.connect import Connections, connect_node
from facestream.demo import build_clip
from facestream.feed import subscribe
from facestream.ingest import CameraSettings, EncodedFrame, FramePublisher, run_cameras
from facestream.recognizer import FaceEngine, Gallery, embed_photos
from facestream.replicas import GalleryReplicas
from facestream.schemas import GalleryError, Result, keys
from facestream.server import free_port
from facestream.status import collect_site_status
from facestream.topology import Topology, UnmappedGroup
from facestream.web.app import create_app
from facestream.workers import _node_settings
from tests.servers.redis_nodes import ClusterProcess, RedisNodes

from .helpers import FACES, IDENTITIES, drain, make_worker, wait_for
from .web_support import TOKEN, serving, web_settings

pytest_plugins = ("tests.cluster_fixtures",)

GROUPS = ["east", "west", "north"]
PHOTOS = sorted((FACES / "test").glob("*.jpg")) + sorted((FACES / "train").glob("*/*"))


# -- the config and the topology it describes ------------------------------------------------


def test_nodes_and_cluster_are_validated_once() -> None:
    two = {"a": {"url": "redis://h1:6379", "groups": ["east"]}}
    with pytest.raises(ConfigError, match="set nodes or cluster, not both"):
        load_settings(nodes=two, cluster={"urls": ["redis://h2:7000"]})
    clash = {**two, "b": {"url": "redis://h2:6379", "groups": ["east"]}}
    with pytest.raises(ConfigError, match="group east is on two nodes: a and b"):
        load_settings(nodes=clash)
    cameras = [{"id": "c1", "group": "west", "source": "rtsp://cam/1"}]
    with pytest.raises(ConfigError, match=r"camera group.* west are on no node"):
        load_settings(nodes=two, cameras=cameras)
    with pytest.raises(ConfigError, match=r"nodes\.a: .*a node needs groups"):
        load_settings(nodes={"a": {"url": "redis://h1:6379", "groups": []}})


def test_each_group_has_one_home_and_workers_get_one_node_each() -> None:
    settings = load_settings(
        nodes={
            "n1": {"url": "redis://h1:6379", "groups": ["east", "food"]},
            "n2": {"url": "redis://h2:6379", "groups": ["west"]},
        },
        redis={"username": "worker", "password": "s3cret"},
        groups=["east", "west"],
    )
    topology = Topology(settings)
    assert topology.kind == "nodes"
    assert topology.node_for("food").name == "n1"
    assert topology.by_node(["west", "east", "food"]) == {"n2": ["west"], "n1": ["east", "food"]}
    with pytest.raises(UnmappedGroup, match="camera group south is on no node"):
        topology.node_for("south")
    with pytest.raises(ConfigError, match=r"no node n3 in the config \(known: n1, n2\)"):
        topology.select(["n3"])
    # A worker process of n1: that node's URL, the shared credentials, its groups narrowed by
    # `groups:` (food is not asked for).
    n1 = topology.settings_for(topology.nodes["n1"])
    assert (n1.redis.url, n1.redis.username, n1.groups, n1.nodes) == (
        "redis://h1:6379",
        "worker",
        ["east"],
        {},
    )
    assert n1.redis.secret() == "s3cret"
    cluster = Topology(load_settings(cluster={"urls": ["redis://h1:7000", "redis://h2:7000"]}))
    (node,) = cluster.nodes.values()
    assert (cluster.kind, node.is_cluster, cluster.node_for("anything")) == ("cluster", True, node)


def test_worker_processes_per_node_and_node_selection() -> None:
    settings = load_settings(
        nodes={
            "n1": {"url": "redis://h1:6379", "groups": ["east"], "draining": ["old"]},
            "n2": {"url": "redis://h2:6379", "groups": ["west"]},
            "n3": {"url": "redis://h3:6379", "groups": ["north", "old"]},
        }
    )
    plan = _node_settings(settings, [])
    assert [(p.redis.url, p.groups) for p in plan] == [
        ("redis://h1:6379", ["east", "old"]),
        ("redis://h2:6379", ["west"]),
        ("redis://h3:6379", ["north", "old"]),
    ]
    assert [p.groups for p in _node_settings(settings, ["n2"])] == [["west"]]
    only_west = settings.model_copy(update={"groups": ["west"]})
    assert [p.groups for p in _node_settings(only_west, [])] == [["west"]]
    with pytest.raises(ConfigError, match="no node n9 in the config"):
        _node_settings(settings, ["n9"])
    nowhere = settings.model_copy(update={"groups": ["south"]})
    with pytest.raises(ConfigError, match="no node holds the groups asked for"):
        _node_settings(nowhere, [])


# -- three independent nodes -----------------------------------------------------------------


def _config(tmp_path: Path, nodes: RedisNodes, model_cache: Path) -> Path:
    config = {
        "nodes": {
            f"node{i}": {"url": url, "groups": [group]}
            for i, (url, group) in enumerate(zip(nodes.urls, GROUPS, strict=True))
        },
        "models": {"cache_dir": str(model_cache)},
        "worker": {"block_ms": 200, "claim_idle_ms": 2000, "gallery_poll_s": 0.2},
        "log": {"format": "json"},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)  # it holds the nodes' passwords
    return path


def _facestream(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "facestream", "--config", str(config), *args]


def _two_nodes(nodes: RedisNodes, settings: Settings) -> tuple[Settings, Connections]:
    """`settings` on nodes 0 (group east) and 1 (west) of `nodes`, both emptied first."""
    site = settings.model_copy(
        update={"nodes": load_settings(nodes={
            "node0": {"url": nodes.urls[0], "groups": ["east"]},
            "node1": {"url": nodes.urls[1], "groups": ["west"]},
        }).nodes}
    )  # fmt: skip
    connections = Connections(Topology(site))
    for _, client in connections.every_node():
        client.flushall()
    return site, connections


def _photo_folder(tmp_path: Path) -> Path:
    """The bundled photos in one folder, in a fixed order: one replay's frames."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, photo in enumerate(PHOTOS):
        shutil.copy(photo, frames / f"{index:03d}{photo.suffix}")
    return frames


def _replay_every_group(
    config: Path, frames: Path, env: dict[str, str]
) -> dict[str, subprocess.Popen[str]]:
    """`facestream replay` of `frames` into each group at 6 fps, camera cam-<group>."""
    replays = {}
    for group in GROUPS:
        replays[group] = subprocess.Popen(
            _facestream(config, "replay", str(frames), "--group", group, "--camera-id",
                        f"cam-{group}", "--fps", "6"),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
    return replays


def _stop(processes: list[subprocess.Popen[Any]]) -> None:
    """SIGTERM, then SIGKILL what has not stopped 30 s later."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def _results(client: redis.Redis, group: str) -> list[Result]:
    return [Result.from_fields(fields) for _, fields in client.xrange(keys.results(group))]


def _exactly_once(results: list[Result], sent: int) -> None:
    seqs = Counter(result.seq for result in results)
    assert sorted(seqs) == list(range(sent)), "a frame without a result"
    assert max(seqs.values()) == 1, f"doubled: {[s for s, n in seqs.items() if n > 1]}"


def test_three_nodes_serve_their_own_groups_and_survive_one_going_down(
    redis_nodes: RedisNodes, engine: FaceEngine, model_cache: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path, redis_nodes, model_cache)
    settings = load_settings(config)
    connections = Connections(Topology(settings))
    clients = {group: connections.for_group(group) for group in GROUPS}
    for client in clients.values():
        client.flushall()
    # The gallery, written once, reaches every node.
    replicas = GalleryReplicas(connections)
    for name in IDENTITIES:
        photos = sorted((FACES / "train" / name).iterdir())
        identity = embed_photos(engine, name, photos, largest_face=True)
        replicas.change(lambda gallery, i=identity: gallery.enroll(i))  # type: ignore[misc]
    for client in clients.values():
        assert sorted(i.name for i in Gallery(client).identities()[1]) == IDENTITIES

    frames = _photo_folder(tmp_path)
    env = {**os.environ, "FACESTREAM_LOG__FORMAT": "json"}
    workers = subprocess.Popen(
        _facestream(config, "worker"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    replays: dict[str, subprocess.Popen[str]] = {}
    try:
        replays.update(_replay_every_group(config, frames, env))
        north = clients["north"]
        wait_for(lambda: north.xlen(keys.results("north")) >= 2, what="north's first results")
        redis_nodes.kill(2)  # north's node, mid-run: frames queued, some in flight

        status = subprocess.run(
            _facestream(config, "status", "--json"), capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 5, status.stderr  # a partial report
        report = json.loads(status.stdout)
        assert {n["node"]: n["up"] for n in report["nodes"]} == {
            "node0": True,
            "node1": True,
            "node2": False,
        }
        down = next(g for g in report["groups"] if g["group"] == "north")
        assert down["node"] == "node2" and "unreachable" in down["error"]

        # The other groups finish while north is down.
        for group in ("east", "west"):
            assert replays[group].wait(60) == 0
            wait_for(
                lambda g=group: clients[g].xlen(keys.results(g)) >= len(PHOTOS),  # type: ignore[misc]
                what=f"{group}'s results with north down",
            )
        assert not redis_nodes.alive(2)
        redis_nodes.restart(2)  # the AOF brings back frames, pending entries, results
        assert replays["north"].wait(90) == 0, "replay must ride out its node's outage"
        wait_for(lambda: north.xlen(keys.results("north")) >= len(PHOTOS), what="north finishes")
    finally:
        _stop([workers, *replays.values()])
    assert workers.returncode == 0

    for group, client in clients.items():
        results = _results(client, group)
        _exactly_once(results, len(PHOTOS))
        assert {r.group for r in results} == {group}, "a result on another group's node"
        assert client.xlen(keys.dead(group)) == 0
        others = [g for g in GROUPS if g != group]
        assert not any(client.exists(keys.frames(g)) for g in others), "frames on a wrong node"
    named = [r for r in _results(clients["west"], "west") if r.identities]
    assert len(named) >= len(PHOTOS) - 3, "the replicated gallery names people on every node"

    # One merged feed over the three nodes: every result once, each camera in order.
    tail = subprocess.run(
        _facestream(config, "results", "tail", "--group", ",".join(GROUPS), "--from-start",
                    "--json", "--count", str(3 * len(PHOTOS))),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert tail.returncode == 0, tail.stderr
    merged: list[dict[str, Any]] = [json.loads(line) for line in tail.stdout.splitlines()]
    assert len(merged) == 3 * len(PHOTOS)
    for group in GROUPS:
        seqs = [r["seq"] for r in merged if r["camera"] == f"cam-{group}"]
        assert seqs == sorted(seqs) and len(seqs) == len(PHOTOS)


def test_gallery_changes_reach_every_node_and_a_node_that_missed_one_is_synced(
    redis_nodes: RedisNodes, engine: FaceEngine, model_cache: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path, redis_nodes, model_cache)
    connections = Connections(Topology(load_settings(config)))
    for _, client in connections.every_node():
        client.flushall()
    replicas = GalleryReplicas(connections)
    obama = embed_photos(engine, "obama", sorted((FACES / "train" / "obama").iterdir()))
    biden = embed_photos(engine, "biden", sorted((FACES / "train" / "biden").iterdir()))
    replicas.change(lambda gallery: gallery.enroll(obama))

    redis_nodes.kill(2)
    try:
        version, report = replicas.change(lambda gallery: gallery.enroll(biden))
        assert (report.copied, sorted(report.unreachable)) == (["node1"], ["node2"])
        assert "not on node2 (unreachable): run `facestream gallery sync`" in (
            report.warning() or ""
        )
        # An erase must reach every node's cache: with one down, nothing is changed.
        with pytest.raises(GalleryError, match="node2 unreachable: nothing changed"):
            replicas.on_every_node(lambda gallery: gallery.erase("obama", 0.36))
        assert Gallery(connections.for_group("east")).version() == version
    finally:
        redis_nodes.restart(2)
    north = Gallery(connections.for_group("north"))
    assert [i.name for i in north.identities()[1]] == ["obama"], "node2 missed the change"
    apart = subprocess.run(
        _facestream(config, "status"), capture_output=True, text=True, timeout=60
    )
    assert "GALLERY OUT OF SYNC between nodes: run `facestream gallery sync`" in apart.stdout

    synced = subprocess.run(
        _facestream(config, "gallery", "sync"), capture_output=True, text=True, timeout=60
    )
    assert synced.returncode == 0, synced.stderr
    assert "copied to node2" in synced.stdout
    assert north.identities() == Gallery(connections.for_group("east")).identities()
    status = subprocess.run(
        _facestream(config, "status", "--json"), capture_output=True, text=True, timeout=60
    )
    assert json.loads(status.stdout)["gallery_in_sync"] is True

    for _, client in connections.every_node():
        client.zadd(keys.VISITOR_SEEN, {"v-1": 1, "v-2": 2})
    purged = subprocess.run(
        _facestream(config, "visitors", "purge"), capture_output=True, text=True, timeout=60
    )
    assert purged.returncode == 0, purged.stderr
    assert not any(client.exists(keys.VISITOR_SEEN) for _, client in connections.every_node())


def test_one_camera_agent_process_feeds_cameras_of_several_nodes(
    redis_nodes: RedisNodes, settings: Settings, tmp_path: Path
) -> None:
    site, connections = _two_nodes(redis_nodes, settings)
    clip = tmp_path / "clip.avi"
    build_clip(sorted((FACES / "test").glob("*.jpg"))[:2], clip, size=(320, 180), moving=4)
    cameras = [
        CameraSettings(id=f"cam-{group}", group=group, source=str(clip), fps=20)
        for group in ("east", "west")
    ]
    stop = threading.Event()
    runner = threading.Thread(
        target=run_cameras,
        args=(cameras, connections.for_group, site.limits, 1000, stop),
        daemon=True,
    )
    runner.start()
    try:
        for group in ("east", "west"):
            home = connections.for_group(group)
            wait_for(lambda h=home, g=group: h.xlen(keys.frames(g)) >= 5, what=f"{group} frames")  # type: ignore[misc]
            wait_for(
                lambda h=home, g=group: h.exists(keys.camera_health(f"cam-{g}")), what="health"
            )  # type: ignore[misc]
    finally:
        stop.set()
        runner.join(10)
    east, west = connections.for_group("east"), connections.for_group("west")
    assert not east.exists(keys.frames("west")) and not west.exists(keys.frames("east"))
    assert not east.exists(keys.camera_health("cam-west"))


def test_a_group_moves_to_another_node_by_a_config_change(
    redis_nodes: RedisNodes, engine: FaceEngine, settings: Settings
) -> None:
    node0, node1 = redis_nodes.urls[:2]
    before = settings.model_copy(
        update={"nodes": load_settings(nodes={
            "node0": {"url": node0, "groups": ["mall"]},
            "node1": {"url": node1, "groups": ["east"]},
        }).nodes}
    )  # fmt: skip
    # The move: new frames of `mall` go to node1; node0 still serves what it holds of it.
    after = settings.model_copy(
        update={"nodes": load_settings(nodes={
            "node0": {"url": node0, "draining": ["mall"]},
            "node1": {"url": node1, "groups": ["east", "mall"]},
        }).nodes}
    )  # fmt: skip
    old, new = Connections(Topology(before)), Connections(Topology(after))
    for _, client in old.every_node():
        client.flushall()
    photos = [(p.read_bytes(), *cv2.imread(str(p)).shape[1::-1]) for p in PHOTOS[:6]]
    sender = FramePublisher(old.for_group("mall"), "mall", "cam-m", 1000, settings.limits)
    for jpeg, width, height in photos:
        sender.publish(EncodedFrame(jpeg, width, height))
    assert new.topology.node_for("mall").name == "node1"
    sender = FramePublisher(new.for_group("mall"), "mall", "cam-m", 1000, settings.limits, 6)
    for jpeg, width, height in photos:
        sender.publish(EncodedFrame(jpeg, width, height))

    for node in new.topology.nodes.values():
        groups = new.topology.settings_for(node).groups
        assert "mall" in groups  # node0's workers finish its leftovers
        worker = make_worker(new.node(node), engine, settings, f"w-{node.name}", groups)
        drain(worker, new.node(node), "mall", 6)
    on_node0 = _results(new.node(new.topology.nodes["node0"]), "mall")
    on_node1 = _results(new.node(new.topology.nodes["node1"]), "mall")
    assert [r.seq for r in on_node0] == list(range(6))
    assert [r.seq for r in on_node1] == list(range(6, 12))

    report = collect_site_status(new, ["mall"])
    drained = next(g for g in report.groups if g.node == "node0")
    assert (drained.draining, drained.pending, drained.lag) == (True, 0, 0)
    assert "(draining: moved to another node)" in report.render()

    # A backend reading `mall` during the move gets every result once, from both nodes.
    stop = threading.Event()
    feed = subscribe(new, ResultSubscriber, ["mall"], start="oldest", block_ms=100)
    feed.stop = stop
    seen = []
    for result in feed:
        seen.append(result.seq)
        if len(seen) == 12:
            stop.set()
    assert sorted(seen) == list(range(12))


def test_a_page_per_node_whose_gallery_changes_reach_every_node(
    redis_nodes: RedisNodes, engine: FaceEngine, settings: Settings
) -> None:
    site, connections = _two_nodes(redis_nodes, settings)
    for name in ("obama", "biden"):
        identity = embed_photos(engine, name, sorted((FACES / "train" / name).iterdir()))
        GalleryReplicas(connections).change(lambda gallery, i=identity: gallery.enroll(i))  # type: ignore[misc]
    with pytest.raises(ConfigError, match=r"one page shows one node: set web\.node"):
        create_app(site, web_settings(free_port()), engine=engine)

    web = web_settings(free_port()).model_copy(update={"node": "node1"})
    app = create_app(site, web, engine=engine)
    assert app.state.client.connection_pool.connection_kwargs["port"] == redis_nodes.ports[1]
    with serving(app, web) as page:
        status, _, _ = page.call("DELETE", "/api/gallery/biden", Authorization=f"Bearer {TOKEN}")
    assert status == 200
    galleries = [Gallery(client).identities() for _, client in connections.every_node()]
    assert galleries[0] == galleries[1] and [i.name for i in galleries[0][1]] == ["obama"]


# -- one Redis Cluster -----------------------------------------------------------------------


def _cluster_config(tmp_path: Path, cluster: ClusterProcess, model_cache: Path, wait: int) -> Path:
    config = {
        "cluster": {"urls": cluster.urls},
        "redis": {"wait_replicas": wait, "wait_timeout_ms": 500},
        "models": {"cache_dir": str(model_cache)},
        "worker": {"block_ms": 200, "claim_idle_ms": 2000, "gallery_poll_s": 0.2},
        "log": {"format": "json"},
    }
    path = tmp_path / f"cluster-wait{wait}.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("wait", [0, 1], ids=["no-wait", "wait-1-replica"])
def test_cluster_keeps_going_through_a_slot_migration_and_a_master_failover(
    redis_cluster: ClusterProcess, engine: FaceEngine, model_cache: Path, tmp_path: Path, wait: int
) -> None:
    config = _cluster_config(tmp_path, redis_cluster, model_cache, wait)
    connections = Connections(Topology(load_settings(config)))
    client = connections.for_group("east")
    for group in GROUPS:
        for key in (keys.frames(group), keys.results(group), keys.dead(group)):
            client.delete(key)
    for name in IDENTITIES:
        photos = sorted((FACES / "train" / name).iterdir())
        Gallery(client).enroll(embed_photos(engine, name, photos, largest_face=True))
    frames = _photo_folder(tmp_path)

    east_slot = redis_cluster.keyslot(keys.frames("east"))
    victim = redis_cluster.master_for_key(keys.frames("west"))  # west's (and north's) master
    masters = sorted({redis_cluster.master_for_slot(s) for s in range(0, 16384, 4096)})
    new_home = next(
        p for p in masters if p not in (victim, redis_cluster.master_for_slot(east_slot))
    )
    env = {**os.environ, "FACESTREAM_LOG__FORMAT": "json"}
    workers = subprocess.Popen(
        _facestream(config, "worker", "--concurrency", "2"),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    replays: dict[str, subprocess.Popen[str]] = {}
    try:
        replays.update(_replay_every_group(config, frames, env))
        wait_for(lambda: client.xlen(keys.results("east")) >= 2, what="east's first results")
        redis_cluster.migrate_slot(east_slot, new_home)  # live, with its frames and group
        wait_for(lambda: client.xlen(keys.results("west")) >= 4, what="west's results")
        redis_cluster.kill_master(victim)
        promoted = redis_cluster.wait_failover(victim)
        sent = {}
        for group, replay in replays.items():
            out, _ = replay.communicate(timeout=120)
            assert replay.returncode == 0, f"replay of {group} failed"
            sent[group] = int(out.split()[1])  # "sent N frames to …"
        for group in GROUPS:
            wait_for(
                lambda g=group: client.xlen(keys.results(g)) >= client.xlen(keys.frames(g)),  # type: ignore[misc]
                what=f"{group}'s results",
            )
    finally:
        _stop([workers, *replays.values()])
        if not redis_cluster.alive(victim):
            redis_cluster.restart(victim)  # the next test gets a whole cluster
    assert workers.returncode == 0
    assert redis_cluster.master_for_slot(east_slot) == new_home
    assert redis_cluster.master_for_key(keys.frames("west")) == promoted

    lost = doubled = 0
    for group in GROUPS:
        results = _results(client, group)
        in_stream = {int(f[b"seq"]) for _, f in client.xrange(keys.frames(group))}
        counts = Counter(result.seq for result in results)
        # Whatever the cluster kept of a frame has exactly one result: nothing the failover
        # left behind is dropped, and the idempotent commit never publishes twice.
        assert set(counts) == in_stream, f"{group}: frames without results"
        doubled += sum(n - 1 for n in counts.values())
        lost += sent[group] - len(in_stream)
        assert client.xlen(keys.dead(group)) == 0
    print(f"\ncluster, wait_replicas={wait}: {sum(sent.values())} frames sent, {lost} lost in "
          f"the failover, {doubled} results doubled")  # fmt: skip
    assert doubled == 0
    if wait:
        assert lost == 0, "with WAIT a frame the camera was told is sent survives the failover"


def _getkeys_calls(cluster: ClusterProcess) -> int:
    calls = 0
    for node in cluster.nodes:
        if node.role == "master":
            stats = cluster.node_client(node.port).info("commandstats")
            calls += int(stats.get("cmdstat_command|getkeys", {}).get("calls", 0))
    return calls


def test_a_cluster_worker_routes_its_reads_and_commits_without_asking_for_keys(
    redis_cluster: ClusterProcess, engine: FaceEngine, settings: Settings
) -> None:
    site = settings.model_copy(
        update={"cluster": load_settings(cluster={"urls": redis_cluster.urls}).cluster}
    )
    (node,) = Topology(site).nodes.values()
    client = connect_node(node)
    groups = ["zone-a", "zone-b"]
    for group in groups:
        client.delete(keys.frames(group), keys.results(group))
    photo = FACES / "test" / "obama1.jpg"
    width, height = cv2.imread(str(photo)).shape[1::-1]
    for group in groups:
        FramePublisher(client, group, "cam", 100, site.limits).publish(
            EncodedFrame(photo.read_bytes(), width, height)
        )
    worker = make_worker(client, engine, site, "w-cluster", groups)
    before = _getkeys_calls(redis_cluster)
    drain(worker, client, "zone-a", 1)
    drain(worker, client, "zone-b", 1)
    # redis-py would ask a master where the keys of each XREADGROUP and FCALL are.
    assert _getkeys_calls(redis_cluster) == before
