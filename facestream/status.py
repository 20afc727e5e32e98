"""What `facestream status` reports: each node, each group's streams, workers and cameras."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar, cast

import redis
import structlog
from redis.cluster import RedisCluster

from facestream.recognizer import Gallery
from facestream.schemas import CameraHealth, Heartbeat, InvalidMessage, clip, keys, printable

from .connect import Connections
from .redis_errors import REDIS_ERRORS, Fault, classify, is_transient
from .skipped import count_skipped
from .stream_faults import StreamFault, stream_faults
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

log = structlog.get_logger("status")

M = TypeVar("M")

_COUNTS = ("read", "recognised", "cached", "dead", "lost")  # what `status` shows of a worker


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
    solo: int = 0  # entries being tried alone after a crash (recognizer/solo.py)
    faults: tuple[StreamFault, ...] = ()  # emptied, or at the last possible id


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
    # Identities workers skip (another model's, bad vectors): name → "field: reason".
    gallery_unusable: dict[str, str] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class StatusReport:
    groups: list[GroupStatus]
    cameras: list[CameraHealth]
    workers: list[WorkerStatus]
    nodes: list[NodeStatus]
    # Keys whose record did not parse (a camera or worker writing junk), with the reason.
    unreadable: dict[str, str] = dataclasses.field(default_factory=dict)

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
            unreadable={key: why for report in reports for key, why in report.unreadable.items()},
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
        lines += [
            f"SOLO RETRY {g.group}: {g.solo} entries tried alone after a crash" for g in self.groups
            if g.solo
        ]  # fmt: skip
        lines += [f"STREAM FAULT: {f.describe()}" for g in self.groups for f in g.faults]
        unusable = {name: why for node in self.nodes for name, why in node.gallery_unusable.items()}
        if unusable:
            lines.append(
                f"gallery: {len(unusable)} unusable identit{'y' if len(unusable) == 1 else 'ies'} "
                "skipped by workers: "
                + "; ".join(f"{name!r} ({why})" for name, why in sorted(unusable.items())[:10])
            )
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
        if any(group.lag is None and not group.error for group in self.groups):
            lines.append(_LAG_UNKNOWN)
        if self.cameras:
            lines.append(
                f"\n{'camera':<14}{'group':<10}{'state':<13}{'in/s':>6}{'out/s':>7}"
                f"{'skipped':>9}{'shed':>7}{'lost':>6}{'reconn':>8}  last error"
            )
        now_ms = int(time.time() * 1000)
        for health in self.cameras:
            lost = max(0, health.dropped - health.skipped - health.shed)
            error = health.last_error or "-"
            if health.last_error and health.last_error_at:
                error += f" ({ago(now_ms - health.last_error_at)})"
            lines.append(
                f"{health.camera:<14}{health.group:<10}{health.state:<13}{health.fps_in:>6.1f}"
                f"{health.fps_out:>7.1f}{health.skipped:>9}{health.shed:>7}{lost:>6}"
                f"{health.reconnects:>8}  {error}"
            )
        if self.cameras:
            lines.append(_CAMERA_COLUMNS)
        if self.unreadable:
            lines.append(f"\n{len(self.unreadable)} unreadable records skipped:")
            lines += [f"  {key}: {why}" for key, why in sorted(self.unreadable.items())]
        # Cameras and workers write what is shown: no escape of theirs reaches the terminal.
        return "\n".join(printable(line) for line in lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [{**asdict(node), "up": node.up} for node in self.nodes],
            "groups": [asdict(group) for group in self.groups],
            "gallery_version": self.gallery_version,
            "gallery_in_sync": self.gallery_in_sync,
            "cameras": [camera.model_dump(mode="json") for camera in self.cameras],
            "workers": [asdict(worker) for worker in self.workers],
            "quarantined": self.quarantined,
            "unreadable": self.unreadable,
        }


_LAG_UNKNOWN = (
    "lag ?: Redis cannot say how many frames no worker has read yet (no worker has joined the "
    "group, Redis before 7.0, or entries were deleted); pending counts those being worked on"
)
_CAMERA_COLUMNS = (
    "skipped: frames the fps limit replaced by a newer one (normal); shed: dropped because "
    "the workers were behind (load); lost: Redis refused or was down, or the frame was rejected"
)


def ago(elapsed_ms: int) -> str:
    """How long ago, in the largest whole unit: '40 s ago', '3 min ago', '2 h ago', '5 d ago'."""
    seconds = max(0, elapsed_ms // 1000)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def known_groups(client: redis.Redis) -> list[str]:
    """Groups that have a frames or a results stream on this node, sorted.

    A key that only looks like one (a hostile or foreign name) is skipped, as workers skip it.
    """
    found: set[str] = set()
    for kind in ("frames", "results"):
        found |= keys.groups_in(client.scan_iter(match=keys.every_group(kind), _type="stream"))
    return sorted(found)


def _records(
    client: redis.Redis,
    key_of: Callable[[str], str],
    loads: Callable[[bytes], M],
    unreadable: dict[str, str],
) -> list[tuple[str, M]]:
    """Every record at `key_of("*")`, by the name in its key; one that does not parse is left
    out and named in `unreadable`, one that expired since the SCAN is left out."""
    names = sorted(client.scan_iter(match=key_of("*")))
    lookup = client.pipeline(transaction=False)  # not MGET: the keys span slots on a cluster
    for name in names:
        lookup.get(name)
    records = []
    for name, raw in zip(names, lookup.execute() if names else [], strict=True):
        key = name.decode(errors="replace")
        if raw is None:
            continue
        try:
            records.append((key.removeprefix(key_of("")), loads(raw)))
        except InvalidMessage as exc:
            _unreadable(unreadable, key, exc.reason)
    return records


def _workers(client: redis.Redis, node: str, unreadable: dict[str, str]) -> list[WorkerStatus]:
    return [
        WorkerStatus(
            consumer=consumer,
            groups=beat.groups,
            quarantined=beat.quarantined,
            at=beat.at,
            counts={k: beat.counts.get(k, 0) for k in _COUNTS},
            node=node,
        )
        for consumer, beat in _records(client, keys.worker_heartbeat, Heartbeat.loads, unreadable)
    ]


def _cameras(client: redis.Redis, unreadable: dict[str, str]) -> list[CameraHealth]:
    """Each camera's last health record; the key's camera wins over what the record claims
    (a camera agent may write only its own key, but anything into it)."""
    found = _records(client, keys.camera_health, CameraHealth.loads, unreadable)
    return [health.model_copy(update={"camera": camera}) for camera, health in found]


def _unreadable(unreadable: dict[str, str], key: str, reason: str) -> None:
    """Skip a record that does not parse, saying which and why (the others are still shown)."""
    unreadable[clip(key, 120)] = clip(reason, 200)
    count_skipped("status records", reason)
    log.warning("record skipped: it does not parse", key=clip(key, 120), error=clip(reason, 300))


def _group_status(client: redis.Redis, group: str, node: str) -> GroupStatus:
    try:
        return _read_group_status(client, group, node)
    except REDIS_ERRORS as exc:  # one broken group must not hide the others
        if classify(exc) in (None, Fault.CREDENTIALS, Fault.UNREACHABLE):
            raise  # not the group's: the node's (or ours)
        return _failed_group(group, node, clip(str(exc), 200))


def _failed_group(group: str, node: str, error: str) -> GroupStatus:
    """A group row that says why it could not be read instead of its figures."""
    return GroupStatus(group, 0, 0, None, 0, 0, 0, error=error, node=node)


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
        solo=client.hlen(keys.solo(group)),
        faults=tuple(stream_faults(client, group)),
    )


def collect_status(
    client: redis.Redis,
    groups: list[str] | None = None,
    node: str = SINGLE_NODE,
    check_gallery: bool = True,
) -> StatusReport:
    """One node's groups (or `groups`), gallery version, workers and cameras' last health.

    `check_gallery` reads the whole gallery to name the identities workers skip; the page,
    which samples often, checks it only when the version changes (web/monitor.py).
    """
    unreadable: dict[str, str] = {}
    return StatusReport(
        groups=[_group_status(client, group, node) for group in groups or known_groups(client)],
        cameras=_cameras(client, unreadable),
        workers=_workers(client, node, unreadable),
        nodes=[_node_status(client, node, check_gallery)],
        unreadable=unreadable,
    )


def _node_status(client: redis.Redis, node: str, check_gallery: bool) -> NodeStatus:
    if not check_gallery:
        return NodeStatus(node, Gallery(client).version())
    contents = Gallery(client).contents()
    return NodeStatus(node, contents.version, gallery_unusable=contents.unusable)


def collect_site_status(connections: Connections, groups: list[str] | None = None) -> StatusReport:
    """Every node of the topology in one report; a node that does not answer says so, with
    the groups the config puts on it, and hides nothing of the others; a cluster with a member
    down lists that member and what the rest still serve (`_partial_cluster`). When nothing
    answers, the last error is raised: there is nothing to report."""
    topology = connections.topology
    placed = topology.by_node(groups, draining=True) if groups and topology.kind == "nodes" else {}
    reports = []
    unreachable: Exception | None = None
    answered = False  # some node or cluster member did: there is a report, partial or not
    for node in topology.nodes.values():
        wanted = placed.get(node.name, []) if placed else groups
        if placed and not wanted:
            continue
        shown = wanted or list(node.groups + node.draining) or None
        client: redis.Redis | None = None
        try:
            client = connections.node(node)
            report = collect_status(client, shown, node.name)
            answered = True
            if isinstance(client, RedisCluster):  # a member may be down after a failover
                down, _ = _cluster_members(client, node.name)
                report = dataclasses.replace(report, nodes=[*report.nodes, *down])
        except REDIS_ERRORS as exc:
            if not is_transient(exc):
                raise
            unreachable = exc
            partial = _partial_cluster(client, shown, node.name) if client is not None else None
            answered = answered or partial is not None
            report = partial or _down(node.name, shown, exc)
        marked = [dataclasses.replace(g, draining=g.group in node.draining) for g in report.groups]
        reports.append(dataclasses.replace(report, groups=marked))
    site = StatusReport.merge(reports)
    if unreachable is not None and not answered:
        raise unreachable
    return site


def _down(node: str, groups: list[str] | None, exc: Exception) -> StatusReport:
    error = clip(f"unreachable: {exc}", 200)
    down = [_failed_group(group, node, error) for group in groups or []]
    return StatusReport(down, [], [], [NodeStatus(node, None, error)])


def _partial_cluster(
    client: redis.Redis, groups: list[str] | None, node: str
) -> StatusReport | None:
    """What a cluster with a member down still shows: each member that does not answer (one
    NodeStatus each), and per group and per live primary what can be read; None when no
    member answers (nothing to report).

    A read that spans the cluster (SCAN of every primary) fails while one is down, so groups,
    cameras and workers are read member by member; a group whose slot has no live master,
    or every group while the cluster refuses keyed commands (CLUSTERDOWN), gets its error.
    """
    if not isinstance(client, RedisCluster):
        return None  # a single server that does not answer: nothing more to read
    down, live = _cluster_members(client, node)
    if not live:
        return None
    unreadable: dict[str, str] = {}
    names = groups or sorted({g for primary in live for g in known_groups(primary)})
    cluster = cast(redis.Redis, client)
    return StatusReport(
        groups=[_group_status_or_error(cluster, group, node) for group in names],
        cameras=[health for primary in live for health in _tolerant(_cameras, primary, unreadable)],
        workers=[w for primary in live for w in _tolerant(_workers, primary, node, unreadable)],
        nodes=[_tolerant_node_status(cluster, node), *down],
        unreadable=unreadable,
    )


def _cluster_members(
    cluster: RedisCluster, node: str
) -> tuple[list[NodeStatus], list[redis.Redis]]:
    """The cluster's members that are down, one NodeStatus each named "<node> host:port", and
    clients of the primaries that answer.

    Down: flagged failed (`fail`, or `fail?` while suspected) in CLUSTER NODES, which still
    lists a master that failed over or a replica gone (the slot map the client reads drops
    them), or not answering a PING.
    """
    failed: dict[str, str] = {}
    try:
        listed: Any = cluster.cluster_nodes()
    except REDIS_ERRORS as exc:
        if not is_transient(exc):
            raise
        listed = {}
    for address, info in listed.items():
        flags = str(info.get("flags", "")).split(",")
        if "fail" in flags or "fail?" in flags:
            failed[address] = (
                f"flagged {'failed' if 'fail' in flags else 'suspected'} by the cluster"
            )
    live = []
    for member in cluster.get_nodes():  # type: ignore[no-untyped-call]
        if member.name in failed:
            continue
        connection = cluster.get_redis_connection(member)
        try:
            connection.ping()
        except REDIS_ERRORS as exc:
            if not is_transient(exc):
                raise
            failed[member.name] = f"unreachable: {exc}"
            continue
        if member.server_type == "primary":
            live.append(connection)
    down = [
        NodeStatus(f"{node} {name}", None, clip(why, 200)) for name, why in sorted(failed.items())
    ]
    return down, live


def _group_status_or_error(client: redis.Redis, group: str, node: str) -> GroupStatus:
    try:
        return _group_status(client, group, node)
    except REDIS_ERRORS as exc:
        if not is_transient(exc):
            raise
        return GroupStatus(
            group, 0, 0, None, 0, 0, 0, error=clip(f"unreadable: {exc}", 200), node=node
        )


def _tolerant(read: Callable[..., list[M]], *args: Any) -> list[M]:
    """`read(*args)`, or nothing while the cluster cannot serve it (the members are listed)."""
    try:
        return read(*args)
    except REDIS_ERRORS as exc:
        if not is_transient(exc):
            raise
        return []


def _tolerant_node_status(client: redis.Redis, node: str) -> NodeStatus:
    """The cluster's gallery version, or why it cannot be read now (a member is down)."""
    try:
        return _node_status(client, node, check_gallery=True)
    except REDIS_ERRORS as exc:
        if not is_transient(exc):
            raise
        return NodeStatus(node, None, clip(f"partly unreachable: {exc}", 200))


def gallery_size(connections: Connections) -> int:
    """Identities enrolled in the newest gallery any node holds that can say (0: none can)."""
    sizes = []
    for _, client in connections.every_node():
        try:
            sizes.append((Gallery(client).version(), int(client.hlen(keys.GALLERY_IDENTITIES))))
        except REDIS_ERRORS as exc:
            if not is_transient(exc):
                raise
            continue  # a node down, or a cluster with one (CLUSTERDOWN): the others say it
    return max(sizes, default=(0, 0))[1]
