"""The topology benchmark's tables, its sizing calculation, its JSON file and `--report`."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from throughput import make_frames
from topology_row import Row
from topology_sampling import resp_size

from facestream.schemas import keys
from facestream.server import find_redis_server

#: Commands the commit function runs inside Redis (commandstats counts them too); the rest of
#: a frame's commands are sent by the worker (pipelined per batch, so fewer round trips).
IN_COMMIT = frozenset({"xpending", "hget", "type", "xadd", "xack", "set", "hset", "expire"})


def spread(values: list[float]) -> float:
    return max(values) / min(values) - 1 if values and min(values) > 0 else 0.0


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
    # Ties (often 0) by name: a report printed again from its JSON lists them in the same order.
    return dict(sorted(medians.items(), key=lambda kv: (-kv[1], kv[0])))


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
