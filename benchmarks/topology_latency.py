"""Latency of one cached frame through the cluster, in this process, with and without WAIT 1."""

from __future__ import annotations

import time

from facestream.config import load_settings
from facestream.connect import connect_node
from facestream.ingest import EncodedFrame, FramePublisher
from facestream.recognizer import FaceEngine, Worker
from facestream.replication import ReplicaWait
from facestream.topology import Topology
from tests.servers.redis_nodes import ClusterProcess


def wait_latency(
    cluster: ClusterProcess,
    group: str,
    jpeg: bytes,
    size: tuple[int, int],
    engine: FaceEngine,
    count: int,
    tracks: bool,
) -> dict[str, dict[str, float]]:
    """One cached frame at a time through an in-process worker on the cluster, with and without
    WAIT 1: send (XADD [+WAIT]) and the worker step that serves it (read, GET, commit [+WAIT])."""
    settings = load_settings(
        cluster={"urls": cluster.urls}, groups=[group], tracks={"enabled": tracks}
    )
    (node,) = Topology(settings).nodes.values()
    client = connect_node(node)
    timings: dict[str, dict[str, list[float]]] = {}
    modes = {"no WAIT": None, "WAIT 1": ReplicaWait(1, 100)}
    workers = {}
    publishers = {}
    for mode, wait in modes.items():
        workers[mode] = Worker(client, engine, settings.worker, settings.match, settings.limits,
                               f"latency-{len(workers)}", [group], replica_wait=wait,
                               tracks=settings.tracks if tracks else None)  # fmt: skip
        publishers[mode] = FramePublisher(client, group, f"lat-{len(publishers)}", 1_000_000,
                                          settings.limits, replica_wait=wait)  # fmt: skip
        timings[mode] = {"send": [], "step": []}
        workers[mode].step()
        for _ in range(5):  # warm-up: connections, the gallery, the commit function
            publishers[mode].publish(EncodedFrame(jpeg, *size))
            while not workers[mode].step():
                pass
    # The modes alternate in blocks, so drift hits both alike; each gets `count` frames.
    block = max(1, min(10, count))
    for start in range(0, 2 * count, block):
        mode = list(modes)[(start // block) % 2]
        for _ in range(block):
            t0 = time.perf_counter()
            publishers[mode].publish(EncodedFrame(jpeg, *size))
            t1 = time.perf_counter()
            served = 0
            while not served:
                served = workers[mode].step()
            t2 = time.perf_counter()
            timings[mode]["send"].append(1000 * (t1 - t0))
            timings[mode]["step"].append(1000 * (t2 - t1))
    client.close()
    return {
        f"{mode} {what}": {"p50": percentile(v, 50), "p99": percentile(v, 99), "n": len(v)}
        for mode, parts in timings.items()
        for what, v in parts.items()
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]
