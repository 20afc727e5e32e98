"""One row of the topology benchmark: start the supervisor, run miss, hit and idle phases.

Imported by topology.py, which puts the repository root on sys.path (for tests.servers).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml
from topology_procs import family_cpu_s, signal_family
from topology_sampling import Ledger, Sample, Target, costs, raw_client, resp_size, sample

from facestream.config import load_settings
from facestream.ingest import EncodedFrame, FramePublisher
from facestream.recognizer import Gallery
from facestream.schemas import keys
from tests.servers.redis_nodes import ClusterProcess, RedisNodes

HIT_DISTINCT = 20  # distinct (cached) images each group cycles over on the hit path
TRIM = 0.05  # share of a phase's results left out at each end


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
class Phase:
    name: str
    frames: int
    base: int  # results before it
    before: Sample = field(init=False)  # workers stopped, nothing queued yet
    queued: Sample = field(init=False)  # workers stopped, frames queued
    done: Sample = field(init=False)  # every result in
    worker_cpu_s: float = 0.0  # CPU the worker processes used from the go to the last result


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
