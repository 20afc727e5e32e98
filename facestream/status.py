"""What `facestream status` reports: each node, each group's streams, workers and cameras."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import redis
from pydantic import ValidationError
from redis.exceptions import RedisClusterException

from facestream.recognizer import Gallery
from facestream.schemas import CameraHealth, InvalidGroup, clip, keys

from .connect import Connections
from .topology import SINGLE_NODE

__all__ = [
    "GroupStatus",
    "NodeStatus",
    "StatusReport",
    "WorkerStatus",
    "collect_site_status",
    "collect_status",
    "gallery_size",
    "known_groups",
]


@dataclass(frozen=True)
class GroupStatus:
    """One camera group's streams: queued frames, work in flight, results, dead letters."""

    group: str
    frames: int
    pending: int
    lag: int | None  # Redis 7+: entries not yet delivered to any worker; None before 7
    consumers: int
    results: int
    dead: int
    error: str | None = None  # a key of the group refuses our reads, or its node is down
    node: str = SINGLE_NODE
    draining: bool = False  # moved to another node; what is left here is still served


@dataclass(frozen=True)
class WorkerStatus:
    """A live worker's last heartbeat (it expires 15 s after the worker stops)."""

    consumer: str
    groups: list[str]
    quarantined: dict[str, str]  # group -> why its keys refuse our commands
    at: int  # epoch ms of the heartbeat
    counts: dict[str, int]  # frames read, recognised, cached, dead-lettered, lost to trimming
    node: str = SINGLE_NODE


@dataclass(frozen=True)
class NodeStatus:
    """One node of the topology: reachable or not, and the gallery version it holds."""

    node: str
    gallery_version: int | None  # None: not reachable
    error: str | None = None

    @property
    def up(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class StatusReport:
    groups: list[GroupStatus]
    cameras: list[CameraHealth]
    workers: list[WorkerStatus]
    nodes: list[NodeStatus]

    @property
    def gallery_version(self) -> int:
        """The newest gallery version any reachable node holds."""
        return max((n.gallery_version or 0 for n in self.nodes), default=0)

    @property
    def gallery_in_sync(self) -> bool:
        """Every reachable node holds the same gallery version (replicated enrolments)."""
        return len({n.gallery_version for n in self.nodes if n.up}) <= 1

    @classmethod
    def merge(cls, reports: list[StatusReport]) -> StatusReport:
        """One report for the site from one per node."""
        return cls(
            groups=[group for report in reports for group in report.groups],
            cameras=[camera for report in reports for camera in report.cameras],
            workers=[worker for report in reports for worker in report.workers],
            nodes=[node for report in reports for node in report.nodes],
        )

    @property
    def quarantined(self) -> dict[str, str]:
        """Groups some worker has quarantined, with the reason it gave."""
        return {g: why for worker in self.workers for g, why in worker.quarantined.items()}

    def render(self) -> str:
        """The report as `facestream status` prints it: aligned tables."""
        several = len(self.nodes) > 1
        lines = []
        if several:
            lines += [f"{'node':<16}{'gallery':>8}  state"]
            lines += [
                f"{n.node:<16}{'-' if n.gallery_version is None else n.gallery_version:>8}  "
                + ("up" if n.up else f"DOWN: {n.error}")
                for n in self.nodes
            ]
            lines.append("")
        node_column = f"{'node':<12}" if several else ""
        lines.append(
            f"{'group':<16}{node_column}{'frames':>8}{'pending':>9}{'lag':>7}{'consumers':>11}"
            f"{'results':>9}{'dead':>7}"
        )
        for group in self.groups:
            lag = "?" if group.lag is None else group.lag
            lines.append(
                f"{group.group:<16}{f'{group.node:<12}' if several else ''}{group.frames:>8}"
                f"{group.pending:>9}{lag:>7}{group.consumers:>11}{group.results:>9}{group.dead:>7}"
                + (f"  {group.error}" if group.error else "")
                + ("  (draining: moved to another node)" if group.draining else "")
            )
        lines.append(f"gallery version {self.gallery_version}")
        if not self.gallery_in_sync:
            lines.append("GALLERY OUT OF SYNC between nodes: run `facestream gallery sync`")
        lines += [f"QUARANTINED {group}: {why}" for group, why in sorted(self.quarantined.items())]
        if self.workers:
            lines.append(
                f"\n{'worker':<28}{'read':>8}{'recognised':>12}{'cached':>8}{'dead':>6}  groups"
            )
        for worker in self.workers:
            counts = worker.counts
            lines.append(
                f"{worker.consumer:<28}{counts['read']:>8}{counts['recognised']:>12}"
                f"{counts['cached']:>8}{counts['dead']:>6}  {','.join(worker.groups) or '-'}"
            )
        if self.cameras:
            lines.append(f"\n{'camera':<14}{'group':<10}{'state':<13}{'in/s':>6}{'out/s':>7}"
                         f"{'dropped':>9}{'reconn':>8}  last error")  # fmt: skip
        for health in self.cameras:
            lines.append(
                f"{health.camera:<14}{health.group:<10}{health.state:<13}{health.fps_in:>6.1f}"
                f"{health.fps_out:>7.1f}{health.dropped:>9}{health.reconnects:>8}  "
                f"{health.last_error or '-'}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [{**asdict(node), "up": node.up} for node in self.nodes],
            "groups": [asdict(group) for group in self.groups],
            "gallery_version": self.gallery_version,
            "gallery_in_sync": self.gallery_in_sync,
            "cameras": [camera.model_dump(mode="json") for camera in self.cameras],
            "workers": [asdict(worker) for worker in self.workers],
            "quarantined": self.quarantined,
        }


def known_groups(client: redis.Redis) -> list[str]:
    """Groups that have a frames or a results stream on this node, sorted.

    A key that only looks like one (a hostile or foreign name) is skipped, as workers skip it.
    """
    found = set()
    for pattern in ("fs:{*}:frames", "fs:{*}:results"):
        for key in client.scan_iter(match=pattern, _type="stream"):
            try:
                found.add(keys.group_of(key))
            except InvalidGroup:
                continue
    return sorted(found)


def _values(client: redis.Redis, pattern: str) -> list[tuple[bytes, bytes | None]]:
    """Every key matching `pattern` with its value (None if it expired since the SCAN)."""
    names = sorted(client.scan_iter(match=pattern))
    lookup = client.pipeline(transaction=False)  # not MGET: the keys span slots on a cluster
    for name in names:
        lookup.get(name)
    return list(zip(names, lookup.execute() if names else [], strict=True))


def _workers(client: redis.Redis, node: str) -> list[WorkerStatus]:
    workers = []
    for name, raw in _values(client, keys.worker_heartbeat("*")):
        if raw is None:
            continue  # expired between SCAN and GET
        beat = orjson.loads(raw)
        counts = {k: int(beat.get(k, 0)) for k in ("read", "recognised", "cached", "dead", "lost")}
        workers.append(
            WorkerStatus(
                consumer=name.decode().removeprefix(keys.worker_heartbeat("")),
                groups=list(beat.get("groups", [])),
                quarantined=dict(beat.get("quarantined", {})),
                at=int(beat.get("at", 0)),
                counts=counts,
                node=node,
            )
        )
    return workers


def _group_status(client: redis.Redis, group: str, node: str) -> GroupStatus:
    try:
        return _read_group_status(client, group, node)
    except redis.ResponseError as exc:  # one broken group must not hide the others
        return GroupStatus(group, 0, 0, None, 0, 0, 0, error=clip(str(exc), 200), node=node)


def _read_group_status(client: redis.Redis, group: str, node: str) -> GroupStatus:
    stream = keys.frames(group)
    groups_info = client.xinfo_groups(stream) if client.exists(stream) else []
    recognizers = next(
        (g for g in groups_info if g["name"].decode() == keys.RECOGNIZERS), {"pending": 0}
    )
    return GroupStatus(
        group=group,
        frames=client.xlen(stream),
        pending=int(recognizers.get("pending", 0)),
        lag=recognizers.get("lag"),
        consumers=int(recognizers.get("consumers", 0)),
        results=client.xlen(keys.results(group)),
        dead=client.xlen(keys.dead(group)),
        node=node,
    )


def collect_status(
    client: redis.Redis, groups: list[str] | None = None, node: str = SINGLE_NODE
) -> StatusReport:
    """One node's groups (or `groups`), gallery version, workers and cameras' last health."""
    cameras = []
    for _, raw in _values(client, keys.camera_health("*")):
        if raw is None:
            continue  # expired between SCAN and GET
        try:
            cameras.append(CameraHealth.model_validate_json(raw))
        except ValidationError:  # junk: a camera may write its own key
            continue
    return StatusReport(
        groups=[_group_status(client, group, node) for group in groups or known_groups(client)],
        cameras=cameras,
        workers=_workers(client, node),
        nodes=[NodeStatus(node, Gallery(client).version())],
    )


def collect_site_status(connections: Connections, groups: list[str] | None = None) -> StatusReport:
    """Every node of the topology in one report; a node that does not answer says so, with
    the groups the config puts on it, and hides nothing of the others. When no node answers,
    the last error is raised: there is nothing to report."""
    topology = connections.topology
    placed = topology.by_node(groups, draining=True) if groups and topology.kind == "nodes" else {}
    reports = []
    unreachable: Exception | None = None
    for node in topology.nodes.values():
        wanted = placed.get(node.name, []) if placed else groups
        if placed and not wanted:
            continue
        shown = wanted or list(node.groups + node.draining) or None
        try:
            report = collect_status(connections.node(node), shown, node.name)
        except (redis.ConnectionError, redis.TimeoutError, RedisClusterException) as exc:
            unreachable = exc
            error = clip(f"unreachable: {exc}", 200)
            down = [
                GroupStatus(group, 0, 0, None, 0, 0, 0, error=error, node=node.name)
                for group in shown or []
            ]
            report = StatusReport(down, [], [], [NodeStatus(node.name, None, error)])
        marked = [dataclasses.replace(g, draining=g.group in node.draining) for g in report.groups]
        reports.append(dataclasses.replace(report, groups=marked))
    site = StatusReport.merge(reports)
    if unreachable is not None and not any(node.up for node in site.nodes):
        raise unreachable
    return site


def gallery_size(connections: Connections) -> int:
    """Identities enrolled in the newest gallery any reachable node holds (0: none answers)."""
    sizes = []
    for _, client in connections.every_node():
        try:
            sizes.append((Gallery(client).version(), int(client.hlen(keys.GALLERY_IDENTITIES))))
        except (redis.ConnectionError, redis.TimeoutError, RedisClusterException):
            continue
    return max(sizes, default=(0, 0))[1]
