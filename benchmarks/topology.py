"""Throughput and per-frame Redis costs on 1, 2, 3 independent nodes and on a Redis Cluster.

Prints a table and writes benchmarks/results/topology.json (or --json PATH). Every row runs the
real `facestream worker --config … --concurrency C` supervisor, with the same number of worker
processes in every row (default 6 = 6 x 1 node, 3 x 2 nodes, 2 x 3 nodes, 6 x the cluster),
worker settings at their defaults and one onnxruntime thread per process:

- nodes N:     N independent redis-servers (`nodes:` config), one camera group on each.
- cluster G:   one Redis Cluster (3 masters + 1 replica each, `cluster:` config) with G groups
               whose `{G}` slots are on different masters.
- cluster 3 +WAIT: the same with `redis.wait_replicas: 1` (WAIT after each batch's commits).

Every server runs with AOF on and `appendfsync always` (the reliability setting). The same total
work is spread over the groups of a row, so on a machine whose cores are the limit, scaling
efficiency (frames/s of a row / frames/s of 1 node, same round) shows what the multi-node and
cluster code costs, not what more machines would gain. Each row:

1. start the supervisor with empty streams; wait for every process's heartbeat;
2. miss: SIGSTOP the workers, queue --frames distinct 640x360 JPEGs (split over the groups),
   SIGCONT, wait for every result (model runs on each);
3. hit: the same with --hits frames, each group cycling over 20 of its own (already cached)
   frames: the model never runs, so this is the Redis + Python cost of a frame;
4. idle: a few seconds with nothing queued (blocking reads, heartbeats, gallery polls).

Frames/s come from the results' stream ids (the commit time in ms), between the 5th and 95th
percentile result of the phase, so ramp-up and tail are left out. Worker CPU per frame: the
supervisor's and its worker processes' user + system time (/proc) over the phase; it does not
count time other work on the machine took, so it is steadier than frames/s on a shared box.
Per-frame Redis costs: INFO stats/cpu/commandstats of every node (every master of the cluster)
before and after the phase, divided by its frames, less what this script sent (its queued
frames, XLEN polls and INFO calls) and less Redis's CPU while the frames were queued. Rounds
are interleaved (the row order rotates each round); every figure is the median over rounds,
frames/s with its spread (max/min - 1).

Finally the latency of one frame through the cluster, in this process, with and without
`wait_replicas: 1`: frame send (XADD [+ WAIT]) and one worker step on a cached frame (read,
cache GET, ack-gated commit [+ WAIT]); and a sizing table CALCULATED from the per-frame costs
(cameras x fps -> worker cores, Redis servers, traffic). docs/capacity.md has a run's figures.

Usage: python benchmarks/topology.py [--quick] [--rounds 3] [--tracks off] [--json out.json]
       python benchmarks/topology.py --report out.json   (reprint a saved run)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from throughput import make_frames

from facestream.config import load_settings
from facestream.connect import connect_node
from facestream.demo import DEMO_DATA
from facestream.ingest import EncodedFrame, FramePublisher
from facestream.recognizer import FaceEngine, Gallery, Worker, decode_jpeg, embed_photos
from facestream.replication import ReplicaWait
from facestream.schemas import keys
from facestream.server import find_redis_server
from facestream.topology import Topology
from tests.servers.redis_nodes import ClusterProcess, RedisNodes

#: Commands the commit function runs inside Redis (commandstats counts them too); the rest of
#: a frame's commands are sent by the worker (pipelined per batch, so fewer round trips).
IN_COMMIT = frozenset({"xpending", "hget", "type", "xadd", "xack", "set", "hset", "expire"})
HIT_DISTINCT = 20  # distinct (cached) images each group cycles over on the hit path
TRIM = 0.05  # share of a phase's results left out at each end
# What the sampler sends each node per round, besides one XLEN per group there.
INFO_ARGS = ("INFO", "stats", "cpu", "commandstats")


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # "nodes" or "cluster"
    groups: int
    processes: int  # in all
    wait: int = 0

    @property
    def concurrency(self) -> int:
        per = self.processes // (self.groups if self.kind == "nodes" else 1)
        return max(1, per)


@dataclass
class Target:
    """One Redis server the sampler reads: an independent node or a cluster master."""

    name: str
    client: redis.Redis
    groups: list[str]


@dataclass
class Ledger:
    """What this script itself sent the servers (polls, snapshots, queued frames), to subtract."""

    calls: dict[str, int] = field(default_factory=dict)
    bytes_in: int = 0  # request bytes (client -> Redis)
    bytes_out: int = 0  # reply bytes (Redis -> client)

    def add(self, command: str, request: int, reply: int, calls: int = 1) -> None:
        self.calls[command] = self.calls.get(command, 0) + calls
        self.bytes_in += request
        self.bytes_out += reply

    def copy(self) -> Ledger:
        return Ledger(dict(self.calls), self.bytes_in, self.bytes_out)


@dataclass
class Sample:
    at: float
    results: int
    info: list[dict[str, float]]  # per target; empty for a results-only poll
    ledger: Ledger


@dataclass
class Phase:
    name: str
    frames: int
    base: int  # results before it
    before: Sample = field(init=False)  # workers stopped, nothing queued yet
    queued: Sample = field(init=False)  # workers stopped, frames queued
    done: Sample = field(init=False)  # every result in
    worker_cpu_s: float = 0.0  # CPU the worker processes used from the go to the last result


# -- redis helpers ------------------------------------------------------------------------------


def resp_size(args: Iterable[Any]) -> int:
    """Bytes of a command as RESP on the wire."""
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    size = len(f"*{len(parts)}\r\n")
    for part in parts:
        size += len(f"${len(part)}\r\n") + len(part) + 2
    return size


def parse_info(raw: bytes) -> dict[str, float]:
    """INFO's text as name -> number; commandstats become `cmd:<name>:calls|usec`."""
    found: dict[str, float] = {}
    for line in raw.decode().splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, _, value = line.partition(":")
        if name.startswith("cmdstat_"):
            command = name.removeprefix("cmdstat_")
            for item in value.split(","):
                key, _, number = item.partition("=")
                if key in ("calls", "usec"):
                    found[f"cmd:{command}:{key}"] = float(number)
            continue
        with contextlib.suppress(ValueError):
            found[name] = float(value)
    return found


def _stat(pid: str) -> list[str] | None:
    """Fields of /proc/PID/stat after the process name (state, ppid, pgrp, ...), or None."""
    try:
        return (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None  # gone meanwhile


def family(root: int) -> list[int]:
    """`root` and its descendants (the supervisor and its worker processes, each of which
    runs in its own process group)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(entry.name)) is not None:
            parents[int(entry.name)] = int(fields[1])
    found = [root]
    for pid in found:
        found += [child for child, parent in parents.items() if parent == pid]
    return found


def family_cpu_s(root: int) -> float:
    """User + system CPU seconds of `root` and its live descendants (Linux /proc)."""
    ticks = 0
    for pid in family(root):
        fields = _stat(str(pid))
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def signal_family(root: int, signum: int) -> None:
    for pid in family(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def raw_client(url: str | None = None, port: int | None = None) -> redis.Redis:
    client = redis.Redis.from_url(url) if url else redis.Redis(host="127.0.0.1", port=port)
    client.set_response_callback("INFO", lambda response, **_: response)
    return client


def sample(targets: list[Target], ledger: Ledger, info: bool) -> Sample:
    """Results committed so far (XLEN of every group), and INFO of every target if `info`."""
    infos: list[dict[str, float]] = []
    total = 0
    for target in targets:
        pipe = target.client.pipeline(transaction=False)
        if info:
            pipe.execute_command(*INFO_ARGS)
        for group in target.groups:
            pipe.xlen(keys.results(group))
        replies = pipe.execute()
        if info:
            raw = replies.pop(0)
            infos.append(parse_info(raw))
            ledger.add("info", resp_size(INFO_ARGS), len(f"${len(raw)}\r\n") + len(raw) + 2)
        for group, length in zip(target.groups, replies, strict=True):
            total += int(length)
            ledger.add("xlen", resp_size(("XLEN", keys.results(group))), len(f":{length}\r\n"))
    return Sample(time.monotonic(), total, infos, ledger.copy())


COUNTED = (
    "total_net_input_bytes",
    "total_net_output_bytes",
    "total_net_repl_input_bytes",
    "total_net_repl_output_bytes",
    "used_cpu_sys",
    "used_cpu_user",
)


def costs(
    a: Sample,
    b: Sample,
    targets: list[Target],
    frames: int | None = None,
    skip: tuple[Sample, Sample] | None = None,
) -> dict[str, Any]:
    """What the servers did between snapshots a and b, per frame (results committed meanwhile,
    or `frames`), less what this script sent (its ledger) and the CPU spent between the
    snapshots `skip` (queueing the frames while the workers were stopped)."""
    count = max(1, frames if frames is not None else b.results - a.results)
    totals: dict[str, float] = {}
    per_target: dict[str, float] = {}
    for index, target in enumerate(targets):
        before, after = a.info[index], b.info[index]
        calls = 0.0
        for name, value in after.items():
            if name.startswith("cmd:") or name in COUNTED:
                delta = value - before.get(name, 0.0)
                totals[name] = totals.get(name, 0.0) + delta
                if name.endswith(":calls"):
                    calls += delta
        per_target[target.name] = calls
    ours = {k: b.ledger.calls.get(k, 0) - a.ledger.calls.get(k, 0) for k in b.ledger.calls}
    commands: dict[str, float] = {}
    usec = 0.0
    for name, value in totals.items():
        if not name.startswith("cmd:"):
            continue
        _, command, kind = name.split(":")
        if kind == "usec":
            if not ours.get(command):
                usec += value
            continue
        calls = value - ours.get(command, 0)
        if calls > 0.5:
            commands[command] = calls / count
    ours_total = sum(ours.values())
    for name in per_target:  # our calls, spread over the targets as they went (approximately)
        per_target[name] = max(0.0, per_target[name] - ours_total / len(per_target)) / count
    cpu = totals.get("used_cpu_sys", 0.0) + totals.get("used_cpu_user", 0.0)
    if skip is not None:
        for index in range(len(targets)):
            s0, s1 = skip[0].info[index], skip[1].info[index]
            cpu -= sum(s1.get(k, 0.0) - s0.get(k, 0.0) for k in ("used_cpu_sys", "used_cpu_user"))
    return {
        "frames": count,
        "commands": dict(sorted(commands.items(), key=lambda kv: -kv[1])),
        "commands_total": sum(commands.values()),
        "commands_per_target": per_target,
        "redis_command_usec": usec / count,
        "redis_cpu_usec": 1e6 * cpu / count,
        # Redis 7 counts replication traffic in total_net_*; the clients' share is the rest.
        "bytes_in": (
            totals.get("total_net_input_bytes", 0)
            - totals.get("total_net_repl_input_bytes", 0)
            - (b.ledger.bytes_in - a.ledger.bytes_in)
        )
        / count,
        "bytes_out": (
            totals.get("total_net_output_bytes", 0)
            - totals.get("total_net_repl_output_bytes", 0)
            - (b.ledger.bytes_out - a.ledger.bytes_out)
        )
        / count,
        "repl_bytes_out": totals.get("total_net_repl_output_bytes", 0) / count,
    }


# -- one row ------------------------------------------------------------------------------------


class RowRun:
    def __init__(
        self,
        row: Row,
        groups: list[str],
        nodes: RedisNodes,
        cluster: ClusterProcess,
        scratch: Path,
        identities: list[Any],
        args: argparse.Namespace,
    ) -> None:
        self.row = row
        self.groups = groups[: row.groups]
        self.nodes = nodes
        self.cluster = cluster
        self.scratch = scratch
        self.identities = identities
        self.args = args
        self.ledger = Ledger()
        self.targets: list[Target] = []
        self.seq: dict[str, int] = {}
        self.clients: dict[str, redis.Redis] = {}
        if row.kind == "nodes":
            for index, group in enumerate(self.groups):
                client = raw_client(url=nodes.urls[index])
                self.targets.append(Target(f"node{index}", client, [group]))
        else:
            masters = sorted({cluster.master_for_slot(s) for s in range(0, 16384, 2048)})
            for port in masters:
                mine = [g for g in self.groups if cluster.master_for_key(keys.frames(g)) == port]
                self.targets.append(Target(f"master:{port}", raw_client(port=port), mine))

    def config(self) -> Path:
        settings: dict[str, Any] = {
            "models": {"threads": 1},
            "log": {"format": "json", "level": "warning"},
            "redis": {"wait_replicas": self.row.wait, "wait_timeout_ms": 100},
            "tracks": {"enabled": self.args.tracks == "on"},
        }
        if self.row.kind == "nodes":
            settings["nodes"] = {
                f"node{i}": {"url": self.nodes.urls[i], "groups": [g]}
                for i, g in enumerate(self.groups)
            }
        else:
            settings["cluster"] = {"urls": self.cluster.urls}
            settings["groups"] = self.groups
        name = self.row.name.replace(" ", "-").replace(",", "")
        path = self.scratch / f"{name}.yaml"
        path.write_text(yaml.safe_dump(settings))
        path.chmod(0o600)
        return path

    def reset(self) -> None:
        """Empty every server of the row, enrol the gallery where its workers read it, and
        connect the clients that queue frames (a cluster client's start-up commands land
        before the first snapshot)."""
        for target in self.targets:
            target.client.flushall()
        if self.row.kind == "nodes":
            for index, group in enumerate(self.groups):
                self.clients[group] = redis.Redis.from_url(self.nodes.urls[index])
        else:
            self.cluster.wait_healthy()
            client = self.cluster.client()
            for group in self.groups:
                self.clients[group] = client
        for client in {id(c): c for c in self.clients.values()}.values():
            gallery = Gallery(client)
            for identity in self.identities:
                gallery.enroll(identity)

    def enqueue(self, per_group: dict[str, list[bytes]], width: int, height: int) -> None:
        limits = load_settings().limits
        for group, jpegs in per_group.items():
            client = self.clients[group]
            publisher = FramePublisher(
                client, group, f"cam-{group}", 1_000_000, limits, first_seq=self.seq.get(group, 0)
            )
            pipe = client.pipeline(transaction=False)
            requests = 0
            for jpeg in jpegs:
                frame = publisher.frame(EncodedFrame(jpeg, width, height))
                publisher.seq += 1
                fields: dict[Any, Any] = frame.to_fields()
                pipe.xadd(keys.frames(group), fields, maxlen=1_000_000, approximate=True)
                args = ["XADD", keys.frames(group), "MAXLEN", "~", 1_000_000, "*"]
                requests += resp_size([*args, *(x for kv in fields.items() for x in kv)])
                if len(pipe) >= 200 or jpeg is jpegs[-1]:
                    ids = pipe.execute()
                    replies = sum(len(f"${len(i)}\r\n") + len(i) + 2 for i in ids)
                    self.ledger.add("xadd", requests, replies, calls=len(ids))
                    requests = 0
            self.seq[group] = publisher.seq

    def heartbeats(self) -> int:
        """Worker processes that wrote their heartbeat (our SCANs go in the ledger)."""
        found = 0
        for target in self.targets:
            cursor = 0
            while True:
                cursor, names = target.client.scan(
                    cursor, match=keys.worker_heartbeat("*"), count=1000
                )
                self.ledger.add("scan", 0, 0)
                found += len(names)
                if not cursor:
                    break
        return found

    def run_phase(
        self,
        phase: Phase,
        root: int,
        frames: dict[str, list[bytes]],
        size: tuple[int, int],
        poll_s: float,
    ) -> None:
        """Stop the workers, queue the frames, go, poll results until all are in."""
        signal_family(root, signal.SIGSTOP)
        try:
            phase.before = sample(self.targets, self.ledger, info=True)
            self.enqueue(frames, *size)
            phase.queued = sample(self.targets, self.ledger, info=True)
            cpu_before = family_cpu_s(root)
        finally:
            signal_family(root, signal.SIGCONT)
        deadline = time.monotonic() + self.args.phase_timeout
        while True:
            time.sleep(poll_s)
            current = sample(self.targets, self.ledger, info=False)
            if current.results >= phase.base + phase.frames:
                break
            if time.monotonic() > deadline:
                done = current.results - phase.base
                raise TimeoutError(f"{self.row.name} {phase.name}: {done} of {phase.frames}")
        phase.worker_cpu_s = family_cpu_s(root) - cpu_before
        phase.done = sample(self.targets, self.ledger, info=True)

    def run(self, frames: list[bytes], size: tuple[int, int]) -> dict[str, Any]:
        self.reset()
        config = self.config()
        command = [sys.executable, "-m", "facestream", "--config", str(config), "worker",
                   "--concurrency", str(self.row.concurrency)]  # fmt: skip
        before = sample(self.targets, self.ledger, info=True)
        started = time.monotonic()
        with open(self.scratch / "workers.log", "ab") as log:
            supervisor = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
            )
        root = supervisor.pid
        groups = self.groups
        miss = {g: frames[i :: len(groups)] for i, g in enumerate(groups)}
        per_group_hits = self.args.hits // len(groups)
        hit = {
            g: [miss[g][k % min(HIT_DISTINCT, len(miss[g]))] for k in range(per_group_hits)]
            for g in groups
        }
        try:
            while self.heartbeats() < self.row.processes:
                if supervisor.poll() is not None:
                    raise RuntimeError(f"{self.row.name}: workers exited {supervisor.returncode}")
                if time.monotonic() - started > 180:
                    raise TimeoutError(f"{self.row.name}: workers not ready")
                time.sleep(0.2)
            ready_s = time.monotonic() - started
            ready = sample(self.targets, self.ledger, info=True)
            total_miss = sum(len(v) for v in miss.values())
            phases = {
                "miss": Phase("miss", total_miss, ready.results),
                "hit": Phase("hit", sum(len(v) for v in hit.values()), ready.results + total_miss),
            }
            self.run_phase(phases["miss"], root, miss, size, 0.2)
            self.run_phase(phases["hit"], root, hit, size, 0.02)
            idle_start = sample(self.targets, self.ledger, info=True)
            idle_cpu = family_cpu_s(root)
            time.sleep(self.args.idle)
            idle_cpu = family_cpu_s(root) - idle_cpu
            idle_end = sample(self.targets, self.ledger, info=True)
        finally:
            signal_family(root, signal.SIGCONT)
            supervisor.send_signal(signal.SIGTERM)
            try:
                supervisor.wait(60)
            except subprocess.TimeoutExpired:
                signal_family(root, signal.SIGKILL)
                supervisor.wait()
        startup = costs(before, ready, self.targets, frames=self.row.processes)
        report: dict[str, Any] = {"ready_s": ready_s, "startup": startup}
        stamps = self.result_stamps()
        for name, phase in phases.items():
            report[name] = phase_report(phase, self.targets, stamps, len(miss[groups[0]]))
        hits = [cached for g in groups for _, cached in stamps[g][len(miss[g]) :]]
        report["hit_share_cached"] = sum(hits) / max(1, len(hits))
        idle = costs(idle_start, idle_end, self.targets, frames=1)
        report["idle"] = idle | {"seconds": idle_end.at - idle_start.at, "worker_cpu_s": idle_cpu}
        return report

    def result_stamps(self) -> dict[str, list[tuple[int, bool]]]:
        """Per group, each result's commit time (ms, from its stream id) and `cached` flag."""
        stamps = {}
        for group in self.groups:
            entries = self.clients[group].xrange(keys.results(group))
            stamps[group] = [
                (int(entry_id.split(b"-")[0]), fields.get(b"cached") in (b"1", b"true"))
                for entry_id, fields in entries
            ]
        return stamps


def phase_report(
    phase: Phase,
    targets: list[Target],
    stamps: dict[str, list[tuple[int, bool]]],
    miss_per_group: int,
) -> dict[str, Any]:
    """Frames/s between the 5th and 95th percentile commit of the phase; costs over all of it."""
    if phase.name == "miss":
        times = sorted(t for group in stamps.values() for t, _ in group[:miss_per_group])
    else:
        times = sorted(t for group in stamps.values() for t, _ in group[miss_per_group:])
    n = len(times)
    lo, hi = int(TRIM * n), int((1 - TRIM) * n) - 1
    span_ms = max(1, times[hi] - times[lo])
    whole_s = phase.done.at - phase.queued.at
    return {
        "fps": (hi - lo) / (span_ms / 1000),
        "fps_whole_phase": n / whole_s,
        "frames": n,
        "window_ms": span_ms,
        "worker_cpu_ms": 1000 * phase.worker_cpu_s / n,
        "per_frame": costs(
            phase.before,
            phase.done,
            targets,
            frames=phase.frames,
            skip=(phase.before, phase.queued),
        ),
    }


# -- WAIT latency -------------------------------------------------------------------------------


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
    block = 10
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


# -- main ---------------------------------------------------------------------------------------


def pick_groups(cluster: ClusterProcess, count: int = 3) -> list[str]:
    """Group names whose `{G}` slots are on different masters."""
    chosen: dict[int, str] = {}
    for index in range(1000):
        name = f"zone{index}"
        master = cluster.master_for_key(keys.frames(name))
        chosen.setdefault(master, name)
        if len(chosen) == count:
            break
    return list(chosen.values())


def spread(values: list[float]) -> float:
    return max(values) / min(values) - 1 if values and min(values) > 0 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 rows, 1 round")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (3; quick 1)")
    parser.add_argument("--frames", type=int, default=None, help="miss frames per row (288)")
    parser.add_argument("--hits", type=int, default=None, help="hit frames per row (1200)")
    parser.add_argument("--processes", type=int, default=6, help="worker processes per row")
    parser.add_argument("--latency", type=int, default=None, help="frames per WAIT mode (200)")
    parser.add_argument("--idle", type=float, default=None, help="idle seconds per row (3)")
    parser.add_argument("--tracks", choices=("on", "off"), default="on", help="tracks.enabled")
    parser.add_argument("--phase-timeout", type=float, default=300.0)
    parser.add_argument(
        "--report", type=Path, default=None, help="print the tables of a saved JSON, run nothing"
    )
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "topology.json"
    )
    args = parser.parse_args()
    if args.report is not None:
        reprint(args.report)
        return
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 3)
    args.frames = args.frames or (96 if quick else 288)
    args.hits = args.hits or (600 if quick else 1200)
    args.latency = args.latency or (30 if quick else 200)
    args.idle = args.idle if args.idle is not None else (1.0 if quick else 3.0)
    p = args.processes
    if p % 6:
        raise SystemExit("--processes must be a multiple of 6 (1, 2 and 3 nodes share them)")
    rows = [
        Row("1 node", "nodes", 1, p),
        Row("2 nodes", "nodes", 2, p),
        Row("3 nodes", "nodes", 3, p),
        Row("cluster, 1 group", "cluster", 1, p),
        Row("cluster, 2 groups", "cluster", 2, p),
        Row("cluster, 3 groups", "cluster", 3, p),
        Row("cluster, 3 groups, WAIT 1", "cluster", 3, p, wait=1),
    ]
    if quick:
        rows = [rows[0], rows[2], rows[5], rows[6]]

    began = time.monotonic()
    frames = make_frames(args.frames)
    height, width = decode_jpeg(frames[0]).shape[:2]
    settings = load_settings(models={"threads": 1})
    engine = FaceEngine.from_settings(settings.models)
    identities = [
        embed_photos(engine, folder.name, sorted(folder.glob("*.jpg")))
        for folder in sorted(p for p in (DEMO_DATA / "gallery").iterdir() if p.is_dir())
    ]
    results: dict[str, list[dict[str, Any]]] = {row.name: [] for row in rows}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        with (
            RedisNodes(3, appendonly=True, appendfsync="always", parent_dir=scratch) as nodes,
            ClusterProcess(3, 1, appendonly=True, parent_dir=scratch) as cluster,
        ):
            groups = pick_groups(cluster)
            masters = [cluster.master_for_key(keys.frames(g)) for g in groups]
            print(f"groups {groups} on cluster masters {masters}", flush=True)
            for round_index in range(args.rounds):
                order = rows[round_index % len(rows) :] + rows[: round_index % len(rows)]
                for row in order:
                    t0 = time.monotonic()
                    run = RowRun(row, groups, nodes, cluster, scratch, identities, args)
                    report = run.run(frames, (width, height))
                    results[row.name].append(report)
                    print(
                        f"round {round_index + 1} {row.name:<26} miss {report['miss']['fps']:6.1f}"
                        f"  hit {report['hit']['fps']:7.1f} f/s  ({time.monotonic() - t0:.0f} s,"
                        f" workers ready in {report['ready_s']:.0f} s, worker CPU"
                        f" {report['miss']['worker_cpu_ms']:.1f}"
                        f" / {report['hit']['worker_cpu_ms']:.2f} ms/frame,"
                        f" hits cached {report['hit_share_cached']:.0%})",
                        flush=True,
                    )
            latency = wait_latency(
                cluster,
                groups[0],
                frames[0],
                (width, height),
                engine,
                args.latency,
                args.tracks == "on",
            )
    elapsed = time.monotonic() - began
    print_report(rows, results, latency, args, elapsed)
    print_sizing(results, camera_bytes(frames))
    write_json(rows, results, latency, args, elapsed, groups)


def reprint(path: Path) -> None:
    saved = json.loads(path.read_text())
    rows = [
        Row(r["name"], r["kind"], r["groups"], r["processes"], r["wait"]) for r in saved["rows"]
    ]
    args = argparse.Namespace(**saved["args"])
    print(f"{path}: {saved['date']}, {saved['machine']}, {saved['redis']}")
    print_report(rows, saved["results"], saved["wait_latency_ms"], args, saved["elapsed_s"])
    print_sizing(saved["results"], camera_bytes(make_frames(int(args.frames))))


def camera_bytes(frames: list[bytes]) -> float:
    """Mean bytes of a camera's XADD of one of `frames` (RESP request: the JPEG and fields)."""
    fields = {"v": 1, "camera": "cam-zone0", "group": "zone0", "seq": 100, "ts": 1795690971997,
              "codec": "jpeg", "w": 640, "h": 360}  # fmt: skip
    head = ["XADD", keys.frames("zone0"), "MAXLEN", "~", 100_000, "*"]
    flat = [x for kv in fields.items() for x in kv]
    return statistics.mean(resp_size([*head, *flat, "img", jpeg]) for jpeg in frames)


#: Cameras x frames/s for the sizing table.
SCENARIOS = ((10, 5), (50, 5), (100, 5), (200, 10), (1000, 5))
WORKER_LOAD = 0.7  # plan worker cores at 70% busy
REDIS_LOAD = 0.5  # and each Redis main thread at 50% of a core


def print_sizing(results: dict[str, list[dict[str, Any]]], frame_bytes: float) -> None:
    """Cameras x fps -> worker cores, Redis nodes, network: a calculation from the measured
    per-frame costs (medians over rounds), all frames new (live cameras never repeat bytes).

    `frame_bytes`: what a camera's XADD of one frame sends (the script's own XADDs are
    subtracted from the measured traffic, so it is added back here)."""

    def per_frame(row: str, path: str, key: str) -> float:
        return median_of(r[path]["per_frame"][key] for r in results[row])

    def worker_ms(row: str, path: str) -> float:
        return median_of(r[path]["worker_cpu_ms"] for r in results[row])

    single, cluster = "1 node", "cluster, 3 groups"
    if single not in results or cluster not in results:
        return
    model_ms = worker_ms(single, "miss")
    hit_ms = worker_ms(single, "hit")
    node_us = per_frame(single, "miss", "redis_cpu_usec")
    cluster_us = per_frame(cluster, "miss", "redis_cpu_usec")  # all masters together
    node_bytes = frame_bytes + sum(per_frame(single, "miss", k) for k in ("bytes_in", "bytes_out"))
    cluster_bytes = frame_bytes + sum(
        per_frame(cluster, "miss", k) for k in ("bytes_in", "bytes_out")
    )
    repl = per_frame(cluster, "miss", "repl_bytes_out")
    print(
        "\nsizing, a CALCULATION from the per-frame costs above (all frames new, 640x360 JPEG):"
        f"\n  worker CPU {model_ms:.1f} ms/frame (miss, 1 node; {hit_ms:.2f} on a hit);"
        f" Redis CPU per frame {node_us:.0f} us (1 node), {cluster_us:.0f} us (cluster, all"
        f" masters); cameras + workers <-> Redis {node_bytes / 1000:.1f} kB/frame (node),"
        f" {cluster_bytes / 1000:.1f} kB (cluster) + {repl / 1000:.1f} kB to replicas"
        f"\n  worker cores = frames/s x {model_ms:.1f} ms / {WORKER_LOAD:.0%};"
        f" Redis servers = frames/s x CPU per frame / {REDIS_LOAD:.0%} of a core"
    )
    print(f"{'cameras x fps':<15}{'frames/s':>9}{'worker cores':>13}{'nodes':>7}"
          f"{'masters':>9}{'MB/s node':>11}{'MB/s cluster':>14}")  # fmt: skip
    for cameras, fps in SCENARIOS:
        rate = cameras * fps
        cores = rate * model_ms / 1000 / WORKER_LOAD
        nodes = max(1, -(-rate * node_us // (REDIS_LOAD * 1e6)))
        masters = max(3, -(-rate * cluster_us // (REDIS_LOAD * 1e6)))
        traffic = rate * node_bytes / 1e6, rate * (cluster_bytes + repl) / 1e6
        print(f"{f'{cameras} x {fps}':<15}{rate:>9}{cores:>13.1f}{nodes:>7.0f}{masters:>9.0f}"
              f"{traffic[0]:>11.1f}{traffic[1]:>14.1f}")  # fmt: skip


def efficiency(
    rows: list[Row], results: dict[str, list[dict[str, Any]]], path: str
) -> dict[str, list[float]]:
    """Per row, per round: frames/s / frames/s of the first row (1 node) in the same round."""
    base = [r[path]["fps"] for r in results[rows[0].name]]
    return {
        row.name: [r[path]["fps"] / b for r, b in zip(results[row.name], base, strict=True)]
        for row in rows
    }


def median_of(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def median_dict(dicts: list[dict[str, float]]) -> dict[str, float]:
    names = {k for d in dicts for k in d}
    medians = {k: median_of(d.get(k, 0.0) for d in dicts) for k in names}
    return dict(sorted(medians.items(), key=lambda kv: -kv[1]))


def print_report(
    rows: list[Row],
    results: dict[str, list[dict[str, Any]]],
    latency: dict[str, dict[str, float]],
    args: argparse.Namespace,
    elapsed: float,
) -> None:
    eff = {path: efficiency(rows, results, path) for path in ("miss", "hit")}
    print(
        f"\n{args.frames} miss + {args.hits} hit frames (640x360 JPEG) per row, "
        f"{args.processes} worker processes per row, tracks {args.tracks}, {args.rounds} "
        f"round(s); median, spread = max/min - 1; {os.cpu_count()} CPUs; {elapsed / 60:.1f} min"
    )
    print(
        f"{'':<27}{'frames/s':>20}{'frames/s':>20}{'worker CPU ms/frame':>26}\n"
        f"{'row':<27}{'miss':>7}{'spread':>7}{'eff':>6}{'hit':>7}{'spread':>7}{'eff':>6}"
        f"{'miss':>7}{'eff':>6}{'hit':>7}{'eff':>6}"
    )
    cpu = {
        path: {
            row.name: median_of(r[path]["worker_cpu_ms"] for r in results[row.name]) for row in rows
        }
        for path in ("miss", "hit")
    }
    base = rows[0].name
    for row in rows:
        runs = results[row.name]
        miss = [r["miss"]["fps"] for r in runs]
        hit = [r["hit"]["fps"] for r in runs]
        print(
            f"{row.name:<27}{median_of(miss):>7.1f}{spread(miss):>7.0%}"
            f"{median_of(eff['miss'][row.name]):>6.2f}"
            f"{median_of(hit):>7.0f}{spread(hit):>7.0%}{median_of(eff['hit'][row.name]):>6.2f}"
            f"{cpu['miss'][row.name]:>7.1f}{cpu['miss'][base] / cpu['miss'][row.name]:>6.2f}"
            f"{cpu['hit'][row.name]:>7.2f}{cpu['hit'][base] / cpu['hit'][row.name]:>6.2f}"
        )
    print(
        "eff: frames/s / frames/s of 1 node in the same round (median of rounds); CPU eff: worker"
        " CPU per frame of 1 node / of the row (medians)"
    )
    print(
        "\nper frame, whole phase (median over rounds): Redis commands (also those the commit "
        "function runs), Redis CPU (all servers; of it in commands), bytes client->Redis, "
        "Redis->client, master->replica; commands the worker sent"
    )
    for row in rows:
        for path in ("miss", "hit"):
            per = [r[path]["per_frame"] for r in results[row.name]]
            commands = median_dict([p["commands"] for p in per])
            shown = ", ".join(f"{c} {n:.2f}" for c, n in commands.items() if n >= 0.01)
            sent = sum(n for c, n in commands.items() if c not in IN_COMMIT)
            print(
                f"{row.name:<27}{path:<5}{median_of(p['commands_total'] for p in per):6.2f} cmds"
                f" cpu {median_of(p['redis_cpu_usec'] for p in per):5.0f} us"
                f" (cmds {median_of(p['redis_command_usec'] for p in per):4.0f})"
                f" in {median_of(p['bytes_in'] for p in per):6.0f} B"
                f" out {median_of(p['bytes_out'] for p in per):6.0f} B"
                f" repl {median_of(p['repl_bytes_out'] for p in per):5.0f} B"
                f"; sent by the worker {sent:.2f}"
            )
            print(f"{'':<32}[{shown}]")
            targets = median_dict([p["commands_per_target"] for p in per])
            if len(targets) > 1:
                print(
                    f"{'':<32}per server: " + ", ".join(f"{t} {n:.2f}" for t, n in targets.items())
                )
    print("\nworker start (commands per process) and idle (commands per second, all processes):")
    for row in rows:
        runs = results[row.name]
        start = median_dict([r["startup"]["commands"] for r in runs])
        idle = median_dict(
            [{k: v / r["idle"]["seconds"] for k, v in r["idle"]["commands"].items()} for r in runs]
        )
        print(f"{row.name:<27}start [{', '.join(f'{c} {n:.1f}' for c, n in start.items())}]")
        idle_cpu = median_of(r["idle"]["worker_cpu_s"] / r["idle"]["seconds"] for r in runs)
        shown = ", ".join(f"{c} {n:.1f}" for c, n in idle.items())
        print(f"{'':<27}idle/s [{shown}], worker CPU {idle_cpu:.3f} s/s")
    with_wait, without = "cluster, 3 groups, WAIT 1", "cluster, 3 groups"
    if with_wait in results and without in results:
        print("\nWAIT 1 / no WAIT on the cluster, 3 groups, same round:")
        for path in ("miss", "hit"):
            pairs = zip(results[with_wait], results[without], strict=True)
            ratios = [w[path]["fps"] / n[path]["fps"] for w, n in pairs]
            shown = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"  {path:<5} frames/s ratio median {median_of(ratios):.2f} (rounds: {shown})")
    print("\none cached frame at a time through the cluster, in this process, ms:")
    for name, value in latency.items():
        print(f"  {name:<15} p50 {value['p50']:6.2f}  p99 {value['p99']:6.2f}  (n={value['n']})")


def write_json(
    rows: list[Row],
    results: dict[str, list[dict[str, Any]]],
    latency: dict[str, dict[str, float]],
    args: argparse.Namespace,
    elapsed: float,
    groups: list[str],
) -> None:
    version = subprocess.run(
        [str(find_redis_server()), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "redis": version,
        "args": {k: str(v) for k, v in vars(args).items()},
        "groups": groups,
        "elapsed_s": elapsed,
        "rows": [vars(row) | {"concurrency": row.concurrency} for row in rows],
        "efficiency": {path: efficiency(rows, results, path) for path in ("miss", "hit")},
        "results": results,
        "wait_latency_ms": latency,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
