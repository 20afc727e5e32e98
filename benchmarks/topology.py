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

The parts: topology_row.py runs one row (supervisor, phases), topology_sampling.py turns INFO
snapshots into per-frame costs, topology_procs.py reads the workers' CPU from /proc,
topology_latency.py times WAIT, topology_report.py prints the tables and the sizing, writes the
JSON and reprints a saved one; this file picks the rows and runs the rounds.

Usage: python benchmarks/topology.py [--quick] [--rounds 3] [--tracks off] [--json out.json]
       python benchmarks/topology.py --report out.json   (reprint a saved run)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from throughput import make_frames
from topology_latency import wait_latency
from topology_report import camera_bytes, print_report, print_sizing, reprint, write_json
from topology_row import Row, RowRun

from facestream.config import load_settings
from facestream.demo import DEMO_DATA
from facestream.recognizer import FaceEngine, decode_jpeg, embed_photos
from facestream.schemas import keys
from tests.servers.redis_nodes import ClusterProcess, RedisNodes


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


if __name__ == "__main__":
    main()
