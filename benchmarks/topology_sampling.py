"""What the Redis servers did during a phase of the topology benchmark, per frame.

INFO snapshots of every server a row uses, a ledger of what the benchmark itself sent (to
subtract), and the per-frame commands, CPU and bytes between two snapshots.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from facestream.schemas import keys

# What the sampler sends each node per round, besides one XLEN per group there.
INFO_ARGS = ("INFO", "stats", "cpu", "commandstats")


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
