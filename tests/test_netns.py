"""Nodes a network hop away: each Redis in its own namespace behind a delayed veth pair."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import pytest

from facestream.client import ResultSubscriber
from facestream.config import Settings, load_settings
from facestream.connect import Connections
from facestream.feed import subscribe
from facestream.ingest import EncodedFrame, FramePublisher
from facestream.recognizer import FaceEngine, embed_photos
from facestream.replicas import GalleryReplicas
from facestream.schemas import Result, keys
from facestream.status import collect_site_status
from facestream.topology import Topology
from tests.servers.netns import NamespacedRedis, namespaces_unavailable

from .helpers import FACES, IDENTITIES, drain, make_worker

DELAY_MS = 5.0


def test_two_nodes_on_their_own_hosts_with_network_delay(
    engine: FaceEngine, settings: Settings, tmp_path: Path
) -> None:
    why = namespaces_unavailable()
    if why is not None:
        pytest.skip(f"separate test hosts need {why}; the other topology tests use loopback")
    with (
        NamespacedRedis(0, tmp_path / "a", DELAY_MS) as node_a,
        NamespacedRedis(1, tmp_path / "b", DELAY_MS) as node_b,
    ):
        round_trip = node_a.round_trip_ms()
        if node_a.delayed and node_b.delayed:
            print(f"\nround trip to a node: {round_trip:.2f} ms (netem {DELAY_MS} ms each way)")
            assert round_trip >= 2 * DELAY_MS * 0.9, "the delay is not in the path"
        else:
            print(f"\nround trip to a node: {round_trip:.2f} ms over veth; NO added delay: "
                  "this kernel has no netem qdisc")  # fmt: skip
        site = settings.model_copy(
            update={"nodes": load_settings(nodes={
                "a": {"url": node_a.url, "groups": ["east"]},
                "b": {"url": node_b.url, "groups": ["west"]},
            }).nodes}
        )  # fmt: skip
        connections = Connections(Topology(site))
        replicas = GalleryReplicas(connections)
        for name in IDENTITIES:
            photos = sorted((FACES / "train" / name).iterdir())
            identity = embed_photos(engine, name, photos, largest_face=True)
            replicas.change(lambda gallery, i=identity: gallery.enroll(i))  # type: ignore[misc]
        photos = sorted((FACES / "test").glob("*.jpg"))
        for group in ("east", "west"):
            sender = FramePublisher(connections.for_group(group), group, f"cam-{group}", 100,
                                    site.limits)  # fmt: skip
            for photo in photos:
                width, height = cv2.imread(str(photo)).shape[1::-1]
                sender.publish(EncodedFrame(photo.read_bytes(), width, height))
        for node in connections.topology.nodes.values():
            (group,) = node.groups
            client = connections.node(node)
            worker = make_worker(client, engine, site, f"w-{node.name}", [group])
            drain(worker, client, group, len(photos))
            results = [Result.from_fields(f) for _, f in client.xrange(keys.results(group))]
            assert [r.seq for r in results] == list(range(len(photos)))
            assert sum(bool(r.identities) for r in results) == len(photos)

        report = collect_site_status(connections)
        assert [(n.node, n.up) for n in report.nodes] == [("a", True), ("b", True)]
        assert all(g.pending == 0 and g.lag == 0 for g in report.groups)
        stop = threading.Event()
        feed = subscribe(connections, ResultSubscriber, ["east", "west"], start="oldest",
                         block_ms=100)  # fmt: skip
        feed.stop = stop
        merged = []
        for result in feed:
            merged.append((result.group, result.seq))
            if len(merged) == 2 * len(photos):
                stop.set()
        assert sorted(merged) == sorted(
            (group, seq) for group in ("east", "west") for seq in range(len(photos))
        )
